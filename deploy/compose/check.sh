#!/usr/bin/env bash
# The Docker demo, run for real and checked the way a user would (CI runs this after
# `make test`; a developer can run it as it is):
#
#   1. Debian's docker.io, docker-compose, debootstrap (as root, when missing); a dockerd of
#      our own unless an engine already answers; the base image (deploy/compose/base-image.sh)
#   2. `docker-compose up --build` of deploy/docker-compose.yml under its own project name, with
#      random secrets and free host ports (the README's 8080/8042/8090 when they are free)
#   3. the assertions, each printed as PASS/FAIL; then `down -v`, which must leave nothing
#
# HAPI enforces SMART tokens of the demo's Keycloak: every FHIR call here carries one, taken
# the README's way (`docker-compose exec -T keycloak token ...`), and the imaging gateway is
# checked through Endpoint.address with the same token, without one, and with another
# patient's.
#
# Environment: COMPOSE_CHECK_PROJECT (dfscheck), HAPI_PORT / ORTHANC_PORT / SIDECAR_PORT /
# KEYCLOAK_PORT (wanted host ports), BASE_IMAGE, COMPOSE_CHECK_KEEP=1 (leave the demo running),
# COMPOSE_CHECK_TIMEOUT (600: seconds for `up` and again for the seeder),
# COMPOSE_CHECK_BUILD_TIMEOUT (1800). Exit status 0 only when every assertion passed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
STATE="$ROOT/var/compose"
PROJECT="${COMPOSE_CHECK_PROJECT:-dfscheck}"
TIMEOUT="${COMPOSE_CHECK_TIMEOUT:-600}"
BUILD_TIMEOUT="${COMPOSE_CHECK_BUILD_TIMEOUT:-1800}"
export BASE_IMAGE="${BASE_IMAGE:-debian:bookworm-slim}"
mkdir -p "$STATE/bin"

say() { printf '\n== %s\n' "$*"; }
log() { printf 'compose-check: %s\n' "$*" >&2; }
started_all=$SECONDS
declare -A took=()

# --- 1. tools, engine, base image --------------------------------------------------------
missing=()
for pkg in docker.io docker-compose debootstrap jq curl; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] || { log "missing ${missing[*]}: install them (as root)"; exit 1; }
  log "installing ${missing[*]}"
  # Debian's packages would start their system services: policy-rc.d says no meanwhile
  policy=/usr/sbin/policy-rc.d added_policy=
  if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' >$policy; chmod +x $policy; added_policy=1; fi
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  [[ -z $added_policy ]] || rm -f $policy
fi

# One client on purpose: Debian's docker (20.10, the engine's own version, BuildKit built in),
# ahead of any other `docker` on PATH; docker-compose 1.29 runs `docker build` through it, and
# BuildKit builds the way Compose v2 always does.
ln -sf /usr/bin/docker "$STATE/bin/docker"
export PATH="$STATE/bin:$PATH" DOCKER_BUILDKIT=1 COMPOSE_DOCKER_CLI_BUILD=1
export DOCKER=/usr/bin/docker

bash deploy/compose/dockerd.sh start
t=$SECONDS
bash deploy/compose/base-image.sh "$BASE_IMAGE"
took[base image]=$((SECONDS - t))

