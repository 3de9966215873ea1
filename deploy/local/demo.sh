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

say "starting the local stack (HAPI FHIR, Orthanc PACS main, the sidecar)"
bash "$STACK" up hapi pacs-main sidecar
eval "$(bash "$STACK" env)"
export ORTHANC_PASSWORD="${ORTHANC_PASSWORD:-orthanc}"

say "loading the sample studies into PACS main (instances already there are skipped)"
"$PY" -m sidecar.samples load --orthanc http://127.0.0.1:8042 --user "${ORTHANC_USERNAME:-orthanc}"

say "registering the Patient Subscription and the \$fetch-imaging OperationDefinition"
"$PY" -m sidecar register >/dev/null
echo "Subscription active"

say "the demo Patient, its automatic sync, and \$fetch-imaging on the FHIR server"
"$PY" -m sidecar.samples.demo --fhir "$SIDECAR_FHIR_BASE_URL"
