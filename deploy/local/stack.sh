#!/usr/bin/env bash
# The local no-Docker stack: HAPI FHIR (our Maven build), one or more Orthanc PACS, and the
# sidecar, on loopback, each a process with a pid file under $STACK_DATA_DIR/run.
#
#   stack.sh up [COMPONENT...]      install what is missing, start, wait until each answers
#   stack.sh down [COMPONENT...]    stop what this script started, wait until it has exited
#   stack.sh status                 one line per component
#   stack.sh logs [COMPONENT]       tail the logs
#   stack.sh env                    print the settings a client needs (URLs, credentials)
#   stack.sh install                apt packages + the Maven build + Keycloak, nothing started
#   stack.sh token --patient Patient/ID | --user NAME | --system [--client ID] [--scope S]
#                                   print an access token (demos, tests); --claims shows its claims
#   stack.sh user NAME --patient Patient/ID     bind a demo user to a Patient (patient context)
#   stack.sh keycloak-allow-origin http://127.0.0.1:PORT   let the browser client use that origin
#
# COMPONENT: keycloak | hapi | pacs-NAME | sidecar. Default for `up`: keycloak, hapi and every
# PACS in $STACK_PACS (default "main"); `sidecar` is started only when named. HAPI enforces
# SMART tokens issued by the keycloak component (STACK_AUTH=none: HAPI without enforcement).
# PACS ports: main 8042, second 8043, other names need STACK_PACS_PORT_<NAME>; the DICOM port is
# the HTTP port - 3800. Keycloak: STACK_KEYCLOAK_PORT (8180).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VAR="${STACK_DATA_DIR:-$ROOT/var}"
RUN="$VAR/run"
LOGS="$VAR/logs"
HAPI_PORT="${STACK_HAPI_PORT:-8080}"
SIDECAR_PORT="${STACK_SIDECAR_PORT:-8090}"
KEYCLOAK_PORT="${STACK_KEYCLOAK_PORT:-8180}"
KEYCLOAK_VERSION=26.5.6
KEYCLOAK_HOME="$VAR/keycloak/keycloak-$KEYCLOAK_VERSION"
KEYCLOAK_URL="http://127.0.0.1:$KEYCLOAK_PORT"
ISSUER="$KEYCLOAK_URL/realms/dicom-fhir"
FHIR_BASE="http://127.0.0.1:$HAPI_PORT/fhir"
KC_PY="$ROOT/deploy/keycloak/kc.py"
# none: HAPI serves without token checks (and without Keycloak)
STACK_AUTH="${STACK_AUTH:-smart}"
ORTHANC_USERNAME="${ORTHANC_USERNAME:-orthanc}"
ORTHANC_PASSWORD="${ORTHANC_PASSWORD:-orthanc}"
HAPI_JAR="$ROOT/deploy/hapi/server/target/hapi-server.jar"
PROVIDER_JAR="$ROOT/deploy/hapi/fetch-imaging-provider/target/fetch-imaging-provider.jar"
SMART_AUTH_JAR="$ROOT/deploy/hapi/smart-auth/target/smart-auth.jar"
SMART_AUTH_INTERCEPTORS="org.dicomfhir.hapi.auth.SmartCorsInterceptor,org.dicomfhir.hapi.auth.SmartAuthenticationInterceptor,org.dicomfhir.hapi.auth.SmartAuthorizationInterceptor,org.dicomfhir.hapi.auth.SmartSearchNarrowingInterceptor"
HAPI_JAVA_OPTS="${HAPI_JAVA_OPTS:--Xms256m -Xmx1g -XX:+UseSerialGC -XX:TieredStopAtLevel=1}"
APT_PACKAGES=(orthanc orthanc-dicomweb dcmtk curl ${STACK_APT_EXTRA:-})
START_TIMEOUT="${STACK_START_TIMEOUT:-300}"