# --- 2. settings: random secrets, free ports ------------------------------------------------
port_free() { python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pick_port() { # wanted port -> it, or a free one if it is taken
  if port_free "$1"; then echo "$1"; else local p; p="$(free_port)"; log "port $1 is taken: using $p"; echo "$p"; fi
}
HAPI_PORT="$(pick_port "${HAPI_PORT:-8080}")"
ORTHANC_PORT="$(pick_port "${ORTHANC_PORT:-8042}")"
SIDECAR_PORT="$(pick_port "${SIDECAR_PORT:-8090}")"
KEYCLOAK_PORT="$(pick_port "${KEYCLOAK_PORT:-8180}")"
random() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
ENV_FILE="$STATE/check.env"
(
  umask 077
  sed -e "s/^SIDECAR_RELAY_SECRET=.*/SIDECAR_RELAY_SECRET=$(random)/" \
    -e "s/^SIDECAR_NOTIFY_SECRET=.*/SIDECAR_NOTIFY_SECRET=$(random)/" \
    -e "s/^ORTHANC_PASSWORD=.*/ORTHANC_PASSWORD=$(random)/" \
    -e "s/^POSTGRES_PASSWORD=.*/POSTGRES_PASSWORD=$(random)/" \
    -e "s/^KEYCLOAK_ADMIN_PASSWORD=.*/KEYCLOAK_ADMIN_PASSWORD=$(random)/" \
    -e "s/^KEYCLOAK_SIDECAR_SECRET=.*/KEYCLOAK_SIDECAR_SECRET=$(random)/" \
    -e "s/^KEYCLOAK_DEMO_PASSWORD=.*/KEYCLOAK_DEMO_PASSWORD=$(random)/" \
    -e "s/^HAPI_PORT=.*/HAPI_PORT=$HAPI_PORT/" \
    -e "s/^ORTHANC_PORT=.*/ORTHANC_PORT=$ORTHANC_PORT/" \
    -e "s/^SIDECAR_PORT=.*/SIDECAR_PORT=$SIDECAR_PORT/" \
    -e "s/^KEYCLOAK_PORT=.*/KEYCLOAK_PORT=$KEYCLOAK_PORT/" \
    -e "s|^BASE_IMAGE=.*|BASE_IMAGE=$BASE_IMAGE|" deploy/.env.example >"$ENV_FILE"
)
ORTHANC_USERNAME="$(sed -n 's/^ORTHANC_USERNAME=//p' "$ENV_FILE")"
ORTHANC_PASSWORD="$(sed -n 's/^ORTHANC_PASSWORD=//p' "$ENV_FILE")"
FHIR="http://127.0.0.1:$HAPI_PORT/fhir"
ORTHANC="http://127.0.0.1:$ORTHANC_PORT"
SIDECAR="http://127.0.0.1:$SIDECAR_PORT"
KEYCLOAK="http://127.0.0.1:$KEYCLOAK_PORT"
# what every token must say, wherever it was asked for (PUBLIC_HOST is 127.0.0.1 here)
ISSUER="$KEYCLOAK/realms/dicom-fhir"

COMPOSE=(docker-compose -p "$PROJECT" --env-file "$ENV_FILE" -f deploy/docker-compose.yml)
compose() { "${COMPOSE[@]}" "$@"; }
container() { compose ps -q "$1"; }

passed=0 failed=0
pass() { passed=$((passed + 1)); printf 'PASS  %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$*"; }

dump_logs() {
  compose ps || true
  for s in postgres hapi keycloak orthanc redis sidecar-web-1 sidecar-web-2 worker sidecar seeder; do
    printf -- '--- %s (last 40 lines)\n' "$s"
    compose logs --no-color --tail 40 "$s" 2>&1 | grep -v '^Attaching' || true
  done
}
cleanup() {
  local rc=$?
  if [[ $rc -ne 0 || $failed -ne 0 ]]; then dump_logs >&2; fi
  if [[ "${COMPOSE_CHECK_KEEP:-0}" != 1 ]]; then compose down -v --remove-orphans >/dev/null 2>&1 || true; fi
  bash deploy/compose/dockerd.sh stop || true
  exit "$rc"
}
trap cleanup EXIT

# Tokens as the README takes them: `docker compose exec -T keycloak token ...`. They live 5
# minutes: fresh_tokens (at the top level, before each part) renews them after 3.
token() { compose exec -T keycloak token "$@"; }
SYSTEM="" PRACTITIONER="" tokens_at=-1000
fresh_tokens() {
  ((SECONDS - tokens_at > 180)) || return 0
  # the sidecar's client for check.sh's own reads and writes; the practitioner as in the README
  if SYSTEM="$(token --system)" && PRACTITIONER="$(token --user practitioner)"; then
    tokens_at=$SECONDS
  else fail "tokens from docker-compose exec -T keycloak token"; exit 1; fi
}
claims() { # JWT -> its claims, unverified (base64url without padding)
  python3 -c 'import base64, sys; p = sys.argv[1].split(".")[1]; print(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)).decode())' "$1"
}
# read with the system token, without HAPI's 60 s search cache (deploy/hapi/README.md)
get() { curl -fsS --max-time 60 -H "Authorization: Bearer $SYSTEM" -H 'Cache-Control: no-cache' -H 'Accept: application/fhir+json' "$@"; }
wait_for() { # seconds command... : retry the command until it succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do ((SECONDS < deadline)) || return 1; sleep 1; done
}
studies_of() { get "$FHIR/ImagingStudy?subject=Patient/$1&_count=50" | jq -r '[.entry[]?.resource.id] | join(" ")'; }
has_studies() { [[ -n "$(studies_of "$1")" ]]; }
fetch_imaging() { # patient id -> HTTP status of POST $fetch-imaging through HAPI, as the practitioner
  curl -sS -o "$STATE/fetch.json" -w '%{http_code}' --max-time 90 -X POST \
    -H "Authorization: Bearer $PRACTITIONER" \
    -H 'Content-Type: application/fhir+json' -d '{"resourceType":"Parameters"}' \
    "$FHIR/Patient/$1/\$fetch-imaging"
}
patient_id() { get "$FHIR/Patient?identifier=$1" | jq -r '.entry[0].resource.id // empty'; }
create_patient() { # system|value -> the new Patient's id (written with the system token)
  curl -fsS -X POST -H "Authorization: Bearer $SYSTEM" -H 'Content-Type: application/fhir+json' \
    -d "{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"${1%%|*}\",\"value\":\"${1#*|}\"}]}" \
    "$FHIR/Patient" | jq -r .id
}
wado() { # token url [accept] -> HTTP status of a WADO-RS GET (the answer in $STATE/wado.out)
  local auth=()
  [[ -z $1 ]] || auth=(-H "Authorization: Bearer $1")
  curl -sS -o "$STATE/wado.out" -w '%{http_code}' --max-time 60 "${auth[@]}" \
    -H "Accept: ${3:-multipart/related; type=\"application/dicom\"}" "$2" || true
}
instance_path() { # ImagingStudy JSON -> studies/S/series/SE/instances/I of its first instance
  jq -r '"studies/" + (.identifier[] | select(.system == "urn:dicom:uid") | .value | ltrimstr("urn:oid:"))
    + "/series/" + .series[0].uid + "/instances/" + .series[0].instance[0].uid' <<<"$1"
}

# --- 3. up ------------------------------------------------------------------------------------
say "docker-compose up --build (project $PROJECT; HAPI :$HAPI_PORT, Orthanc :$ORTHANC_PORT, sidecar :$SIDECAR_PORT, Keycloak :$KEYCLOAK_PORT)"
compose down -v --remove-orphans >/dev/null 2>&1 || true # a run cut short earlier
t=$SECONDS
if timeout "$BUILD_TIMEOUT" "${COMPOSE[@]}" build >"$STATE/build.log" 2>&1; then
  grep -E '^Building ' "$STATE/build.log" | tr '\n' ' '; echo
  took[build]=$((SECONDS - t))
  # images of earlier builds that lost their tag, and build cache unused for a week
  docker image prune -f --filter label=org.dicomfhir.demo >/dev/null || true
  docker builder prune -f --filter until=168h >/dev/null 2>&1 || true
else
  tail -n 60 "$STATE/build.log"; fail "the images build (log: var/compose/build.log)"; exit 1
fi
t=$SECONDS
# bounded: a HAPI that never gets healthy would otherwise keep `up` waiting
if timeout "$TIMEOUT" "${COMPOSE[@]}" up -d >"$STATE/up.log" 2>&1; then
  pass "docker-compose up: every service started, HAPI and Keycloak healthy ($((SECONDS - t)) s)"
else
  cat "$STATE/up.log"; fail "docker-compose up"; exit 1
fi

seeder="$(container seeder)"
if rc="$(timeout "$TIMEOUT" docker wait "$seeder")" && [[ $rc == 0 ]]; then
  took[up to seeded]=$((SECONDS - t))
  pass "the seeder loaded the samples and created the demo Patient ($((SECONDS - t)) s after up)"
else
  fail "the seeder finished with status ${rc:-timeout}"; exit 1
fi
seed_log="$(compose logs --no-color seeder)"
active_line="$(grep -n 'is active' <<<"$seed_log" | head -n 1 | cut -d: -f1)"
created_line="$(grep -n 'demo Patient/' <<<"$seed_log" | head -n 1 | cut -d: -f1)"
if [[ -n $active_line && -n $created_line && $active_line -lt $created_line ]]; then
  pass "the seeder waited for the Subscription to be active before it created the Patient"
else fail "the seeder's log does not show the Subscription active before the Patient"; fi

# --- 4. assertions ----------------------------------------------------------------------------
say "what a user would check"
t=$SECONDS
fresh_tokens
# Patient B, for the gateway's isolation below: another sample patient, synced meanwhile
PID_B="$(create_patient 'urn:example:mrn:hosp-a|P-2001' || true)"

# One issuer, whoever asks: the host (browser, curl) at KEYCLOAK_PORT, the containers at
# keycloak:8080 (Keycloak's dynamic backchannel); tokens from either side say the same `iss`.
host_iss="$(curl -fsS "$ISSUER/.well-known/openid-configuration" | jq -r .issuer || true)"
inside="$(compose exec -T sidecar-web-1 python3 -c 'import json, urllib.request as u; d = json.load(u.urlopen("http://keycloak:8080/realms/dicom-fhir/.well-known/openid-configuration", timeout=10)); print(d["issuer"], d["token_endpoint"])' || true)"
KEYCLOAK_SIDECAR_SECRET="$(sed -n 's/^KEYCLOAK_SIDECAR_SECRET=//p' "$ENV_FILE")"
host_token="$(curl -fsS -u "dicom-fhir-sidecar:$KEYCLOAK_SIDECAR_SECRET" -d grant_type=client_credentials \
  "$ISSUER/protocol/openid-connect/token" | jq -r .access_token || true)"
host_claims="$(claims "$host_token" | jq -c '{iss, aud}' || true)"
inside_claims="$(claims "$PRACTITIONER" | jq -c '{iss, aud}' || true)"
expected="{\"iss\":\"$ISSUER\",\"aud\":\"$FHIR\"}"
if [[ $host_iss == "$ISSUER" && $inside == "$ISSUER http://keycloak:8080/"* && $host_claims == "$expected" && $inside_claims == "$expected" ]]; then
  pass "Keycloak: issuer $ISSUER from the host and from the containers (tokens at keycloak:8080); tokens from both sides say that iss and aud $FHIR"
else fail "Keycloak issuer: host '$host_iss', containers '$inside', token from the host $host_claims, from the container $inside_claims (want $expected)"; fi

# HAPI enforces the tokens: metadata stays public (health checks), the rest wants a token
anon="$(curl -s -o /dev/null -w '%{http_code}' "$FHIR/Patient?_count=1")"
anon_op="$(curl -s -o /dev/null -w '%{http_code}' -X POST "$FHIR/Patient/\$fetch-imaging?identifier=urn:example:mrn:hosp-a|P-1001")"
with="$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $PRACTITIONER" "$FHIR/Patient?_count=1")"
smart="$(curl -fsS "$FHIR/.well-known/smart-configuration" | jq -r '.issuer + " " + .token_endpoint' || true)"
if [[ $anon == 401 && $anon_op == 401 && $with == 200 && $smart == "$ISSUER $ISSUER/protocol/openid-connect/token" ]]; then
  pass "HAPI enforces SMART tokens: without one 401 (search, \$fetch-imaging), the practitioner's 200; smart-configuration names the public issuer"
else fail "HAPI's token enforcement: without a token $anon / $anon_op, with $with; smart-configuration '$smart'"; fi

meta="$(get "$FHIR/metadata")"
if jq -e '.fhirVersion == "4.0.1" and ([.rest[].resource[] | select(.type == "Patient") | .operation[]?.name] | index("fetch-imaging"))' <<<"$meta" >/dev/null; then
  pass "HAPI (FHIR 4.0.1) lists \$fetch-imaging on Patient in its CapabilityStatement"
else fail "HAPI's CapabilityStatement has no \$fetch-imaging on Patient"; fi

rows="$(compose exec -T postgres psql -qtA -U postgres -d hapi -c 'select count(*) from hfj_resource' 2>/dev/null | tr -d '\r' || true)"
if [[ $rows =~ ^[0-9]+$ && $rows -gt 0 ]]; then pass "HAPI keeps its resources in PostgreSQL ($rows rows in hfj_resource)"
else fail "no HAPI resources in PostgreSQL (${rows:-no answer})"; fi

PID="$(patient_id 'urn:example:mrn:hosp-a|P-1001')"
created_at="$(get "$FHIR/Patient/$PID" | jq -r .meta.lastUpdated)"
if wait_for 60 has_studies "$PID"; then
  study_ids="$(studies_of "$PID")"
  study_at="$(get "$FHIR/ImagingStudy/${study_ids%% *}" | jq -r .meta.lastUpdated)"
  lag="$(python3 -c 'import sys; from datetime import datetime as d; print(round((d.fromisoformat(sys.argv[2]) - d.fromisoformat(sys.argv[1])).total_seconds(), 1))' "$created_at" "$study_at")"
  pass "automatic sync: Patient/$PID has ImagingStudy $study_ids, written $lag s after the Patient (limit 60 s)"
else fail "automatic sync: no ImagingStudy for Patient/$PID within 60 s"; study_ids=""; fi

code="$(fetch_imaging "$PID")"
if [[ $code == 200 ]] && jq -e --arg ids "$study_ids" \
  '.type == "searchset" and ([.entry[].resource | select(.resourceType == "ImagingStudy") | .id] | sort) == ($ids | split(" ") | sort)' \
  "$STATE/fetch.json" >/dev/null; then
  pass "\$fetch-imaging through HAPI with the practitioner's token returns the synced ImagingStudy"
else fail "\$fetch-imaging through HAPI: HTTP $code $(head -c 300 "$STATE/fetch.json")"; fi

# The README's Docker lines, as written there: its TOKEN line (docker compose -> our
# docker-compose with this project's settings) and its curl (only the port is ours)
docker_block="$(awk '/^Or with Docker only/ {f = 1} f && /^```sh/ {b = 1; next} b && /^```/ {exit} b' README.md)"
token_line="$(grep -m 1 '^TOKEN=' <<<"$docker_block" || true)"
docker_curl="$(grep -m 1 '^curl ' <<<"$docker_block" || true)"
printf -v compose_cmd '%q ' "${COMPOSE[@]}"
script="${token_line//docker compose /$compose_cmd}"$'\n'"${docker_curl//127.0.0.1:8080/127.0.0.1:$HAPI_PORT}"
answer="$(bash -c "$script" 2>&1 || true)"
if [[ $token_line == *'docker compose exec -T keycloak token'* && -n $docker_curl && $answer == *'"ImagingStudy"'* ]]; then
  pass "the README's Docker lines: a token from docker compose exec, then \$fetch-imaging by identifier answers with the ImagingStudy"
else fail "the README's Docker lines ('$token_line'): $(head -c 300 <<<"$answer")"; fi

# WADO-RS through the Endpoint from the host: Endpoint.address is the imaging gateway (through
# the proxy in front of both replicas), which serves exactly what HAPI shows the token
study="$(get "$FHIR/ImagingStudy/${study_ids%% *}")"
address="$(get "$FHIR/$(jq -r '.endpoint[0].reference' <<<"$study")" | jq -r .address)"
instance="$address/$(instance_path "$study")"
with="$(wado "$PRACTITIONER" "$instance")"; grep -aq DICM "$STATE/wado.out" || with="$with (no DICM)"
without="$(wado "" "$instance")"
if wait_for 60 has_studies "$PID_B"; then
  TOKEN_B="$(token --patient "Patient/$PID_B" || true)"
  other="$(wado "$TOKEN_B" "$instance")"
  study_b="$(get "$FHIR/ImagingStudy?subject=Patient/$PID_B" | jq '.entry[0].resource' || true)"
  own="$(wado "$TOKEN_B" "$address/$(instance_path "$study_b" || true)")"
else other="(Patient B has no study)" own="$other"; fi
if [[ $address == "$SIDECAR/dicomweb/main" && $with == 200 && $without == 401 && $other == 404 && $own == 200 ]]; then
  pass "WADO-RS through Endpoint.address ($address): the practitioner's token 200, no token 401, patient B's token 404 (and 200 on B's own study)"
else fail "WADO-RS through Endpoint.address '$address': practitioner $with, no token $without, patient B $other (own study $own)"; fi

# The README's curl walk-through, as written there (only the port is ours), with the
# practitioner's token taken the README's way
walk="$(awk '/^## A walk through the demo with curl/ {f = 1} f && /^```sh/ {b = 1; next} b && /^```/ {exit} b' README.md)"
walk="${walk//127.0.0.1:8080/127.0.0.1:$HAPI_PORT}"
TOKEN="$(token --user practitioner || true)" # here: compose's paths are relative to the repository
(cd "$STATE" && rm -f frame.jpg && TOKEN="$TOKEN" bash -euo pipefail -c "$walk" >walk.log 2>&1) || true
if [[ "$(head -c 2 "$STATE/frame.jpg" 2>/dev/null | od -An -tx1 | tr -d ' ')" == ffd8 ]]; then
  pass "the README's curl walk-through runs against the demo with a token and ends with a rendered JPEG frame through the gateway"
else fail "the README's curl walk-through (log: var/compose/walk.log)"; fi

# Orthanc as configured for the isolation rules: UTF-8 answers, case-sensitive PatientID
charset="$(curl -fsS -u "$ORTHANC_USERNAME:$ORTHANC_PASSWORD" "$ORTHANC/dicom-web/studies?PatientID=P-2001" | jq -r '[.[]["00080005"].Value[]?] | unique | join(",")')"
lower="$(curl -fsS -u "$ORTHANC_USERNAME:$ORTHANC_PASSWORD" "$ORTHANC/dicom-web/studies?PatientID=abc" | jq -r '[.[]["00100020"].Value[0]] | unique | join(",")')"
if [[ $charset == "ISO_IR 192" && $lower == abc ]]; then
  pass "Orthanc answers QIDO in UTF-8 (ISO_IR 192) and matches PatientID case-sensitively"
else fail "Orthanc QIDO: charset '$charset', PatientID=abc matched '$lower'"; fi

# the two secrets go where they belong: the notify secret into the Subscription, never the relay's
NOTIFY_SECRET="$(sed -n 's/^SIDECAR_NOTIFY_SECRET=//p' "$ENV_FILE")"
RELAY_SECRET="$(sed -n 's/^SIDECAR_RELAY_SECRET=//p' "$ENV_FILE")"
headers="$(get "$FHIR/Subscription/dicom-fhir-sidecar-patient" | jq -r '.channel.header[]?')"
if [[ $headers == "X-Sidecar-Secret: $NOTIFY_SECRET" && $headers != *"$RELAY_SECRET"* ]]; then
  pass "the Subscription carries the notify secret, not the relay secret"
else fail "the Subscription's headers are not the notify secret alone"; fi

code="$(curl -s -o /dev/null -w '%{http_code}' "$SIDECAR/livez")"
code401="$(curl -s -o /dev/null -w '%{http_code}' -X POST "$SIDECAR/fhir/Patient/$PID/\$fetch-imaging")"
if [[ $code == 200 && $code401 == 401 ]]; then pass "the sidecar's host port answers /livez and refuses \$fetch-imaging without the relay secret (401)"
else fail "sidecar host port: /livez $code, unauthenticated \$fetch-imaging $code401"; fi

# --- one replica down at a time: the demo still answers ---------------------------------------
replica_down_check() { # stop|kill, replica, patient identifier for a fresh sync
  local how="$1" down="$2" ident="$3" ok=1 codes=() code pid
  local word=stopped
  if [[ $how == kill ]]; then word=killed; compose kill "$down" >/dev/null 2>&1
  else compose stop -t 10 "$down" >/dev/null 2>&1; fi
  for _ in 1 2 3 4; do code="$(fetch_imaging "$PID")"; codes+=("$code"); [[ $code == 200 ]] || ok=0; done
  # a new Patient: HAPI's delivery goes through the proxy to the replica that is up
  pid="$(create_patient "$ident")"
  if [[ $ok == 1 ]] && wait_for 60 has_studies "$pid"; then
    pass "$down $word: \$fetch-imaging through HAPI answered ${codes[*]}, and new Patient/$pid synced through the other replica"
  else fail "$down $word: \$fetch-imaging ${codes[*]}; Patient/$pid studies: '$(studies_of "$pid")'"; fi
  compose start "$down" >/dev/null 2>&1
  wait_for 60 bash -c "[[ \$(docker inspect -f '{{.State.Health.Status}}' $(container "$down")) == healthy ]]" || true
}
fresh_tokens
replica_down_check stop sidecar-web-1 'urn:example:mrn:hosp-a|P-1002' # graceful (SIGTERM)
fresh_tokens
replica_down_check kill sidecar-web-2 'urn:example:mrn:hosp-a|P-1003' # gone at once (SIGKILL)

# --- only Docker's own networks -----------------------------------------------------------------
# `back` is internal: Docker drops, on its bridge, every packet to or from another subnet
back="${PROJECT}_back"
subnet="$(docker network inspect -f '{{(index .IPAM.Config 0).Subnet}}' "$back" 2>/dev/null || true)"
bridge="br-$(docker network inspect -f '{{.Id}}' "$back" 2>/dev/null | cut -c1-12)"
dropped="$(iptables -S DOCKER-ISOLATION-STAGE-1 2>/dev/null | grep -c -- "! -d $subnet -i $bridge -j DROP" || true)"
wider=""
for s in sidecar-web-1 sidecar-web-2 worker redis postgres seeder; do
  nets="$(docker inspect -f '{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}' "$(container "$s")")"
  [[ $nets == "$back " ]] || wider+=" $s($nets)"
done
if [[ "$(docker network inspect -f '{{.Internal}}' "$back")" == true && $dropped == 1 && -z $wider ]]; then
  pass "the sidecars, worker, seeder, Redis and PostgreSQL are only on $back ($subnet), internal: its bridge drops traffic to any other address"
else fail "network $back ($subnet): isolation rule found $dropped times; also on other networks:$wider"; fi
took[checks]=$((SECONDS - t))

say "resources"
compose logs --no-color hapi | grep -o 'Started HapiServerApplication in [0-9.]* seconds' | head -n 1 || true
# shellcheck disable=SC2046 # one argument per container id
docker stats --no-stream --format '  {{.Name}}: {{.MemUsage}}, CPU {{.CPUPerc}}' $(compose ps -q) || true

# --- down -v ------------------------------------------------------------------------------------
if ((failed)); then dump_logs >&2; fi
if [[ "${COMPOSE_CHECK_KEEP:-0}" == 1 ]]; then
  # as documented above: the demo stays for a look (with an engine this script did not start;
  # its own engine stops below all the same), so down -v is not checked this time
  say "left running (COMPOSE_CHECK_KEEP=1); to end it: ${COMPOSE[*]} down -v"
else
  say "docker-compose down -v"
  t=$SECONDS
  compose down -v --remove-orphans 2>&1 | tail -n 3
  label="label=com.docker.compose.project=$PROJECT"
  left="$(docker ps -aq --filter "$label" | wc -l) containers, $(docker volume ls -q --filter "$label" | wc -l) volumes, $(docker network ls -q --filter "$label" | wc -l) networks"
  if [[ $left == "0 containers, 0 volumes, 0 networks" ]]; then pass "down -v left no container, volume or network of the demo"
  else fail "down -v left $left"; fi
  took[down]=$((SECONDS - t))
fi

say "times (s)"
for k in "base image" build "up to seeded" checks down; do printf '  %-14s %s\n' "$k" "${took[$k]:-}"; done
printf '  %-14s %s\n' total $((SECONDS - started_all))
# the summary is the last line: stop our engine first (the trap then has nothing left to do)
trap - EXIT
bash deploy/compose/dockerd.sh stop
echo
echo "compose-check: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
