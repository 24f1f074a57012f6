#!/usr/bin/env bash
# Smoke test of the DOT harness: checks with curl the DOT behaviours the Rust
# interop tests rely on (see README.md). Starts DOT if needed and stops it again
# at the end if it was not running before. Ends with "N passed, N failed".
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DOT="$HERE/dot.sh"
PY="$HERE/.venv/bin/python"
passed=0
failed=0

was_running=false
if "$DOT" status >/dev/null 2>&1; then was_running=true; fi
eval "$("$DOT" start)"
cleanup() { if ! $was_running; then "$DOT" stop >/dev/null 2>&1 || true; fi; }
trap cleanup EXIT

check() { # NAME EXPECTED ACTUAL
  if [[ "$2" == "$3" ]]; then
    passed=$((passed + 1))
    echo "ok   $1"
  else
    failed=$((failed + 1))
    printf 'FAIL %s\n     expected: %s\n     actual:   %s\n' "$1" "$2" "$3"
  fi
}

# POST form to URL; prints "STATUS CONTENT_TYPE BODY" (content type without params).
post() {
  local url="$1" out
  shift
  out="$(curl -s -X POST "$url" "$@" -w '\n%{http_code} %{content_type}')"
  local body="${out%$'\n'*}" meta="${out##*$'\n'}"
  printf '%s %s %s' "${meta%% *}" "$(printf '%s' "${meta#* }" | cut -d';' -f1)" "$body"
}
json() { "$PY" -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
token() { curl -s -X POST "$DOT_TOKEN_URL" "$@" | json access_token; }

# ---- token endpoint
pw_form=(-H 'Content-Type: application/x-www-form-urlencoded'
  --data-urlencode grant_type=password --data-urlencode "username=$DOT_USERNAME"
  --data-urlencode "client_id=$DOT_PW_CLIENT_ID" --data-urlencode "client_secret=$DOT_PW_CLIENT_SECRET")
r="$(post "$DOT_TOKEN_URL" "${pw_form[@]}" --data-urlencode "password=$DOT_PASSWORD")"
check "password grant -> 200 json" "200 application/json" "$(cut -d' ' -f1-2 <<<"$r")"
r="$(post "$DOT_TOKEN_URL" "${pw_form[@]}" --data-urlencode "password=$DOT_PASSWORD" --data-urlencode scope=read)"
check "password grant scope=read" "read" "$(cut -d' ' -f3- <<<"$r" | json scope)"
r="$(post "$DOT_TOKEN_URL" "${pw_form[@]}" --data-urlencode password=wrong)"
check "password grant, wrong password" \
  '400 application/json {"error": "invalid_grant", "error_description": "Invalid credentials given."}' "$r"
r="$(post "$DOT_TOKEN_URL" -u "$DOT_CC_CLIENT_ID:$DOT_CC_CLIENT_SECRET" -d grant_type=client_credentials)"
check "client_credentials via Basic" "200 application/json" "$(cut -d' ' -f1-2 <<<"$r")"
r="$(post "$DOT_TOKEN_URL" -d grant_type=client_credentials -d "client_id=$DOT_CC_CLIENT_ID" -d "client_secret=$DOT_CC_CLIENT_SECRET")"
check "client_credentials via form" "200 application/json" "$(cut -d' ' -f1-2 <<<"$r")"
r="$(post "$DOT_TOKEN_URL" -u "$DOT_CC_CLIENT_ID:wrong" -d grant_type=client_credentials)"
check "client_credentials, wrong secret" '401 application/json {"error": "invalid_client"}' "$r"

PW="$(token "${pw_form[@]}" --data-urlencode "password=$DOT_PASSWORD" --data-urlencode 'scope=read write')"
CC="$(token -u "$DOT_CC_CLIENT_ID:$DOT_CC_CLIENT_SECRET" -d grant_type=client_credentials -d scope=read)"
RSI="$(token -u "$DOT_RS_CLIENT_ID:$DOT_RS_CLIENT_SECRET" -d grant_type=client_credentials -d scope=introspection)"
RSR="$(token -u "$DOT_RS_CLIENT_ID:$DOT_RS_CLIENT_SECRET" -d grant_type=client_credentials -d scope=read)"
exp_pw="$(post "$DOT_INTROSPECTION_URL" -u "$DOT_RS_CLIENT_ID:$DOT_RS_CLIENT_SECRET" -d "token=$PW" | cut -d' ' -f3- | json exp)"
active_pw="200 application/json {\"active\": true, \"scope\": \"read write\", \"exp\": $exp_pw, \"client_id\": \"$DOT_PW_CLIENT_ID\", \"username\": \"$DOT_USERNAME\"}"
forbidden="403 text/html "

# ---- introspection
check "introspect: Basic rs-client" "$active_pw" \
  "$(post "$DOT_INTROSPECTION_URL" -u "$DOT_RS_CLIENT_ID:$DOT_RS_CLIENT_SECRET" -d "token=$PW")"
check "introspect: form client_id/secret" "$active_pw" \
  "$(post "$DOT_INTROSPECTION_URL" -d "client_id=$DOT_RS_CLIENT_ID" -d "client_secret=$DOT_RS_CLIENT_SECRET" -d "token=$PW")"
check "introspect: Bearer with scope introspection" "$active_pw" \
  "$(post "$DOT_INTROSPECTION_URL" -H "Authorization: Bearer $RSI" -d "token=$PW")"
r="$(post "$DOT_INTROSPECTION_URL" -u "$DOT_RS_CLIENT_ID:$DOT_RS_CLIENT_SECRET" -d "token=$CC")"
check "introspect: client_credentials token has no username" "200 application/json {\"active\": true, \"scope\": \"read\", \"exp\": $(cut -d' ' -f3- <<<"$r" | json exp), \"client_id\": \"$DOT_CC_CLIENT_ID\"}" "$r"
check "introspect: unknown token" '200 application/json {"active": false}' \
  "$(post "$DOT_INTROSPECTION_URL" -u "$DOT_RS_CLIENT_ID:$DOT_RS_CLIENT_SECRET" -d token=no-such-token)"
check "introspect: missing token" '400 application/json {"error": "invalid_request", "error_description": "Token parameter is missing."}' \
  "$(post "$DOT_INTROSPECTION_URL" -u "$DOT_RS_CLIENT_ID:$DOT_RS_CLIENT_SECRET")"
check "introspect: wrong secret (Basic)" "$forbidden" "$(post "$DOT_INTROSPECTION_URL" -u "$DOT_RS_CLIENT_ID:wrong" -d "token=$PW")"
check "introspect: wrong secret (form)" "$forbidden" \
  "$(post "$DOT_INTROSPECTION_URL" -d "client_id=$DOT_RS_CLIENT_ID" -d client_secret=wrong -d "token=$PW")"
check "introspect: no client auth" "$forbidden" "$(post "$DOT_INTROSPECTION_URL" -d "token=$PW")"
check "introspect: Bearer without scope introspection" "$forbidden" \
  "$(post "$DOT_INTROSPECTION_URL" -H "Authorization: Bearer $RSR" -d "token=$PW")"
check "introspect: GET ?token= is accepted too" "200" \
  "$(curl -s -o /dev/null -w '%{http_code}' -u "$DOT_RS_CLIENT_ID:$DOT_RS_CLIENT_SECRET" "$DOT_INTROSPECTION_URL?token=$PW")"
AUD="$(token -u "$DOT_CC_CLIENT_ID:$DOT_CC_CLIENT_SECRET" -d grant_type=client_credentials -d scope=read -d resource=https://api.example)"
check "introspect: RFC 8707 resource -> aud array" "['https://api.example']" \
  "$(post "$DOT_INTROSPECTION_URL" -u "$DOT_RS_CLIENT_ID:$DOT_RS_CLIENT_SECRET" -d "token=$AUD" | cut -d' ' -f3- | json aud)"

# ---- revocation (only the owning client can revoke)
check "revoke by non-owner -> 200, no effect" "200" \
  "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$DOT_REVOCATION_URL" -u "$DOT_RS_CLIENT_ID:$DOT_RS_CLIENT_SECRET" -d "token=$PW")"
check "token still active" "$active_pw" "$(post "$DOT_INTROSPECTION_URL" -u "$DOT_RS_CLIENT_ID:$DOT_RS_CLIENT_SECRET" -d "token=$PW")"
check "revoke by owner" "200" \
  "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$DOT_REVOCATION_URL" -u "$DOT_PW_CLIENT_ID:$DOT_PW_CLIENT_SECRET" -d "token=$PW")"
