#!/usr/bin/env bash
# Benchmark: mailrun side by side with ansible-playbook, pyinfra and a plain
# OpenSSH ControlMaster script, on N sshd-only lab hosts (network
# namespaces; as root, after scripts/setup.sh).
#
#   bash bench/bench.sh [--runners LIST] [SIZES...]   # default: 1 10 50 200
#
# LIST is a comma list of mailrun,ansible,pyinfra,cm (default: all four).
# The workload is bench/workload/: site.yml (run as it is by mailrun and by
# ansible-playbook), deploy.py (pyinfra) and cm-host.sh (ControlMaster), 10
# tasks per host: 4 commands, 3 small file copies with modes, 2 line edits
# in a copy of sshd_config, 1 copy of a 1 MB file (files/big.bin, made per
# run), all under /srv/bench. For each size and runner the hosts start
# empty, then a first run (everything changes) and a second run (nothing
# changes); after each runner the end state of every host (every path under
# /srv/bench with its type, mode and content; BENCH_VOLATILE names files
# whose content is not compared, default "stamp") must be the same as after
# mailrun, or the benchmark fails. mailrun's and ansible's second runs must
# report no change.
#
# Printed per size, run and runner: wall time, time per task (wall / 10),
# control-side CPU (user+system of every process the runner started,
# ControlMaster daemons included, from a cgroup when the machine lets the
# script make one), peak memory (max RSS of the runner's largest process: for runners
# made of many processes an underestimate of their total) and the ratio of
# the runner's wall time to mailrun's. Then the issue's targets at 50 and 200
# hosts, each PASS or FAIL.
#
# ansible-core and pyinfra are installed from PyPI at pinned versions into a
# virtualenv the script creates (BENCH_VENV, default /var/tmp/mailrun-bench-venv).
# ansible runs with forks = N, pipelining, ControlPersist and gather_facts
# off; pyinfra with --parallel N and --no-wait.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
ANSIBLE_PIN='ansible-core==2.18.19'
PYINFRA_PIN='pyinfra==3.10.0'
runners=mailrun,ansible,pyinfra,cm
sizes=()
while [ $# -gt 0 ]; do
  case $1 in
    --runners) runners=$2; shift 2 ;;
    --runners=*) runners=${1#*=}; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *[!0-9]*|'') echo "bench: unknown argument '$1' (sizes are numbers; --runners LIST)" >&2; exit 2 ;;
    *) sizes+=("$1"); shift ;;
  esac
done
[ ${#sizes[@]} -gt 0 ] || sizes=(1 10 50 200)
IFS=, read -r -a runner_list <<< "$runners"
for r in "${runner_list[@]}"; do
  case $r in mailrun|ansible|pyinfra|cm) ;; *) echo "bench: unknown runner '$r' (mailrun, ansible, pyinfra, cm)" >&2; exit 2 ;; esac
