#!/usr/bin/env bash
# Sets up, builds and runs the example playbook on the local connection.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --locked --release
./target/release/mailrun playbooks/site.yml -i inventory/local.ini --yes "$@"
