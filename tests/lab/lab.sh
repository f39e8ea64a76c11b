#!/usr/bin/env bash
# mailrun's test lab: real hosts on one machine, as root. Each host is a
# network namespace with its own address on the bridge mrlab0, its own PID,
# UTS, IPC and mount namespaces, a private /etc and /var (overlays over the
# machine's; also /usr, /opt, /srv, /home, /mnt), a private /root, /run and
# /tmp, its own ed25519 host key and OpenSSH's sshd (optionally Dovecot).
# Hosts have no default route: they reach only the lab /24.
# (Design and pitfalls: LAB-NOTES.md in the project's shared notes.)
#
#   LAB_DIR=DIR lab.sh up [OPTIONS] NAME...   # bring hosts up (idempotent)
#       --password PW     root's password on these hosts; password logins on
#       --user NAME:PW    a user with the control key authorized, sudo ALL
#                         with its password (repeatable)
#       --admin NAME      a user with the control key authorized and sudo ALL
#                         without a password (an admin account; repeatable)
#       --root-login VAL  `PermitRootLogin VAL` in the main sshd_config (as an
#                         admin writes it) instead of the lab's drop-in
#       --dovecot         Dovecot as on a Debian mail server (see setup_dovecot);
#                         on a machine also Postfix delivering to it by LMTP
#       --machine RELEASE a real machine instead of a namespace host: a
#                         Debian root file system (bookworm = 12, trixie =
#                         13; tests/lab/rootfs.sh makes and caches it) booted
#                         with systemd-nspawn, systemd as PID 1, sshd,
#                         Dovecot and Postfix as systemd units
#       --no-mesh         these hosts trust only the control key (no root mesh)
#   LAB_DIR=DIR lab.sh down                   # every host of this LAB_DIR
#   LAB_DIR=DIR lab.sh exec NAME CMD [ARG...] # run inside the host, its rc
#   LAB_DIR=DIR lab.sh sshd-stop|sshd-start|sshd-restart NAME
#                         # stop/restart kill the listener and every session
#   LAB_DIR=DIR lab.sh rekey NAME   # new host key, sshd restarted; the
#                                   # control known_hosts keeps the old one
#   LAB_DIR=DIR lab.sh forget NAME  # drop NAME from the control known_hosts
#   LAB_DIR=DIR lab.sh addr NAME | list
#   LAB_DIR=DIR lab.sh gc           # reap labs whose owner died (any LAB_DIR)
#
# `up` writes $LAB_DIR/hosts ("NAME ADDR" lines, also printed), the control
# key $LAB_DIR/control/id_ed25519 and a control HOME $LAB_DIR/home with
# .ssh/{id_ed25519,id_ed25519.pub,known_hosts} (known_hosts: "NAME,ADDR key"
# for every host; ssh reads the passwd home, so pass
# -o UserKnownHostsFile=$LAB_DIR/home/.ssh/known_hosts to OpenSSH's client).
# Several LAB_DIRs may be up at once (concurrent tests): addresses are
# allocated under a machine-wide lock in /run/mailrun-lab; host names must be
# unique across them. With LAB_OWNER=PID, a later `up` or `gc` reaps this lab
# once that process is gone (a test killed before its teardown ran).
# LAB_NET (default 10.213.0) is the /24 to use; LAB_WAIT (default 60) the
# seconds to wait for a host or a daemon (the machine may be loaded).
set -euo pipefail

