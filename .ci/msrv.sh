#!/usr/bin/env bash
# The declared rust-version is the one the library really builds with: the
# library alone (no dev-dependencies: tests and benches may use newer
# crates), its dependencies resolved for that version
# (CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS=fallback, as a user's cargo
# does for a crate that declares it), with every feature and with none.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
[ -n "$version" ] || { echo "no rust-version in Cargo.toml" >&2; exit 1; }
rustup toolchain install "$version" --profile minimal >/dev/null 2>&1 || rustup toolchain install "$version" --profile minimal
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git ls-files -z | xargs -0 -I{} cp --parents {} "$work"/ 2>/dev/null || cp -r . "$work"/
cd "$work"
rm -f Cargo.lock
python3 - <<'PY'
import re
s = open('Cargo.toml').read()
s = re.sub(r'\n\[dev-dependencies\].*?(?=\n\[)', '\n', s, flags=re.S)
s = re.sub(r'\n\[\[bench\]\][^\[]*', '\n', s)
open('Cargo.toml', 'w').write(s)
PY
export CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS=fallback
export CARGO_TARGET_DIR="${MSRV_TARGET_DIR:-$work/target}"
cargo "+$version" check --lib --all-features
cargo "+$version" check --lib --no-default-features
echo "the library builds with Rust $version"
