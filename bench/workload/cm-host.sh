#!/usr/bin/env bash
# The benchmark's workload as a plain shell script over OpenSSH's
# ControlMaster (bench/bench.sh): one master connection per host, every
# operation a multiplexed `ssh`, each as idempotent as site.yml's task.
#   cm-host.sh ADDR WORKLOAD_DIR HOME
set -eu
addr=$1 files=$2/files home=$3
o=(-o BatchMode=yes -o UserKnownHostsFile="$home/.ssh/known_hosts" -i "$home/.ssh/id_ed25519"
   -o ControlPath="$home/cm-%C")
ssh "${o[@]}" -o ControlMaster=yes -o ControlPersist=60 -fN root@"$addr"
trap 'ssh "${o[@]}" -O exit root@"$addr" 2>/dev/null || true' EXIT
r() { ssh "${o[@]}" root@"$addr" "$@"; }
# 4 commands
r 'test -e /srv/bench || mkdir -p /srv/bench'
r 'test -e /srv/bench/sshd_config || cp /etc/ssh/sshd_config /srv/bench/sshd_config'
r 'uname -r' >/dev/null
r 'test -e /srv/bench/stamp || date +%s > /srv/bench/stamp'
# a copy: one operation to compare checksum and mode, one to write if needed
put() { # src dest mode
  local want have
  want=$(sha256sum < "$1" | cut -d' ' -f1)
  have=$(r "sha256sum < $2 2>/dev/null | cut -d' ' -f1; stat -c %a $2 2>/dev/null" | tr '\n' ' ')
  if [ "$have" != "$want $3 " ]; then
    r "t=\$(mktemp $2.XXXXXX) && cat > \$t && chmod $3 \$t && mv -f \$t $2" < "$1"
  fi
}
put "$files/a.conf" /srv/bench/a.conf 640
put "$files/b.conf" /srv/bench/b.conf 600
put "$files/c.conf" /srv/bench/c.conf 644
# a line edit: one operation (the line is there, or replace the match, or append)
line() { # regexp line
  r "f=/srv/bench/sshd_config; grep -qxF '$2' \$f || { if grep -qE '$1' \$f; then sed -i -E 's/$1.*/$2/' \$f; else echo '$2' >> \$f; fi; }"
}
line '^#?PermitRootLogin ' 'PermitRootLogin prohibit-password'
line '^#?PasswordAuthentication ' 'PasswordAuthentication no'
put "$files/big.bin" /srv/bench/big.bin 644
