#!/usr/bin/env bash
# Mutation testing of the security-critical modules with cargo-mutants.
#
# Install it once:   cargo install cargo-mutants --locked
# Run:               bash .ci/mutants.sh [module…]
#   module: token answer validate cache challenge scope dpop jwt fleet
#           jsonrpc resource read_index metadata (default: all)
#
# Results land in mutants.out/<module>/mutants.out/ (caught.txt, missed.txt,
# unviable.txt, timeout.txt, one log per mutant). Too slow for .ci/run: on 2
# cores the whole set takes about an hour.
#
# Each module's mutants are tested against the test targets that exercise it
# only (the lib's unit tests plus a few integration tests): building and
# running the whole suite for every mutant would take many hours. The
# selection is passed with --cargo-arg, so the build phase builds only those
# targets too. Extra arguments for cargo-mutants can be given in
# MUTANTS_ARGS, e.g. MUTANTS_ARGS="--iterate" or MUTANTS_ARGS="--list".
#
# Mutants are built in a copy of the tree (cargo-mutants' default); see
# below for the target directory.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo mutants --version >/dev/null 2>&1; then
    echo "cargo-mutants is missing: cargo install cargo-mutants --locked" >&2
    exit 2
fi

# One job: one target directory shared by every run (target/mutants), so
# the dependencies are compiled once. Several jobs (MUTANTS_JOBS > 1) must
# not share one: a job would run the test binaries another job just built
# for its own mutant (and count the wrong outcome), so each job builds in
# its own copy of the tree, dependencies included, once per run.
if [ "${MUTANTS_JOBS:-1}" -gt 1 ]; then
    unset CARGO_TARGET_DIR
else
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/mutants}"
fi
# No debug info: a mutant's build is mostly compiling the crate twice (lib
# and unit tests) and linking; without debug info each takes less.
export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-0}"
export CARGO_PROFILE_TEST_DEBUG="${CARGO_PROFILE_TEST_DEBUG:-0}"
jobs="${MUTANTS_JOBS:-1}"
read -r -a extra <<<"${MUTANTS_ARGS:-}"


# module -> "files;regex;test targets;test binary arguments" (the regex may
# hold `|`). The fleet's tests need a real redis-server (started here, our
# own process on a free loopback port) and run the ignored tests one at a
# time; the load test that counts AS calls across replicas is left out (it
# is about timing, not about the code mutated). tests/mcp.rs's example tests
# need the example binary, which the mutants' builds do not make (nor does
# tests/jwt.rs's resource_server_example).
declare -A spec=(
    [token]="src/token.rs;;properties request_path review_middleware"
    [answer]="src/claims.rs;;properties request_path"
    [validate]="src/validate.rs;;token_kinds request_path cache"
    [cache]="src/engine/mod.rs src/engine/cache.rs src/engine/tickets.rs src/cache_key.rs;;cache hardening stale_if_error invalidation limits request_path"
    [challenge]="src/challenge.rs;;properties request_path scopes"
    [scope]="src/scope/mod.rs src/scope/layer.rs src/scope/service.rs src/scope/future.rs;;scopes request_path"
    [dpop]="src/dpop/mod.rs src/dpop/nonce.rs src/dpop/proof.rs src/dpop/replay.rs;;dpop review_dpop"
    [jwt]="src/jose/compact.rs src/jose/keys.rs src/jose/jwks.rs src/jwt/profile.rs;;jwt;--skip resource_server_example"
    [fleet]="src/fleet/keys.rs src/fleet/seal.rs src/fleet/events.rs src/fleet/breaker.rs src/fleet/store.rs src/fleet/memory.rs;;fleet;--include-ignored --test-threads=1 --skip three_hundred_requests_on_three_replicas_make_one_call"
    [jsonrpc]="src/jsonrpc/mod.rs src/jsonrpc/message.rs src/jsonrpc/layer.rs src/jsonrpc/service.rs src/buffered.rs;;mcp;--skip the_rmcp_example"
    [resource]="src/resource/mod.rs src/resource/url.rs;;mcp request_path;--skip the_rmcp_example"
    [read_index]="src/engine/index.rs;;cache invalidation request_path"
    [metadata]="src/metadata/mod.rs src/metadata/builder.rs src/metadata/service.rs;;mcp;--skip the_rmcp_example"
)
all=(token answer validate cache challenge scope dpop jwt fleet jsonrpc resource read_index metadata)

modules=("$@")
[ ${#modules[@]} -gt 0 ] || modules=("${all[@]}")
for module in "${modules[@]}"; do
    if [ -z "${spec[$module]+set}" ]; then
        echo "unknown module '$module'; one of: ${all[*]}" >&2
        exit 2
    fi
done

status=0
for module in "${modules[@]}"; do
    IFS=';' read -r files regex tests test_args <<<"${spec[$module]}"
    # The fleet's tests stop, restart and pause the one redis-server: two
    # jobs would pull it from under each other.
    module_jobs=$jobs
    [ "$module" != fleet ] || module_jobs=1
    args=(--jobs "$module_jobs" --all-features --output "mutants.out/$module" --cargo-arg=--lib)
    for file in $files; do
        args+=(--file "$file")
    done
    [ -z "$regex" ] || args+=(--re "$regex")
    for test in $tests; do
        args+=("--cargo-arg=--test=$test")
    done
    printf '\n==> mutants: %s\n' "$module"
    mkdir -p "mutants.out/$module"
    if [ "$module" = fleet ] && ! bash tests/interop/redis.sh status >/dev/null 2>&1; then
        eval "$(bash tests/interop/redis.sh start)"
        trap 'bash tests/interop/redis.sh stop >/dev/null 2>&1 || true' EXIT
    fi
    # Arguments for the test binaries go after `-- --` (cargo test's own
    # `--`); word splitting of $test_args is wanted.
    binary_args=()
    # shellcheck disable=SC2206
    [ -z "$test_args" ] || binary_args=(-- -- $test_args)
    # Exit status 2 means missed mutants, 3 timeouts: report, go on with the
    # next module, and fail at the end.
    cargo mutants "${args[@]}" "${extra[@]}" "${binary_args[@]}" || status=$?
done

case " ${extra[*]} " in *" --list "*) exit "$status" ;; esac
printf '\n==> summary (caught / missed / unviable / timeout)\n'
for module in "${modules[@]}"; do
    out="mutants.out/$module/mutants.out"
    count() { if [ -f "$out/$1.txt" ]; then wc -l <"$out/$1.txt"; else echo -; fi; }
    printf '%-10s %5s %5s %5s %5s\n' "$module" "$(count caught)" "$(count missed)" "$(count unviable)" "$(count timeout)"
done
exit "$status"
