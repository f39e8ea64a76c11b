#!/usr/bin/env bash
# Mail on the lab's Dovecot hosts (tests/lab/lab.sh up --dovecot): users,
# a realistic mailbox tree, deliveries, and a canonical snapshot to compare
# two servers by. As root; LAB_DIR as for lab.sh.
#
#   mail.sh users NAME USER...        # add users (password "secret") to
#                                     # /etc/dovecot/users on host NAME
#   mail.sh quota NAME USER SIZE      # a storage quota for USER (1M, 2G)
#   mail.sh populate NAME USER...     # folders (nested, empty, non-ASCII),
#                                     # messages with flags and sizes, two
#                                     # Sieve scripts (one active)
#   mail.sh deliver NAME USER SUBJECT # one message through dovecot-lda
#                                     # (as the MTA would: Sieve runs)
#   mail.sh smtp NAME USER SUBJECT [BYTES [MESSAGE-ID]]
#                                     # one message by SMTP from the control
#                                     # machine to the host's port 25 (its
#                                     # Postfix, then LMTP to Dovecot: lab
#                                     # machines); prints its Message-ID
#   mail.sh bulk NAME USER COUNT      # COUNT messages (1-12 KB) written
#                                     # into INBOX and Archive, then indexed:
#                                     # a mailbox whose copy takes a while
#   mail.sh snapshot NAME USER        # mailboxes, messages (GUID, flags),
#                                     # Sieve scripts (name, active, sha256)
set -euo pipefail
LAB=$(dirname "$0")/lab.sh
cmd=${1:?usage: mail.sh users|populate|bulk|deliver|smtp|snapshot NAME ...}
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
  quota)
    # A storage limit for USER from the userdb (2.3: quota_rule, 2.4:
    # quota_storage_size), e.g. "mail.sh quota new bob@x 1M".
    u=${1:?user}; size=${2:?size}
    on env U="$u" Q="$size" sh -c '
      set -e
      case $(dovecot --version) in 2.3.*) f="userdb_quota_rule=*:storage=$Q" ;; *) f="userdb_quota_storage_size=$Q" ;; esac
      awk -F: -v OFS=: -v u="$U" -v f="$f" "\$1 == u { \$8 = f } { print }" /etc/dovecot/users > /etc/dovecot/users.new
      cat /etc/dovecot/users.new > /etc/dovecot/users && rm -f /etc/dovecot/users.new' ;;
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
  smtp)
    u=${1:?user}; subject=${2:?subject}
    addr=$(bash "$LAB" addr "$name")
    python3 - "$addr" "$u" "$subject" "${3:-0}" "${4:-}" <<'PY'
import smtplib, sys, time, random
from email.message import EmailMessage
addr, user, subject, size, mid = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
mid = mid or "<smtp.%d.%d@lab>" % (time.time_ns(), random.randrange(1 << 30))
m = EmailMessage()
m["From"] = "sender@example.net"
m["To"] = user
m["Subject"] = subject
m["Message-ID"] = mid
body = "Sent by SMTP.\n"
if size > 0:
    line = "z" * 76 + "\n"
    body += line * (size // len(line))
m.set_content(body)
for attempt in range(30):
    try:
        with smtplib.SMTP(addr, 25, timeout=60) as s:
            refused = s.send_message(m)
        break
    except ConnectionRefusedError:
        time.sleep(1)
else:
    sys.exit("mail.sh smtp: %s:25 refuses connections" % addr)
if refused:
    sys.exit("mail.sh smtp: refused %s" % refused)
print(mid)
PY
    ;;
  bulk)
    u=${1:?user}; count=${2:?count}
    on env U="$u" N="$count" bash -c '
      set -e
      home=$(doveadm user -f home "$U")
      host=$(hostname)
      mkdir -p "$(dirname "$home")" && chown 5000:5000 "$(dirname "$home")"
      for box in "" .Archive; do
        d=$home/Maildir/$box; mkdir -p "$d/cur" "$d/new" "$d/tmp"
        [ -n "$box" ] && touch "$d/maildirfolder"
        awk -v n=$((N / 2)) -v d="$d" -v box="$box" -v u="$U" -v host="$host" "BEGIN {
          line = sprintf(\"%76s\", \"\"); gsub(/ /, \"y\", line)
          for (i = 1; i <= n; i++) {
            f = sprintf(\"%s/cur/%d.B%dP1.%s:2,S\", d, 1700000000 + i, i, host)
            printf \"From: bulk%d@example.net\\nTo: %s\\nSubject: bulk %d%s\\nMessage-ID: <bulk.%d%s.%s@lab>\\n\\n\", i, u, i, box, i, box, u > f
            for (k = 0; k < (i * 7919) % 150 + 13; k++) print line > f
            close(f)
          }
        }"
      done
      chown -R 5000:5000 "$home"
      doveadm force-resync -u "$U" "*"' ;;
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