die() { echo "lab: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2; }

cmd=${1:-}
[ -n "$cmd" ] && [ "$cmd" != -h ] && [ "$cmd" != --help ] || usage
shift

: "${LAB_DIR:?LAB_DIR must name the state directory of the lab}"
NET=${LAB_NET:-10.213.0}
[[ $NET =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "LAB_NET must be the first three octets of a /24, like 10.213.0"
WAIT=${LAB_WAIT:-60}
BR=mrlab0
GLOBAL=/run/mailrun-lab
[ "$(id -u)" -eq 0 ] || die "the lab needs root (network and mount namespaces)"
for c in ip unshare nsenter setsid flock ssh-keygen /usr/sbin/sshd; do
  command -v "$c" >/dev/null || die "missing $c (run scripts/setup.sh)"
done
mkdir -p "$LAB_DIR" "$GLOBAL/alloc"
LAB_DIR=$(cd "$LAB_DIR" && pwd -P)

# The machine-wide lock (fd 9): allocations, the bridge, reaping. The lab's
# own lock (fd 8), taken first, is held by `up` (and every helper it forks,
# so a killed `up` still holds it until they end) and `down`. Neither is
# ever inherited by anything left running: 8>&- 9>&- on every such command.
lock() { exec 9>"$GLOBAL/lock"; flock 9; }
unlock() { flock -u 9; exec 9>&-; }
lab_lock() { exec 8>"$LAB_DIR/.lock"; flock 8; }

hostdir() { echo "$LAB_DIR/hosts.d/$1"; }
octet_of() { cat "$(hostdir "$1")/octet" 2>/dev/null || die "no lab host $1 in $LAB_DIR"; }
addr_of() { local o; o=$(octet_of "$1"); echo "$NET.$o"; }
mac_of() { printf '02:00:0a:d5:00:%02x' "$1"; }

# Seconds-bounded polling: until CMD succeeds, at most $WAIT s.
wait_for() {
  local end=$((SECONDS + WAIT))
  until "$@"; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.05
  done
}

# A process of ours: PID alive (not a zombie) and its command line names the
# host's init script (so a reused PID is never taken for ours).
# On a machine: its systemd-nspawn (started on the host's fs/) or a child
# of that nspawn (the machine's PID 1).
nspawn_of() { grep -qaF -- "-D$2/fs" "/proc/$1/cmdline" 2>/dev/null; }
ours() { # pid statedir
  [ -n "$1" ] || return 1
  grep -qaF "$2/init.sh" "/proc/$1/cmdline" 2>/dev/null || nspawn_of "$1" "$2" ||
    nspawn_of "$(awk '/^PPid:/ {print $2}' "/proc/$1/status" 2>/dev/null)" "$2" || return 1
  [ "$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" != Z ]
}
is_machine() { [ -f "$(hostdir "$1")/machine" ]; }
gone() { # pid
  local st
  st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 0
  [ -z "$st" ] || [ "$st" = Z ]
}

# The PID (in the machine's namespace) of the host's PID 1.
init_pid() {
  local d p
  d=$(hostdir "$1")
  p=$(cat "$d/init.pid" 2>/dev/null) || return 1
  ours "$p" "$d" && echo "$p"
}
alive() { init_pid "$1" >/dev/null; }

# Runs a command inside host NAME (all its namespaces), from /.
in_host() {
  local name=$1 p
  shift
  p=$(init_pid "$name") || die "host $name is not up (LAB_DIR=$LAB_DIR)"
  if is_machine "$name"; then
    # Every namespace, the root and cwd of the machine's PID 1 (--wd=/ would
    # open the machine's own / before entering).
    nsenter -t "$p" -a -r -w -- /bin/sh -c 'cd / && exec "$@"' sh "$@" 8>&- 9>&-
  else
    nsenter -t "$p" -m -u -i -n -p -- /bin/sh -c 'cd / && exec "$@"' sh "$@" 8>&- 9>&-
  fi
}

ip2int() { local IFS=.; set -- $1; echo $((($1 << 24) | ($2 << 16) | ($3 << 8) | $4)); }
# Does PREFIX[/LEN] overlap $NET.0/24?
overlaps() {
  local p=${1%/*} l=24 len a b m
  [ "$p" != "$1" ] && l=${1#*/} || l=32
  len=$((l < 24 ? l : 24))
  a=$(ip2int "$p")
  b=$(ip2int "$NET.0")
  m=$((len == 0 ? 0 : (0xffffffff << (32 - len)) & 0xffffffff))
  [ $((a & m)) -eq $((b & m)) ]
}
# Before the first use: the lab /24 must not be routed or addressed elsewhere.
check_net() {
  local line set pfx
  while read -r line; do
    # shellcheck disable=SC2086
    set -- $line
    case $1 in unicast | unreachable | blackhole | prohibit | throw | local | broadcast | anycast | multicast) shift ;; esac
    pfx=$1
    [ "$pfx" = default ] && continue
    case " $line " in *" dev $BR "*) continue ;; esac
    [ "$line" = "unreachable $NET.0/24 metric 4242" ] && continue
    ! overlaps "$pfx" || die "$NET.0/24 overlaps the route '$line' on this machine; set LAB_NET to a free /24"
  done < <(ip -4 route show)
  while read -r _ _ _ pfx _; do
    ! overlaps "$pfx" || die "$NET.0/24 overlaps the address $pfx on this machine; set LAB_NET to a free /24"
  done < <(ip -4 -o addr show | grep -v " $BR ")
}

ensure_bridge() { # under the lock
  if ! ip link show "$BR" >/dev/null 2>&1; then
    check_net
    ip link add "$BR" type bridge
    ip link set "$BR" address "$(mac_of 1)"
    ip addr add "$NET.1/24" dev "$BR"
    ip link set "$BR" up
  elif ! ip -4 -o addr show dev "$BR" | grep -q " $NET\.1/24 "; then
    die "bridge $BR exists but is not $NET.1/24 (another LAB_NET is in use)"
  fi
  # Never let lab addresses fall through to a default route.
  ip route add unreachable "$NET.0/24" metric 4242 2>/dev/null || true
}

alloc_octet() { # name -> octet (under the lock)
  local o
  for o in $(seq 2 254); do
    if [ ! -e "$GLOBAL/alloc/$o" ]; then
      echo "$LAB_DIR $1" >"$GLOBAL/alloc/$o"
      echo "$o"
      return 0
    fi
  done
  die "no free address left in $NET.0/24"
}

# Kills a host's anchor and PID 1 (its PID namespace ends every process of
# the host), deletes its netns and veth. Works on what a partial `up` left.
kill_host() { # statedir name octet [scan]
  local d=$1 n=$2 o=$3 p pids=()
  for p in $(cat "$d/anchor.pid" "$d/init.pid" 2>/dev/null); do
    ours "$p" "$d" && pids+=("$p")
  done
  if [ -n "${4:-}" ] && [ ${#pids[@]} -eq 0 ] && [ ! -f "$d/anchor.pid" ]; then
    # State lost: find the host's processes by their init script.
    for p in /proc/[0-9]*; do
      ours "${p#/proc/}" "$d" && pids+=("${p#/proc/}")
    done
  fi
  if [ ${#pids[@]} -gt 0 ]; then
    kill -KILL "${pids[@]}" 2>/dev/null || true
    for p in "${pids[@]}"; do wait_for gone "$p" || echo "lab: $n: process $p did not end" >&2; done
  fi
  [ ! -f "$d/machine" ] || machine_cleanup "$d" "$n"
  ip netns del "mr-$n" 2>/dev/null || true
  [ -z "$o" ] || ip link del "mrl$o" 2>/dev/null || true
}

# The cgroup hierarchies a machine's cgroup is made in: each v1 hierarchy
# and the v2 one of a hybrid layout, or the root of a pure v2 layout.
cgroup_roots() {
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    echo /sys/fs/cgroup
  else
    for h in /sys/fs/cgroup/*/; do [ -f "$h/cgroup.procs" ] && echo "${h%/}"; done
  fi
}

# What a machine leaves on the machine once its processes are gone: the
# overlay mount of its root, its cgroups, nspawn's propagation directory.
machine_cleanup() { # statedir name
  local d=$1 n=$2 h i
  for i in 1 2 3 4 5 6 7 8 9 10; do
    mountpoint -q "$d/fs" 2>/dev/null || break
    umount -n "$d/fs" 2>/dev/null || { sleep 0.2; [ $i -lt 10 ] || umount -n -l "$d/fs" || true; }
  done
  for h in $(cgroup_roots); do
    [ -d "$h/mailrun-lab/$n" ] || continue
    find "$h/mailrun-lab/$n" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    rmdir "$h/mailrun-lab" 2>/dev/null || true
  done
  rm -rf "/run/systemd/nspawn/propagate/$n"
  rm -rf "${d:?}/work"
}

# Labs whose state dir vanished or whose LAB_OWNER died: their hosts go.
gc_locked() {
  local f o dir name owner start
  for f in "$GLOBAL"/alloc/*; do
    [ -f "$f" ] || continue
    o=${f##*/}
    read -r dir name <"$f" || continue
    if [ -d "$dir/hosts.d/$name" ]; then
      [ -f "$dir/owner" ] || continue
      read -r owner start <"$dir/owner" || continue
      if [ -d "/proc/$owner" ] && [ "$(sed 's/^.*) //' "/proc/$owner/stat" 2>/dev/null | cut -d' ' -f20)" = "$start" ]; then
        continue
      fi
      # Its up or down still running (orphaned): next time.
      flock -n "$dir/.lock" true 2>/dev/null || continue
    fi
    echo "lab: reaping $name ($NET.$o) of $dir: its owner is gone" >&2
    kill_host "$dir/hosts.d/$name" "$name" "$o" scan
    rm -f "$f"
    rm -rf "${dir:?}/hosts.d/$name"
  done
}

maybe_drop_bridge() { # under the lock
  if [ -z "$(ls -A "$GLOBAL/alloc" 2>/dev/null)" ]; then
    ip link del "$BR" 2>/dev/null || true
    ip route del unreachable "$NET.0/24" metric 4242 2>/dev/null || true
  fi
}

# Directories a host sees as the machine's but writes privately (overlays);
# /root, /run and /tmp are its own empty directories.
OVERLAYS="etc var usr opt srv home mnt"

# The host's PID 1: private mounts, then a reaper loop.
init_script() { # statedir name
  cat <<INIT
set -e
exec 3>"$1/ready"
hostname "$2"
umount -l /run/netns 2>/dev/null || true
for d in $OVERLAYS; do
  mkdir -p "$1/\$d.upper" "$1/\$d.work"
  mount -n -t overlay overlay -o lowerdir=/\$d,upperdir="$1/\$d.upper",workdir="$1/\$d.work" /\$d
done
mount -n --bind "$1/root" /root
mount -n --bind "$1/run" /run
mount -n --bind "$1/tmp" /tmp
chmod 1777 /tmp
chmod 700 /root
mkdir -p /run/sshd /run/lock
chmod 755 /run/sshd
echo ok >&3
exec 3>&-
trap 'exit 0' TERM
while :; do sleep 3600 & wait; done
INIT
}

sshd_running() {
  if is_machine "$1"; then
    in_host "$1" systemctl is-active -q ssh.service 2>/dev/null
  else
    in_host "$1" sh -c '[ -s /run/sshd.pid ] && kill -0 "$(cat /run/sshd.pid)"' 2>/dev/null
  fi
}

start_sshd() { # name
  sshd_running "$1" && return 0
  if is_machine "$1"; then
    in_host "$1" systemctl start ssh.service </dev/null >/dev/null 2>&1 ||
      die "sshd did not start on $1: $(in_host "$1" sh -c 'systemctl status --no-pager ssh.service; tail -5 /var/log/sshd.log' 2>&1)"
    return 0
  fi
  in_host "$1" sh -c 'rm -f /run/sshd.pid; /usr/sbin/sshd -E /var/log/sshd.log </dev/null >/dev/null 2>&1' ||
    die "sshd did not start on $1: $(in_host "$1" sh -c '/usr/sbin/sshd -t 2>&1; tail -5 /var/log/sshd.log' 2>&1)"
  wait_for sshd_running "$1" || die "sshd did not start on $1: $(in_host "$1" tail -5 /var/log/sshd.log 2>&1)"
}

stop_sshd() { # name: the listener and every session
  ! is_machine "$1" || in_host "$1" systemctl stop ssh.service
  in_host "$1" sh -c '
    # OpenSSH 10 (Debian 13) runs each connection as sshd-session.
    pkill -KILL -x "sshd|sshd-session|sshd-auth"
    end=$(($(date +%s) + '"$WAIT"'))
    while pgrep -x "sshd|sshd-session|sshd-auth" >/dev/null; do
      [ "$(date +%s)" -lt "$end" ] || { echo "sshd would not die" >&2; exit 1; }
      sleep 0.05
    done
    rm -f /run/sshd.pid'
}

# The host's netns, with eth0 on the lab bridge.
net_host() { # name octet addr
  local name=$1 o=$2 addr=$3
  ip netns add "mr-$name"
  ip link add "mrl$o" type veth peer name "mrp$o"
  ip link set "mrp$o" netns "mr-$name"
  ip -n "mr-$name" link set "mrp$o" name eth0
  ip -n "mr-$name" link set eth0 address "$(mac_of "$o")"
  ip -n "mr-$name" addr add "$addr/24" dev eth0
  ip -n "mr-$name" link set eth0 up
  ip -n "mr-$name" link set lo up
  ip link set "mrl$o" master "$BR"
  ip link set "mrl$o" up
  ip neigh flush to "$addr" 2>/dev/null || true
}

# Network, PID 1, host key, root key, sshd settings, resolver.
up_host() { # name
  local name=$1 d o addr
  d=$(hostdir "$name")
  o=$(cat "$d/octet")
  addr="$NET.$o"
  alive "$name" && return 0
  kill_host "$d" "$name" "$o" # what a failed earlier attempt left
  local ov
  for ov in $OVERLAYS; do rm -rf "${d:?}/$ov.work"; done
  mkdir -p "$d"/{root,run,tmp}
  rm -f "$d/ready" "$d/anchor.pid" "$d/init.pid"
  net_host "$name" "$o" "$addr"
  if is_machine "$name"; then
    up_machine "$name"
    return 0
  fi
  init_script "$d" "$name" >"$d/init.sh"
  # Detached from the caller: own session, stdio to init.log, no lock fd.
  setsid ip netns exec "mr-$name" unshare --pid --fork --kill-child --uts --ipc --mount \
    --propagation slave --mount-proc bash "$d/init.sh" </dev/null >"$d/init.log" 2>&1 8>&- 9>&- &
  local a=$!
  echo "$a" >"$d/anchor.pid"
  wait_for test -s "$d/ready" || die "host $name did not come up: $(cat "$d/init.log")"
  local p
  p=$(awk '{print $1}' "/proc/$a/task/$a/children" 2>/dev/null) || true
  ours "$p" "$d" || die "host $name: no PID 1 under its anchor $a: $(cat "$d/init.log")"
  echo "$p" >"$d/init.pid"
  in_host "$name" env NAME="$name" sh -c "$IDENTITY"
}

# A host's own identity (run inside it, or chrooted into a machine's root
# before it boots): a fresh host key, root's key, the lab's sshd settings,
# its name, no resolver.
IDENTITY='
    set -e
    rm -f /etc/ssh/ssh_host_*
    ssh-keygen -q -t ed25519 -N "" -C "host@$NAME" -f /etc/ssh/ssh_host_ed25519_key
    mkdir -p /root/.ssh && chmod 700 /root/.ssh
    [ -f /root/.ssh/id_ed25519 ] || ssh-keygen -q -t ed25519 -N "" -C "root@$NAME" -f /root/.ssh/id_ed25519
    mkdir -p /etc/ssh/sshd_config.d
    printf "HostKey /etc/ssh/ssh_host_ed25519_key\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n" \
      > /etc/ssh/sshd_config.d/00-mailrun-lab.conf
    echo "SSHD_OPTS=\"-E /var/log/sshd.log\"" > /etc/default/ssh
    echo "$NAME" > /etc/hostname
    : > /etc/resolv.conf'


# A machine: an overlay on its release's cached root file system
# (rootfs.sh), its identity (and the mail role) written before it boots,
# then systemd-nspawn boots it in its netns with systemd as PID 1. nspawn
# starts from a cgroup of its own in every hierarchy (on a machine whose
# PID 1 is not systemd, --keep-unit would otherwise put every machine's
# payload in one cgroup at the root of the tree).
up_machine() { # name
  local name=$1 d rel cache fs
  d=$(hostdir "$name")
  rel=$(cat "$d/machine")
  command -v systemd-nspawn >/dev/null ||
    die "systemd-nspawn is missing (run scripts/setup.sh: apt-get install systemd-container debootstrap)"
  cache=$(bash "$(dirname "$0")/rootfs.sh" path "$rel" 7>&- 8>&- 9>&-) || die "no root file system for $rel"
  fs=$d/fs
  mkdir -p "$d/upper" "$d/work" "$fs"
  mountpoint -q "$fs" ||
    mount -n -t overlay overlay -o "lowerdir=$cache,upperdir=$d/upper,workdir=$d/work" "$fs" ||
    die "cannot mount an overlay for $name on $cache (does this kernel have overlayfs?)"
  chroot "$fs" env NAME="$name" sh -c "$IDENTITY" 8>&- 9>&- || die "$name: cannot write its identity"
  od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$fs/etc/machine-id"
  echo >>"$fs/etc/machine-id"
  if [ -f "$d/dovecot" ]; then
    chroot "$fs" sh -c "set -e; $VMAIL" 8>&- 9>&- &&
      chroot "$fs" env NAME="$name" bash -c "$MAIL_MACHINE" 8>&- 9>&- || die "$name: cannot configure its mail server"
  fi
  setsid bash -c '
    for h in $3; do
      # Another machine'"'"'s teardown may remove the shared parent meanwhile.
      for try in 1 2 3; do
        mkdir -p "$h/mailrun-lab/$1" || continue
        for f in cpuset.cpus cpuset.mems; do
          [ -f "$h/$f" ] || continue
          [ -s "$h/mailrun-lab/$f" ] || cat "$h/$f" > "$h/mailrun-lab/$f"
          cat "$h/mailrun-lab/$f" > "$h/mailrun-lab/$1/$f"
        done
        echo $$ > "$h/mailrun-lab/$1/cgroup.procs" && break
      done
    done
    exec systemd-nspawn -q -D"$2" -M "$1" --register=no --keep-unit -b \
      --network-namespace-path="/run/netns/mr-$1" --console=passive --link-journal=no \
      --resolv-conf=off --timezone=off' sh "$name" "$fs" "$(cgroup_roots | tr '\n' ' ')" </dev/null >"$d/nspawn.log" 2>&1 8>&- 9>&- &
  echo $! >"$d/anchor.pid"
  # PID 1 of the machine: nspawn's descendant that is PID 1 of its own PID
  # namespace.
  local a=$! p=
  machine_pid1() {
    local q c
    for q in $(cat /proc/"$a"/task/*/children 2>/dev/null); do
      for c in $q $(cat /proc/"$q"/task/*/children 2>/dev/null); do
        if [ "$(awk '/^NSpid:/ {print $NF}' "/proc/$c/status" 2>/dev/null)" = 1 ]; then
          p=$c
          return 0
        fi
      done
    done
    return 1
  }
  wait_for machine_pid1 || die "machine $name did not start: $(tail -n 20 "$d/nspawn.log")"
  ours "$p" "$d" || die "machine $name: its PID 1 ($p) is not on its root: $(tail -n 20 "$d/nspawn.log")"
  echo "$p" >"$d/init.pid"
  # Booted far enough to take commands and logins.
  wait_for in_host "$name" sh -c 'systemctl is-active -q ssh.service' 2>/dev/null ||
    die "machine $name did not boot: $(tail -n 20 "$d/nspawn.log"; in_host "$name" systemctl --failed --no-pager 2>&1)"
  # And until its boot has finished (every unit started or failed).
  local state
  state=$(in_host "$name" timeout "$WAIT" systemctl is-system-running --wait 2>/dev/null) || true
  case $state in
    running) ;;
    degraded) echo "lab: $name booted with failed units: $(in_host "$name" systemctl --failed --no-legend --plain --no-pager 2>&1 | tr '\n' ' ')" >&2 ;;
    *) die "machine $name did not finish booting ($state): $(in_host "$name" systemctl list-jobs --no-pager 2>&1 | tail -n 5)" ;;
  esac
}

# The mail role on a machine, as each release's packages expect it (run
# chrooted in the machine's root before it boots): Postfix takes mail for
# every domain (virtual, delivered to Dovecot over LMTP), Dovecot with
# passwd-file users (/etc/dovecot/users: user@domain, home
# /var/vmail/DOMAIN/USER, uid 5000), Maildir, Sieve in LMTP, IMAP, POP3,
# ManageSieve; Dovecot 2.3 syntax on Debian 12, 2.4 on Debian 13.
MAIL_MACHINE='
set -e
sed -i -e "s/^!include auth-system.conf.ext/#!include auth-system.conf.ext/" /etc/dovecot/conf.d/10-auth.conf
case $(dovecot --version) in
  2.3.*)
    sed -i -e "s/^#!include auth-passwdfile.conf.ext/!include auth-passwdfile.conf.ext/" /etc/dovecot/conf.d/10-auth.conf
    cat > /etc/dovecot/local.conf <<CONF
