#!/usr/bin/env bash
# Sets up and runs every test: unit tests, integration tests on the local
# connection. Run from anywhere; as root on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --locked --bins
cargo test --locked --no-fail-fast 2>&1
