//! The SSH trust from old to new and a root-only file copied between them,
//! on two real lab hosts that do not trust each other (`--no-mesh`), as an
//! admin account with become (the migration's case): `authorized_key`,
//! `known_hosts` and `file_copy from_host`. Every playbook runs twice and
//! the second run changes nothing; check mode changes nothing.

mod support;

use support::lab::{play, sum_changed, Lab};
use support::{Project, Run};

/// An inventory of the lab's hosts under their real names, logging in as
/// the admin `mailadm` (sudo without a password).
fn project_admin(lab: &Lab) -> Project {
    let p = Project::new();
    let mut ini = String::from("[lab]\n");
    for (short, addr) in lab.hosts() {
        ini.push_str(&format!(
            "{} ansible_host={addr} ansible_user=mailadm\n",
            lab.name(&short)
        ));
    }
    p.file("lab.ini", &ini);
    p
}

fn twice(p: &Project, lab: &Lab, book: &str) -> Run {
    let first = play(p, lab, book, &["--diff"]);
    assert_eq!(first.code, 0, "{}", first.all());
    let second = play(p, lab, book, &[]);
    assert_eq!(second.code, 0, "{}", second.all());
    assert_eq!(sum_changed(&second), 0, "{}", second.all());
    first
}

/// A key of another type recorded for new (new's sshd has none): kept.
const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBOtherTypeKeptOtherTypeKept=";

/// The host's files this test changes, for "check mode changed nothing".
fn state(lab: &Lab) -> (String, String) {
    let files = "for f in /root/.ssh/authorized_keys /root/.ssh/known_hosts /etc/dovecot/users; do \
                 if [ -e $f ]; then stat -c '%n %a %U %G' $f; sha256sum $f; else echo no $f; fi; done";
    (lab.sh("old", files), lab.sh("new", files))
}

/// `ssh root@TARGET true` run as root on old: BatchMode (no prompt) and
/// strict host keys.
fn old_reaches(lab: &Lab, target: &str) -> std::process::Output {
    lab.exec(
        "old",
        &format!(
            "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o ConnectTimeout=20 root@{target} true"
        ),
    )
}