listen = *
mail_location = maildir:~/Maildir
namespace inbox {
  separator = /
}
log_path = /var/log/dovecot.log
# Quota counted (limits per user from the userdb: mail.sh quota).
mail_plugins = \$mail_plugins quota
protocol lmtp {
  mail_plugins = \$mail_plugins sieve
}
plugin {
  quota = count:User quota
  quota_vsizes = yes
  # Extensions an admin of 2.3 may have enabled (gone in Pigeonhole 2.4).
  sieve_extensions = +notify +imapflags +vnd.dovecot.duplicate
}
CONF
    ;;
  *)
    cat > /etc/dovecot/local.conf <<CONF
listen = *
mail_driver = maildir
mail_path = ~/Maildir
mail_home =
mail_inbox_path =
namespace inbox {
  separator = /
}
passdb passwd-file {
  passwd_file_path = /etc/dovecot/users
}
userdb passwd-file {
  passwd_file_path = /etc/dovecot/users
}
log_path = /var/log/dovecot.log
# Quota counted (limits per user from the userdb: mail.sh quota).
mail_plugins {
  quota = yes
}
quota "User quota" {
  driver = count
}
protocol lmtp {
  # Virtual users are user@domain (Debian strips the domain by default).
  auth_username_format = %{user | lower}
  mail_plugins {
    sieve = yes
  }
}
sieve_script personal {
  driver = file
  path = ~/sieve
  active_path = ~/.dovecot.sieve
}
CONF
    ;;
