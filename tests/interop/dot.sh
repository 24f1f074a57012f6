#!/usr/bin/env bash
# Run a real Django OAuth Toolkit (DOT) authorization server on loopback for the
# tower-introspection interop tests. See tests/interop/README.md.
#
#   dot.sh start            venv + DB + server (idempotent); prints the env
#   dot.sh stop             stop the server started by this script; drop .run/env
#   dot.sh stop-server      stop only the process (keep DB, port and .run/env)
#   dot.sh start-server     start the process again on the same port/DB
#   dot.sh restart-server   stop-server + start-server
#   dot.sh env              print .run/env
#   dot.sh status           "running PID PORT" (exit 0) or "stopped" (exit 1)
#   dot.sh expire-token TOKEN [SECONDS_AGO]   make an access token expired
#   dot.sh manage ARGS...   run DOT's manage.py (debugging)
#   dot.sh clean            stop, then delete .run (keeps the venv)
#
# stdout carries only the env (start/env); all diagnostics go to stderr.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
RUN="$HERE/.run"
PROJECT="$HERE/dotproject"
REQS="$HERE/requirements.txt"
PY="$VENV/bin/python"
MANAGE="$PROJECT/manage.py"
PID_FILE="$RUN/dot.pid"
LOG_FILE="$RUN/dot.log"
ENV_FILE="$RUN/env"
PORT_FILE="$RUN/port"
LOCK_FILE="$RUN/lock"
VENV_STAMP="$VENV/.interop-requirements.sha256"
DB_STAMP="$RUN/db.stamp"
HOST=127.0.0.1
WAIT_SECS="${DOT_WAIT_SECS:-30}"
BASE_PYTHON="${DOT_PYTHON:-python3}"

# Fixed test identities (also in README.md).
USERNAME=alice
PASSWORD=alice-password
PW_CLIENT_ID=pw-client
PW_CLIENT_SECRET=pw-secret
CC_CLIENT_ID=cc-client
CC_CLIENT_SECRET=cc-secret
RS_CLIENT_ID=rs-client
RS_CLIENT_SECRET=rs-secret

export DOT_RUN_DIR="$RUN"
export DJANGO_SETTINGS_MODULE=dotproject.settings
export PYTHONPYCACHEPREFIX="$RUN/pycache" # keep the committed dotproject/ clean
export PYTHONUNBUFFERED=1
export DJANGO_RUNSERVER_HIDE_WARNING=true

log() { printf 'dot.sh: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

usage() {
  sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

lock() {
  mkdir -p "$RUN"
  exec 9>"$LOCK_FILE"
  flock -w 600 9 || die "timed out waiting for $LOCK_FILE"
}

manage() { (cd "$PROJECT" && "$PY" "$MANAGE" "$@"); }

# ---------------------------------------------------------------- venv
venv_want() {
  {
    sha256sum <"$REQS"
    "$BASE_PYTHON" -c 'import sys; print(sys.version)'
  } | sha256sum | cut -d' ' -f1
}

ensure_venv() {
  local want
  want="$(venv_want)"
  if [[ -x "$PY" && -f "$VENV_STAMP" && "$(cat "$VENV_STAMP")" == "$want" ]] && "$PY" -c '' 2>/dev/null; then
    return 0
  fi
  if ! [[ -x "$PY" ]] || ! "$PY" -c '' 2>/dev/null; then
    log "creating virtualenv $VENV"
    rm -rf "$VENV"
    "$BASE_PYTHON" -m venv "$VENV"
  fi
  log "installing $(grep -cvE '^\s*(#|$)' "$REQS") pinned packages from $REQS"
  "$PY" -m pip install --disable-pip-version-check --no-input -q -r "$REQS" >&2
  printf '%s\n' "$want" >"$VENV_STAMP"
}

# ---------------------------------------------------------------- database
seed_args() {
  printf '%s\n' \
    --user "$USERNAME:$PASSWORD" \
    --app "$PW_CLIENT_ID:$PW_CLIENT_SECRET:password" \
    --app "$CC_CLIENT_ID:$CC_CLIENT_SECRET:client-credentials" \
    --app "$RS_CLIENT_ID:$RS_CLIENT_SECRET:client-credentials"
}

db_want() {
  {
    cat "$VENV_STAMP"
    (cd "$PROJECT" && find . -name '*.py' -type f | LC_ALL=C sort | xargs sha256sum)
    seed_args
  } | sha256sum | cut -d' ' -f1
}

ensure_db() {
  local want
  want="$(db_want)"
  if [[ -f "$RUN/db.sqlite3" && -f "$DB_STAMP" && "$(cat "$DB_STAMP")" == "$want" ]]; then
    return 0
  fi
  log "migrating and seeding $RUN/db.sqlite3"
  manage migrate --noinput -v 0 >&2
  local args
  mapfile -t args < <(seed_args)
  manage seed_interop "${args[@]}" >&2
  printf '%s\n' "$want" >"$DB_STAMP"
}

# ---------------------------------------------------------------- process
# True iff PID is a live process (a zombie awaiting its reaper counts as dead).
alive() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}

# Prints the PID iff .run/dot.pid names a live process that is our runserver.
server_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid cmd
  pid="$(tr -dc '0-9' <"$PID_FILE")"
  [[ -n "$pid" ]] || return 1
  alive "$pid" || return 1
  cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmd" == *"$MANAGE runserver "* ]] || return 1
  printf '%s\n' "$pid"
}

