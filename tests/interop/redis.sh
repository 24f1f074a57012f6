#!/usr/bin/env bash
# Run a real redis-server on loopback for the tower-introspection shared-cache
# tests (feature `redis`). See tests/interop/README.md.
#
#   redis.sh start            start our own redis-server (idempotent); prints the env
#   redis.sh stop             stop the server started by this script; drop .run/redis/env
#   redis.sh stop-server      stop only the process (keep port and env: a Redis outage)
#   redis.sh start-server     start it again on the same port (empty: nothing is saved)
#   redis.sh pause            SIGSTOP it (a Redis that accepts but never answers)
#   redis.sh resume           SIGCONT it
#   redis.sh env              print .run/redis/env
#   redis.sh status           "running PID PORT" (exit 0) or "stopped" (exit 1)
#
# Never the system service: our own process, no persistence
# (--save '' --appendonly no), on a free loopback port. stdout carries only
# the env (start/env); all diagnostics go to stderr.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RUN="$HERE/.run/redis"
PID_FILE="$RUN/redis.pid"
LOG_FILE="$RUN/redis.log"
ENV_FILE="$RUN/env"
PORT_FILE="$RUN/port"
LOCK_FILE="$RUN/lock"
HOST=127.0.0.1
WAIT_SECS="${REDIS_WAIT_SECS:-20}"
SERVER="${REDIS_SERVER:-redis-server}"
CLI="${REDIS_CLI:-redis-cli}"

log() { printf 'redis.sh: %s\n' "$*" >&2; }
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
  flock -w 120 9 || die "timed out waiting for $LOCK_FILE"
}

# True iff PID is a live process (a zombie awaiting its reaper counts as dead).
alive() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}

# Prints the PID iff the pid file names a live redis-server started by us
# (its command line names our port on loopback).
server_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid cmd port
  pid="$(tr -dc '0-9' <"$PID_FILE")"
  [[ -n "$pid" ]] || return 1
  alive "$pid" || return 1
  port="$(current_port)" || return 1
  cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmd" == *"redis-server"*"$HOST:$port"* ]] || return 1
  printf '%s\n' "$pid"
}

current_port() {
  [[ -f "$PORT_FILE" ]] || return 1
  tr -dc '0-9' <"$PORT_FILE"
}

port_free() {
  python3 - "$1" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as redis-server does
s.bind(("127.0.0.1", int(sys.argv[1])))
PY
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

answering() {
  [[ "$("$CLI" -h "$HOST" -p "$1" --no-auth-warning PING 2>/dev/null)" == PONG ]]
}

start_server() {
  local port="$1" pid
  if pid="$(server_pid)"; then
    log "server already running (pid $pid)"
    return 0
  fi
  command -v "$SERVER" >/dev/null 2>&1 || die "$SERVER not found; install it (Debian: apt-get install -y redis-server)"
  rm -f "$PID_FILE"
  port_free "$port" || die "port $HOST:$port is in use by another process"
  printf '\n===== %s redis-server %s:%s =====\n' "$(date -u +%FT%TZ)" "$HOST" "$port" >>"$LOG_FILE"
  # setsid: own session, so it outlives the caller's process group. sh
  # writes its own PID, then execs redis-server: the pid file names the
  # server itself. 9>&- : don't leak the lock fd.
  # shellcheck disable=SC2016 # single quotes intended: sh expands them
  (exec setsid sh -c 'echo "$$" >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' \
    "$PID_FILE" "$SERVER" --bind "$HOST" --port "$port" --save '' --appendonly no \
    --daemonize no --protected-mode yes --dir "$RUN" --logfile '' \
    </dev/null >>"$LOG_FILE" 2>&1 9>&-) &
  local deadline=$((SECONDS + WAIT_SECS))
  while ((SECONDS < deadline)); do
    if pid="$(server_pid)"; then
      if answering "$port"; then
        log "server up: pid $pid, redis://$HOST:$port/"
        return 0
      fi
    elif [[ -f "$PID_FILE" ]] && ! alive "$(tr -dc '0-9' <"$PID_FILE")"; then
      break
    fi
    sleep 0.1
  done
  log "redis-server did not answer on $HOST:$port within ${WAIT_SECS}s; tail of $LOG_FILE:"
  tail -n 20 "$LOG_FILE" >&2 || true
  if pid="$(server_pid)"; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$PID_FILE"
  exit 1
}

stop_server() {
  local pid i
  if ! pid="$(server_pid)"; then
    if [[ -f "$PID_FILE" ]]; then
      log "stale $PID_FILE (process gone or not our redis-server); removing it, killing nothing"
      rm -f "$PID_FILE"
    else
      log "server not running"
    fi
    return 0
  fi
  log "stopping redis-server pid $pid"
  kill -CONT "$pid" 2>/dev/null || true # a paused server cannot act on SIGTERM
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    alive "$pid" || break
    sleep 0.05
  done
  if alive "$pid"; then
    log "pid $pid ignored SIGTERM for 5s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PID_FILE"
}

write_env() {
  local port="$1" tmp="$ENV_FILE.$$.tmp"
  {
    echo "export REDIS_URL=redis://$HOST:$port/"
    echo "export REDIS_PORT=$port"
  } >"$tmp"
  mv "$tmp" "$ENV_FILE"
}

cmd_start() {
  lock
  local pid port
  if pid="$(server_pid)"; then
    port="$(current_port)"
    if answering "$port"; then
      [[ -f "$ENV_FILE" ]] || write_env "$port"
      cat "$ENV_FILE"
      return 0
    fi
    log "pid $pid is not answering on port $port; restarting it"
    stop_server
  fi
  if [[ -n "${REDIS_PORT:-}" ]]; then
    port="$REDIS_PORT"
  elif port="$(current_port)" && [[ -n "$port" ]] && port_free "$port"; then
    : # the previous port, so the env stays the same across start/stop
  else
    port="$(free_port)"
  fi
  printf '%s\n' "$port" >"$PORT_FILE"
  start_server "$port"
  write_env "$port"
  cat "$ENV_FILE"
}

signal() {
  local pid
  pid="$(server_pid)" || die "redis-server is not running"
  kill "-$1" "$pid"
  log "sent SIG$1 to pid $pid"
}

[[ $# -ge 1 ]] || usage
cmd="$1"
shift
case "$cmd" in
start) cmd_start ;;
stop)
  lock
  stop_server
  rm -f "$ENV_FILE"
  ;;
stop-server)
  lock
  stop_server
  ;;
start-server)
  lock
  port="$(current_port)" || die "no $PORT_FILE: run '$0 start' first"
  start_server "$port"
  ;;
pause) signal STOP ;;
resume) signal CONT ;;
env)
  [[ -f "$ENV_FILE" ]] || die "no $ENV_FILE: run '$0 start' first"
  cat "$ENV_FILE"
  ;;
status)
  if pid="$(server_pid)"; then
    echo "running $pid $(current_port)"
  else
    echo "stopped"
    exit 1
  fi
  ;;
-h | --help | help) usage ;;
*)
  log "unknown command: $cmd"
  usage
  ;;
esac
