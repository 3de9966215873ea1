#!/usr/bin/env bash
# The keycloak service's entry point (deploy/compose/keycloak/Dockerfile): Keycloak in
# development mode (the realm of deploy/keycloak imported at the first start) and, once the
# realm answers, kc.py configure: what depends on this demo, applied at every start.
#
# Settings from the environment (deploy/docker-compose.yml):
#   KC_HOSTNAME                    the issuer's root as browsers and the host see it; with
#   KC_HOSTNAME_BACKCHANNEL_DYNAMIC=true the containers use http://keycloak:8080 for tokens and
#                                  keys, and every token still says the same `iss`
#   KC_BOOTSTRAP_ADMIN_PASSWORD    the master realm's admin (created at the first start)
#   KEYCLOAK_SIDECAR_SECRET        the dicom-fhir-sidecar client's secret (the sidecars have it)
#   KEYCLOAK_DEMO_PASSWORD         every demo user's password
#   FHIR_AUDIENCE                  the FHIR base tokens are for (`aud`): HAPI as clients see it
#   VIEWER_ORIGIN                  the sidecar as browsers see it (the viewer's redirect URIs)
set -euo pipefail

KC=/opt/keycloak
# kc.py reads the secrets from files in one folder (as in the local stack's var/)
SECRETS=/var/lib/keycloak/secrets
URL=http://127.0.0.1:8080
READY=/tmp/configured
log() { printf 'start.sh: %s\n' "$*" >&2; }

wait_for() { # url pid: until the URL answers, or the process is gone
  for _ in $(seq 300); do
    curl -fsS -o /dev/null --max-time 5 "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 1
  done
  return 1
}

for name in KC_HOSTNAME KC_BOOTSTRAP_ADMIN_PASSWORD KEYCLOAK_SIDECAR_SECRET KEYCLOAK_DEMO_PASSWORD \
  FHIR_AUDIENCE VIEWER_ORIGIN; do
  [[ -n ${!name:-} ]] || { log "$name is not set (deploy/docker-compose.yml)"; exit 1; }
done
export KC_BOOTSTRAP_ADMIN_USERNAME=admin
rm -f "$READY" # a restarted container is configured again
(
  umask 077
  mkdir -p "$SECRETS"
  printf '%s\n' "$KC_BOOTSTRAP_ADMIN_PASSWORD" >"$SECRETS/keycloak-admin-password"
  printf '%s\n' "$KEYCLOAK_SIDECAR_SECRET" >"$SECRETS/keycloak-sidecar-secret"
  printf '%s\n' "$KEYCLOAK_DEMO_PASSWORD" >"$SECRETS/keycloak-demo-password"
)

# Configured from a background job once the realm answers; Keycloak itself replaces this shell
# (kc.sh forwards SIGTERM to Java), so `docker stop` stops it directly.
(
  if wait_for "$URL/realms/dicom-fhir" $$; then
    if python3 /opt/dicom-fhir/kc.py --url "$URL" --var "$SECRETS" configure \
      --fhir-base "$FHIR_AUDIENCE" --origin "$VIEWER_ORIGIN"; then
      touch "$READY"
      log "realm dicom-fhir configured: issuer $KC_HOSTNAME/realms/dicom-fhir, audience $FHIR_AUDIENCE"
    else
      log "kc.py configure failed: the container stays unhealthy"
    fi
  else
    log "Keycloak did not answer: not configured"
  fi
) &

exec "$KC/bin/kc.sh" start-dev --import-realm --http-port 8080