esac
# The same in both: LMTP for Postfix, inside its chroot.
cat >> /etc/dovecot/local.conf <<CONF
service lmtp {
  unix_listener /var/spool/postfix/private/dovecot-lmtp {
    mode = 0600
    user = postfix
    group = postfix
  }
}
CONF
# Postfix: every domain but localhost and elsewhere.example is a virtual
# mailbox domain (mail to elsewhere.example goes out by SMTP: with no DNS in
# the lab it stays deferred, as outbound mail may on a real server).
echo "$NAME.lab" > /etc/mailname
printf "!/^(localhost|elsewhere[.]example)\$/ OK\n" > /etc/postfix/virtual_domains
postconf -e "myhostname = $NAME.lab" "mydestination = localhost" "inet_interfaces = all" \
  "inet_protocols = ipv4" "mynetworks = 127.0.0.0/8" \
  "virtual_mailbox_domains = regexp:/etc/postfix/virtual_domains" \
  "virtual_transport = lmtp:unix:private/dovecot-lmtp" \
  "message_size_limit = 104857600" "mailbox_size_limit = 0" \
  "smtpd_banner = \$myhostname ESMTP" "maillog_file = /var/log/postfix.log"
# Made before boot: Dovecot binds its LMTP socket in there.
mkdir -p /var/spool/postfix/private
chown postfix:root /var/spool/postfix/private 2>/dev/null || true
chmod 700 /var/spool/postfix/private
'

