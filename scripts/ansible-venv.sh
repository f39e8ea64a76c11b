#!/usr/bin/env bash
# A virtualenv at DIR holding exactly these pinned PyPI packages (NAME==VERSION),
# made (again) only when one is missing or at another version: the
# ansible-core that mailrun is compared with (tests, bench/bench.sh).
#
#   bash scripts/ansible-venv.sh DIR PIN...    # e.g. ansible-core==2.18.19
set -euo pipefail
venv=${1:?usage: ansible-venv.sh DIR PIN...}
shift
[ $# -gt 0 ] || { echo "ansible-venv.sh: name at least one NAME==VERSION" >&2; exit 2; }
ok=1
"$venv/bin/python" -c 'import sys' 2>/dev/null || ok=0
for pin in "$@"; do
  [ $ok -eq 1 ] || break
  [ "$("$venv/bin/pip" show "${pin%%=*}" 2>/dev/null | sed -n 's/^Version: //p')" = "${pin##*=}" ] || ok=0
done
[ $ok -eq 0 ] || exit 0
echo "installing $* into $venv…" >&2
# Debian's python3 makes virtualenvs only with python3-venv.
if ! python3 -c 'import ensurepip' 2>/dev/null && command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi
if [ -e "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ]; then
  echo "ansible-venv.sh: $venv exists and is not a virtualenv; name another path" >&2
  exit 1
fi
python3 -m venv --clear "$venv"
"$venv/bin/pip" install -q "$@"