done
# mailrun is the reference of every ratio and end state: always first.
runner_list=(mailrun $(printf '%s\n' "${runner_list[@]}" | grep -vx mailrun || true))
has() { [[ ",$runners," == *",$1,"* ]]; }
max=0
for n in "${sizes[@]}"; do [ "$n" -gt "$max" ] && max=$n; done
[ "$max" -ge 1 ] && [ "$max" -le 250 ] || { echo "bench: sizes must be 1..250 hosts" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root (the lab's namespaces)" >&2; exit 1; }
command -v /usr/bin/time >/dev/null || { echo "bench: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }

bash scripts/setup.sh >/dev/null
echo "building mailrun (release)…" >&2
cargo build --release --locked --quiet
bin=$root/target/release/mailrun

venv=${BENCH_VENV:-/var/tmp/mailrun-bench-venv}
if has ansible || has pyinfra; then
  bash scripts/ansible-venv.sh "$venv" "$ANSIBLE_PIN" "$PYINFRA_PIN" ||
    { echo "bench: set BENCH_VENV to another path" >&2; exit 1; }
fi

work=$(mktemp -d /tmp/mailrun-bench.XXXXXX)
export LAB_DIR=$work/lab LAB_OWNER=$$
cg=
cleanup() {
  # ControlPersist masters left by ansible (ours only: their socket dir)
  pkill -f -- "ControlPath=.?$work/cp/" 2>/dev/null || true
  bash "$root/tests/lab/lab.sh" down >/dev/null 2>&1 || true
  if [ -n "$cg" ]; then
    for _ in 1 2 3 4 5 6 7 8 9 10; do rmdir "$cg" 2>/dev/null && break; sleep 0.2; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

names=()
for i in $(seq 1 "$max"); do names+=("$(printf 'bh%03d' "$i")"); done
echo "bringing up $max lab hosts…" >&2
bash tests/lab/lab.sh up --no-mesh "${names[@]}" >/dev/null
home=$LAB_DIR/home
key=$home/.ssh/id_ed25519

# The workload, with its 1 MB file.
cp -r bench/workload "$work/w"
head -c 1048576 /dev/urandom > "$work/w/files/big.bin"
# Tasks per host (for ms/task): the task items of site.yml's play.
tasks=$(grep -c '^    - ' "$work/w/site.yml")

cat > "$work/ansible.cfg" <<CFG
[defaults]
gathering = explicit
host_key_checking = True
interpreter_python = /usr/bin/python3
private_key_file = $key
remote_user = root
retry_files_enabled = False
local_tmp = $work/ansible-tmp
[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=$home/.ssh/known_hosts -o BatchMode=yes
control_path_dir = $work/cp
CFG
mkdir -p "$work/cp"

inventory() { # n: the INI inventory (mailrun, ansible) and pyinfra's
  printf '[bench]\n' > "$work/inv"
  printf 'bench = [\n' > "$work/inventory.py"
  head -n "$1" "$LAB_DIR/hosts" | while read -r name addr; do
    printf '%s ansible_host=%s ansible_user=root\n' "$name" "$addr" >> "$work/inv"
    printf '    ("%s", {"ssh_hostname": "%s", "ssh_user": "root", "ssh_key": "%s", "ssh_known_hosts_file": "%s"}),\n' \
      "$name" "$addr" "$key" "$home/.ssh/known_hosts" >> "$work/inventory.py"
  done
  printf ']\n' >> "$work/inventory.py"
}
on_hosts() { # n cmd: run cmd in each of the first n hosts, 16 at a time
  local n=$1; shift
  head -n "$n" "$LAB_DIR/hosts" | awk '{print $1}' |
    xargs -P 16 -I{} bash "$root/tests/lab/lab.sh" exec {} sh -c "$*"
}
reset_hosts() { on_hosts "$1" 'rm -rf /srv/bench'; }
# Files whose content differs by design between runners (a time stamp):
# only their existence, type and mode are compared.
volatile=${BENCH_VOLATILE:-stamp}
state() { # n: a checksum of every host's /srv/bench (every path, type, mode, content)
  head -n "$1" "$LAB_DIR/hosts" | while read -r name _; do
    echo "== $name"
    bash tests/lab/lab.sh exec "$name" env V=" $volatile " sh -c 'cd /srv/bench 2>/dev/null || exit 0
      find . -printf "%p %y %m\n" | sort
      find . -type f | sort | while read -r f; do
        case "$V" in *" ${f#./} "*) continue ;; esac
        printf "%s " "$f"; sha256sum < "$f"
      done' 2>&1
  done > "$work/state.txt"
  sha256sum < "$work/state.txt" | cut -c1-16
}

# One measured command: "wall cpu rss_mb". CPU comes from a cgroup of our
# own when the machine lets us make one (v1 cpuacct, or v2's cpu.stat): it
# also counts daemons the runner leaves, like ssh masters; else from
# /usr/bin/time (the processes the runner waited for).
cgcpu() { # the cgroup's CPU time in ns
  if [ -f "$cg/cpuacct.usage" ]; then cat "$cg/cpuacct.usage"
  else awk '/^usage_usec/ { printf "%d\n", $2 * 1000 }' "$cg/cpu.stat"; fi
}
for cgroot in /sys/fs/cgroup/cpuacct /sys/fs/cgroup; do
  [ "$cgroot" = /sys/fs/cgroup ] && [ ! -f /sys/fs/cgroup/cgroup.controllers ] && continue
  if [ -w "$cgroot" ] && mkdir "$cgroot/mailrun-bench-$$" 2>/dev/null; then
    cg=$cgroot/mailrun-bench-$$
    cgcpu >/dev/null 2>&1 && sh -c 'echo $$ > "$1/cgroup.procs"' sh "$cg" 2>/dev/null && break
    rmdir "$cg" 2>/dev/null || true
    cg=
  fi
done
measure() {
  local out=$work/time.out before=0 after start end
  [ -n "$cg" ] && before=$(cgcpu)
  start=$(date +%s.%N)
  if [ -n "$cg" ]; then
    /usr/bin/time -f '%U %S %M' -o "$out" bash -c 'echo $$ > "$1/cgroup.procs"; shift; exec "$@"' bash "$cg" "$@" >"$work/last.log" 2>&1 || { tail -40 "$work/last.log" >&2; return 1; }
  else
    /usr/bin/time -f '%U %S %M' -o "$out" "$@" >"$work/last.log" 2>&1 || { tail -40 "$work/last.log" >&2; return 1; }
  fi
  end=$(date +%s.%N)
  [ -n "$cg" ] && after=$(cgcpu)
  read -r u s m < <(tail -1 "$out")
  awk -v a="$start" -v b="$end" -v u="$u" -v s="$s" -v m="$m" -v c0="$before" -v c1="${after:-0}" \
    'BEGIN { cpu = (c1 > 0 ? (c1 - c0) / 1e9 : u + s); printf "%.3f %.2f %.1f\n", b-a, cpu, m/1024 }'
}

run() { # runner n
  case $1 in
    mailrun) HOME=$home "$bin" "$work/w/site.yml" -i "$work/inv" -f "$2" ;;
    ansible) HOME=$home ANSIBLE_CONFIG=$work/ansible.cfg "$venv/bin/ansible-playbook" -i "$work/inv" -f "$2" "$work/w/site.yml" ;;
    pyinfra) HOME=$home "$venv/bin/pyinfra" -y --parallel "$2" --no-wait "$work/inventory.py" "$work/w/deploy.py" ;;
    cm) head -n "$2" "$LAB_DIR/hosts" | awk '{print $2}' |
          HOME=$home xargs -P "$2" -I{} bash "$work/w/cm-host.sh" {} "$work/w" "$home" ;;
  esac
}
export -f run
export bin work home venv LAB_DIR

