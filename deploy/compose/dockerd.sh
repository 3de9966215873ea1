#!/usr/bin/env bash
# A Docker engine for the compose check, started by hand (no systemd needed):
#   deploy/compose/dockerd.sh start   start dockerd unless an engine already answers
#   deploy/compose/dockerd.sh stop    stop the dockerd this script started (by its pid)
# The pid and the log live under $DOCKERD_STATE (default var/compose in the repository).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${DOCKERD_STATE:-$ROOT/var/compose}"
DOCKER="${DOCKER:-docker}"
PID_FILE="$STATE/dockerd.pid"
log() { printf 'dockerd: %s\n' "$*" >&2; }
mkdir -p "$STATE"

case "${1:-}" in
  start)
    if "$DOCKER" info >/dev/null 2>&1; then
      log "an engine already answers: using it (not stopping it afterwards)"
      exit 0
    fi
    command -v dockerd >/dev/null || { log "dockerd is missing (apt-get install docker.io)"; exit 1; }
    setsid dockerd >>"$STATE/dockerd.log" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
    for _ in $(seq 60); do
      if "$DOCKER" info >/dev/null 2>&1; then
        log "started (pid $(cat "$PID_FILE"), $("$DOCKER" info -f '{{.ServerVersion}} {{.Driver}}'))"
        exit 0
      fi
      kill -0 "$(cat "$PID_FILE")" 2>/dev/null || break
      sleep 1
    done
    tail -n 20 "$STATE/dockerd.log" >&2
    log "did not come up"
    exit 1 ;;
  stop)
    [[ -s $PID_FILE ]] || { log "not started by this script: left alone"; exit 0; }
    pid="$(cat "$PID_FILE")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      if kill -0 "$pid" 2>/dev/null; then log "still running after 30 s: killing"; kill -KILL "$pid"; fi
      log "stopped (pid $pid)"
    fi
    rm -f "$PID_FILE" ;;
  *) echo "usage: dockerd.sh start|stop" >&2; exit 2 ;;
esac