log() { printf 'stack: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

mkdir -p "$RUN" "$LOGS"

# --- secrets: they live only in $VAR (never in the repo), one file each ----------------------
# relay: what HAPI's $fetch-imaging provider sends the sidecar (never stored in FHIR);
# notify: what the Subscription's header carries (it only asks for a re-sync of a Patient).
secret() { # variable file
  local name="$1" file="$VAR/$2"
  if [[ -z "${!name:-}" ]]; then
    [[ -s "$file" ]] || (umask 077; python3 -c 'import secrets;print(secrets.token_urlsafe(32))' >"$file")
    printf -v "$name" '%s' "$(cat "$file")"
  fi
  export "${name?}"
}
secret SIDECAR_RELAY_SECRET relay-secret
secret SIDECAR_NOTIFY_SECRET notify-secret
# Keycloak's: its bootstrap admin, the sidecar's client secret, the demo users' password. Files
# only (kc.py reads them), not exported: HAPI, Orthanc and the sidecar need none of them.
secret_file() {
  [[ -s "$VAR/$1" ]] || (umask 077; python3 -c 'import secrets;print(secrets.token_urlsafe(32))' >"$VAR/$1")
}
for f in keycloak-admin-password keycloak-sidecar-secret keycloak-demo-password; do secret_file "$f"; done

pacs_port() {
  local name="$1" var="STACK_PACS_PORT_${1^^}"
  if [[ -n "${!var:-}" ]]; then echo "${!var}"; return; fi
  # a PACS started earlier with STACK_PACS_PORT_<NAME> remembers its port
  if [[ -s "$RUN/pacs-$name.port" ]]; then cat "$RUN/pacs-$name.port"; return; fi
  case "$name" in
    main) echo 8042 ;;
    second) echo 8043 ;;
    *) die "no port for PACS '$name': set $var" ;;
  esac
}

# --- install -------------------------------------------------------------------------------
install_apt() {
  local missing=()
  command -v java >/dev/null || missing+=(openjdk-17-jdk-headless)
  command -v mvn >/dev/null || missing+=(maven)
  for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return
  log "installing ${missing[*]}"
  [[ $(id -u) -eq 0 ]] || die "need root to apt-get install ${missing[*]}"
  apt-get update -q >/dev/null
  # Debian's orthanc package starts a system service on 8042; policy-rc.d keeps it down.
  local policy=/usr/sbin/policy-rc.d added_policy=
  if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' >$policy; chmod +x $policy; added_policy=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  [[ -n $added_policy ]] && rm -f $policy
  return 0
}

install_hapi() {
  # Rebuild only when a source or pom is newer than the jars (offline after the first build).
  if [[ -f "$HAPI_JAR" && -f "$PROVIDER_JAR" ]] &&
    [[ -f "$SMART_AUTH_JAR" ]] &&
    [[ -z "$(find "$ROOT/deploy/hapi" -path '*/target' -prune -o \( -name '*.java' -o -name 'pom.xml' -o -name '*.yaml' -o -name '*.properties' \) -newer "$HAPI_JAR" -print -quit)" ]]; then
    return
  fi
  log "building HAPI FHIR server and operation provider with Maven (first build downloads ~300 MB)"
  local offline=()
  [[ -d "$HOME/.m2/repository/ca/uhn/hapi/fhir/hapi-fhir-jpaserver-base/8.8.0" ]] && offline=(-o)
  mvn -B -q "${offline[@]}" -f "$ROOT/deploy/hapi/pom.xml" -DskipTests package ||
    mvn -B -q -f "$ROOT/deploy/hapi/pom.xml" -DskipTests package
}

