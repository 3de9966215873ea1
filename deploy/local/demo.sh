#!/usr/bin/env bash
# `make demo`: the local stack, sample studies, the automatic sync and $fetch-imaging on HAPI.
# Safe to run again: everything it starts or creates is checked first (nothing duplicated).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STACK="$ROOT/deploy/local/stack.sh"
PY="${PYTHON:-$ROOT/.venv/bin/python}"  # make install's interpreter, with our dependencies
export STACK_PACS="${DEMO_STACK_PACS:-main}"  # the demo needs PACS main only
cd "$ROOT"

say() { printf '\n== %s\n' "$*"; }

say "starting the local stack (Keycloak, HAPI FHIR, Orthanc PACS main, the sidecar)"
bash "$STACK" up hapi pacs-main sidecar  # hapi brings Keycloak up first (STACK_AUTH=none: not)
eval "$(bash "$STACK" env)"
export ORTHANC_PASSWORD="${ORTHANC_PASSWORD:-orthanc}"

say "loading the sample studies into PACS main (instances already there are skipped)"
"$PY" -m sidecar.samples load --orthanc "http://127.0.0.1:${STACK_PACS_PORT_MAIN:-8042}" --user "${ORTHANC_USERNAME:-orthanc}"

say "registering the Patient Subscription and the \$fetch-imaging OperationDefinition"
"$PY" -m sidecar register >/dev/null
echo "Subscription active"

say "the demo Patient, its automatic sync, and \$fetch-imaging on the FHIR server"
# HAPI enforces SMART tokens: the demo creates the demo Patient, so it acts as the sidecar's own
# client (system/*.cruds). `stack.sh token --patient Patient/ID` gives a patient's token instead.
DEMO_FHIR_TOKEN=""
[[ ${STACK_AUTH:-smart} == none ]] || DEMO_FHIR_TOKEN="$(bash "$STACK" token --system)"
DEMO_FHIR_TOKEN="$DEMO_FHIR_TOKEN" "$PY" -m sidecar.samples.demo --fhir "$SIDECAR_FHIR_BASE_URL"

if [[ ${STACK_AUTH:-smart} != none ]]; then
  say "the pages the sidecar serves (sign in on the stack's Keycloak)"
  # the demo Patient gets a patient user of its own (SMART patient context)
  DEMO_ID="$(curl -fsS -H "Authorization: Bearer $DEMO_FHIR_TOKEN" -H 'Cache-Control: no-cache' \
    "$SIDECAR_FHIR_BASE_URL/Patient?identifier=urn:example:mrn:hosp-a%7CP-1001&_elements=id" |
    "$PY" -c 'import json, sys; print(json.load(sys.stdin)["entry"][0]["resource"]["id"])')"
  bash "$STACK" user demo-patient --patient "Patient/$DEMO_ID" >/dev/null
  SIDECAR="http://127.0.0.1:${STACK_SIDECAR_PORT:-8090}"
  echo "imaging viewer  $SIDECAR/viewer/  users: demo-patient (Patient/$DEMO_ID), practitioner"
  echo "operator page   $SIDECAR/admin/   user: operator (role imaging-operator)"
  echo "password of every demo user: ${STACK_DATA_DIR:-var}/keycloak-demo-password"
fi
