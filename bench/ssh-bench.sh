#!/usr/bin/env bash
# Benchmark: mailrun against a plain OpenSSH ControlMaster script, on N
# sshd-only lab hosts (network namespaces; as root). One run of each runner
# per size, first run (everything changes) and second run (nothing changes);
# the end state on the hosts is compared between the runners.
#
#   bash bench/ssh-bench.sh [SIZES...]      # default: 1 10 50
#
# Prints wall time, per-task time (wall / 10 tasks), control-side CPU time,
# peak memory (max RSS of the runner) and the ratio ControlMaster / mailrun,
# and a warm-connection per-task overhead: (wall of 10 tasks - wall of 1
# task) / 9 on one host.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1 10 50)
max=0
for n in "${sizes[@]}"; do [ "$n" -gt "$max" ] && max=$n; done

cargo build --release --locked --quiet
bin=$root/target/release/mailrun
work=$(mktemp -d /tmp/mailrun-bench.XXXXXX)
export LAB_DIR=$work/lab
cleanup() { bash "$root/tests/lab/lab.sh" down >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

names=()
for i in $(seq 1 "$max"); do names+=("$(printf 'bh%03d' "$i")"); done
echo "bringing up $max lab hosts…" >&2
bash tests/lab/lab.sh up "${names[@]}" >/dev/null
home=$LAB_DIR/home
key=$home/.ssh/id_ed25519

# The workload's files.
mkdir -p "$work/files"
head -c 1048576 /dev/urandom > "$work/files/big.bin"
for f in a b c; do printf 'setting_%s = %s\n' "$f" "$RANDOM" > "$work/files/$f.conf"; done

cat > "$work/site.yml" <<YML
- hosts: bench
  gather_facts: false
  tasks:
    - command: mkdir -p /srv/bench
      args: { creates: /srv/bench }
    - command: uname -r
      changed_when: false
    - command: test -d /srv/bench
      changed_when: false
    - shell: date +%s > /srv/bench/stamp
      args: { creates: /srv/bench/stamp }
    - file_copy: { src: $work/files/a.conf, dest: /srv/bench/a.conf, mode: "0640" }
    - file_copy: { src: $work/files/b.conf, dest: /srv/bench/b.conf, mode: "0600" }
    - file_copy: { src: $work/files/c.conf, dest: /srv/bench/c.conf, mode: "0644" }
    - file_copy: { content: "PermitRootLogin prohibit-password\n", dest: /srv/bench/sshd_config, mode: "0644" }
    - file_copy: { content: "PasswordAuthentication no\n", dest: /srv/bench/sshd_extra, mode: "0644" }
    - file_copy: { src: $work/files/big.bin, dest: /srv/bench/big.bin, mode: "0644" }
YML
cat > "$work/one.yml" <<YML
- hosts: bench
  tasks:
    - command: "true"
YML

# The same workload as a shell script over OpenSSH ControlMaster: one
# master connection per host, every operation a multiplexed ssh.
cat > "$work/cm-host.sh" <<'SH'
#!/usr/bin/env bash
set -eu
addr=$1 files=$2 home=$3 mode=$4
sock=$home/cm-$addr
o=(-o BatchMode=yes -o UserKnownHostsFile=$home/.ssh/known_hosts -i $home/.ssh/id_ed25519 -o ControlPath=$sock)
ssh "${o[@]}" -o ControlMaster=yes -o ControlPersist=60 -fN root@"$addr"
r() { ssh "${o[@]}" root@"$addr" "$@"; }
if [ "$mode" = one ]; then r true; ssh "${o[@]}" -O exit root@"$addr" 2>/dev/null; exit 0; fi
r 'test -e /srv/bench || mkdir -p /srv/bench'
r 'uname -r' >/dev/null
r 'test -d /srv/bench'
r 'test -e /srv/bench/stamp || date +%s > /srv/bench/stamp'
put() { # src dest mode
  local want have
  want=$(sha256sum < "$1" | cut -d' ' -f1)
  have=$(r "sha256sum < $2 2>/dev/null | cut -d' ' -f1; stat -c %a $2 2>/dev/null" | tr '\n' ' ')
  if [ "$have" != "$want $3 " ]; then
    r "t=\$(mktemp /srv/bench/.cm.XXXXXX) && cat > \$t && chmod $3 \$t && mv -f \$t $2" < "$1"
  fi
}
put "$files/a.conf" /srv/bench/a.conf 640
put "$files/b.conf" /srv/bench/b.conf 600
put "$files/c.conf" /srv/bench/c.conf 644
printf 'PermitRootLogin prohibit-password\n' > "$home/sc.$addr"; put "$home/sc.$addr" /srv/bench/sshd_config 644
printf 'PasswordAuthentication no\n' > "$home/se.$addr"; put "$home/se.$addr" /srv/bench/sshd_extra 644
put "$files/big.bin" /srv/bench/big.bin 644
ssh "${o[@]}" -O exit root@"$addr" 2>/dev/null || true
SH

# /usr/bin/time's max RSS and CPU for one command; prints "wall cpu rss_mb".
measure() {
  local out=$work/time.out start end
  start=$(date +%s.%N)
  /usr/bin/time -f '%U %S %M' -o "$out" "$@" >"$work/last.log" 2>&1 || { cat "$work/last.log" >&2; return 1; }
  end=$(date +%s.%N)
  read -r u s m < <(tail -1 "$out")
  awk -v a="$start" -v b="$end" -v u="$u" -v s="$s" -v m="$m" 'BEGIN { printf "%.3f %.2f %.1f\n", b-a, u+s, m/1024 }'
}

inventory() { # n
  printf '[bench]\n' > "$work/inv"
  head -n "$1" "$LAB_DIR/hosts" | while read -r name addr; do
    printf '%s ansible_host=%s ansible_user=root\n' "$name" "$addr" >> "$work/inv"
  done
}
reset_hosts() { # n
  head -n "$1" "$LAB_DIR/hosts" | while read -r name _; do
    bash tests/lab/lab.sh exec "$name" rm -rf /srv/bench
  done
}
state() { # n: a checksum of every host's /srv/bench (content and modes)
  head -n "$1" "$LAB_DIR/hosts" | while read -r name _; do
    bash tests/lab/lab.sh exec "$name" sh -c 'cd /srv/bench && for f in *.conf sshd_* big.bin; do printf "%s %s " "$f" "$(stat -c %a "$f")"; sha256sum < "$f"; done'
  done | sha256sum | cut -c1-16
}
run_mailrun() { HOME=$home "$bin" "$1" -i "$work/inv" -f "$2" >/dev/null; }
run_cm() { # n mode
  head -n "$1" "$LAB_DIR/hosts" | awk '{print $2}' |
    xargs -P "$2" -I{} bash "$work/cm-host.sh" {} "$work/files" "$home" "$3"
}
export -f run_mailrun run_cm
export bin work home

command -v /usr/bin/time >/dev/null || { echo "bench: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
printf '%s\n' "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r)"
printf '%-6s %-6s %-12s %9s %9s %9s %9s %8s\n' hosts run runner wall_s task_ms cpu_s rss_mb ratio
for n in "${sizes[@]}"; do
  inventory "$n"
  forks=$n
  declare -A wall=()
  for runner in mailrun cm; do
    reset_hosts "$n"
    for pass in first second; do
      if [ $runner = mailrun ]; then
        read -r w c m < <(measure bash -c "run_mailrun $work/site.yml $forks")
      else
        read -r w c m < <(measure bash -c "run_cm $n $forks full")
      fi
      wall[$runner-$pass]=$w
      eval "cpu_${runner}_$pass=$c rss_${runner}_$pass=$m"
    done
    eval "state_$runner=$(state "$n")"
  done
  for pass in first second; do
    for runner in mailrun cm; do
      w=${wall[$runner-$pass]}
      c=$(eval echo "\$cpu_${runner}_$pass"); m=$(eval echo "\$rss_${runner}_$pass")
      ratio=$(awk -v a="$w" -v b="${wall[mailrun-$pass]}" 'BEGIN { printf "%.2f", a/b }')
      name=$runner; [ $runner = cm ] && name=controlmaster
      printf '%-6s %-6s %-12s %9s %9.1f %9s %9s %8s\n' "$n" "$pass" "$name" "$w" "$(awk -v w="$w" 'BEGIN{print w*100}')" "$c" "$m" "${ratio}x"
    done
  done
  # shellcheck disable=SC2154
  if [ "$state_mailrun" != "$state_cm" ]; then
    echo "END STATE DIFFERS at $n hosts: mailrun $state_mailrun, controlmaster $state_cm" >&2
    exit 1
  fi
done

# Warm-connection overhead per task, one host: (10 tasks - 1 task) / 9.
inventory 1
reset_hosts 1
run_mailrun "$work/site.yml" 1
read -r m10 _ _ < <(measure bash -c "run_mailrun $work/site.yml 1")
read -r m1 _ _ < <(measure bash -c "run_mailrun $work/one.yml 1")
run_cm 1 1 full
read -r c10 _ _ < <(measure bash -c "run_cm 1 1 full")
read -r c1 _ _ < <(measure bash -c "run_cm 1 1 one")
awk -v m10="$m10" -v m1="$m1" -v c10="$c10" -v c1="$c1" 'BEGIN {
  m = (m10 - m1) / 9 * 1000; c = (c10 - c1) / 9 * 1000;
  printf "per-task overhead on a warm connection (second run, 1 host): mailrun %.1f ms, controlmaster %.1f ms, ratio %.2fx\n", m, c, (m > 0 ? c / m : 0) }'