install_keycloak() {
  # The server distribution from Maven Central (cached in ~/.m2), unpacked under $VAR.
  [[ -x "$KEYCLOAK_HOME/bin/kc.sh" ]] && return
  local artifact="org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:tar.gz"
  local tarball="$HOME/.m2/repository/org/keycloak/keycloak-quarkus-dist/$KEYCLOAK_VERSION/keycloak-quarkus-dist-$KEYCLOAK_VERSION.tar.gz"
  if [[ ! -s "$tarball" ]]; then
    log "downloading Keycloak $KEYCLOAK_VERSION with Maven (~160 MB)"
    mvn -B -q dependency:get -Dartifact="$artifact" -Dtransitive=false >&2
  fi
  mkdir -p "$VAR/keycloak"
  tar -xzf "$tarball" -C "$VAR/keycloak"
}

install_all() {
  install_apt
  install_hapi
  install_keycloak
}

# --- process bookkeeping -----------------------------------------------------------------
pid_of() { # prints the pid if the component's process is alive
  local f="$RUN/$1.pid"
  [[ -s "$f" ]] || return 1
  local pid; pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then echo "$pid"; return 0; fi
  rm -f "$f"
  return 1
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_http() { # component url pid [curl auth args...]
  local comp="$1" url="$2" pid="$3"; shift 3
  local deadline=$((SECONDS + START_TIMEOUT))
  until curl -fsS -o /dev/null --max-time 5 "$@" "$url" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$RUN/$comp.pid"
      tail -n 40 "$LOGS/$comp.log" >&2 || true
      die "$comp exited during start-up (log: $LOGS/$comp.log)"
    fi
    ((SECONDS < deadline)) || die "$comp did not answer $url within ${START_TIMEOUT}s (log: $LOGS/$comp.log)"
    sleep 1
  done
}

spawn() { # component command... ; runs detached in its own session, records the pid
  local comp="$1"; shift
  setsid "$@" >>"$LOGS/$comp.log" 2>&1 </dev/null &
  echo $! >"$RUN/$comp.pid"
}

stop_component() {
  local comp="$1" pid
  pid="$(pid_of "$comp")" || { log "$comp not running"; return 0; }
  log "stopping $comp (pid $pid)"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 60))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "$comp did not stop in 60s; killing"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    sleep 0.2
  done
  rm -f "$RUN/$comp.pid" "$RUN/$comp.port"
}

# --- components ----------------------------------------------------------------------------
start_hapi() {
  if pid_of hapi >/dev/null; then log "hapi already running"; return; fi
  port_busy "$HAPI_PORT" && die "port $HAPI_PORT is taken by a process this script did not start"
  install_hapi
  mkdir -p "$VAR/hapi"
  local interceptors="" issuer=""
  if [[ $STACK_AUTH != none ]]; then
    # HAPI checks each token against Keycloak's keys: Keycloak first
    pid_of keycloak >/dev/null || start_keycloak
    interceptors="$SMART_AUTH_INTERCEPTORS" issuer="$ISSUER"
  fi
  log "starting HAPI FHIR on 127.0.0.1:$HAPI_PORT${issuer:+ (SMART tokens of $issuer)}"
  # shellcheck disable=SC2086
  SERVER_PORT="$HAPI_PORT" HAPI_DATA_DIR="$VAR/hapi" \
    HAPI_FHIR_CUSTOM_PROVIDER_CLASSES="org.dicomfhir.hapi.FetchImagingProvider" \
    HAPI_FHIR_CUSTOM_INTERCEPTOR_CLASSES="$interceptors" \
    SMART_AUTH_ISSUER="$issuer" SMART_AUTH_AUDIENCE="$FHIR_BASE" \
    SMART_AUTH_CORS_ORIGINS="${SMART_AUTH_CORS_ORIGINS:-http://127.0.0.1:$SIDECAR_PORT}" \
    FETCH_IMAGING_SIDECAR_URL="${FETCH_IMAGING_SIDECAR_URL:-http://127.0.0.1:$SIDECAR_PORT}" \
    FETCH_IMAGING_RELAY_SECRET="$SIDECAR_RELAY_SECRET" \
    FETCH_IMAGING_TIMEOUT_SECONDS="${FETCH_IMAGING_TIMEOUT_SECONDS:-60}" \
    spawn hapi java $HAPI_JAVA_OPTS -Dloader.path="$PROVIDER_JAR,$SMART_AUTH_JAR" -jar "$HAPI_JAR"
  wait_http hapi "http://127.0.0.1:$HAPI_PORT/fhir/metadata" "$(cat "$RUN/hapi.pid")"
}

