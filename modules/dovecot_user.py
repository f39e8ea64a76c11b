#!/usr/bin/env python3
"""dovecot_user: one user's entry in a Dovecot passwd-file.

Protocol: modules/README.md (version 1). Python 3.6+, standard library
only (and `openssl` for SHA512-CRYPT hashes).
"""
import base64
import hashlib
import hmac
import json
import os
import secrets
import subprocess
import sys
import tempfile

DESCRIBE = {
    "protocol": 1,
    "name": "dovecot_user",
    "description": (
        "Keeps one user's entry in a Dovecot passwd-file "
        "(user:{SCHEME}hash:uid:gid::home::extra_fields): created, updated or removed. "
        "A plain `password` is hashed; on later runs it is checked against the stored "
        "hash, so an unchanged password is not re-hashed. Fields not given are kept "
        "(or empty for a new entry). Dovecot re-reads the file by itself (it looks at most once a second)."
    ),
    "check_mode": True,
    "args": {
        "name": {"type": "str", "required": True,
                 "description": "The user name as Dovecot looks it up (often the address)."},
        "state": {"type": "str", "choices": ["present", "absent"], "default": "present",
                  "description": "present: the entry exists with the given fields; absent: it is removed."},
        "password": {"type": "str",
                     "no_log": True,
                     "description": "The plain password, stored hashed with `scheme` (a secret: masked in every output)."},
        "password_hash": {"type": "str", "no_log": True,
                          "description": "A ready hash such as `{SHA512-CRYPT}$6$...`, stored as given (instead of password)."},
        "scheme": {"type": "str", "choices": ["SSHA512", "SHA512-CRYPT"], "default": "SSHA512",
                   "description": "How a new `password` is hashed (SHA512-CRYPT needs openssl on the host)."},
        "update_password": {"type": "str", "choices": ["always", "on_create"], "default": "always",
                            "description": "always: replace a stored hash that does not match `password`; on_create: only set it for a new entry."},
        "uid": {"type": "str", "description": "The uid field (a number or user name, e.g. 5000 or vmail)."},
        "gid": {"type": "str", "description": "The gid field."},
        "home": {"type": "str", "description": "The home field (e.g. /var/vmail/example.org/alice)."},
        "extra_fields": {"type": "str",
                         "description": "The extra fields column, space-separated key=value (e.g. `userdb_quota_rule=*:storage=1G`)."},
        "path": {"type": "path", "default": "/etc/dovecot/users",
                 "description": "The passwd-file."},
        "create": {"type": "bool", "default": True,
                   "description": "Create the file (mode 0640, group dovecot when it exists) if it is missing."},
    },
    "example": (
        "- name: alice can log in on new\n"
        "  dovecot_user:\n"
        "    name: alice@example.org\n"
        "    password: \"{{ alice_password }}\"\n"
        "    uid: 5000\n"
        "    gid: 5000\n"
        "    home: /var/vmail/example.org/alice\n"
        "  no_log: true\n"
    ),
}

FIELDS = ["name", "password", "uid", "gid", "gecos", "home", "shell", "extra_fields"]


class Failure(Exception):
    pass


def ssha512(password, salt=None):
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.sha512(password.encode() + salt).digest()
    return "{SSHA512}" + base64.b64encode(digest + salt).decode()


def openssl_crypt(password, flag, salt):
    try:
        r = subprocess.run(["openssl", "passwd", flag, "-salt", salt, "-stdin"],
                           input=password.encode(), capture_output=True, check=False)
    except FileNotFoundError:
        raise Failure("openssl is not installed: cannot hash or check a *-CRYPT password")
    if r.returncode != 0:
        raise Failure("openssl passwd failed: " + r.stderr.decode(errors="replace").strip())
    return r.stdout.decode().strip()


def make_hash(password, scheme):
    if scheme == "SSHA512":
        return ssha512(password)
    salt = base64.b64encode(secrets.token_bytes(12), b"./").decode()[:16]
    return "{SHA512-CRYPT}" + openssl_crypt(password, "-6", salt)


def matches(stored, password):
    """True/False when the stored hash can be checked; None when it cannot."""
    scheme, rest = "", stored
    if stored.startswith("{") and "}" in stored:
        scheme, rest = stored[1:stored.index("}")].upper(), stored[stored.index("}") + 1:]
    elif stored.startswith("$"):
        scheme = "CRYPT"
    pw = password.encode()
    if scheme in ("PLAIN", "CLEAR", "CLEARTEXT"):
        return hmac.compare_digest(rest.encode(), pw)
    salted = {"SSHA512": (hashlib.sha512, 64), "SSHA256": (hashlib.sha256, 32), "SSHA": (hashlib.sha1, 20)}
    plain = {"SHA512": hashlib.sha512, "SHA256": hashlib.sha256, "SHA": hashlib.sha1, "SHA1": hashlib.sha1}
    try:
        if scheme in salted:
            algo, size = salted[scheme]
            raw = base64.b64decode(rest)
            return hmac.compare_digest(algo(pw + raw[size:]).digest(), raw[:size])
        if scheme in plain:
            return hmac.compare_digest(plain[scheme](pw).digest(), base64.b64decode(rest))
    except ValueError:
        return None
    if scheme in ("SHA512-CRYPT", "SHA256-CRYPT", "CRYPT") and rest.startswith(("$6$", "$5$")):
        parts = rest.split("$")
        if len(parts) < 4 or parts[2].startswith("rounds="):
            return None
        flag = "-6" if rest.startswith("$6$") else "-5"
        return hmac.compare_digest(openssl_crypt(password, flag, parts[2]), rest)
    return None


