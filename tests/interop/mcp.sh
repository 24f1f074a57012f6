#!/usr/bin/env bash
# Drive examples/mcp_server.rs with the official MCP TypeScript SDK client
# (tests/interop/mcp/client.mjs), against the node-oidc-provider of oidc.sh.
# See tests/interop/README.md.
#
#   eval "$(bash tests/interop/oidc.sh start)"   # the authorization server
#   bash tests/interop/mcp.sh                    # npm ci (if needed), build, run, check
#
# Starts the example on a free loopback port (LISTEN_ADDR=127.0.0.1:0, the
# port read from its `listening on` line), stops it (its own PID only) on exit.
# Exits non-zero if any client check fails. Server log: .run/mcp/server.log.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
APP="$HERE/mcp"
MODULES_STAMP="$APP/node_modules/.interop-package-lock.sha256"
RUN="$HERE/.run/mcp"
LOG_FILE="$RUN/server.log"
WAIT_SECS="${MCP_WAIT_SECS:-60}"
NODE="${MCP_NODE:-node}"
NPM="${MCP_NPM:-npm}"

log() { printf 'mcp.sh: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

for name in OIDC_ISSUER OIDC_TOKEN_URL OIDC_MCP_CLIENT_ID; do
  [[ -n "${!name:-}" ]] || die "$name is not set: eval \"\$(bash tests/interop/oidc.sh start)\" first"
done
command -v "$NODE" >/dev/null 2>&1 || die "node not found (Node.js >= 20 is needed)"

# The SDK, exactly as package-lock.json pins it.
want="$({
  sha256sum <"$APP/package-lock.json"
  "$NODE" --version
} | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$MODULES_STAMP" || "$(cat "$MODULES_STAMP")" != "$want" ]]; then
  log "installing @modelcontextprotocol/sdk from $APP/package-lock.json (npm ci)"
  (cd "$APP" && "$NPM" ci --no-audit --no-fund --loglevel=error) >&2
  printf '%s\n' "$want" >"$MODULES_STAMP"
fi

log "building examples/mcp_server.rs"
# --all-features: the build `cargo test --all-features` already made, reused.
(cd "$ROOT" && cargo build --quiet --all-features --example mcp_server) >&2
SERVER="$ROOT/target/debug/examples/mcp_server"

mkdir -p "$RUN"
: >"$LOG_FILE"
server_pid=""
stop() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
}
trap stop EXIT

# The JWTs the AS issues for the MCP resource are verified locally (its
# introspection endpoint cannot introspect JWTs).
LISTEN_ADDR=127.0.0.1:0 \
  AUTHORIZATION_SERVERS="$OIDC_ISSUER" \
  JWT_ISSUER="$OIDC_ISSUER" \
  RUST_LOG="${RUST_LOG:-warn}" \
  "$SERVER" >"$RUN/stdout" 2>>"$LOG_FILE" </dev/null &
server_pid=$!

MCP_URL=""
deadline=$((SECONDS + WAIT_SECS))
while ((SECONDS < deadline)); do
  MCP_URL="$(sed -n 's#^listening on \(http://.*\)$#\1#p' "$RUN/stdout" 2>/dev/null | head -n1)"
  [[ -n "$MCP_URL" ]] && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if [[ -z "$MCP_URL" ]]; then
  log "mcp_server did not start; tail of $LOG_FILE:"
  tail -n 40 "$LOG_FILE" >&2 || true
  exit 1
fi
log "mcp_server up: pid $server_pid, $MCP_URL"

(cd "$APP" && MCP_URL="$MCP_URL" "$NODE" client.mjs)