declare -A W C M
fail=0
printf '%s\n' "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg), kernel $(uname -r)"
printf '%-5s %-6s %-8s %8s %8s %7s %7s %8s\n' hosts run runner wall_s ms/task cpu_s rss_mb vs_mail
for n in "${sizes[@]}"; do
  inventory "$n"
  ref=
  for runner in "${runner_list[@]}"; do
    reset_hosts "$n"
    for pass in first second; do
      if ! read -r w c m < <(measure bash -c "run $runner $n"); then
        echo "bench: $runner failed at $n hosts ($pass run)" >&2; exit 1
      fi
      if [ $pass = second ]; then
        case $runner in
          mailrun) grep -Eq 'changed=[1-9]' "$work/last.log" && { echo "bench: mailrun's second run changed something:" >&2; tail -20 "$work/last.log" >&2; fail=1; } ;;
          ansible) grep -Eq 'changed=[1-9]' "$work/last.log" && { echo "bench: ansible's second run changed something:" >&2; tail -20 "$work/last.log" >&2; fail=1; } ;;
        esac
      fi
      W[$n-$runner-$pass]=$w C[$n-$runner-$pass]=$c M[$n-$runner-$pass]=$m
      printf '%-5s %-6s %-8s %8.2f %8.1f %7.2f %7.1f %7.2fx\n' "$n" "$pass" "$runner" "$w" \
        "$(awk -v w="$w" -v t=$tasks 'BEGIN{print w*1000/t}')" "$c" "$m" \
        "$(awk -v a="$w" -v b="${W[$n-mailrun-$pass]}" 'BEGIN { printf "%.2f", a/b }')"
    done
    s=$(state "$n")
    if [ -z "$ref" ]; then ref=$s; cp "$work/state.txt" "$work/state.ref"
    elif [ "$s" != "$ref" ]; then
      echo "bench: END STATE DIFFERS at $n hosts: $runner left $s, mailrun $ref" >&2
      diff "$work/state.ref" "$work/state.txt" | head -20 >&2
      fail=1
    fi
  done
  # ansible's masters persist; end them before the next size
  pkill -f -- "ControlPath=.?$work/cp/" 2>/dev/null || true
done

target() { # description ok
  if [ "$2" = 1 ]; then echo "PASS  $1"; else echo "FAIL  $1"; fail=1; fi
}
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }' && echo 1 || echo 0; }
for n in 50 200; do
  [[ " ${sizes[*]} " == *" $n "* ]] || continue
  echo "targets at $n hosts:"
  for pass in first second; do
    mw=${W[$n-mailrun-$pass]}
    if [ "$n" = 50 ]; then
      for pair in pyinfra:3 cm:2 ansible:30; do
        r=${pair%%:*} x=${pair##*:}
        [ -n "${W[$n-$r-$pass]:-}" ] || continue
        target "$pass run: mailrun ${x}x faster than $r ($(awk -v a="${W[$n-$r-$pass]}" -v b="$mw" 'BEGIN{printf "%.1f", a/b}')x)" "$(ge "${W[$n-$r-$pass]}" "$(awk -v b="$mw" -v x="$x" 'BEGIN{print b*x}')")"
      done
      target "$pass run: control CPU under 1 s (${C[$n-mailrun-$pass]} s)" "$(ge 1 "${C[$n-mailrun-$pass]}")"
    fi
    lim=30; [ "$n" = 200 ] && lim=100
    target "$pass run: peak memory under $lim MB (${M[$n-mailrun-$pass]} MB)" "$(ge "$lim" "${M[$n-mailrun-$pass]}")"
  done
  target "second run at most 0.7x the first ($(awk -v a="${W[$n-mailrun-second]}" -v b="${W[$n-mailrun-first]}" 'BEGIN{printf "%.2f", a/b}')x)" \
    "$(ge "$(awk -v b="${W[$n-mailrun-first]}" 'BEGIN{print b*0.7}')" "${W[$n-mailrun-second]}")"
done
exit $fail
