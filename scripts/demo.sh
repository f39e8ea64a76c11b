#!/usr/bin/env bash
# Sets up, builds, brings up the built-in two-server lab (hosts "old" and
# "new": network namespaces with their own sshd, tests/lab/lab.sh) and runs
# the lab playbook over SSH twice (the second run changes nothing). The lab is
# torn down at the end; KEEP_LAB=1 leaves it up (LAB_DIR=/tmp/mailrun-lab).
# As root, on Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --locked --release
export LAB_DIR=${LAB_DIR:-/tmp/mailrun-lab}
if [ "${KEEP_LAB:-0}" != 1 ]; then
  trap 'bash tests/lab/lab.sh down' EXIT
fi
bash tests/lab/lab.sh up old new
{
  while read -r name addr; do
    printf '[%s]\n%s ansible_host=%s ansible_user=root\n' "$name" "$name" "$addr"
  done < "$LAB_DIR/hosts"
} > "$LAB_DIR/inventory.ini"
echo "lab: $(tr '\n' ' ' < "$LAB_DIR/hosts")(inventory: $LAB_DIR/inventory.ini, HOME=$LAB_DIR/home)"
export HOME=$LAB_DIR/home
for run in first second; do
  echo "=== $run run"
  ./target/release/mailrun playbooks/lab-tour.yml -i "$LAB_DIR/inventory.ini" "$@"
done
