#!/usr/bin/env bash
# Load: N sshd-only lab hosts (default 200) with `--forks N`, every host
# connecting at once, against sshd's default MaxStartups (10:30:100; the lab
# does not change it). Each of ROUNDS runs (default 3) is a new mailrun
# process: ping, a command, a small file copy per host. Every host must end
# ok (no unreachable, no failed) in every round, else the script fails.
# Printed per round: wall time, control CPU, peak memory (max RSS) and the
# hosts' states; then the largest of each. As root, after scripts/setup.sh.
#
#   bash bench/load.sh [N [ROUNDS]]
#
# Timings are one sample on a shared machine: read them as figures, not as
# a pass/fail (only the hosts' states decide that).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
n=${1:-200}
rounds=${2:-3}
[ "$(id -u)" -eq 0 ] || { echo "load: needs root (the lab's namespaces)" >&2; exit 1; }
bash scripts/setup.sh >/dev/null
command -v /usr/bin/time >/dev/null || { echo "load: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
echo "building mailrun (release)…" >&2
cargo build --release --locked --quiet
bin=$root/target/release/mailrun

work=$(mktemp -d /tmp/mailrun-load.XXXXXX)
export LAB_DIR=$work/lab LAB_OWNER=$$
cleanup() {
  bash "$root/tests/lab/lab.sh" down >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

names=()
for i in $(seq 1 "$n"); do names+=("$(printf 'ld%03d' "$i")"); done
echo "bringing up $n lab hosts…" >&2
bash tests/lab/lab.sh up --no-mesh "${names[@]}" >/dev/null
ms=$(bash tests/lab/lab.sh exec ld001 sshd -T | awk '$1 == "maxstartups" { print $2 }')
echo "sshd MaxStartups on the hosts: $ms" >&2

printf '[load]\n' > "$work/inv"
while read -r name addr; do
  printf '%s ansible_host=%s ansible_user=root\n' "$name" "$addr" >> "$work/inv"
done < "$LAB_DIR/hosts"
printf 'load test\n' > "$work/payload.txt"
cat > "$work/site.yml" <<'YML'
- hosts: load
  tasks:
    - name: ping
      ping:
    - name: command
      command: uname -n
    - name: copy
      file_copy: {src: payload.txt, dest: /tmp/mailrun-load.txt, mode: "0644"}
YML

printf '%-6s %-6s %8s %7s %8s %5s %5s %5s %5s\n' round hosts wall_s cpu_s rss_mb ok chg unr fail
status=0
max_wall=0 max_rss=0
for r in $(seq 1 "$rounds"); do
  start=$(date +%s.%N)
  code=0
  HOME=$LAB_DIR/home /usr/bin/time -f '%U %S %M' -o "$work/time" \
    "$bin" "$work/site.yml" -i "$work/inv" --forks "$n" --output json > "$work/out.json" 2> "$work/err" || code=$?
  end=$(date +%s.%N)
  read -r u s rss < "$work/time"
  wall=$(echo "$end - $start" | bc)
  cpu=$(echo "$u + $s" | bc)
  rss_mb=$(( rss / 1024 ))
  # The recap: hosts ok (every task ok or changed), changed, unreachable, failed.
  read -r ok chg unr fail < <(python3 -c '
import json, sys
rc = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rc = [e for e in rc if e.get("event") == "recap"][-1]["hosts"]
ok = sum(1 for h in rc.values() if h["unreachable"] == 0 and h["failed"] == 0)
print(ok, sum(1 for h in rc.values() if h["changed"] > 0),
      sum(1 for h in rc.values() if h["unreachable"] > 0),
      sum(1 for h in rc.values() if h["failed"] > 0))' "$work/out.json")
  printf '%-6s %-6s %8.2f %7.2f %8d %5s %5s %5s %5s\n' "$r" "$n" "$wall" "$cpu" "$rss_mb" "$ok" "$chg" "$unr" "$fail"
  if [ "$code" -ne 0 ] || [ "$ok" -ne "$n" ]; then
    echo "FAIL round $r: exit $code, $ok of $n hosts ok" >&2
    grep -h '"status":"unreachable"\|"status":"failed"' "$work/out.json" | head -5 >&2 || true
    tail -5 "$work/err" >&2
    status=1
  fi
  max_wall=$(echo "if ($wall > $max_wall) $wall else $max_wall" | bc)
  [ "$rss_mb" -gt "$max_rss" ] && max_rss=$rss_mb
done
printf 'largest over %s rounds: wall %.2f s, peak memory %d MB (%s hosts, --forks %s, MaxStartups %s)\n' \
  "$rounds" "$max_wall" "$max_rss" "$n" "$n" "$ms"
[ "$status" -eq 0 ] && echo "PASS: every host ok in every round" || echo "FAIL: see above"
exit "$status"
