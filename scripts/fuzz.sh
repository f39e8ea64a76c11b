#!/usr/bin/env bash
# Fuzzes mailrun's parsers with cargo-fuzz (libFuzzer); see RELIABILITY.md.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Installs cargo-fuzz if it is missing, builds every target on the stable
# toolchain (`-s none`: no sanitizer, which needs nightly; mailrun denies
# unsafe code, so AddressSanitizer would add little), then runs each target
# (default: all) for SECONDS_PER_TARGET (default 60) from fuzz/seeds/<target>
# and fuzz/corpus/<target> (what earlier runs found; not committed). A panic,
# an input slower than FUZZ_TIMEOUT seconds (default 10) or a process above
# FUZZ_RSS_MB MiB (default 2048) is a crash: its input is kept in
# fuzz/artifacts/<target>/ and the script exits 1. Replay one with
#   fuzz/target/<triple>/release/<target> fuzz/artifacts/<target>/crash-…
set -euo pipefail
cd "$(dirname "$0")/.."

all_targets=(ini_inventory yaml_inventory playbook kv_args template_expr)
secs=${1:-60}
[ $# -gt 0 ] && shift
case $secs in
  '' | *[!0-9]*) echo "fuzz: SECONDS_PER_TARGET must be a whole number, not '$secs'" >&2; exit 2 ;;
esac
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
  if [[ " ${all_targets[*]} " != *" $t "* ]]; then
    echo "fuzz: unknown target '$t' (targets: ${all_targets[*]})" >&2
    exit 2
  fi
done
timeout_s=${FUZZ_TIMEOUT:-10}
rss_mb=${FUZZ_RSS_MB:-2048}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
triple=$(rustc -vV | sed -n 's/^host: //p')
(cd fuzz && cargo fuzz build -s none --target "$triple")
bin=fuzz/target/$triple/release

crashed=0
summary=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log=$(mktemp)
  rc=0
  # The target's own output (none expected) is hidden; libFuzzer's is kept.
  "$bin/$t" -max_total_time="$secs" -timeout="$timeout_s" -rss_limit_mb="$rss_mb" \
    -print_final_stats=1 -close_fd_mask=1 -artifact_prefix="fuzz/artifacts/$t/" \
    "fuzz/corpus/$t" "fuzz/seeds/$t" >"$log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  if [ "$rc" -ne 0 ]; then
    crashed=$((crashed + 1))
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    echo "fuzz: $t crashed (exit $rc); the end of libFuzzer's output:" >&2
    grep -v '^#[0-9]' "$log" | tail -n 30 >&2
    summary+=("$(printf '%-15s runs %-10s exec/s %-7s CRASH %s' "$t" "${runs:-?}" "${eps:-?}" "${artifact:-(see above)}")")
  else
    summary+=("$(printf '%-15s runs %-10s exec/s %-7s crashes 0' "$t" "${runs:-?}" "${eps:-?}")")
  fi
  rm -f "$log"
done
echo "fuzz: ${secs}s per target"
printf '  %s\n' "${summary[@]}"
if [ "$crashed" -gt 0 ]; then
  echo "fuzz: $crashed target(s) crashed" >&2
  exit 1
fi