current_port() {
  [[ -f "$PORT_FILE" ]] || return 1
  tr -dc '0-9' <"$PORT_FILE"
}

# HTTP status of GET URL, "000" if nothing answers.
http_status() {
  if command -v curl >/dev/null 2>&1; then
    curl -s -o /dev/null --max-time 2 -w '%{http_code}' "$1" || true
  else
    "$PY" - "$1" <<'EOF' || echo 000
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=2).status)
except urllib.error.HTTPError as e:
    print(e.code)
EOF
  fi
}

answering() { [[ "$(http_status "http://$HOST:$1/o/token/")" != "000" ]]; }

port_free() {
  "$PY" - "$1" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as runserver does
s.bind(("127.0.0.1", int(sys.argv[1])))
EOF
}

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_server() {
  local port="$1" pid="" i
  if pid="$(server_pid)"; then
    log "server already running (pid $pid)"
    return 0
  fi
  rm -f "$PID_FILE"
  port_free "$port" || die "port $HOST:$port is in use by another process"
  printf '\n===== %s runserver %s:%s =====\n' "$(date -u +%FT%TZ)" "$HOST" "$port" >>"$LOG_FILE"
  # setsid: own session, so the server outlives the caller's process group.
  # sh writes its own PID, then execs python: the PID file names runserver
  # itself whether or not setsid had to fork. 9>&- : don't leak the lock fd.
  # shellcheck disable=SC2016 # single quotes intended: sh expands them
  (cd "$PROJECT" && exec setsid sh -c 'echo "$$" >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' \
    "$PID_FILE" "$PY" "$MANAGE" runserver "$HOST:$port" --noreload \
    </dev/null >>"$LOG_FILE" 2>&1 9>&-) &
  local deadline=$((SECONDS + WAIT_SECS))
  while ((SECONDS < deadline)); do
    if pid="$(server_pid)"; then
      if answering "$port"; then
        log "server up: pid $pid, http://$HOST:$port"
        return 0
      fi
    elif [[ -f "$PID_FILE" ]] && ! alive "$(tr -dc '0-9' <"$PID_FILE")"; then
      break # PID written but process gone: it died
    fi
    sleep 0.2
  done
  log "server did not answer on http://$HOST:$port/o/token/ within ${WAIT_SECS}s; tail of $LOG_FILE:"
  tail -n 40 "$LOG_FILE" >&2 || true
  if pid="$(server_pid)"; then kill -TERM "$pid" 2>/dev/null || true; fi
  rm -f "$PID_FILE"
  exit 1
}

stop_server() {
  local pid i
  if ! pid="$(server_pid)"; then
    if [[ -f "$PID_FILE" ]]; then
      log "stale $PID_FILE (process gone or not our runserver); removing it, killing nothing"
      rm -f "$PID_FILE"
    else
      log "server not running"
    fi
    return 0
  fi
  log "stopping server pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 200; i++)); do
    alive "$pid" || break
    sleep 0.05
  done
  if alive "$pid"; then
    log "pid $pid ignored SIGTERM for 10s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PID_FILE"
}

# ---------------------------------------------------------------- env
write_env() {
  local port="$1" base issuer tmp
  base="http://$HOST:$port"
  issuer="$("$PY" - "$base/o/.well-known/openid-configuration" <<'EOF' 2>/dev/null || true
import json, sys, urllib.request
print(json.load(urllib.request.urlopen(sys.argv[1], timeout=5))["issuer"])
EOF
  )"
  tmp="$ENV_FILE.$$.tmp"
  {
    echo "export DOT_BASE_URL=$base"
    echo "export DOT_TOKEN_URL=$base/o/token/"
    echo "export DOT_INTROSPECTION_URL=$base/o/introspect/"
    echo "export DOT_REVOCATION_URL=$base/o/revoke_token/"
    if [[ -n "$issuer" ]]; then echo "export DOT_ISSUER=$issuer"; fi
    echo "export DOT_PW_CLIENT_ID=$PW_CLIENT_ID"
    echo "export DOT_PW_CLIENT_SECRET=$PW_CLIENT_SECRET"
    echo "export DOT_CC_CLIENT_ID=$CC_CLIENT_ID"
    echo "export DOT_CC_CLIENT_SECRET=$CC_CLIENT_SECRET"
    echo "export DOT_RS_CLIENT_ID=$RS_CLIENT_ID"
    echo "export DOT_RS_CLIENT_SECRET=$RS_CLIENT_SECRET"
    echo "export DOT_USERNAME=$USERNAME"
    echo "export DOT_PASSWORD=$PASSWORD"
    echo "export DOT_PORT=$port"
  } >"$tmp"
  mv "$tmp" "$ENV_FILE"
}

# ---------------------------------------------------------------- commands
cmd_start() {
  lock
  local pid port
  if pid="$(server_pid)"; then
    port="$(current_port)" || die "server pid $pid running but $PORT_FILE missing; run: $0 stop"
    if [[ -n "${DOT_PORT:-}" && "$DOT_PORT" != "$port" ]]; then
      die "already running on port $port, not DOT_PORT=$DOT_PORT; run: $0 stop"
    fi
    if answering "$port"; then
      [[ -f "$ENV_FILE" ]] || write_env "$port"
      cat "$ENV_FILE"
      return 0
    fi
    log "pid $pid is not answering on port $port; restarting it"
    stop_server
  fi
  ensure_venv
  ensure_db
  if [[ -n "${DOT_PORT:-}" ]]; then
    port="$DOT_PORT"
  elif port="$(current_port)" && [[ -n "$port" ]] && port_free "$port"; then
    : # reuse the previous port so the env stays the same across start/stop
  else
    port="$(free_port)"
  fi
  printf '%s\n' "$port" >"$PORT_FILE"
  start_server "$port"
  write_env "$port"
  cat "$ENV_FILE"
}

cmd_start_server() {
  lock
  local port
  port="$(current_port)" || die "no $PORT_FILE: run '$0 start' first"
  ensure_venv
  ensure_db
  start_server "$port"
  [[ -f "$ENV_FILE" ]] || write_env "$port"
}

cmd_stop_server() {
  lock
  stop_server
}

cmd_restart_server() {
  lock
  local port
  port="$(current_port)" || die "no $PORT_FILE: run '$0 start' first"
  stop_server
  start_server "$port"
}

cmd_stop() {
  lock
  stop_server
  rm -f "$ENV_FILE"
}

cmd_env() {
  [[ -f "$ENV_FILE" ]] || die "no $ENV_FILE: run '$0 start' first"
  cat "$ENV_FILE"
}

cmd_status() {
  local pid
  if pid="$(server_pid)"; then
    echo "running $pid $(current_port || echo '?')"
  else
    echo "stopped"
    return 1
  fi
}

cmd_expire_token() {
  [[ $# -ge 1 && $# -le 2 ]] || die "usage: $0 expire-token TOKEN [SECONDS_AGO]"
  [[ -x "$PY" && -f "$RUN/db.sqlite3" ]] || die "run '$0 start' first"
  manage expire_token "$1" --seconds-ago "${2:-60}" >&2
}

cmd_clean() {
  lock
  stop_server
  exec 9>&-
  rm -rf "$RUN"
}

[[ $# -ge 1 ]] || usage
cmd="$1"
shift
case "$cmd" in
start) cmd_start ;;
stop) cmd_stop ;;
start-server) cmd_start_server ;;
stop-server) cmd_stop_server ;;
restart-server) cmd_restart_server ;;
env) cmd_env ;;
status) cmd_status ;;
expire-token) cmd_expire_token "$@" ;;
manage)
  [[ -x "$PY" ]] || die "run '$0 start' first"
  manage "$@"
  ;;
clean) cmd_clean ;;
-h | --help | help) usage ;;
*)
  log "unknown command: $cmd"
  usage
  ;;
esac