start_keycloak() {
  if pid_of keycloak >/dev/null; then log "keycloak already running"; return; fi
  port_busy "$KEYCLOAK_PORT" && die "port $KEYCLOAK_PORT is taken by a process this script did not start"
  install_keycloak
  sidecar_jwt_key
  # the realm as code: imported at the first start (an existing realm is kept, then configured)
  mkdir -p "$KEYCLOAK_HOME/data/import"
  cp "$ROOT/deploy/keycloak/realm-dicom-fhir.json" "$KEYCLOAK_HOME/data/import/"
  log "starting Keycloak on $KEYCLOAK_URL (realm dicom-fhir)"
  # the bootstrap admin is created at the first start only; its password lives in $VAR
  KC_BOOTSTRAP_ADMIN_USERNAME=admin KC_BOOTSTRAP_ADMIN_PASSWORD="$(cat "$VAR/keycloak-admin-password")" \
    JAVA_OPTS_KC_HEAP="${KEYCLOAK_HEAP_OPTS:--Xms64m -Xmx512m}" \
    spawn keycloak "$KEYCLOAK_HOME/bin/kc.sh" start-dev --import-realm \
      --http-host 127.0.0.1 --http-port "$KEYCLOAK_PORT" --hostname "$KEYCLOAK_URL" \
      --http-management-port "$((KEYCLOAK_PORT + 820))"
  wait_http keycloak "$ISSUER/.well-known/openid-configuration" "$(cat "$RUN/keycloak.pid")"
  keycloak_configure
}

sidecar_jwt_key() { # the private_key_jwt client's key pair (SMART Backend Services), once
  local key="$VAR/keycloak-sidecar-jwt.pem" crt="$VAR/keycloak-sidecar-jwt.crt"
  [[ -s $key && -s $crt ]] && return
  (umask 077; openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
    -subj /CN=dicom-fhir-sidecar-jwt -keyout "$key" -out "$crt" 2>/dev/null)
}

keycloak_configure() { # what depends on this machine: audience, secrets, redirect URIs, users
  python3 "$KC_PY" --url "$KEYCLOAK_URL" --var "$VAR" configure \
    --fhir-base "$FHIR_BASE" --origin "http://127.0.0.1:$SIDECAR_PORT"
}

kc() { # kc.py on the running Keycloak
  pid_of keycloak >/dev/null || die "keycloak is not running: stack.sh up keycloak"
  python3 "$KC_PY" --url "$KEYCLOAK_URL" --var "$VAR" "$@"
}

write_orthanc_config() { # name http_port dicom_port dir
  python3 - "$ROOT/deploy/orthanc/orthanc.json" "$@" "$ORTHANC_USERNAME" "$ORTHANC_PASSWORD" <<'PY'
import json, sys
template, name, http_port, dicom_port, folder, user, password = sys.argv[1:]
config = json.load(open(template))
config.update(
    Name=f"dicom-fhir-sidecar PACS {name}",
    HttpPort=int(http_port),
    DicomPort=int(dicom_port),
    DicomAet=f"PACS_{name.upper()}"[:16],
    StorageDirectory=f"{folder}/db",
    IndexDirectory=f"{folder}/db",
    RegisteredUsers={user: password},
)
config["DicomWeb"]["Host"] = f"127.0.0.1:{http_port}"
with open(f"{folder}/config/orthanc.json", "w") as out:
    json.dump(config, out, indent=2)
PY
}