# --password / --user / --admin / --root-login on a host that is up (sshd
# not necessarily running).
configure_host() { # name password root_login admins users...
  local n=$1 pw=$2 rl=$3 admins=$4
  shift 4
  if [ -n "$rl" ]; then
    # Debian's sshd_config has "#PermitRootLogin prohibit-password": the
    # admin's line goes there; the lab's drop-in no longer sets it.
    in_host "$n" env RL="$rl" sh -c '
      set -e
      sed -i "/^PermitRootLogin /d" /etc/ssh/sshd_config.d/00-mailrun-lab.conf
      sed -i "/^PermitRootLogin /d" /etc/ssh/sshd_config
      if grep -q "^#PermitRootLogin" /etc/ssh/sshd_config; then
        sed -i "0,/^#PermitRootLogin.*/s//&\nPermitRootLogin $RL/" /etc/ssh/sshd_config
      else
        echo "PermitRootLogin $RL" >> /etc/ssh/sshd_config
      fi'
  fi
  local a
  for a in $admins; do
    in_host "$n" env U="$a" sh -c '
      set -e
      id "$U" >/dev/null 2>&1 || useradd -m -d "/home/$U" -s /bin/bash "$U"
      mkdir -p "/home/$U/.ssh"
      cat > "/home/$U/.ssh/authorized_keys"
      chmod 700 "/home/$U/.ssh" && chmod 600 "/home/$U/.ssh/authorized_keys"
      chown -R "$U:" "/home/$U/.ssh"
      mkdir -p /etc/sudoers.d
      echo "$U ALL=(ALL) NOPASSWD: ALL" > "/etc/sudoers.d/mailrun-lab-$U"
      chmod 440 "/etc/sudoers.d/mailrun-lab-$U"' <"$LAB_DIR/control/id_ed25519.pub"
  done
  if [ -n "$pw" ]; then
    # sshd takes the first value it reads: this file sorts first.
    in_host "$n" env PW="$pw" sh -c '
      set -e
      printf "root:%s\n" "$PW" | chpasswd
      printf "PermitRootLogin yes\nPasswordAuthentication yes\n" > /etc/ssh/sshd_config.d/00-a-mailrun-lab-pw.conf'
  fi
  local u
  for u in "$@"; do
    in_host "$n" env U="${u%%:*}" PW="${u#*:}" sh -c '
      set -e
      id "$U" >/dev/null 2>&1 || useradd -m -d "/home/$U" -s /bin/bash "$U"
      printf "%s:%s\n" "$U" "$PW" | chpasswd
      mkdir -p "/home/$U/.ssh"
      cat > "/home/$U/.ssh/authorized_keys"
      chmod 700 "/home/$U/.ssh" && chmod 600 "/home/$U/.ssh/authorized_keys"
      chown -R "$U:" "/home/$U/.ssh"
      mkdir -p /etc/sudoers.d
      echo "$U ALL=(ALL) ALL" > "/etc/sudoers.d/mailrun-lab-$U"
      chmod 440 "/etc/sudoers.d/mailrun-lab-$U"' <"$LAB_DIR/control/id_ed25519.pub"
  done
}

