//! Admin paths of sshd_config and service not covered by modules_lab.rs:
//! a lockout by switching key login off is rolled back (connected as an
//! admin with become), and a SysV service disabled and enabled at boot.
//! Each change runs twice: the second run changes nothing.

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

#[test]
fn sshd_config_key_login_off_is_rolled_back() {
    let lab = Lab::up_with(&["--admin", "mailadm", "--root-login", "no"], &["adm"]);
    let p = project_as(&lab, "mailadm");
    let original = lab.sh("adm", "cat /etc/ssh/sshd_config");
    p.file(
        "pk.yml",
        "- hosts: adm\n  become: true\n  tasks:\n    - name: pk\n      sshd_config:\n        settings:\n          PubkeyAuthentication: \"no\"\n",
    );
    let r = play(&p, &lab, "pk.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.all().contains("fresh SSH login failed"), "{}", r.all());
    assert!(r.all().contains("put back"), "{}", r.all());
    assert_eq!(lab.sh("adm", "cat /etc/ssh/sshd_config"), original);
    assert!(lab
        .sh("adm", "sshd -T")
        .contains("pubkeyauthentication yes"));
    // sshd runs the old file: the admin still gets in with the key.
    assert!(lab
        .ssh_command("mailadm", "adm")
        .arg("true")
        .status()
        .unwrap()
        .success());
    // The rolled-back run took the backup it made away again; nothing to
    // restore is ok.
    p.file(
        "restore.yml",
        "- hosts: adm\n  become: true\n  tasks:\n    - name: restore\n      sshd_config:\n        restore: true\n",
    );
    assert!(!lab
        .exec("adm", "test -e /etc/ssh/sshd_config.mailrun-orig")
        .status
        .success());
    let (first, _) = twice(&p, &lab, "restore.yml");
    assert_eq!(first.status("restore", "adm"), "ok", "{}", first.all());
    assert!(
        first.all().contains("nothing to restore"),
        "{}",
        first.all()
    );
}

#[test]
fn service_enabled_at_boot_on_sysv() {
    let lab = Lab::up_with(&["--dovecot"], &["adsv"]);
    let p = support::lab::project(&lab, "");
    let links = |lab: &Lab| lab.sh("adsv", "ls /etc/rc2.d /etc/rc3.d | grep dovecot | sort -u");
    assert!(links(&lab).contains("S01dovecot"), "{}", links(&lab));
    let book = |on: bool| {
        format!("- hosts: adsv\n  tasks:\n    - name: boot\n      service:\n        name: dovecot\n        enabled: {on}\n")
    };
    p.file("off.yml", &book(false));
    // Check mode changes nothing.
    let r = play(&p, &lab, "off.yml", &["--check"]);
    assert_eq!(r.status("boot", "adsv"), "changed", "{}", r.all());
    assert!(links(&lab).contains("S01dovecot"));
    let (first, _) = twice(&p, &lab, "off.yml");
    assert_eq!(first.status("boot", "adsv"), "changed");
    assert!(!links(&lab).contains("S01dovecot"), "{}", links(&lab));
    // Disabled at boot, still running now.
    assert!(lab
        .exec("adsv", "/etc/init.d/dovecot status")
        .status
        .success());
    p.file("on.yml", &book(true));
    let (first, _) = twice(&p, &lab, "on.yml");
    assert_eq!(first.status("boot", "adsv"), "changed");
    assert!(links(&lab).contains("S01dovecot"), "{}", links(&lab));
}
