#!/usr/bin/env bash
# Run a real node-oidc-provider authorization server on loopback, issuing RFC 9068
# JWT access tokens (and opaque ones), for the tower-introspection interop tests.
# See tests/interop/README.md.
#
#   oidc.sh start     npm ci (if needed) + key (if none) + server; prints the env
#   oidc.sh stop      stop the server started by this script; drop the env file
#   oidc.sh rotate    stop, generate a NEW signing key (new kid), start on the same port
#   oidc.sh env       print .run/oidc/env
#   oidc.sh kid       print the kid of the current signing key
#   oidc.sh status    "running PID PORT" (exit 0) or "stopped" (exit 1)
#   oidc.sh clean     stop, then delete .run/oidc (keeps node_modules)
#
# stdout carries only the env (start/env) or the kid (kid); diagnostics go to stderr.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
APP="$HERE/oidc"
SERVER="$APP/server.mjs"
LOCKFILE_NPM="$APP/package-lock.json"
MODULES="$APP/node_modules"
MODULES_STAMP="$MODULES/.interop-package-lock.sha256"
RUN="$HERE/.run/oidc"
PID_FILE="$RUN/oidc.pid"
LOG_FILE="$RUN/oidc.log"
ENV_FILE="$RUN/env"
PORT_FILE="$RUN/port"
LOCK_FILE="$RUN/lock"
JWKS_FILE="$RUN/jwks.json" # private signing keys: never commit, never print
HOST=127.0.0.1
WAIT_SECS="${OIDC_WAIT_SECS:-30}"
NODE="${OIDC_NODE:-node}"
NPM="${OIDC_NPM:-npm}"

# Fixed test identities (also in server.mjs and README.md).
CLIENT_ID=oidc-cc-client
CLIENT_SECRET=oidc-cc-secret
RS_CLIENT_ID=oidc-rs-client
RS_CLIENT_SECRET=oidc-rs-secret
RESOURCE=https://api.example/
OTHER_RESOURCE=https://other.example/
OPAQUE_RESOURCE=https://opaque.example/
MCP_CLIENT_ID=mcp-cc-client
MCP_CLIENT_SECRET=mcp-cc-secret
MCP_READER_CLIENT_ID=mcp-reader-client
MCP_READER_CLIENT_SECRET=mcp-reader-secret

log() { printf 'oidc.sh: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

usage() {
  sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

lock() {
  mkdir -p "$RUN"
  exec 9>"$LOCK_FILE"
  flock -w 600 9 || die "timed out waiting for $LOCK_FILE"
}

# ---------------------------------------------------------------- node_modules
modules_want() {
  {
    sha256sum <"$LOCKFILE_NPM"
    "$NODE" --version
  } | sha256sum | cut -d' ' -f1
}

ensure_modules() {
  command -v "$NODE" >/dev/null 2>&1 || die "node not found (Node.js >= 20 is needed)"
  local want
  want="$(modules_want)"
  if [[ -f "$MODULES_STAMP" && "$(cat "$MODULES_STAMP")" == "$want" ]]; then
    return 0
  fi
  log "installing oidc-provider from $LOCKFILE_NPM (npm ci)"
  (cd "$APP" && "$NPM" ci --no-audit --no-fund --loglevel=error) >&2
  printf '%s\n' "$want" >"$MODULES_STAMP"
}

# ---------------------------------------------------------------- keys
genkey() {
  local kid
  kid="$("$NODE" "$SERVER" genkey "$JWKS_FILE")"
  log "new signing key, kid $kid"
}

current_kid() {
  [[ -f "$JWKS_FILE" ]] || return 1
  "$NODE" -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).keys.map((k) => k.kid).join(","))' "$JWKS_FILE"
}

# ---------------------------------------------------------------- process
# True iff PID is a live process (a zombie awaiting its reaper counts as dead).
alive() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}

# Prints the PID iff .run/oidc/oidc.pid names a live process that is our server.mjs.
server_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid cmd
  pid="$(tr -dc '0-9' <"$PID_FILE")"
  [[ -n "$pid" ]] || return 1
  alive "$pid" || return 1
  cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmd" == *" $SERVER "* || "$cmd" == *" $SERVER" ]] || return 1
  printf '%s\n' "$pid"
}

current_port() {
  [[ -f "$PORT_FILE" ]] || return 1
  tr -dc '0-9' <"$PORT_FILE"
}

# HTTP status of GET URL, "000" if nothing answers.
http_status() {
  curl -s -o /dev/null --max-time 2 -w '%{http_code}' "$1" || true
}

