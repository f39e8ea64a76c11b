#!/usr/bin/env bash
# mailrun's test lab: real hosts on one machine, as root. Each host is a
# network namespace with its own address on the bridge mrlab0, its own PID,
# UTS, IPC and mount namespaces, a private /etc and /var (overlays over the
# machine's; also /usr, /opt, /srv, /home, /mnt), a private /root, /run and /tmp, its own ed25519 host key and
# OpenSSH's sshd. Hosts have no default route: they reach only the lab /24.
# (Design and pitfalls: ../shared/LAB-NOTES.md.)
#
#   LAB_DIR=/some/dir mrlab.sh up [--dovecot] [--password PW] [--user NAME:PW] [--no-mesh] NAME...
#   LAB_DIR=… mrlab.sh down                 # every host of this LAB_DIR
#   LAB_DIR=… mrlab.sh exec NAME CMD [ARG…] # run inside the host
#   LAB_DIR=… mrlab.sh sshd-stop|sshd-start|sshd-restart|rekey NAME
#   LAB_DIR=… mrlab.sh forget NAME          # drop NAME from the control known_hosts
#
# `up` writes $LAB_DIR/hosts ("NAME ADDR" lines) and a control side:
# $LAB_DIR/home/.ssh/{id_ed25519,id_ed25519.pub,known_hosts} (use it as HOME).
# Several LAB_DIRs may be up at once (concurrent tests): addresses are
# allocated under a machine-wide lock in /run/mailrun-lab. Host names must be
# unique across them. LAB_NET (default 10.213.0) is the /24 to use.
set -euo pipefail

: "${LAB_DIR:?LAB_DIR must name the state directory of the lab}"
NET=${LAB_NET:-10.213.0}
BR=mrlab0
GLOBAL=/run/mailrun-lab
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$LAB_DIR" "$GLOBAL/alloc"
LAB_DIR=$(cd "$LAB_DIR" && pwd)