check "revoked token inactive" '200 application/json {"active": false}' \
  "$(post "$DOT_INTROSPECTION_URL" -u "$DOT_RS_CLIENT_ID:$DOT_RS_CLIENT_SECRET" -d "token=$PW")"

# ---- expire-token
"$DOT" expire-token "$CC" 2>/dev/null
check "expired token inactive" '200 application/json {"active": false}' \
  "$(post "$DOT_INTROSPECTION_URL" -u "$DOT_RS_CLIENT_ID:$DOT_RS_CLIENT_SECRET" -d "token=$CC")"

# ---- outage: stop-server / start-server keep port and DB
"$DOT" stop-server 2>/dev/null
check "stop-server: nothing listens" "000" \
  "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$DOT_INTROSPECTION_URL" -u "$DOT_RS_CLIENT_ID:$DOT_RS_CLIENT_SECRET" -d "token=$RSR" || true)"
"$DOT" start-server 2>/dev/null
check "start-server: same port, same DB" "200 true" \
  "$(post "$DOT_INTROSPECTION_URL" -u "$DOT_RS_CLIENT_ID:$DOT_RS_CLIENT_SECRET" -d "token=$RSR" | { read -r s _ b; printf '%s %s' "$s" "$(json active <<<"$b" | tr '[:upper:]' '[:lower:]')"; })"
"$DOT" restart-server 2>/dev/null
check "restart-server: env unchanged" "$DOT_BASE_URL" "$("$DOT" env | sed -n 's/^export DOT_BASE_URL=//p')"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