answering() { [[ "$(http_status "http://$HOST:$1/.well-known/openid-configuration")" == "200" ]]; }

port_free() {
  "$NODE" -e '
const s = require("net").createServer();
s.once("error", () => process.exit(1));
s.listen(Number(process.argv[1]), "127.0.0.1", () => s.close());
' "$1" 2>/dev/null
}

free_port() {
  "$NODE" -e '
const s = require("net").createServer();
s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });
'
}

start_server() {
  local port="$1" pid=""
  if pid="$(server_pid)"; then
    log "server already running (pid $pid)"
    return 0
  fi
  rm -f "$PID_FILE"
  port_free "$port" || die "port $HOST:$port is in use by another process"
  printf '\n===== %s server.mjs %s:%s =====\n' "$(date -u +%FT%TZ)" "$HOST" "$port" >>"$LOG_FILE"
  # As dot.sh: setsid (own session), sh writes its own PID then execs node, so
  # the PID file names node itself. 9>&- : don't leak the lock fd.
  # shellcheck disable=SC2016 # single quotes intended: sh expands them
  (cd "$APP" && OIDC_PORT="$port" OIDC_JWKS_FILE="$JWKS_FILE" \
    exec setsid sh -c 'echo "$$" >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' \
    "$PID_FILE" "$NODE" "$SERVER" \
    </dev/null >>"$LOG_FILE" 2>&1 9>&-) &
  local deadline=$((SECONDS + WAIT_SECS))
  while ((SECONDS < deadline)); do
    if pid="$(server_pid)"; then
      if answering "$port"; then
        log "server up: pid $pid, http://$HOST:$port, kid $(current_kid)"
        return 0
      fi
    elif [[ -f "$PID_FILE" ]] && ! alive "$(tr -dc '0-9' <"$PID_FILE")"; then
      break # PID written but process gone: it died
    fi
    sleep 0.1
  done
  log "server did not answer on http://$HOST:$port/.well-known/openid-configuration within ${WAIT_SECS}s; tail of $LOG_FILE:"
  tail -n 40 "$LOG_FILE" >&2 || true
  if pid="$(server_pid)"; then kill -TERM "$pid" 2>/dev/null || true; fi
  rm -f "$PID_FILE"
  exit 1
}

stop_server() {
  local pid i
  if ! pid="$(server_pid)"; then
    if [[ -f "$PID_FILE" ]]; then
      log "stale $PID_FILE (process gone or not our server.mjs); removing it, killing nothing"
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
  local port="$1" issuer tmp
  issuer="http://$HOST:$port"
  tmp="$ENV_FILE.$$.tmp"
  {
    echo "export OIDC_ISSUER=$issuer"
    echo "export OIDC_TOKEN_URL=$issuer/token"
    echo "export OIDC_INTROSPECTION_URL=$issuer/token/introspection"
    echo "export OIDC_JWKS_URL=$issuer/jwks"
    echo "export OIDC_CLIENT_ID=$CLIENT_ID"
    echo "export OIDC_CLIENT_SECRET=$CLIENT_SECRET"
    echo "export OIDC_RS_CLIENT_ID=$RS_CLIENT_ID"
    echo "export OIDC_RS_CLIENT_SECRET=$RS_CLIENT_SECRET"
    echo "export OIDC_RESOURCE=$RESOURCE"
    echo "export OIDC_OTHER_RESOURCE=$OTHER_RESOURCE"
    echo "export OIDC_OPAQUE_RESOURCE=$OPAQUE_RESOURCE"
    echo "export OIDC_PORT=$port"
    echo "export OIDC_MCP_CLIENT_ID=$MCP_CLIENT_ID"
    echo "export OIDC_MCP_CLIENT_SECRET=$MCP_CLIENT_SECRET"
    echo "export OIDC_MCP_READER_CLIENT_ID=$MCP_READER_CLIENT_ID"
    echo "export OIDC_MCP_READER_CLIENT_SECRET=$MCP_READER_CLIENT_SECRET"
  } >"$tmp"
  mv "$tmp" "$ENV_FILE"
}

# ---------------------------------------------------------------- commands
cmd_start() {
  lock
  local pid port
  if pid="$(server_pid)"; then
    port="$(current_port)" || die "server pid $pid running but $PORT_FILE missing; run: $0 stop"
    if [[ -n "${OIDC_PORT:-}" && "$OIDC_PORT" != "$port" ]]; then
      die "already running on port $port, not OIDC_PORT=$OIDC_PORT; run: $0 stop"
    fi
    if answering "$port"; then
      [[ -f "$ENV_FILE" ]] || write_env "$port"
      cat "$ENV_FILE"
      return 0
    fi
    log "pid $pid is not answering on port $port; restarting it"
    stop_server
  fi
  ensure_modules
  [[ -f "$JWKS_FILE" ]] || genkey
  if [[ -n "${OIDC_PORT:-}" ]]; then
    port="$OIDC_PORT"
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

cmd_rotate() {
  lock
  local port
  port="$(current_port)" || die "no $PORT_FILE: run '$0 start' first"
  ensure_modules
  stop_server
  genkey
  start_server "$port"
  [[ -f "$ENV_FILE" ]] || write_env "$port"
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

cmd_kid() {
  current_kid || die "no $JWKS_FILE: run '$0 start' first"
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
rotate) cmd_rotate ;;
env) cmd_env ;;
kid) cmd_kid ;;
status) cmd_status ;;
clean) cmd_clean ;;
-h | --help | help) usage ;;
*)
  log "unknown command: $cmd"
  usage
  ;;
esac
