#!/usr/bin/env bash
# Make sure the base image every demo image is built FROM exists in the local engine:
#   1. already there: nothing to do (a base built here earlier is the build cache's root);
#   2. pulled, where an image registry is reachable;
#   3. otherwise built from Debian's packages: `debootstrap --variant=minbase bookworm`,
#      then `docker import` under the same name.
# For 3, the new root file system gets this host's apt sources and single-line Acquire::
# settings and its locally added CA certificates (/usr/local/share/ca-certificates), so that
# apt, pip and Maven inside the builds reach the package archives the way this host does.
#
#   deploy/compose/base-image.sh [IMAGE]     (default: $BASE_IMAGE or debian:bookworm-slim)
set -euo pipefail

IMAGE="${1:-${BASE_IMAGE:-debian:bookworm-slim}}"
DOCKER="${DOCKER:-docker}"
SUITE="${BASE_SUITE:-bookworm}"
log() { printf 'base-image: %s\n' "$*" >&2; }

if "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
  log "$IMAGE is there ($("$DOCKER" image inspect -f '{{.Created}}' "$IMAGE"))"
  exit 0
fi
if [[ "${BASE_IMAGE_PULL:-1}" == 1 ]] && timeout 120 "$DOCKER" pull -q "$IMAGE" >/dev/null 2>&1; then
  log "pulled $IMAGE"
  exit 0
fi
log "$IMAGE cannot be pulled: building it with debootstrap ($SUITE, minbase)"
command -v debootstrap >/dev/null || { log "debootstrap is missing (apt-get install debootstrap)"; exit 1; }
[[ $(id -u) -eq 0 ]] || { log "debootstrap needs root"; exit 1; }

# the host's Debian archive, if its sources name one; else debootstrap's default
mirror="$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)[[:space:]]*$/\1/p' \
  /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)"
[[ -n $mirror ]] || mirror="$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"

started=$SECONDS
work="$(mktemp -d /var/tmp/base-image.XXXXXX)"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
debootstrap --variant=minbase "$SUITE" "$rootfs" ${mirror:+"$mirror"} >"$work/debootstrap.log" 2>&1 ||
  { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }

if [[ -s /etc/apt/sources.list.d/debian.sources ]]; then
  cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/"
  : >"$rootfs/etc/apt/sources.list"
elif [[ -s /etc/apt/sources.list ]]; then
  cp /etc/apt/sources.list "$rootfs/etc/apt/sources.list"
fi
# complete one-line statements only (a multi-line block would be cut in half)
grep -hE '^Acquire::[^{}]*;[[:space:]]*$' /etc/apt/apt.conf.d/* 2>/dev/null \
  >"$rootfs/etc/apt/apt.conf.d/90host-acquire" || true
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  mkdir -p "$rootfs/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
fi
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/tmp/*

tar -C "$rootfs" -c . | "$DOCKER" import \
  --change 'CMD ["bash"]' --change 'LABEL org.dicomfhir.base=debootstrap' - "$IMAGE" >/dev/null
log "built $IMAGE in $((SECONDS - started)) s: $("$DOCKER" run --rm "$IMAGE" cat /etc/debian_version)"
