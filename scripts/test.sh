#!/usr/bin/env bash
# Runs the whole test suite: lints, unit tests and the end-to-end tests that
# start real etcd and MariaDB processes on free ports in temp dirs.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --drivers
echo "[test] cargo fmt --check"
cargo fmt --check
echo "[test] cargo clippy"
cargo clippy --all-targets -- -D warnings
echo "[test] cargo doc (public docs must not link to private items)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet
echo "[test] cargo test"
cargo test --all-targets
