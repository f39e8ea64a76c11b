#!/bin/sh
# mailbox_report: per Dovecot user, each mailbox's messages, unseen messages
# and size, from `doveadm mailbox status`. Reads only, so check mode is the
# same as a run. Protocol: modules/README.md (version 1).
set -u

req=$(cat)

case "$req" in
*'"request":"describe"'*)
  cat <<'EOF'
{
  "protocol": 1,
  "name": "mailbox_report",
  "description": "Reports each mailbox of Dovecot users: messages, unseen messages and size (doveadm mailbox status). Changes nothing; the result holds `users` (per user: totals and `mailboxes`) and `total`, for register and assert.",
  "check_mode": true,
  "args": {
    "user": {"type": "str", "description": "One user (as the userdb knows them); all users (`doveadm user '*'`) when absent."},
    "mailbox": {"type": "str", "default": "*", "description": "A mailbox name or pattern (`*` all, `Archive/*`)."}
  },
  "example": "- name: What alice has\n  mailbox_report:\n    user: alice@example.org\n  register: report\n- assert:\n    that: report.users['alice@example.org'].messages > 0\n",
  "free_form": "user"
}
EOF
  exit 0 ;;
esac

# A string argument of the compact request (user names and mailbox
# patterns hold no quotes or backslashes).
arg() {
  printf '%s' "$req" | sed -n "s/.*\"$1\":\"\([^\"\\\\]*\)\".*/\1/p"
}

fail() { # message
  msg=$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g' | tr '\n\t' '  ')
  printf '{"changed": false, "failed": true, "msg": "%s"}\n' "$msg"
  exit 1
}

command -v doveadm >/dev/null 2>&1 || fail "doveadm not found: is Dovecot installed on this host?"

user=$(arg user)
mailbox=$(arg mailbox)
[ -n "$mailbox" ] || mailbox='*'

tab=$(printf '\t')
out=$(mktemp) || fail "mktemp failed"
trap 'rm -f "$out" "$out.err" "$out.one" "$out.failed"' EXIT

if [ -n "$user" ]; then
  users=$user
else
  users=$(doveadm user '*' 2>"$out.err") || fail "cannot list the users (doveadm user '*'): $(cat "$out.err")"
fi
# One line per mailbox: USER<TAB>MAILBOX<TAB>MESSAGES<TAB>UNSEEN<TAB>VSIZE
printf '%s\n' "$users" | while IFS= read -r u; do
  [ -n "$u" ] || continue
  if ! doveadm -f tab mailbox status -u "$u" 'messages unseen vsize' "$mailbox" >"$out.one" 2>"$out.err"; then
    rc=$?
    if [ "$rc" = 67 ]; then echo "no such user: $u" >"$out.err"; fi
    echo "$u" >"$out.failed"
    exit 1
  fi
  # `-f tab` prints a header line first; a pattern matching no mailbox prints nothing.
  sed '1d' "$out.one" | while IFS="$tab" read -r name messages unseen vsize; do
    printf '%s\t%s\t%s\t%s\t%s\n' "$u" "$name" "$messages" "$unseen" "$vsize"
  done >>"$out"
done
if [ -f "$out.failed" ]; then
  u=$(cat "$out.failed"); e=$(cat "$out.err"); rm -f "$out.failed" "$out.one"
  fail "doveadm mailbox status for $u failed: $e"
fi
rm -f "$out.one"

# The lines as JSON, with the users in the order listed (users without a
# matching mailbox show with zero totals).
printf '%s\n' "$users" | awk -F '\t' -v data="$out" '
function esc(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); return s }
NF && $0 != "" { order[++n] = $0; seen[$0] = 1 }
END {
  while ((getline line < data) > 0) {
    split(line, f, "\t")
    u = f[1]
    if (!(u in seen)) { order[++n] = u; seen[u] = 1 }
    mb[u] = mb[u] (mb[u] == "" ? "" : ", ") sprintf("\"%s\": {\"messages\": %d, \"unseen\": %d, \"vsize\": %d}", esc(f[2]), f[3], f[4], f[5])
    msgs[u] += f[3]; unseen[u] += f[4]; vsize[u] += f[5]; count[u]++
    tm += f[3]; tv += f[5]
  }
  printf "{\"changed\": false, \"failed\": false, \"msg\": \"%d users, %d messages, %d bytes\", \"users\": {", n, tm, tv
  for (i = 1; i <= n; i++) {
    u = order[i]
    printf "%s\"%s\": {\"messages\": %d, \"unseen\": %d, \"vsize\": %d, \"mailboxes\": {%s}}", (i > 1 ? ", " : ""), esc(u), msgs[u], unseen[u], vsize[u], mb[u]
  }
  printf "}, \"total\": {\"users\": %d, \"messages\": %d, \"vsize\": %d}}\n", n, tm, tv
}'