# The mail store's owner (vmail, uid 5000) and an empty users file, on a
# namespace host and on a machine alike.
VMAIL='getent group vmail >/dev/null || groupadd -g 5000 vmail
id vmail >/dev/null 2>&1 || useradd -u 5000 -g 5000 -d /var/vmail -s /usr/sbin/nologin vmail
mkdir -p /var/vmail && chown vmail:vmail /var/vmail
touch /etc/dovecot/users && chown root:dovecot /etc/dovecot/users && chmod 640 /etc/dovecot/users'

# Dovecot as on a Debian mail server: passwd-file users (/etc/dovecot/users,
# empty at first), Maildir under /var/vmail (uid 5000), Sieve, IMAP, LMTP,
# ManageSieve; logs in /var/log/dovecot.log. Started with its stdio detached.
setup_dovecot() { # name
  if is_machine "$1"; then
    # Configured before boot (MAIL_MACHINE); systemd starts both.
    wait_for in_host "$1" sh -c 'systemctl is-active -q dovecot.service postfix.service && test -S /run/dovecot/auth-userdb &&
      ss -ltnH "sport = :25" | grep -q . && ss -ltnH "sport = :143" | grep -q .' ||
      die "dovecot or postfix did not start on $1: $(in_host "$1" sh -c 'systemctl --failed --no-pager; tail -n 5 /var/log/dovecot.log /var/log/postfix.log' 2>&1)"
    return 0
  fi
  [ -x /usr/sbin/dovecot ] || die "dovecot is not installed (run scripts/setup.sh)"
  in_host "$1" sh -c "set -e; $VMAIL"
  in_host "$1" sh -c '
    set -e
    sed -i -e "s/^!include auth-system.conf.ext/#!include auth-system.conf.ext/" \
           -e "s/^#!include auth-passwdfile.conf.ext/!include auth-passwdfile.conf.ext/" /etc/dovecot/conf.d/10-auth.conf
    cat > /etc/dovecot/local.conf <<CONF
listen = *
mail_location = maildir:~/Maildir
namespace inbox {
  separator = /
}
log_path = /var/log/dovecot.log
protocol lmtp {
  mail_plugins = \$mail_plugins sieve
}
CONF
    if [ -s /run/dovecot/master.pid ] && kill -0 "$(cat /run/dovecot/master.pid)" 2>/dev/null; then exit 0; fi
    /usr/sbin/dovecot </dev/null >/dev/null 2>&1'
  wait_for in_host "$1" test -S /run/dovecot/auth-userdb ||
    die "dovecot did not start on $1: $(in_host "$1" tail -5 /var/log/dovecot.log 2>&1)"
}

