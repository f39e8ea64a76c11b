#!/usr/bin/env bash
# Benchmark: the mail copy of a migration. On the two-server Dovecot lab
# (old, new; as root, after scripts/setup.sh), USERS users of MSGS messages
# each on old; then, each time onto an empty new and with warm caches:
#   - a plain `doveadm backup -A` run on old (doveadm's own loop over the
#     users, one after the other; the same ssh options as mailrun's),
#   - mailrun's doveadm_backup with parallel: 1, 2, 4 and 8.
# After every run mailrun's mail_verify must prove that new holds every
# message, folder, flag and Sieve script of old (or the benchmark fails).
# Prints wall time per variant and its speed-up over `backup -A`.
#
#   bash bench/migration-bench.sh [--machines] [USERS [MSGS]]   # default 40 100
#
# --machines: old and new are lab machines (systemd-nspawn): old Debian 12
# (Dovecot 2.3), new Debian 13 (Dovecot 2.4), the pair a mail admin moves
# between. Making their root file systems (tests/lab/rootfs.sh, cached) is
# a one-time cost, timed and printed apart.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
machines=0
if [ "${1:-}" = --machines ]; then machines=1; shift; fi
users=${1:-40}
msgs=${2:-100}
[[ $users =~ ^[0-9]+$ && $msgs =~ ^[0-9]+$ && $users -ge 1 && $msgs -ge 3 ]] ||
  { echo "usage: bench/migration-bench.sh [USERS [MSGS]] (numbers; MSGS >= 3)" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root (the lab's namespaces)" >&2; exit 1; }

bash scripts/setup.sh >/dev/null
echo "building mailrun (release)…" >&2
cargo build --release --locked --quiet
bin=$root/target/release/mailrun
work=$(mktemp -d /tmp/mailrun-mbench.XXXXXX)
export LAB_DIR=$work/lab LAB_OWNER=$$
cleanup() { bash "$root/tests/lab/lab.sh" down >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
lab() { bash "$root/tests/lab/lab.sh" "$@"; }

old=mbold new=mbnew
echo "bringing up $old and $new (Dovecot)…" >&2
if [ $machines -eq 1 ]; then
  t0=$SECONDS
  bash tests/lab/rootfs.sh path bookworm >/dev/null
  bash tests/lab/rootfs.sh path trixie >/dev/null
  echo "root file systems ready in $((SECONDS - t0)) s (a one-time cost, not in the figures below)" >&2
  lab up --machine bookworm --dovecot "$old" >/dev/null
  lab up --machine trixie --dovecot "$new" >/dev/null
else
  lab up --dovecot "$old" "$new" >/dev/null
fi
old_version=$(lab exec "$old" dovecot --version | cut -d' ' -f1)
new_version=$(lab exec "$new" dovecot --version | cut -d' ' -f1)
new_addr=$(lab addr "$new")

list=()
for i in $(seq 1 "$users"); do list+=("$(printf 'user%02d@bench.org' "$i")"); done
echo "making $users users with $msgs messages each on $old…" >&2
bash tests/lab/mail.sh users "$old" "${list[@]}"
lab exec "$old" cat /etc/dovecot/users | lab exec "$new" sh -c 'cat > /etc/dovecot/users'
# Messages written straight into each Maildir (INBOX, Sent, Archive; 1 to
# 12 KB, some seen), then indexed by Dovecot (UIDs, GUIDs) and two Sieve
# scripts: much faster than a doveadm save per message.
lab exec "$old" env MSGS="$msgs" USERS="${list[*]}" bash -c '
  set -e
  host=$(hostname)
  for u in $USERS; do
    md=/var/vmail/bench.org/${u%@*}/Maildir
    mkdir -p "$md"
    n=0
    for box in "" .Sent .Archive; do
      d=$md/$box; mkdir -p "$d/cur" "$d/new" "$d/tmp"
      [ -n "$box" ] && touch "$d/maildirfolder"
      case $box in "") count=$((MSGS * 6 / 10)) ;; .Sent) count=$((MSGS * 2 / 10)) ;; *) count=$((MSGS - MSGS * 6 / 10 - MSGS * 2 / 10)) ;; esac
      for i in $(seq 1 "$count"); do
        n=$((n + 1))
        size=$(( (n * 7919) % 11000 + 1000 ))
        flags=; [ $((n % 3)) -ne 0 ] && flags=S
        f="$d/cur/$((1700000000 + n)).M${n}P1.$host:2,$flags"
        { printf "From: sender%s@example.net\nTo: %s\nSubject: message %s in %s\nMessage-ID: <%s.%s@bench>\nDate: Sat, 28 Nov 2026 12:00:00 +0000\n\n" "$n" "$u" "$n" "${box:-INBOX}" "$n" "$u"
          head -c "$size" /dev/zero | tr "\0" "x" | fold -w 76; echo; } > "$f"
      done
    done
    printf "Sent\nArchive\n" > "$md/subscriptions"
    chown -R 5000:5000 /var/vmail/bench.org
    doveadm force-resync -u "$u" "*"
    printf "require \"fileinto\";\nif header :contains \"subject\" \"[list]\" { fileinto \"Archive\"; }\n" | doveadm sieve put -u "$u" -a filters
    printf "require \"vacation\";\nvacation :days 7 \"Away\";\n" | doveadm sieve put -u "$u" vacation
  done'
