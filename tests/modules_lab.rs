//! The migration's host modules on real lab hosts: sshd_config, service,
//! authorized_key, known_hosts and file_copy from_host. Each runs twice:
//! the second run changes nothing.

mod support;

use support::lab::{play, sum_changed, Lab};
use support::{Project, Run};

/// An inventory of the lab's hosts logging in as `user`.
fn project_as(lab: &Lab, user: &str) -> Project {
    let p = Project::new();
    let mut ini = String::from("[lab]\n");
    for (name, addr) in lab.hosts() {
        ini.push_str(&format!("{name} ansible_host={addr} ansible_user={user}\n"));
    }
    p.file("lab.ini", &ini);
    p
}

fn twice(p: &Project, lab: &Lab, book: &str) -> (Run, Run) {
    let first = play(p, lab, book, &[]);
    assert_eq!(first.code, 0, "{}", first.all());
    let second = play(p, lab, book, &[]);
    assert_eq!(second.code, 0, "{}", second.all());
    assert_eq!(sum_changed(&second), 0, "{}", second.all());
    (first, second)
}

fn root_can_log_in(lab: &Lab, short: &str) -> bool {
    lab.ssh_command("root", short)
        .arg("true")
        .status()
        .unwrap()
        .success()
}

#[test]
fn sshd_config_sets_verifies_rolls_back_and_restores() {
    let lab = Lab::up_with(&["--admin", "mailadm", "--root-login", "no"], &["sshc"]);
    let p = project_as(&lab, "mailadm");
    let original = lab.sh("sshc", "cat /etc/ssh/sshd_config");
    assert!(!root_can_log_in(&lab, "sshc"));

    // Check mode and --diff: nothing changes.
    p.file(
        "on.yml",
        "- hosts: sshc\n  become: true\n  tasks:\n    - name: set\n      sshd_config:\n        settings:\n          PermitRootLogin: prohibit-password\n",
    );
    let r = play(&p, &lab, "on.yml", &["--check", "--diff"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.changed("sshc"), 1, "{}", r.all());
    assert!(
        r.stdout.contains("+PermitRootLogin prohibit-password"),
        "{}",
        r.all()
    );
    assert_eq!(lab.sh("sshc", "cat /etc/ssh/sshd_config"), original);

    // Set: root may log in with a key; a second run is ok.
    let (first, _) = twice(&p, &lab, "on.yml");
    assert_eq!(first.status("set", "sshc"), "changed");
    assert!(root_can_log_in(&lab, "sshc"));
    assert_eq!(
        lab.sh("sshc", "cat /etc/ssh/sshd_config.mailrun-orig"),
        original
    );
    let now = lab.sh("sshc", "cat /etc/ssh/sshd_config");
    assert!(
        now.contains("#PermitRootLogin prohibit-password\nPermitRootLogin prohibit-password\n"),
        "{now}"
    );

    // A drop-in sshd reads first wins: named, nothing installed.
    lab.sh(
        "sshc",
        "printf 'MaxAuthTries 3\\n' > /etc/ssh/sshd_config.d/10-site.conf",
    );
    p.file(
        "tries.yml",
        "- hosts: sshc\n  become: true\n  tasks:\n    - name: tries\n      sshd_config:\n        settings:\n          MaxAuthTries: 5\n",
    );
    let r = play(&p, &lab, "tries.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    let out = r.all();
    assert!(
        out.contains("/etc/ssh/sshd_config.d/10-site.conf:1 sets it first"),
        "{out}"
    );
    assert_eq!(lab.sh("sshc", "cat /etc/ssh/sshd_config"), now);
    assert!(lab.sh("sshc", "sshd -T").contains("maxauthtries 3"));
    // path: auto edits the file sshd takes it from: the drop-in.
    p.file(
        "auto.yml",
        "- hosts: sshc\n  become: true\n  tasks:\n    - name: tries\n      sshd_config:\n        path: auto\n        settings:\n          MaxAuthTries: 4\n",
    );
    twice(&p, &lab, "auto.yml");
    assert!(lab.sh("sshc", "sshd -T").contains("maxauthtries 4"));
    assert_eq!(
        lab.sh("sshc", "cat /etc/ssh/sshd_config.d/10-site.conf"),
        "MaxAuthTries 4\n"
    );
    assert_eq!(lab.sh("sshc", "cat /etc/ssh/sshd_config"), now);
    // Pointed at the drop-in, it works.
    p.file(
        "tries2.yml",
        "- hosts: sshc\n  become: true\n  tasks:\n    - name: tries\n      sshd_config:\n        path: /etc/ssh/sshd_config.d/10-site.conf\n        settings:\n          MaxAuthTries: 5\n",
    );
    twice(&p, &lab, "tries2.yml");
    assert!(lab.sh("sshc", "sshd -T").contains("maxauthtries 5"));

    // An invalid value: sshd refuses it, nothing installed.
    p.file(
        "bad.yml",
        "- hosts: sshc\n  become: true\n  tasks:\n    - name: bad\n      sshd_config:\n        settings:\n          PermitRootLogin: perhaps\n",
    );
    let r = play(&p, &lab, "bad.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.all().contains("sshd refuses"), "{}", r.all());
    assert_eq!(lab.sh("sshc", "cat /etc/ssh/sshd_config"), now);

    // A change that locks us out: the fresh login fails, it is rolled back.
    p.file(
        "lockout.yml",
        "- hosts: sshc\n  become: true\n  tasks:\n    - name: lockout\n      sshd_config:\n        settings:\n          AllowUsers: nobody\n",
    );
    let r = play(&p, &lab, "lockout.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.all().contains("fresh SSH login failed"), "{}", r.all());
    assert!(r.all().contains("put back"), "{}", r.all());
    assert_eq!(lab.sh("sshc", "cat /etc/ssh/sshd_config"), now);
    assert!(root_can_log_in(&lab, "sshc"), "sshd took the old file back");

    // Restore: the original is back, root login is off again; then ok.
    p.file(
        "restore.yml",
        "- hosts: sshc\n  become: true\n  tasks:\n    - name: restore\n      sshd_config:\n        path: auto\n        restore: true\n",
    );
    let (first, second) = twice(&p, &lab, "restore.yml");
    assert_eq!(first.status("restore", "sshc"), "changed");
    assert_eq!(second.status("restore", "sshc"), "ok");
    assert_eq!(lab.sh("sshc", "cat /etc/ssh/sshd_config"), original);
    assert!(!lab
        .exec("sshc", "test -e /etc/ssh/sshd_config.mailrun-orig")
        .status
        .success());
    // The drop-in too: auto restores every file sshd reads.
    assert_eq!(
        lab.sh("sshc", "cat /etc/ssh/sshd_config.d/10-site.conf"),
        "MaxAuthTries 3\n"
    );
    assert!(!root_can_log_in(&lab, "sshc"));
}

#[test]
fn service_follows_the_real_state_without_hanging() {
    let lab = Lab::up_with(&["--dovecot"], &["svch"]);
    let p = support::lab::project(&lab, "");
    let book = |state: &str| {
        format!("- hosts: svch\n  tasks:\n    - name: svc\n      service:\n        name: dovecot\n        state: {state}\n")
    };
    p.file("stop.yml", &book("stopped"));
    let (first, _) = twice(&p, &lab, "stop.yml");
    assert_eq!(first.status("svc", "svch"), "changed");
    assert_eq!(
        lab.exec("svch", "/etc/init.d/dovecot status").status.code(),
        Some(3)
    );
    p.file("start.yml", &book("started"));
    let (first, _) = twice(&p, &lab, "start.yml");
    assert_eq!(first.status("svc", "svch"), "changed");
    assert!(lab
        .exec("svch", "/etc/init.d/dovecot status")
        .status
        .success());
    lab.sh(
        "svch",
        "test -S /run/dovecot/auth-userdb || sleep 1; test -S /run/dovecot/auth-userdb",
    );
    p.file("reload.yml", &book("reloaded"));
    let r = play(&p, &lab, "reload.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.status("svc", "svch"), "changed");
    // Check mode acts on nothing.
    let r = play(&p, &lab, "stop.yml", &["--check"]);
    assert_eq!(r.status("svc", "svch"), "changed", "{}", r.all());
    assert!(lab
        .exec("svch", "/etc/init.d/dovecot status")
        .status
        .success());
    // The MTA that is not installed: skipped on request, else a failure.
    p.file(
        "mta.yml",
        "- hosts: svch\n  tasks:\n    - name: mta\n      service: name={{ item }} state=stopped enabled=false skip_missing=true\n      loop: [postfix, exim4]\n    - name: strict\n      service: name=postfix state=stopped\n",
    );
    let r = play(&p, &lab, "mta.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert_eq!(r.status("mta", "svch"), "ok", "{}", r.all());
    assert!(
        r.all()
            .contains("postfix is not installed (no /etc/init.d script)"),
        "{}",
        r.all()
    );
}

#[test]
fn trust_between_two_hosts_and_a_file_from_the_other() {
    let lab = Lab::up_with(&["--no-mesh", "--dovecot"], &["tro", "trn"]);
    let p = support::lab::project(&lab, "");
    let new_addr = lab.addr("trn").to_string();
    // A stale key for new in old's known_hosts: pinned means replaced.
    lab.sh(
        "tro",
        &format!("echo '{new_addr} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBadBadBadBadBadBadBadBadBadBadBadBadBadBadBadB' > /root/.ssh/known_hosts"),
    );
    lab.sh(
        "tro",
        "printf 'a@x:{PLAIN}s:5000:5000::/var/vmail/x/a::\\n' > /etc/dovecot/users; chown root:dovecot /etc/dovecot/users; chmod 640 /etc/dovecot/users",
    );
    p.file(
        "trust.yml",
        &format!(
            r#"
- hosts: tro
  tasks:
    - name: old key
      command: cat /root/.ssh/id_ed25519.pub
      register: oldkey
      changed_when: false
      check_mode: false
- hosts: trn
  tasks:
    - name: authorize
      authorized_key:
        user: root
        key: "{{{{ hostvars['tro'].oldkey.stdout }}}}"
    - name: host key
      command: cat /etc/ssh/ssh_host_ed25519_key.pub
      register: hostkey
      changed_when: false
      check_mode: false
    - name: users file
      file_copy:
        from_host: tro
        src: /etc/dovecot/users
        dest: /etc/dovecot/users
- hosts: tro
  tasks:
    - name: pin
      known_hosts:
        name: {new_addr}
        key: "{{{{ hostvars['trn'].hostkey.stdout }}}}"
"#
        ),
    );
    let r = play(&p, &lab, "trust.yml", &["--check"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!lab
        .sh("trn", "cat /root/.ssh/authorized_keys")
        .contains("root@tro"));
    let (first, _) = twice(&p, &lab, "trust.yml");
    assert_eq!(first.status("pin", "tro"), "changed");
    assert!(
        first.all().contains("replaced a different ssh-ed25519 key"),
        "{}",
        first.all()
    );
    // old reaches new as root, with no prompt and strict host keys.
    lab.sh(
        "tro",
        &format!("ssh -o BatchMode=yes -o StrictHostKeyChecking=yes root@{new_addr} true"),
    );
    assert_eq!(
        lab.sh(
            "trn",
            "stat -c '%a %U %G' /etc/dovecot/users; cat /etc/dovecot/users"
        ),
        "640 root dovecot\na@x:{PLAIN}s:5000:5000::/var/vmail/x/a::\n"
    );
    // Removing the key closes the door again.
    p.file(
        "untrust.yml",
        "- hosts: tro\n  tasks:\n    - name: old key\n      command: cat /root/.ssh/id_ed25519.pub\n      register: oldkey\n      changed_when: false\n- hosts: trn\n  tasks:\n    - name: remove\n      authorized_key:\n        user: root\n        key: \"{{ hostvars['tro'].oldkey.stdout }}\"\n        state: absent\n",
    );
    twice(&p, &lab, "untrust.yml");
    assert!(!lab
        .exec("tro", &format!("ssh -o BatchMode=yes root@{new_addr} true"))
        .status
        .success());
}