#[test]
fn old_trusts_new_and_new_gets_old_users_file() {
    let lab = Lab::up_with(
        &["--no-mesh", "--dovecot", "--admin", "mailadm"],
        &["old", "new"],
    );
    let p = project_admin(&lab);
    let (old, new) = (lab.name("old"), lab.name("new"));
    let (old_addr, new_addr) = (lab.addr("old").to_string(), lab.addr("new").to_string());

    // Nothing trusts anything yet.
    assert!(!old_reaches(&lab, &new_addr).status.success());
    // old's known_hosts: a wrong ed25519 key for new's address, hashed (as
    // ssh-keygen -H writes it), and one for its name in a comma-joined line.
    lab.sh(
        "old",
        &format!(
            "cd /root/.ssh && echo '{new_addr} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBadBadBadBadBadBadBadBadBadBadBadBadBadBadBadB' > known_hosts \
             && ssh-keygen -H -f known_hosts >/dev/null 2>&1 && rm -f known_hosts.old \
             && echo 'other.example,{new} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIStaleStaleStaleStaleStaleStaleStaleStaleStal' >> known_hosts \
             && echo '{new_addr} {ECDSA}' >> known_hosts \
             && chmod 600 known_hosts"
        ),
    );
    assert!(lab
        .sh("old", "cat /root/.ssh/known_hosts")
        .starts_with("|1|"));
    // The users file on old: root-only for the admin (0640 root:dovecot).
    lab.sh(
        "old",
        "printf 'alice@example.org:{PLAIN}a:5000:5000::/var/vmail/alice::\\nbob@example.org:{PLAIN}b:5000:5000::/var/vmail/bob::\\n' > /etc/dovecot/users \
         && chown root:dovecot /etc/dovecot/users && chmod 640 /etc/dovecot/users",
    );
    assert!(!lab
        .exec("old", "su mailadm -s /bin/sh -c 'cat /etc/dovecot/users'")
        .status
        .success());

    p.file(
        "trust.yml",
        &format!(
            r#"
- hosts: {old}
  become: true
  tasks:
    - name: old key
      command: cat /root/.ssh/id_ed25519.pub
      register: oldkey
      changed_when: false
      check_mode: false
- hosts: {new}
  become: true
  tasks:
    - name: authorize
      authorized_key:
        user: root
        key: "{{{{ hostvars['{old}'].oldkey.stdout }}}}"
        key_options: 'from="{old_addr}"'
    - name: host key
      command: cat /etc/ssh/ssh_host_ed25519_key.pub
      register: hostkey
      changed_when: false
      check_mode: false
    - name: users file
      file_copy:
        from_host: {old}
        src: /etc/dovecot/users
        dest: /etc/dovecot/users
- hosts: {old}
  become: true
  tasks:
    - name: pin
      known_hosts:
        name: ["{new_addr}", "{new}"]
        key: "{{{{ hostvars['{new}'].hostkey.stdout }}}}"
"#
        ),
    );

    // Check mode (with --diff): says what would change, changes nothing.
    let before = state(&lab);
    let r = play(&p, &lab, "trust.yml", &["--check", "--diff"]);
    assert_eq!(r.code, 0, "{}", r.all());
    for task in ["authorize", "users file"] {
        assert_eq!(r.status(task, &new), "changed", "{task}: {}", r.all());
    }
    assert_eq!(r.status("pin", &old), "changed", "{}", r.all());
    assert_eq!(state(&lab), before, "check mode changed a file");

    // The real run, then a second one that changes nothing.
    let first = twice(&p, &lab, "trust.yml");
    for task in ["authorize", "users file"] {
        assert_eq!(
            first.status(task, &new),
            "changed",
            "{task}: {}",
            first.all()
        );
    }
    assert_eq!(first.status("pin", &old), "changed", "{}", first.all());
    let all = first.all();
    assert!(
        all.contains(&format!(
            "replaced a different ssh-ed25519 key for {new_addr}"
        )),
        "{all}"
    );
    assert!(
        all.contains(&format!(
            "kept keys of other types: ecdsa-sha2-nistp256 for {new_addr}"
        )),
        "{all}"
    );
    assert!(
        all.contains("/etc/dovecot/users from ") && all.contains("(mode and owner kept)"),
        "{all}"
    );

    // old reaches new as root by address and by name: no prompt, the
    // pinned key, the key's from= option met.
    for target in [&new_addr, &new] {
        let out = old_reaches(&lab, target);
        assert!(
            out.status.success(),
            "ssh root@{target} from old: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let kh = lab.sh(
        "old",
        "cat /root/.ssh/known_hosts; stat -c '%a' /root/.ssh/known_hosts",
    );
    let hostkey = lab.sh("new", "cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub");
    assert_eq!(
        kh,
        format!(
            "other.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIStaleStaleStaleStaleStaleStaleStaleStaleStal\n\
             {new_addr} {ECDSA}\n\
             {new_addr},{new} {}\n600\n",
            hostkey.trim()
        )
    );
    let ak = lab.sh(
        "new",
        "cat /root/.ssh/authorized_keys; stat -c '%a %U' /root/.ssh/authorized_keys",
    );
    assert!(
        ak.lines().any(
            |l| l.starts_with(&format!("from=\"{old_addr}\" ssh-ed25519 "))
                && l.ends_with(&format!("root@{old}"))
        ) && ak.ends_with("600 root\n"),
        "{ak}"
    );
    // The users file: same content, mode and owner.
    let users = "stat -c '%a %U %G' /etc/dovecot/users; cat /etc/dovecot/users";
    assert_eq!(lab.sh("new", users), lab.sh("old", users));
    assert!(lab.sh("new", users).starts_with("640 root dovecot\n"));

    // Without become the admin cannot read the source: the error says so.
    p.file(
        "nobecome.yml",
        &format!(
            "- hosts: {new}\n  tasks:\n    - name: users file\n      file_copy:\n        from_host: {old}\n        src: /etc/dovecot/users\n        dest: /tmp/users\n"
        ),
    );
    let r = play(&p, &lab, "nobecome.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.all()
            .contains(&format!("cannot read /etc/dovecot/users on {old}")),
        "{}",
        r.all()
    );
    // A from_host not in the inventory is named.
    p.file(
        "nohost.yml",
        &format!(
            "- hosts: {new}\n  become: true\n  tasks:\n    - name: users file\n      file_copy:\n        from_host: nosuchhost\n        src: /etc/dovecot/users\n        dest: /tmp/users\n"
        ),
    );
    let r = play(&p, &lab, "nohost.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.all()
            .contains("from_host 'nosuchhost' is not in the inventory"),
        "{}",
        r.all()
    );

    // The key is removed again (whatever its options): the door closes.
    // new's host key is forgotten too.
    p.file(
        "untrust.yml",
        &format!(
            r#"
- hosts: {old}
  become: true
  tasks:
    - name: old key
      command: cat /root/.ssh/id_ed25519.pub
      register: oldkey
      changed_when: false
      check_mode: false
- hosts: {new}
  become: true
  tasks:
    - name: remove
      authorized_key:
        user: root
        key: "{{{{ hostvars['{old}'].oldkey.stdout }}}}"
        state: absent
- hosts: {old}
  become: true
  tasks:
    - name: forget
      known_hosts:
        name: ["{new_addr}", "{new}"]
        key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAnyAnyAnyAnyAnyAnyAnyAnyAnyAnyAnyAnyAnyAnyAny"
        state: absent
"#
        ),
    );
    let first = twice(&p, &lab, "untrust.yml");
    assert_eq!(first.status("remove", &new), "changed", "{}", first.all());
    assert_eq!(first.status("forget", &old), "changed", "{}", first.all());
    let ak = lab.sh("new", "cat /root/.ssh/authorized_keys");
    assert!(
        !ak.contains(&format!("root@{old}")) && ak.contains("mailrun-lab-control"),
        "{ak}"
    );
    assert_eq!(
        lab.sh("old", "cat /root/.ssh/known_hosts"),
        "other.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIStaleStaleStaleStaleStaleStaleStaleStaleStal\n"
    );
    assert!(!old_reaches(&lab, &new_addr).status.success());
}