start_pacs() {
  local name="$1" comp="pacs-$1" port dicom_port dir
  if pid_of "$comp" >/dev/null; then log "$comp already running"; return; fi
  port="$(pacs_port "$name")"; dicom_port=$((port - 3800))
  port_busy "$port" && die "port $port is taken by a process this script did not start"
  install_apt
  dir="$VAR/orthanc-$name"
  mkdir -p "$dir/config" "$dir/db"
  (umask 077; write_orthanc_config "$name" "$port" "$dicom_port" "$dir")
  log "starting Orthanc '$name' on 127.0.0.1:$port (DICOM $dicom_port)"
  spawn "$comp" Orthanc "$dir/config/"
  echo "$port" >"$RUN/$comp.port"
  wait_http "$comp" "http://127.0.0.1:$port/system" "$(cat "$RUN/$comp.pid")" -u "$ORTHANC_USERNAME:$ORTHANC_PASSWORD"
}

start_sidecar() {
  if pid_of sidecar >/dev/null; then log "sidecar already running"; return; fi
  port_busy "$SIDECAR_PORT" && die "port $SIDECAR_PORT is taken by a process this script did not start"
  log "starting the sidecar on 127.0.0.1:$SIDECAR_PORT"
  # the interpreter with our dependencies: make install's .venv unless PYTHON says otherwise
  local py="${PYTHON:-$ROOT/.venv/bin/python}"
  [[ -x "$py" ]] || die "no Python with the sidecar installed at $py: run make install first"
  (cd "$ROOT" && eval "$(sidecar_env)" && spawn sidecar "$py" -m sidecar serve --bind "127.0.0.1:$SIDECAR_PORT")
  wait_http sidecar "http://127.0.0.1:$SIDECAR_PORT/livez" "$(cat "$RUN/sidecar.pid")"
}

sidecar_env() { # the settings a sidecar (or a test) needs to talk to this stack
  local names=() n
  # a PACS whose port this shell does not know (e.g. pacs-bulk without STACK_PACS_PORT_BULK)
  # is left out rather than failing everyone's `env`
  for n in $(known_pacs); do (pacs_port "$n" >/dev/null 2>&1) && names+=("$n"); done
  echo "export SIDECAR_FHIR_BASE_URL=$FHIR_BASE"
  if [[ $STACK_AUTH != none ]]; then
    # the sidecar reaches HAPI with its own client credentials (SMART Backend Services)
    echo "export SIDECAR_FHIR_AUTH=oauth2"
    echo "export SIDECAR_FHIR_TOKEN_URL=$ISSUER/protocol/openid-connect/token"
    echo "export SIDECAR_FHIR_CLIENT_ID=dicom-fhir-sidecar"
    echo "export SIDECAR_FHIR_CLIENT_SECRET=$(cat "$VAR/keycloak-sidecar-secret")"
    echo "export SIDECAR_FHIR_SCOPE='system/*.cruds'"
    # whose tokens the sidecar accepts from callers, and for which FHIR server
    echo "export SIDECAR_AUTH_ISSUER=$ISSUER"
    echo "export SIDECAR_AUTH_AUDIENCE=$FHIR_BASE"
  fi
  echo "export SIDECAR_RELAY_SECRET=$SIDECAR_RELAY_SECRET"
  echo "export SIDECAR_NOTIFY_SECRET=$SIDECAR_NOTIFY_SECRET"
  echo "export SIDECAR_DATA_DIR=$VAR/sidecar"
  echo "export SIDECAR_NOTIFY_URL=http://127.0.0.1:$SIDECAR_PORT/notify"
  # where browsers reach the sidecar: Endpoint.address (its imaging gateway) names this port
  echo "export SIDECAR_PUBLIC_URL=http://127.0.0.1:$SIDECAR_PORT"
  echo "export SIDECAR_PACS=$(IFS=,; echo "${names[*]}")"
  # the sample roster's issuers (sidecar.samples) and the systems the tests and demo use
  echo "export SIDECAR_PATIENT_IDENTIFIERS='urn:example:mrn:hosp-a|HOSP-A,urn:example:mrn:hosp-b|HOSP-B,urn:example:mrn:no-issuer'"
  for n in "${names[@]}"; do
    local up="${n^^}" port; port="$(pacs_port "$n")"
    echo "export SIDECAR_PACS_${up}_URL=http://127.0.0.1:$port/dicom-web"
    echo "export SIDECAR_PACS_${up}_CHANGES=orthanc"  # the new-study feed: Orthanc's change log
    echo "export SIDECAR_PACS_${up}_ORTHANC_URL=http://127.0.0.1:$port"
    echo "export SIDECAR_PACS_${up}_USERNAME=$ORTHANC_USERNAME"
    echo "export SIDECAR_PACS_${up}_PASSWORD=$ORTHANC_PASSWORD"
  done
}