total=$(lab exec "$old" doveadm -f flow mailbox status -A messages '*' | awk -F'messages=' '{s += $2} END {print s}')
echo "$old holds $total messages of $users users" >&2

old_addr=$(lab addr "$old")
cat > "$work/inv" <<INV
[old]
$old ansible_host=$old_addr ansible_user=root
[new]
$new ansible_host=$new_addr ansible_user=root
INV
backup_yml() { # parallel
  cat > "$work/backup-$1.yml" <<YML
- hosts: old
  gather_facts: false
  tasks:
    - doveadm_backup:
        remote: $new
        parallel: $1
        fresh: true
        ledger: $work/ledger-$1.json
YML
}
cat > "$work/verify.yml" <<YML
- hosts: old
  gather_facts: false
  tasks:
    - mail_verify:
        remote: $new
YML
mailrun() { HOME=$LAB_DIR/home "$bin" "$@" -i "$work/inv"; }
empty_new() { lab exec "$new" sh -c 'rm -rf /var/vmail/bench.org'; }
verify() { # what
  if ! mailrun "$work/verify.yml" > "$work/verify.log" 2>&1; then
    echo "bench: after $1, mail_verify failed:" >&2; tail -30 "$work/verify.log" >&2; exit 1
  fi
}
# The plain run: doveadm's -A loop, with mailrun's ssh options.
# (Dovecot 2.4's dsync-server refuses 2.3's -U.)
flag_u=" -U"
case $new_version in 2.3.*) ;; *) flag_u= ;; esac
user_var=%u
case $old_version in 2.3.*) ;; *) user_var=%{user} ;; esac
plain() {
  lab exec "$old" doveadm -o "dsync_remote_cmd=ssh -o BatchMode=yes -o ConnectTimeout=15 -o ServerAliveInterval=15 -l%{login} %{host} doveadm dsync-server -u$user_var$flag_u" \
    backup -A "remote:root@$new_addr"
}
timed() { # command...: prints seconds
  local s e
  s=$(date +%s.%N)
  "$@" > "$work/run.log" 2>&1 || { echo "bench: $* failed:" >&2; tail -30 "$work/run.log" >&2; exit 1; }
  e=$(date +%s.%N)
  awk -v a="$s" -v b="$e" 'BEGIN { printf "%.2f", b - a }'
}

echo "warming up (one untimed backup -A)…" >&2
empty_new; plain >/dev/null 2>&1 || true

printf '%s\n' "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), kernel $(uname -r); old: Dovecot $old_version, new: Dovecot $new_version$([ $machines -eq 1 ] && echo ' (lab machines: Debian 12 -> 13)')"
printf '%s\n' "$users users, $total messages"
printf '%-26s %8s %9s\n' variant wall_s speedup
empty_new
base=$(timed plain)
verify "backup -A"
printf '%-26s %8s %8.2fx\n' "doveadm backup -A" "$base" 1
fail=0
for p in 1 2 4 8; do
  backup_yml "$p"
  empty_new
  w=$(timed mailrun "$work/backup-$p.yml")
  verify "doveadm_backup parallel $p"
  x=$(awk -v a="$base" -v b="$w" 'BEGIN { printf "%.2f", a / b }')
  printf '%-26s %8s %8.2fx\n' "doveadm_backup parallel $p" "$w" "$x"
  if [ "$p" = 4 ]; then x4=$x; fi
done
if awk -v x="$x4" 'BEGIN { exit !(x >= 1.8) }'; then
  echo "PASS  parallel 4 at least 1.8x faster than backup -A (${x4}x), every message verified"
else
  echo "FAIL  parallel 4 at least 1.8x faster than backup -A (${x4}x)"; fail=1
fi
exit $fail
