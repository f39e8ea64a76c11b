#!/usr/bin/env bash
# Mail on the lab's Dovecot hosts (tests/lab/lab.sh up --dovecot): users,
# a realistic mailbox tree, deliveries, and a canonical snapshot to compare
# two servers by. As root; LAB_DIR as for lab.sh.
#
#   mail.sh users NAME USER...        # add users (password "secret") to
#                                     # /etc/dovecot/users on host NAME
#   mail.sh populate NAME USER...     # folders (nested, empty, non-ASCII),
#                                     # messages with flags and sizes, two
#                                     # Sieve scripts (one active)
#   mail.sh deliver NAME USER SUBJECT # one message through dovecot-lda
#                                     # (as the MTA would: Sieve runs)
#   mail.sh snapshot NAME USER        # mailboxes, messages (GUID, flags),
#                                     # Sieve scripts (name, active, sha256)
set -euo pipefail
LAB=$(dirname "$0")/lab.sh
cmd=${1:?usage: mail.sh users|populate|deliver|snapshot NAME ...}
name=${2:?name a lab host}
shift 2
on() { bash "$LAB" exec "$name" "$@"; }

case $cmd in
  users)
    for u in "$@"; do
      on env U="$u" sh -c '
        set -e
        grep -q "^$U:" /etc/dovecot/users && exit 0
        dom=${U#*@}; local=${U%@*}
        printf "%s:%s:5000:5000::/var/vmail/%s/%s::\n" "$U" "$(doveadm pw -s SHA512-CRYPT -p secret)" "$dom" "$local" >> /etc/dovecot/users'
    done ;;
  populate)
    for u in "$@"; do
      on env U="$u" bash -c '
        set -e
        for b in Sent Archive Archive/2024 "Archive/2024/Q4" Empty "Entwürfe" "Ünïcode/日本"; do
          doveadm mailbox create -u "$U" -s "$b" 2>/dev/null || true
        done
        msg() { # mailbox n size
          { printf "From: sender%s@example.net\nTo: %s\nSubject: message %s in %s\nMessage-ID: <%s.%s.%s@lab>\nDate: Sat, 28 Nov 2026 12:00:%02d +0000\n\n" \
              "$2" "$U" "$2" "$1" "$2" "$RANDOM" "$(date +%s%N)" "$(( $2 % 60 ))"
            head -c "$3" /dev/zero | tr "\0" "x" | fold -w 76; echo; } | doveadm save -u "$U" -m "$1"
        }
        for i in 1 2 3 4; do msg INBOX $i $((i * 700)); done
        msg INBOX 5 200000
        for i in 1 2; do msg Sent $i 300; done
        for i in 1 2 3; do msg Archive/2024 $i 1200; done
        msg "Entwürfe" 1 100
        msg "Ünïcode/日本" 1 2000
        doveadm flags add -u "$U" "\\Seen" mailbox INBOX uid 1:3
        doveadm flags add -u "$U" "\\Flagged \\Answered" mailbox INBOX uid 2
        doveadm flags add -u "$U" "\\Seen \$Label1" mailbox Archive/2024 all
        doveadm flags add -u "$U" "\\Draft" mailbox "Entwürfe" all
        printf "require \"fileinto\";\nif header :contains \"subject\" \"[list]\" { fileinto \"Archive\"; }\n" |
          doveadm sieve put -u "$U" -a filters
        printf "require \"vacation\";\nvacation :days 7 \"Away\";\n" | doveadm sieve put -u "$U" vacation'
    done ;;
  deliver)
    u=${1:?user}; subject=${2:?subject}
    on env U="$u" S="$subject" sh -c '
      printf "From: late@example.net\nTo: %s\nSubject: %s\nMessage-ID: <late.%s@lab>\n\nDelivered by the MTA.\n" "$U" "$S" "$(date +%s%N)" |
        /usr/lib/dovecot/dovecot-lda -d "$U" -f late@example.net' ;;
  snapshot)
    u=${1:?user}
    on env U="$u" bash -c '
      set -e -o pipefail
      echo "== mailboxes"; doveadm mailbox list -u "$U" | LC_ALL=C sort
      echo "== messages"
      doveadm -f tab fetch -u "$U" "mailbox guid flags" all | tail -n +2 |
        while IFS="$(printf "\t")" read -r b g f; do
          printf "%s\t%s\t%s\n" "$b" "$g" "$(printf "%s\n" $f | grep -vx "\\\\Recent" | LC_ALL=C sort | tr "\n" " ")"
        done | LC_ALL=C sort
      echo "== sieve"
      doveadm -f tab sieve list -u "$U" | tail -n +2 | LC_ALL=C sort | while IFS="$(printf "\t")" read -r n a; do
        printf "%s\t%s\t%s\n" "$n" "$a" "$(doveadm sieve get -u "$U" "$n" | sha256sum | cut -c1-64)"
      done' ;;
  *) echo "mail.sh: unknown command $cmd" >&2; exit 2 ;;
esac
