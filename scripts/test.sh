#!/usr/bin/env bash
# Sets up and runs every test: unit tests and the integration tests (the
# binary on playbooks and inventories over the local connection). Run from
# anywhere; as root on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --locked --bins
# The lab machines' root file systems (Debian 12 and 13, tests/lab/rootfs.sh):
# made once and cached, a one-time cost reported apart from the tests.
# A machine that cannot make them still runs every other test (the machine
# tests then fail, saying why).
start=$SECONDS
bash tests/lab/rootfs.sh path bookworm >/dev/null &
b=$!
bash tests/lab/rootfs.sh path trixie >/dev/null || echo "test.sh: no Debian 13 root file system (see above)" >&2
wait "$b" || echo "test.sh: no Debian 12 root file system (see above)" >&2
echo "lab root file systems ready in $((SECONDS - start)) s"
# ansible-core, pinned as bench/bench.sh pins it: tests compare with it.
export MAILRUN_ANSIBLE_VENV=/var/tmp/mailrun-ansible-venv
bash scripts/ansible-venv.sh "$MAILRUN_ANSIBLE_VENV" ansible-core==2.18.19
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --locked --no-fail-fast --lib --bins --tests 2>&1 | tee "$log" || status=$?
# Every fuzz target for 15 s (fuzz/, RELIABILITY.md "Fuzzing"); a crash fails the run.
bash scripts/fuzz.sh 15 || status=$?
# One closing line for the whole suite.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
