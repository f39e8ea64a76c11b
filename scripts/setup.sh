#!/usr/bin/env bash
# Installs what building and testing mailrun needs on a Debian machine (as root).
set -euo pipefail
need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
# libFuzzer (fuzz/, through libfuzzer-sys) is C++.
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
command -v git >/dev/null 2>&1 || need_apt+=(git)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
if ! command -v cargo >/dev/null 2>&1; then
  # Debian's toolchain may be older than mailrun's minimum (Rust 1.85).
  need_apt+=(cargo rustc)
fi
# The test lab: sshd (and Dovecot) hosts in network namespaces (tests/lab/lab.sh),
# and machines booted with systemd-nspawn from debootstrap's root file systems;
# python3 and openssl for the plugin modules in modules/.
for pkg_cmd in openssh-server:/usr/sbin/sshd openssh-client:/usr/bin/ssh iproute2:/sbin/ip \
               sudo:/usr/bin/sudo util-linux:/usr/bin/nsenter procps:/usr/bin/pkill \
               time:/usr/bin/time passwd:/usr/sbin/chpasswd openssl:/usr/bin/openssl \
               dovecot-core:/usr/sbin/dovecot dovecot-imapd:/usr/lib/dovecot/imap \
               dovecot-lmtpd:/usr/lib/dovecot/lmtp dovecot-sieve:/usr/bin/sievec \
               dovecot-managesieved:/usr/lib/dovecot/managesieve \
               debootstrap:/usr/sbin/debootstrap systemd-container:/usr/bin/systemd-nspawn; do
  [ -x "${pkg_cmd#*:}" ] || need_apt+=("${pkg_cmd%%:*}")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing ${need_apt[*]}; run as root so they can be installed" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # No daemon may start in the machine's own namespace during the install.
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=1
    # Removed again even when the install fails.
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
  if [ $made_policy -eq 1 ]; then
    rm -f /usr/sbin/policy-rc.d
    trap - EXIT
  fi
fi
cargo --version
