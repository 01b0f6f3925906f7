#!/usr/bin/env bash
# From a fresh clone to a serving local sharded cluster:
# installs what is missing, builds shardgate (release) and runs `shardgate local up`.
# Then: mysql -h127.0.0.1 -P15306 commerce
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
echo "[build] cargo build --release (the first build takes a few minutes)"
cargo build --release
exec ./target/release/shardgate local up "$@"