known_pacs() { # PACS named in STACK_PACS, plus any with a pid file
  local names=(${STACK_PACS:-main}) f
  for f in "$RUN"/pacs-*.pid; do [[ -e $f ]] && names+=("$(basename "$f" .pid | sed 's/^pacs-//')"); done
  printf '%s\n' "${names[@]}" | awk '!seen[$0]++'
}

components_default_up() { [[ $STACK_AUTH == none ]] || echo keycloak; echo hapi; for n in ${STACK_PACS:-main}; do echo "pacs-$n"; done; }
components_running() { for f in "$RUN"/*.pid; do [[ -e $f ]] && basename "$f" .pid; done; }

start_component() {
  case "$1" in
    keycloak) start_keycloak ;;
    hapi) start_hapi ;;
    sidecar) start_sidecar ;;
    pacs-*) start_pacs "${1#pacs-}" ;;
    *) die "unknown component '$1' (keycloak, hapi, pacs-NAME, sidecar)" ;;
  esac
}

url_of() {
  case "$1" in
    keycloak) echo "$ISSUER" ;;
    hapi) echo "$FHIR_BASE" ;;
    sidecar) echo "http://127.0.0.1:$SIDECAR_PORT" ;;
    pacs-*) echo "http://127.0.0.1:$(pacs_port "${1#pacs-}")/dicom-web (REST http://127.0.0.1:$(pacs_port "${1#pacs-}"))" ;;
  esac
}

cmd="${1:-status}"; shift || true
case "$cmd" in
  install) install_all ;;
  up)
    comps=("$@"); [[ ${#comps[@]} -gt 0 ]] || mapfile -t comps < <(components_default_up)
    for c in "${comps[@]}"; do start_component "$c"; done
    for c in "${comps[@]}"; do printf '%-14s %s\n' "$c" "$(url_of "$c")"; done ;;
  down)
    comps=("$@"); [[ ${#comps[@]} -gt 0 ]] || mapfile -t comps < <(components_running)
    # the sidecar first: it talks to the others; Keycloak last: HAPI checks tokens with it
    for c in "${comps[@]}"; do [[ $c == sidecar ]] && stop_component sidecar; done
    for c in "${comps[@]}"; do [[ $c == sidecar || $c == keycloak ]] || stop_component "$c"; done
    for c in "${comps[@]}"; do if [[ $c == keycloak ]]; then stop_component keycloak; fi; done ;;
  status)
    for c in keycloak hapi $(known_pacs | sed 's/^/pacs-/') sidecar; do
      if pid="$(pid_of "$c")"; then printf '%-14s running  pid %-7s %s\n' "$c" "$pid" "$(url_of "$c")"
      else printf '%-14s stopped\n' "$c"; fi
    done ;;
  logs) if [[ $# -gt 0 ]]; then tail -n 100 -f "$LOGS/$1.log"; else tail -n 20 "$LOGS"/*.log; fi ;;
  env) sidecar_env ;;
  token) kc token "$@" ;;
  user) kc user "$@" ;;
  keycloak-allow-origin) kc allow-origin "$@" ;;
  *) die "usage: stack.sh up|down|status|logs|env|install|token|user|keycloak-allow-origin [ARGS...]" ;;
esac
