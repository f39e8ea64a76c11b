#!/usr/bin/env bash
# mailrun's main job on its built-in two-server lab, from a fresh Debian
# machine, as root: sets up (packages, Rust), builds, brings up two real
# Dovecot servers "old" and "new" (lab machines: old Debian 12, new Debian
# 13, booted with systemd-nspawn, with systemd, Postfix and Dovecot 2.3 /
# 2.4; where the machine cannot run them, network namespaces with their
# own sshd and Dovecot; tests/lab/lab.sh), puts mail on old (users, nested and
# non-ASCII folders, flags, Sieve scripts), and runs playbooks/migrate.yml
# with live output: first the preparation and the initial copy, then (after
# more mail arrived on old) the switch, the delta and the verification.
# Then it shows the proof side by side. The lab stays up for a look around.
#
#   bash scripts/demo.sh        # the whole demo (a fresh lab each time)
#   bash scripts/demo.sh down   # tear the lab down
#
# LAB_DIR (default /tmp/mailrun-lab) holds the lab's state, its inventory
# ($LAB_DIR/inventory) and the control HOME ($LAB_DIR/home: the control key
# and known_hosts). mailrun logs in as "mailadm" (sudo), as on a real server.
set -euo pipefail
cd "$(dirname "$0")/.."
export LAB_DIR=${LAB_DIR:-/tmp/mailrun-lab}
lab() { bash tests/lab/lab.sh "$@"; }
mail() { bash tests/lab/mail.sh "$@"; }

if [ "${1:-}" = down ]; then
  lab down
  echo "lab down ($LAB_DIR)"
  exit 0
fi

bash scripts/setup.sh
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --locked --release
MAILRUN=$PWD/target/release/mailrun

say() { printf '\n\033[1m=== %s\033[0m\n' "$*"; }

lab down >/dev/null 2>&1 || true
opts=(--dovecot --no-mesh --admin mailadm --root-login no)
# Real machines when this machine can run them: old Debian 12 (Dovecot
# 2.3), new Debian 13 (Dovecot 2.4), systemd, Postfix. Else namespace hosts.
machines=0
if bash tests/lab/rootfs.sh path bookworm >/dev/null && bash tests/lab/rootfs.sh path trixie >/dev/null; then
  say "Bringing up the lab: old = Debian 12 machine, new = Debian 13 machine (systemd, Postfix, Dovecot 2.3 / 2.4), root login off"
  if lab up --machine bookworm "${opts[@]}" old && lab up --machine trixie "${opts[@]}" new; then
    machines=1
  else
    lab down >/dev/null 2>&1 || true
  fi
fi
if [ $machines -eq 0 ]; then
  say "This machine cannot run the lab machines (see above): falling back to namespace hosts (Dovecot $(dovecot --version 2>/dev/null | cut -d' ' -f1) on both, no systemd, no Postfix)"
  lab up "${opts[@]}" old new
fi
USERS=(alice@example.org bob@example.org carol@example.net)
mail users old "${USERS[@]}"
mail populate old "${USERS[@]}"
echo "old: ${#USERS[@]} users with mail; new: Dovecot with no users yet"

INV=$LAB_DIR/inventory
mkdir -p "$INV"
{
  while read -r name addr; do
    printf '[%s]\n%s ansible_host=%s ansible_user=mailadm\n\n' "$name" "$name" "$addr"
  done <"$LAB_DIR/hosts"
} >"$INV/hosts.ini"
rm -rf "$INV/group_vars" && cp -r inventory/group_vars "$INV/"
export HOME=$LAB_DIR/home

say "mailrun playbooks/migrate.yml -i $INV --yes --tags prepare,copy"
"$MAILRUN" playbooks/migrate.yml -i "$INV" --yes --tags prepare,copy

say "Mail keeps arriving on old after the copy"
if [ $machines -eq 1 ]; then
  mail smtp old alice@example.org "Arrived after the initial copy" >/dev/null
  mail smtp old carol@example.net "Also after the copy" >/dev/null
  echo "2 messages sent to old by SMTP (Postfix, then LMTP to Dovecot)"
else
  mail deliver old alice@example.org "Arrived after the initial copy"
  mail deliver old carol@example.net "Also after the copy"
  echo "2 messages delivered to old"
fi

say "mailrun playbooks/migrate.yml -i $INV --yes --skip-tags copy"
"$MAILRUN" playbooks/migrate.yml -i "$INV" --yes --skip-tags copy

say "The proof, side by side (tests/lab/mail.sh snapshot: folders, message GUIDs and flags, Sieve)"
printf '%-22s %14s %14s %s\n' user "old messages" "new messages" same
for u in "${USERS[@]}"; do
  a=$(mail snapshot old "$u")
  b=$(mail snapshot new "$u")
  count() { sed -n '/^== messages/,/^== sieve/p' <<<"$1" | grep -c $'\t' || true; }
  printf '%-22s %14s %14s %s\n' "$u" "$(count "$a")" "$(count "$b")" "$([ "$a" = "$b" ] && echo yes || echo NO)"
done
echo "root login on new: $(lab exec new sshd -T | awk '$1 == "permitrootlogin" {print $2}')"
if lab exec old sh -c 'exec 3<>/dev/tcp/127.0.0.1/143' 2>/dev/null; then
  echo "IMAP on old: still open"
else
  echo "IMAP on old: closed (Dovecot runs for doveadm only: '$(lab exec old doveconf protocols)')"
fi
if [ $machines -eq 1 ]; then
  echo "Postfix on old: $(lab exec old systemctl is-active postfix || true), $(lab exec old systemctl is-enabled postfix || true); on new: Dovecot $(lab exec new systemctl is-active dovecot || true), Postfix $(lab exec new systemctl is-active postfix || true)"
fi
echo
echo "The lab stays up: $(tr '\n' ' ' <"$LAB_DIR/hosts")"
echo "  HOME=$LAB_DIR/home $MAILRUN adhoc new -m command -a 'doveadm mailbox list -u alice@example.org' -i $INV -b"
echo "Tear it down: bash scripts/demo.sh down"