die() { echo "mrlab: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "the lab needs root (network and mount namespaces)"
for c in ip unshare nsenter setsid flock ssh-keygen /usr/sbin/sshd; do
  command -v "$c" >/dev/null || die "missing $c (run scripts/setup.sh)"
done

lock() { exec 9>"$GLOBAL/lock"; flock 9; }
hostdir() { echo "$LAB_DIR/hosts.d/$1"; }
octet_of() { cat "$(hostdir "$1")/octet"; }
addr_of() { echo "$NET.$(octet_of "$1")"; }
mac_of() { printf '02:00:0a:d5:00:%02x' "$1"; }

# The PID (in our namespace) of the host's PID 1 (the child of unshare).
init_pid() {
  local a
  a=$(cat "$(hostdir "$1")/anchor.pid" 2>/dev/null) || return 1
  [ -d "/proc/$a" ] || return 1
  cat "/proc/$a/task/$a/children" 2>/dev/null | awk '{print $1}'
}
alive() { local p; p=$(init_pid "$1" 2>/dev/null) && [ -n "$p" ]; }

# Runs a command inside host NAME (all its namespaces).
in_host() {
  local name=$1; shift
  local p
  p=$(init_pid "$name") && [ -n "$p" ] || die "host $name is not up"
  nsenter -t "$p" -m -u -i -n -p -- /bin/sh -c 'cd / && exec "$@"' sh "$@" 9>&-
}

ensure_bridge() {
  if ! ip link show "$BR" >/dev/null 2>&1; then
    # The lab /24 must not be routed anywhere else already.
    if ip -4 route show | grep -v "dev $BR" | grep -v 'unreachable' | grep -q "^$NET\."; then
      die "$NET.0/24 is already routed on this machine; set LAB_NET to a free /24"
    fi
    ip link add "$BR" type bridge
    ip link set "$BR" address "$(mac_of 1)"
    ip addr add "$NET.1/24" dev "$BR"
    ip link set "$BR" up
  fi
  # Never let lab addresses fall through to a default route.
  ip route add unreachable "$NET.0/24" metric 4242 2>/dev/null || true
}

alloc_octet() { # name -> octet
  local o
  for o in $(seq 2 254); do
    if [ ! -e "$GLOBAL/alloc/$o" ]; then
      echo "$LAB_DIR $1" > "$GLOBAL/alloc/$o"
      echo "$o"
      return 0
    fi
  done
  die "no free address left in $NET.0/24"
}

# Directories a host sees as the machine's but writes privately (overlays);
# /root, /run and /tmp are its own empty directories.
OVERLAYS="etc var usr opt srv home mnt"

# The host's PID 1: private mounts, then a reaper loop.
init_script() { # statedir name
  cat <<INIT
set -e
OVERLAYS="$OVERLAYS"
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

start_sshd() { # name
  in_host "$1" sh -c '/usr/sbin/sshd -E /var/log/sshd.log </dev/null >/dev/null 2>&1'
  local i
  for i in $(seq 1 100); do
    in_host "$1" sh -c '[ -s /run/sshd.pid ] && kill -0 "$(cat /run/sshd.pid)"' 2>/dev/null && return 0
    sleep 0.05
  done
  die "sshd did not start on $1: $(in_host "$1" tail -5 /var/log/sshd.log 2>&1)"
}

stop_sshd() { # name: the listener and every session
  in_host "$1" sh -c 'pkill -x sshd; for i in $(seq 1 100); do pgrep -x sshd >/dev/null || exit 0; sleep 0.05; done; pkill -KILL -x sshd; rm -f /run/sshd.pid' || true
}

up_host() { # name
  local name=$1 d o addr
  d=$(hostdir "$name")
  if alive "$name"; then return 0; fi
  [ ${#name} -le 40 ] || die "host name too long: $name"
  mkdir -p "$d"
  if [ -f "$d/octet" ]; then o=$(cat "$d/octet"); else o=$(alloc_octet "$name"); echo "$o" > "$d/octet"; fi
  addr="$NET.$o"
  local ov
  for ov in $OVERLAYS; do rm -rf "$d/$ov.work"; done
  mkdir -p "$d"/{root,run,tmp}
  ip netns del "mr-$name" 2>/dev/null || true
  ip link del "mrl$o" 2>/dev/null || true
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
  rm -f "$d/ready"
  init_script "$d" "$name" > "$d/init.sh"
  setsid ip netns exec "mr-$name" unshare --pid --fork --kill-child --uts --ipc --mount \
    --propagation slave --mount-proc bash "$d/init.sh" </dev/null >"$d/init.log" 2>&1 9>&- &
  echo $! > "$d/anchor.pid"
  local i
  for i in $(seq 1 200); do
    [ -s "$d/ready" ] && break
    sleep 0.05
  done
  [ -s "$d/ready" ] || die "host $name did not come up: $(cat "$d/init.log")"
  # Its own identity: host key, root key, sshd settings, resolver, hostname.
  in_host "$name" sh -c "
    rm -f /etc/ssh/ssh_host_*
    ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
    mkdir -p /root/.ssh && chmod 700 /root/.ssh
    [ -f /root/.ssh/id_ed25519 ] || ssh-keygen -q -t ed25519 -N '' -C root@$name -f /root/.ssh/id_ed25519
    mkdir -p /etc/ssh/sshd_config.d
    printf 'HostKey /etc/ssh/ssh_host_ed25519_key\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n' > /etc/ssh/sshd_config.d/00-mailrun-lab.conf
    echo 'SSHD_OPTS=\"-E /var/log/sshd.log\"' > /etc/default/ssh
    echo $name > /etc/hostname
    : > /etc/resolv.conf
  "
}

cmd_up() {
  local password="" users=() mesh=1 names=() dovecot=0
  while [ $# -gt 0 ]; do
    case $1 in
      --dovecot) dovecot=1; shift ;;
      --password) password=$2; shift 2 ;;
      --user) users+=("$2"); shift 2 ;;
      --no-mesh) mesh=0; shift ;;
      --*) die "unknown option $1" ;;
      *) names+=("$1"); shift ;;
    esac
  done
  [ ${#names[@]} -gt 0 ] || die "up: name at least one host"
  lock
  ensure_bridge
  local ctl=$LAB_DIR/home/.ssh
  mkdir -p "$ctl" && chmod 700 "$ctl"
  [ -f "$ctl/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C mailrun-lab-control -f "$ctl/id_ed25519"
  local n
  for n in "${names[@]}"; do up_host "$n"; done
  flock -u 9
  for n in "${names[@]}"; do
    if [ -n "$password" ]; then
      in_host "$n" sh -c "echo 'root:$password' | chpasswd && printf 'PermitRootLogin yes\nPasswordAuthentication yes\n' > /etc/ssh/sshd_config.d/00-mailrun-lab-pw.conf"
      # Earlier files win in sshd: the password file must come first.
      in_host "$n" sh -c "cd /etc/ssh/sshd_config.d && mv 00-mailrun-lab-pw.conf 00-a-mailrun-lab-pw.conf"
    fi
    local u
    for u in ${users[@]+"${users[@]}"}; do
      local uname=${u%%:*} upw=${u#*:}
      in_host "$n" sh -c "
        id $uname >/dev/null 2>&1 || useradd -m -d /var/home/$uname -s /bin/bash $uname
        echo '$uname:$upw' | chpasswd
        mkdir -p /var/home/$uname/.ssh
        cp /dev/stdin /var/home/$uname/.ssh/authorized_keys
        chown -R $uname: /var/home/$uname/.ssh && chmod 700 /var/home/$uname/.ssh
        mkdir -p /etc/sudoers.d && echo '$uname ALL=(ALL) ALL' > /etc/sudoers.d/mailrun-lab-$uname
        chmod 440 /etc/sudoers.d/mailrun-lab-$uname
      " < "$ctl/id_ed25519.pub"
    done
  done
  # Trust and names across every host of this lab.
  local all=() hostsfile="$LAB_DIR/hosts" kh="$LAB_DIR/known_hosts.lab" keys="$LAB_DIR/rootkeys.lab"
  for d in "$LAB_DIR"/hosts.d/*/; do
    n=$(basename "$d")
    alive "$n" && all+=("$n")
  done
  : > "$hostsfile"; : > "$kh"; : > "$keys"
  for n in "${all[@]}"; do
    local a; a=$(addr_of "$n")
    echo "$n $a" >> "$hostsfile"
    echo "$n,$a $(in_host "$n" cat /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f1-2)" >> "$kh"
    in_host "$n" cat /root/.ssh/id_ed25519.pub >> "$keys"
  done
  # The control's known_hosts: every lab host by name and address (kept
  # entries of others, e.g. learnt by a test, stay).
  touch "$ctl/known_hosts"
  local tmp; tmp=$(mktemp)
  awk 'NR==FNR { split($1, h, ","); for (i in h) drop[h[i]] = 1; next }
       { split($1, h, ","); for (i in h) if (h[i] in drop) next; print }' "$kh" "$ctl/known_hosts" > "$tmp"
  cat "$kh" >> "$tmp"
  mv "$tmp" "$ctl/known_hosts"
  for n in "${all[@]}"; do
    {
      cat "$ctl/id_ed25519.pub"
      [ $mesh -eq 1 ] && cat "$keys"
    } | in_host "$n" sh -c 'cat > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys'
    if [ $mesh -eq 1 ]; then
      in_host "$n" sh -c 'cat > /root/.ssh/known_hosts' < "$kh"
    fi
    awk '{print $2, $1}' "$hostsfile" | in_host "$n" sh -c "{ printf '127.0.0.1 localhost\n127.0.1.1 $n\n'; cat; } > /etc/hosts"
    in_host "$n" sh -c '[ -s /run/sshd.pid ] && kill -0 "$(cat /run/sshd.pid)" 2>/dev/null' || start_sshd "$n"
    [ $dovecot -eq 0 ] || setup_dovecot "$n"
  done
}

# Dovecot as on a Debian mail server: passwd-file users (/etc/dovecot/users,
# empty at first), Maildir under /var/vmail (uid 5000), Sieve, IMAP, LMTP,
# ManageSieve; logs in /var/log/dovecot.log. Started with its stdio detached.
setup_dovecot() { # name
  [ -x /usr/sbin/dovecot ] || die "dovecot is not installed (run scripts/setup.sh)"
  in_host "$1" sh -c '
    set -e
    getent group vmail >/dev/null || groupadd -g 5000 vmail
    id vmail >/dev/null 2>&1 || useradd -u 5000 -g 5000 -d /var/vmail -s /usr/sbin/nologin vmail
    mkdir -p /var/vmail && chown vmail:vmail /var/vmail
    touch /etc/dovecot/users && chown root:dovecot /etc/dovecot/users && chmod 640 /etc/dovecot/users
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
    /usr/sbin/dovecot </dev/null >/dev/null 2>&1
    for i in $(seq 1 100); do [ -S /run/dovecot/auth-userdb ] && exit 0; sleep 0.05; done
    echo "dovecot did not start: $(tail -5 /var/log/dovecot.log)" >&2; exit 1
  '
}

cmd_down() {
  lock
  local d n o a
  for d in "$LAB_DIR"/hosts.d/*/; do
    [ -d "$d" ] || continue
    d=${d%/}
    n=$(basename "$d")
    a=$(cat "$d/anchor.pid" 2>/dev/null || true)
    # Only our own anchor (its command line names its init script).
    if [ -n "$a" ] && grep -qa "$d/init.sh" "/proc/$a/cmdline" 2>/dev/null; then
      kill -KILL "$a" 2>/dev/null || true
      # Gone, or a zombie (whoever reaps it is not us).
      for _ in $(seq 1 100); do
        st=$(awk '{print $3}' "/proc/$a/stat" 2>/dev/null || echo gone)
        [ "$st" = gone ] || [ "$st" = Z ] && break
        sleep 0.05
      done
    fi
    ip netns del "mr-$n" 2>/dev/null || true
    if [ -f "$d/octet" ]; then
      o=$(cat "$d/octet")
      ip link del "mrl$o" 2>/dev/null || true
      if grep -qx "$LAB_DIR $n" "$GLOBAL/alloc/$o" 2>/dev/null; then rm -f "$GLOBAL/alloc/$o"; fi
    fi
    rm -rf "$d"
  done
  rm -f "$LAB_DIR/hosts"
  if [ -z "$(ls -A "$GLOBAL/alloc" 2>/dev/null)" ]; then
    ip link del "$BR" 2>/dev/null || true
    ip route del unreachable "$NET.0/24" metric 4242 2>/dev/null || true
  fi
}

cmd=${1:-}
shift || true
case $cmd in
  up) cmd_up "$@" ;;
  down) cmd_down ;;
  exec) n=$1; shift; in_host "$n" "$@" ;;
  sshd-stop) stop_sshd "$1" ;;
  sshd-start) start_sshd "$1" ;;
  sshd-restart) stop_sshd "$1"; start_sshd "$1" ;;
  rekey)
    in_host "$1" sh -c "rm -f /etc/ssh/ssh_host_ed25519_key* && ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key"
    stop_sshd "$1"; start_sshd "$1" ;;
  forget)
    a=$(addr_of "$1")
    kh=$LAB_DIR/home/.ssh/known_hosts
    awk -v n="$1" -v a="$a" '{ split($1, h, ","); for (i in h) if (h[i] == n || h[i] == a) next; print }' "$kh" > "$kh.tmp"
    mv "$kh.tmp" "$kh" ;;
  addr) addr_of "$1" ;;
  *) sed -n '2,20p' "$0" >&2; exit 2 ;;
esac