def mask(line):
    """A line for the diff, with the password field hidden."""
    parts = line.split(":", 7)
    if len(parts) > 1 and parts[1]:
        scheme = parts[1][:parts[1].index("}") + 1] if parts[1].startswith("{") and "}" in parts[1] else ""
        parts[1] = scheme + "********"
    return ":".join(parts)


def run(req):
    a = req["args"]
    check, name, path = req["check"], a["name"], a["path"]
    if ":" in name or "\n" in name or not name:
        raise Failure("name must be non-empty and hold no ':' or newline")
    if a.get("password") is not None and a.get("password_hash") is not None:
        raise Failure("give password or password_hash, not both")
    for k in ("uid", "gid", "home", "extra_fields", "password_hash"):
        v = a.get(k)
        if v is not None and ("\n" in v or (k != "extra_fields" and ":" in v)):
            raise Failure(f"{k} may not hold a newline or ':'")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        exists = True
    except FileNotFoundError:
        text, exists = "", False
    if not exists and a["state"] == "present" and not a["create"]:
        raise Failure(f"{path} does not exist (create: false)")
    lines = text.splitlines()
    index = next((i for i, l in enumerate(lines) if l.split(":", 1)[0] == name), None)
    new_lines = list(lines)
    msg = ""
    if a["state"] == "absent":
        if index is None:
            return {"changed": False, "failed": False, "msg": f"{name} is not in {path}"}
        del new_lines[index]
        msg = f"{name} removed"
    else:
        fields = (lines[index].split(":", 7) if index is not None else [name])
        fields += [""] * (8 - len(fields))
        password = a.get("password")
        if a.get("password_hash") is not None:
            fields[1] = a["password_hash"]
        elif password is not None:
            if index is None or not fields[1]:
                fields[1] = make_hash(password, a["scheme"])
            elif a["update_password"] == "always":
                ok = matches(fields[1], password)
                if not ok:
                    fields[1] = make_hash(password, a["scheme"])
        for k, i in (("uid", 2), ("gid", 3), ("home", 5), ("extra_fields", 7)):
            if a.get(k) is not None:
                fields[i] = a[k]
        line = ":".join(fields)
        if index is None:
            new_lines.append(line)
            msg = f"{name} added"
        else:
            new_lines[index] = line
            msg = f"{name} updated"
    if new_lines == lines:
        return {"changed": False, "failed": False, "msg": f"{name} is as wanted", "exists": index is not None}
    after = "\n".join(new_lines) + ("\n" if new_lines else "")
    out = {"changed": True, "failed": False, "msg": msg, "exists": a["state"] == "present"}
    if req["diff"]:
        before_m = "\n".join(mask(l) for l in lines) + ("\n" if lines else "")
        after_m = "\n".join(mask(l) for l in new_lines) + ("\n" if new_lines else "")
        if before_m == after_m:
            after_m += f"# (the password of {name} changes)\n"
        out["diff"] = {"before": before_m, "after": after_m, "path": path}
    if not check:
        write(path, after, exists)
    return out


def write(path, text, exists):
    """Atomically, keeping the file's mode and owner."""
    directory = os.path.dirname(os.path.abspath(path))
    old_mtime = None
    if exists:
        st = os.stat(path)
        mode, uid, gid = st.st_mode & 0o7777, st.st_uid, st.st_gid
        old_mtime = int(st.st_mtime)
    else:
        mode, uid, gid = 0o640, os.getuid(), -1
        try:
            import grp
            gid = grp.getgrnam("dovecot").gr_gid
        except (KeyError, ImportError):
            pass
    fd, tmp = tempfile.mkstemp(prefix=".users.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        try:
            os.chown(tmp, uid, gid)
        except PermissionError:
            pass
        # Dovecot re-reads a passwd-file when its mtime (in seconds) or size
        # changes: a change within the same second must still be seen.
        if old_mtime is not None and int(os.stat(tmp).st_mtime) <= old_mtime:
            os.utime(tmp, (old_mtime + 1, old_mtime + 1))
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main():
    req = json.load(sys.stdin)
    if req.get("request") == "describe":
        return DESCRIBE, 0
    try:
        return run(req), 0
    except (Failure, OSError) as e:
        return {"changed": False, "failed": True, "msg": str(e)}, 1


if __name__ == "__main__":
    answer, code = main()
    print(json.dumps(answer))
    sys.exit(code)
