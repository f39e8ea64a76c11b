#!/usr/bin/env bash
# Root file systems for the lab's machines (lab.sh up --machine RELEASE): one
# per Debian release, made with debootstrap from the archive apt already
# uses, cached under $LAB_ROOTFS (default /var/tmp/mailrun-rootfs) and made
# again only when missing or when its package list (or this script) changes.
# Hosts boot from an overlay on the cache, so the cache itself never changes.
#
#   rootfs.sh path RELEASE    # the cache's directory, made first if needed
#   rootfs.sh list            # the releases and their packages
#   rootfs.sh clean           # every cached root file system removed
#
# RELEASE: bookworm (Debian 12: Dovecot 2.3, Postfix 3.7) or trixie (Debian
# 13: Dovecot 2.4, Postfix 3.10); 12 and 13 are taken for them. A build
# prints its time on stderr ("rootfs: made trixie in 71 s"): a one-time cost.
set -euo pipefail

die() { echo "rootfs: $*" >&2; exit 1; }

CACHE=${LAB_ROOTFS:-/var/tmp/mailrun-rootfs}
# What every machine has: systemd as PID 1, sshd, a mail server (Dovecot
# with IMAP, POP3, LMTP, Sieve, ManageSieve; Postfix), sudo for admins,
# python3 for the plugin modules.
PACKAGES="systemd systemd-sysv dbus libpam-systemd openssh-server openssh-client iproute2
procps sudo less dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd dovecot-sieve
dovecot-managesieved postfix python3"

release_of() {
  case $1 in
    12 | bookworm) echo bookworm ;;
    13 | trixie) echo trixie ;;
    *) die "unknown release '$1' (bookworm or trixie; 12 or 13)" ;;
  esac
}

# The archive apt uses (the machine's sources), else Debian's own.
mirror() {
  local m
  m=$(grep -rhoE '^(URIs:|deb) +https?://[^ ]*debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null |
    grep -v security | head -n1 | awk '{print $2}') || true
  echo "${m:-http://deb.debian.org/debian}"
}

key_of() { # release
  { echo "$1"; echo $PACKAGES; sed -n '/^build() {/,/^}/p' "$0"; } | sha256sum | cut -c1-12
}

build() { # release dir
  local rel=$1 dir=$2 start=$SECONDS
  command -v debootstrap >/dev/null || die "debootstrap is missing (run scripts/setup.sh: apt-get install debootstrap systemd-container)"
  [ -f "/usr/share/debootstrap/scripts/$rel" ] ||
    die "this debootstrap does not know $rel (apt-get install a newer debootstrap)"
  rm -rf "$dir"
  # shellcheck disable=SC2086
  debootstrap --variant=minbase --include="$(echo $PACKAGES | tr ' ' ,)" "$rel" "$dir" "$(mirror)" \
    >"$dir.log" 2>&1 || die "debootstrap $rel failed (log: $dir.log): $(tail -n 5 "$dir.log")"
  # Nothing of this machine's stays in the copy: resolver, host keys, ids.
  : >"$dir/etc/resolv.conf"
  rm -f "$dir"/etc/ssh/ssh_host_* "$dir/var/lib/dbus/machine-id"
  : >"$dir/etc/machine-id"
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  # Units a container has no use for, or that wait on what it lacks.
  for u in systemd-timesyncd.service systemd-networkd-wait-online.service apt-daily.timer \
    apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer dpkg-db-backup.timer sshd-keygen.service; do
    ln -sf /dev/null "$dir/etc/systemd/system/$u"
  done
  rm -f "$dir.log"
  echo "rootfs: made $rel in $((SECONDS - start)) s ($(du -sh "$dir" | cut -f1))" >&2
}

cmd_path() {
  local rel key dir
  rel=$(release_of "${1:?rootfs.sh path RELEASE}")
  key=$(key_of "$rel")
  dir=$CACHE/$rel-$key
  mkdir -p "$CACHE"
  # One build at a time per release; a second caller waits and reuses it.
  exec 7>"$CACHE/.$rel.lock"
  flock 7
  if [ ! -f "$dir/.complete" ]; then
    build "$rel" "$dir.tmp"
    touch "$dir.tmp/.complete"
    mv "$dir.tmp" "$dir"
    # Older caches of this release (another package list) go, but not one
    # a running machine's overlay still stands on.
    local old
    for old in "$CACHE/$rel"-*; do
      [ "$old" = "$dir" ] || [ "${old%.tmp}" != "$old" ] && continue
      grep -qF "lowerdir=$old," /proc/mounts && continue
      rm -rf "$old"
    done
  fi
  exec 7>&-
  echo "$dir"
}

case ${1:-} in
  path) shift; cmd_path "$@" ;;
  list) for r in bookworm trixie; do echo "$r ($(key_of $r)): $PACKAGES" | tr '\n' ' '; echo; done ;;
  clean) rm -rf "${CACHE:?}"/bookworm-* "${CACHE:?}"/trixie-* ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2 ;;
esac
