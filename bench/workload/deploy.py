# The benchmark's workload for pyinfra (bench/bench.sh): the same 10 tasks
# as site.yml, in pyinfra's own operations.
import os

from pyinfra.operations import files, server

here = os.path.dirname(os.path.abspath(__file__))

# 4 commands
server.shell(name="make the directory", commands=["test -e /srv/bench || mkdir -p /srv/bench"])
server.shell(
    name="copy sshd_config to edit",
    commands=["test -e /srv/bench/sshd_config || cp /etc/ssh/sshd_config /srv/bench/sshd_config"],
)
server.shell(name="kernel", commands=["uname -r"])
server.shell(name="stamp", commands=["test -e /srv/bench/stamp || date +%s > /srv/bench/stamp"])
# 3 small file copies with modes
files.put(src=os.path.join(here, "files/a.conf"), dest="/srv/bench/a.conf", mode="640")
files.put(src=os.path.join(here, "files/b.conf"), dest="/srv/bench/b.conf", mode="600")
files.put(src=os.path.join(here, "files/c.conf"), dest="/srv/bench/c.conf", mode="644")
# 2 line edits in the sshd_config copy
files.line(
    path="/srv/bench/sshd_config",
    line="^#?PermitRootLogin ",
    replace="PermitRootLogin prohibit-password",
    extended_regex=True,
)
files.line(
    path="/srv/bench/sshd_config",
    line="^#?PasswordAuthentication ",
    replace="PasswordAuthentication no",
    extended_regex=True,
)
# 1 copy of a 1 MB file
files.put(src=os.path.join(here, "files/big.bin"), dest="/srv/bench/big.bin", mode="644")
