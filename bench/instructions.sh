#!/usr/bin/env bash
# Instructions per cached request, counted by valgrind (callgrind): the same
# figures on any machine of one architecture and compiler, whatever else the
# machine is doing. See benches/instructions.rs.
#   bash bench/instructions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "needs valgrind (Debian: apt-get install valgrind)" >&2; exit 1; }
bin=$(cargo bench --bench instructions --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "instructions" and m.get("executable"):
        print(m["executable"])')
count() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 \
    | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
per_request() { local a b; a=$(count "$1" 5000); b=$(count "$1" 15000); echo $(( (b - a) / 10000 )); }
bare=$(per_request bare); layer=$(per_request layer)
bare_jwt=$(per_request bare_jwt); layer_jwt=$(per_request layer_jwt)
printf '%-34s %8s %8s %10s\n' "instructions per request" bare layer "difference"
printf '%-34s %8d %8d %+10d\n' "cached opaque token (43 bytes)" "$bare" "$layer" $((layer - bare))
printf '%-34s %8d %8d %+10d\n' "cached RS256 JWT (~700 bytes)" "$bare_jwt" "$layer_jwt" $((layer_jwt - bare_jwt))