# Runs "FN NAME" for every name at once (errexit on in each); dies with
# MESSAGE if any failed. Never call it from an if/&&/|| context.
each_parallel() { # message fn names...
  local msg=$1 fn=$2 n pids=() rc=0
  shift 2
  for n in "$@"; do
    "$fn" "$n" &
    pids+=($!)
  done
  for n in "${pids[@]}"; do wait "$n" || rc=1; done
  [ $rc -eq 0 ] || die "$msg"
}

cmd_up() {
  local password="" users=() mesh=1 names=() dovecot=0 admins="" root_login="" machine="" n u
  while [ $# -gt 0 ]; do
    case $1 in
      --dovecot) dovecot=1; shift ;;
      --machine)
        [ $# -ge 2 ] && [[ $2 =~ ^(bookworm|trixie|12|13)$ ]] || die "--machine wants bookworm or trixie (12 or 13)"
        case $2 in 12) machine=bookworm ;; 13) machine=trixie ;; *) machine=$2 ;; esac
        shift 2 ;;
      --admin)
        [ $# -ge 2 ] && [[ $2 =~ ^[a-z_][a-z0-9_-]{0,30}$ ]] || die "--admin wants a user name"
        admins="$admins $2"; shift 2 ;;
      --root-login)
        [ $# -ge 2 ] && [[ $2 =~ ^(yes|no|prohibit-password|forced-commands-only)$ ]] ||
          die "--root-login wants yes, no, prohibit-password or forced-commands-only"
        root_login=$2; shift 2 ;;
      --password) [ $# -ge 2 ] || die "--password needs a value"; password=$2; shift 2 ;;
      --user)
        [ $# -ge 2 ] || die "--user needs NAME:PASSWORD"
        [[ $2 =~ ^[a-z_][a-z0-9_-]{0,30}:.+$ ]] || die "--user wants NAME:PASSWORD, got '$2'"
        users+=("$2"); shift 2 ;;
      --no-mesh) mesh=0; shift ;;
      --*) die "unknown option $1" ;;
      *)
        [[ $1 =~ ^[A-Za-z0-9][A-Za-z0-9-]{0,39}$ ]] || die "bad host name '$1' (letters, digits, '-'; at most 40)"
        names+=("$1"); shift ;;
    esac
  done
  [ ${#names[@]} -gt 0 ] || die "up: name at least one host"
  lab_lock

  # The control side, once per LAB_DIR.
  local ctl=$LAB_DIR/home/.ssh
  mkdir -p "$LAB_DIR/control" "$ctl" && chmod 700 "$LAB_DIR/control" "$ctl"
  # A lab dir from before control/ existed: its home key is the control key.
  if [ ! -f "$LAB_DIR/control/id_ed25519" ] && [ -f "$ctl/id_ed25519" ] && [ -f "$ctl/id_ed25519.pub" ]; then
    cp "$ctl/id_ed25519" "$ctl/id_ed25519.pub" "$LAB_DIR/control/"
  fi
  [ -f "$LAB_DIR/control/id_ed25519" ] ||
    ssh-keygen -q -t ed25519 -N '' -C mailrun-lab-control -f "$LAB_DIR/control/id_ed25519"
  # The control HOME always holds the control key.
  cp -f "$LAB_DIR/control/id_ed25519" "$LAB_DIR/control/id_ed25519.pub" "$ctl/"
  if [ -n "${LAB_OWNER:-}" ]; then
    [ -d "/proc/$LAB_OWNER" ] || die "LAB_OWNER $LAB_OWNER is not a running process"
    echo "$LAB_OWNER $(sed 's/^.*) //' "/proc/$LAB_OWNER/stat" | cut -d' ' -f20)" >"$LAB_DIR/owner"
  fi

  # Addresses and the bridge under the machine-wide lock; the rest outside.
  lock
  gc_locked
  ensure_bridge
  for n in "${names[@]}"; do
    local d
    d=$(hostdir "$n")
    mkdir -p "$d"
    if [ -n "$machine" ]; then echo "$machine" >"$d/machine"; fi
    # The mail role of a machine is written before it boots.
    if [ $dovecot -eq 1 ]; then touch "$d/dovecot"; fi
    if [ -s "$d/octet" ] && grep -qxF "$LAB_DIR $n" "$GLOBAL/alloc/$(cat "$d/octet")" 2>/dev/null; then continue; fi
    alloc_octet "$n" >"$d/octet"
  done
  unlock

  each_parallel "up: a host did not come up (down cleans up)" up_host "${names[@]}"
  for n in "${names[@]}"; do
    local d
    d=$(hostdir "$n")
    if [ $mesh -eq 1 ]; then rm -f "$d/nomesh"; else touch "$d/nomesh"; fi
    [ $dovecot -eq 0 ] || touch "$d/dovecot"
  done
  _configure() { configure_host "$1" "$password" "$root_login" "$admins" ${users[@]+"${users[@]}"}; }
  each_parallel "up: configuring a host failed" _configure "${names[@]}"

  # Trust and names across every host of this lab.
  local all=() hostsfile="$LAB_DIR/hosts" kh="$LAB_DIR/known_hosts.lab" keys="$LAB_DIR/rootkeys.lab" d
  for d in "$LAB_DIR"/hosts.d/*/; do
    n=$(basename "$d")
    alive "$n" && all+=("$n")
  done
  : >"$hostsfile.tmp"
  : >"$kh"
  : >"$keys"
  for n in "${all[@]}"; do
    local a
    a=$(addr_of "$n")
    echo "$n $a" >>"$hostsfile.tmp"
    echo "$n,$a $(in_host "$n" cat /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f1-2)" >>"$kh"
    if [ ! -f "$(hostdir "$n")/nomesh" ]; then in_host "$n" cat /root/.ssh/id_ed25519.pub >>"$keys"; fi
  done
  mv "$hostsfile.tmp" "$hostsfile"
  # The control's known_hosts: every lab host by name and address (entries
  # of others, e.g. learnt by a test, stay).
  touch "$ctl/known_hosts"
  local tmp
  tmp=$(mktemp "$ctl/known_hosts.XXXXXX")
  awk 'NR==FNR { split($1, h, ","); for (i in h) drop[h[i]] = 1; next }
       { split($1, h, ","); for (i in h) if (h[i] in drop) next; print }' "$kh" "$ctl/known_hosts" >"$tmp"
  cat "$kh" >>"$tmp"
  mv "$tmp" "$ctl/known_hosts"
  local named=" ${names[*]} "
  _finish() {
    local n=$1 d
    d=$(hostdir "$n")
    if [ -f "$d/nomesh" ]; then
      in_host "$n" sh -c 'cat > /root/.ssh/authorized_keys' <"$LAB_DIR/control/id_ed25519.pub"
    else
      cat "$LAB_DIR/control/id_ed25519.pub" "$keys" | in_host "$n" sh -c 'cat > /root/.ssh/authorized_keys'
      in_host "$n" sh -c 'cat > /root/.ssh/known_hosts' <"$kh"
    fi
    in_host "$n" chmod 600 /root/.ssh/authorized_keys
    awk '{print $2, $1}' "$hostsfile" |
      in_host "$n" env NAME="$n" sh -c '{ printf "127.0.0.1 localhost\n127.0.1.1 %s\n" "$NAME"; cat; } > /etc/hosts'
    if [ -n "$password$root_login" ] && [[ $named == *" $n "* ]] && sshd_running "$n"; then
      # A host that was up already: sshd re-reads its settings on HUP.
      in_host "$n" sh -c 'kill -HUP "$(cat /run/sshd.pid)"'
    fi
    start_sshd "$n"
    if [ -f "$d/dovecot" ]; then setup_dovecot "$n"; fi
  }
  each_parallel "up: starting the daemons failed" _finish "${all[@]}"
  cat "$hostsfile"
}

cmd_down() {
  local d n o
  lab_lock
  for d in "$LAB_DIR"/hosts.d/*/; do
    [ -d "$d" ] || continue
    d=${d%/}
    n=${d##*/}
    o=$(cat "$d/octet" 2>/dev/null || true)
    kill_host "$d" "$n" "$o"
  done
  # Every allocation of this LAB_DIR (also one whose octet file an
  # interrupted up never wrote), then the bridge if no lab is left.
  local f dir
  lock
  for f in "$GLOBAL"/alloc/*; do
    [ -f "$f" ] || continue
    read -r dir _ <"$f" || true
    if [ "$dir" = "$LAB_DIR" ]; then rm -f "$f"; fi
  done
  maybe_drop_bridge
  unlock
  rm -rf "${LAB_DIR:?}/hosts.d"
  rm -f "$LAB_DIR/hosts" "$LAB_DIR/known_hosts.lab" "$LAB_DIR/rootkeys.lab" "$LAB_DIR/owner"
}

one_name() { [ $# -eq 1 ] || die "$cmd: name one host"; octet_of "$1" >/dev/null; }

case $cmd in
  up) cmd_up "$@" ;;
  down) cmd_down ;;
  exec)
    [ $# -ge 2 ] || die "exec: NAME CMD [ARG...]"
    n=$1
    shift
    in_host "$n" "$@"
    ;;
  sshd-stop) one_name "$@"; stop_sshd "$1" ;;
  sshd-start) one_name "$@"; start_sshd "$1" ;;
  sshd-restart) one_name "$@"; stop_sshd "$1"; start_sshd "$1" ;;
  rekey)
    one_name "$@"
    in_host "$1" env NAME="$1" sh -c 'rm -f /etc/ssh/ssh_host_ed25519_key* && ssh-keygen -q -t ed25519 -N "" -C "host@$NAME" -f /etc/ssh/ssh_host_ed25519_key'
    stop_sshd "$1"
    start_sshd "$1"
    ;;
  forget)
    one_name "$@"
    a=$(addr_of "$1")
    kh=$LAB_DIR/home/.ssh/known_hosts
    tmp=$(mktemp "$kh.XXXXXX")
    awk -v n="$1" -v a="$a" '{ split($1, h, ","); for (i in h) if (h[i] == n || h[i] == a) next; print }' "$kh" >"$tmp"
    mv "$tmp" "$kh"
    ;;
  addr) one_name "$@"; addr_of "$1" ;;
  list) cat "$LAB_DIR/hosts" 2>/dev/null || true ;;
  gc)
    lock
    gc_locked
    maybe_drop_bridge
    unlock
    ;;
  *) usage ;;
esac
