//! The Dovecot migration on two real Dovecot servers in the lab: the mail
//! modules (doveadm_backup, doveadm_sync, mail_verify) and
//! playbooks/migrate.yml end to end. Mail is compared with the lab's own
//! snapshot (tests/lab/mail.sh: mailboxes, message GUIDs and flags, Sieve
//! scripts), not with the module under test.

mod support;

use serde_json::Value;
use support::lab::{migrate, play, port_open, project, Lab};
use support::mail::{guids, mail, result, snapshot};
use support::{Project, Run};

const USERS: [&str; 3] = ["alice@ex.org", "bob@ex.org", "carol@ex.org"];

fn dsync_book(p: &Project, name: &str, host: &str, module: &str, args: &str) {
    p.file(
        name,
        &format!(
            "- hosts: {host}\n  tasks:\n    - name: t\n      {module}:\n{}",
            args.lines()
                .map(|l| format!("        {l}\n"))
                .collect::<String>()
        ),
    );
}

#[test]
fn dsync_policy_ledger_refusal_and_verify() {
    let lab = Lab::up_with(&["--dovecot"], &["dsold", "dsnew"]);
    mail(&lab, "users", "dsold", &USERS);
    mail(&lab, "populate", "dsold", &USERS);
    // carol is not on new yet: her user fails, the others finish.
    mail(&lab, "users", "dsnew", &USERS[..2]);
    let p = project(&lab, "");
    let ledger = p.path().join("ledger.json");
    let common = format!(
        "remote: dsnew\nparallel: 2\nretries: 1\nretry_delay: 1\nledger: {}\n",
        ledger.display()
    );
    dsync_book(&p, "b.yml", "dsold", "doveadm_backup", &common);

    let r = play(&p, &lab, "b.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    let res = result(&r, "t", "dsold");
    assert_eq!(
        res["failed_users"],
        serde_json::json!(["carol@ex.org"]),
        "{}",
        r.all()
    );
    assert_eq!(res["done"].as_array().map(Vec::len), Some(2), "{}", r.all());
    assert!(
        res["users"]["carol@ex.org"]["msg"]
            .as_str()
            .unwrap_or("")
            .contains("unknown on dsnew"),
        "{}",
        r.all()
    );
    for u in &USERS[..2] {
        assert_eq!(snapshot(&lab, "dsold", u), snapshot(&lab, "dsnew", u));
        let before = &res["users"][u];
        assert_eq!(before["source_before"]["messages"], 12, "{before}");
        assert_eq!(before["remote_after"]["messages"], 12, "{before}");
    }
    let l: Value = serde_json::from_str(&std::fs::read_to_string(&ledger).unwrap()).unwrap();
    assert_eq!(l["complete"], false);
    assert_eq!(l["users"]["carol@ex.org"]["status"], "failed");

    // The rerun runs only carol.
    mail(&lab, "users", "dsnew", &USERS[2..]);
    let r = play(&p, &lab, "b.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    let res = result(&r, "t", "dsold");
    assert_eq!(
        res["done"],
        serde_json::json!(["carol@ex.org"]),
        "{}",
        r.all()
    );
    assert!(
        res["msg"].as_str().unwrap().contains("resumed: 2 user(s)"),
        "{}",
        r.all()
    );
    assert_eq!(
        snapshot(&lab, "dsold", "carol@ex.org"),
        snapshot(&lab, "dsnew", "carol@ex.org")
    );

    // Complete: the next run is a fresh one, and changes nothing.
    let r = play(&p, &lab, "b.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        result(&r, "t", "dsold")["done"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(r.changed("dsold"), 0, "{}", r.all());

    // Dovecot down on new: every user fails as temporary (retried), the
    // task says so; with Dovecot back the rerun brings the new mail over.
    mail(
        &lab,
        "deliver",
        "dsold",
        &["alice@ex.org", "after the copy"],
    );
    lab.sh("dsnew", "doveadm stop");
    dsync_book(
        &p,
        "s.yml",
        "dsold",
        "doveadm_sync",
        &common.replace("ledger.json", "sync-ledger.json"),
    );
    let r = play(&p, &lab, "s.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    let res = result(&r, "t", "dsold");
    assert_eq!(
        res["failed_users"].as_array().map(Vec::len),
        Some(3),
        "{}",
        r.all()
    );
    lab.sh("dsnew", "/usr/sbin/dovecot </dev/null >/dev/null 2>&1");
    let r = play(&p, &lab, "s.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        snapshot(&lab, "dsold", "alice@ex.org"),
        snapshot(&lab, "dsnew", "alice@ex.org")
    );

    // Check mode: says what it would copy, copies nothing.
    mail(&lab, "deliver", "dsold", &["bob@ex.org", "not yet"]);
    let before_new = snapshot(&lab, "dsnew", "bob@ex.org");
    let r = play(&p, &lab, "s.yml", &["--check"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let res = result(&r, "t", "dsold");
    assert!(
        res["users"]["bob@ex.org"]["msg"]
            .as_str()
            .unwrap()
            .contains("1 item(s) to copy"),
        "{}",
        r.all()
    );
    assert_eq!(snapshot(&lab, "dsnew", "bob@ex.org"), before_new);

    // A reversed backup (new -> old) would delete bob's new message on old:
    // refused, old intact.
    let old_bob = snapshot(&lab, "dsold", "bob@ex.org");
    dsync_book(
        &p,
        "rev.yml",
        "dsnew",
        "doveadm_backup",
        "remote: dsold\nuser: bob@ex.org\n",
    );
    let r = play(&p, &lab, "rev.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    let msg = result(&r, "t", "dsnew")["msg"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        msg.contains("refused") && msg.contains("holds mail"),
        "{msg}"
    );
    assert_eq!(snapshot(&lab, "dsold", "bob@ex.org"), old_bob);

    // mail_verify: bob's new message is missing on new: named; after the
    // sync nothing is.
    dsync_book(&p, "v.yml", "dsold", "mail_verify", "remote: dsnew\n");
    let r = play(&p, &lab, "v.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    let res = result(&r, "t", "dsold");
    assert_eq!(
        res["failed_users"],
        serde_json::json!(["bob@ex.org"]),
        "{}",
        r.all()
    );
    let problems = res["users"]["bob@ex.org"]["problems"].to_string();
    assert!(
        problems.contains("<late.") && problems.contains("in 'INBOX' is missing"),
        "{problems}"
    );
    let r = play(&p, &lab, "s.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    let r = play(&p, &lab, "v.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    // A Sieve script and a flag changed on new are found too.
    lab.sh("dsnew", "doveadm sieve deactivate -u carol@ex.org");
    lab.sh(
        "dsnew",
        "doveadm flags remove -u carol@ex.org '\\Seen' mailbox INBOX uid 1",
    );
    let r = play(&p, &lab, "v.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    let problems = result(&r, "t", "dsold")["users"]["carol@ex.org"]["problems"].to_string();
    assert!(
        problems.contains("'filters' is inactive there"),
        "{problems}"
    );
    assert!(problems.contains("has flags"), "{problems}");
    // A remote outside the inventory (an address): asked through old's ssh.
    let addr = lab.addr("dsnew").to_string();
    dsync_book(
        &p,
        "va.yml",
        "dsold",
        "mail_verify",
        &format!("remote: {addr}\nuser: alice@ex.org\n"),
    );
    let r = play(&p, &lab, "va.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    dsync_book(
        &p,
        "ba.yml",
        "dsold",
        "doveadm_backup",
        &format!("remote: {addr}\nuser: alice@ex.org\n"),
    );
    let r = play(&p, &lab, "ba.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.changed("dsold"), 0, "{}", r.all());
    // Old still holds every message it ever held.
    for u in USERS {
        let old = guids(&snapshot(&lab, "dsold", u));
        let new = guids(&snapshot(&lab, "dsnew", u));
        assert!(
            old.iter().all(|g| new.contains(g)),
            "{u}: {old:?} vs {new:?}"
        );
    }
}

#[test]
fn migrate_yml_moves_every_user_and_closes_up() {
    let lab = Lab::up_with(
        &[
            "--dovecot",
            "--no-mesh",
            "--admin",
            "mailadm",
            "--root-login",
            "no",
        ],
        &["mgold", "mgnew"],
    );
    let users = ["alice@example.org", "bob@example.org", "dora@example.net"];
    mail(&lab, "users", "mgold", &users);
    mail(&lab, "populate", "mgold", &users);
    // Old's root has no SSH key at all yet (mailrun logs in as mailadm).
    lab.sh("mgold", "rm -rf /root/.ssh");
    let p = Project::new();
    p.file(
        "inv/hosts.ini",
        &format!(
            "[old]\nmgold ansible_host={} ansible_user=mailadm\n[new]\nmgnew ansible_host={} ansible_user=mailadm\n",
            lab.addr("mgold"),
            lab.addr("mgnew")
        ),
    );
    p.file("inv/group_vars/all.yml", "migrate_parallel: 2\n");
    // Before: root may not log in on new; old serves IMAP.
    assert!(!lab
        .ssh_command("root", "mgnew")
        .arg("true")
        .status()
        .unwrap()
        .success());
    assert!(port_open(lab.addr("mgold"), 143));

    // Check mode: the whole migration predicted, nothing touched.
    let sshd_before = lab.sh("mgnew", "cat /etc/ssh/sshd_config");
    let r = migrate(&p, &lab, &["--check"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let copy = result(
        &r,
        "Initial copy of all mail to new (doveadm backup)",
        "mgold",
    );
    assert!(
        copy["users"]["alice@example.org"]["msg"]
            .as_str()
            .unwrap_or("")
            .contains("all of it to copy"),
        "{}",
        r.all()
    );
    assert_eq!(lab.sh("mgnew", "cat /etc/ssh/sshd_config"), sshd_before);
    assert_eq!(lab.sh("mgnew", "cat /etc/dovecot/users"), "");
    assert!(port_open(lab.addr("mgold"), 143));

    // The preparation and the initial copy, old still taking mail.
    let r = migrate(&p, &lab, &["--tags", "prepare,copy"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        r.status("Initial copy of all mail to new (doveadm backup)", "mgold"),
        "changed"
    );
    for u in users {
        assert_eq!(
            snapshot(&lab, "mgold", u),
            snapshot(&lab, "mgnew", u),
            "{u}"
        );
    }
    // Root login on new is open for old's key now (prohibit-password).
    assert!(lab
        .sh("mgnew", "sshd -T")
        .contains("permitrootlogin without-password"));

    // Mail keeps arriving on old; the switch carries it over.
    mail(
        &lab,
        "deliver",
        "mgold",
        &["alice@example.org", "after the copy"],
    );
    mail(
        &lab,
        "deliver",
        "mgold",
        &["dora@example.net", "also after"],
    );
    assert_ne!(
        snapshot(&lab, "mgold", "alice@example.org"),
        snapshot(&lab, "mgnew", "alice@example.org")
    );
    let r = migrate(&p, &lab, &["--skip-tags", "copy"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let verify = result(&r, "Prove that new has all of old's mail", "mgold");
    assert_eq!(verify["failed_users"], serde_json::json!([]), "{}", r.all());
    for u in users {
        let (old, new) = (snapshot(&lab, "mgold", u), snapshot(&lab, "mgnew", u));
        assert_eq!(old, new, "{u}");
        assert!(old.contains("Ünïcode/日本") && old.contains("Empty") && old.contains("ACTIVE"));
    }
    // The users' dsyncs shared one ssh connection per task (the backup and
    // the sync: two root logins from old, not one per user and task), and
    // ended it.
    let logins = lab.sh(
        "mgnew",
        &format!(
            "grep -c 'Accepted publickey for root from {} ' /var/log/sshd.log || true",
            lab.addr("mgold")
        ),
    );
    assert_eq!(logins.trim(), "2", "root logins from old");
    assert_eq!(
        lab.sh(
            "mgold",
            "ls -d /tmp/mailrun-dsync.* 2>/dev/null; pgrep -af '[C]ontrolPath=/tmp/mailrun-dsync' || true"
        ),
        ""
    );
    // Old's key, added for the copy, is gone from new again.
    let old_key = lab.sh("mgold", "cut -d' ' -f2 /root/.ssh/id_ed25519.pub");
    assert!(!lab
        .sh("mgnew", "cat /root/.ssh/authorized_keys")
        .contains(old_key.trim()));
    // Closed again: root login on new as before, no backup left behind.
    assert!(lab.sh("mgnew", "sshd -T").contains("permitrootlogin no"));
    assert!(!lab
        .ssh_command("root", "mgnew")
        .arg("true")
        .status()
        .unwrap()
        .success());
    // Old takes no IMAP login and no delivery, doveadm still works there.
    assert!(!port_open(lab.addr("mgold"), 143));
    assert!(!lab
        .exec("mgold", "test -S /run/dovecot/lmtp")
        .status
        .success());
    assert!(lab
        .sh("mgold", "doveadm mailbox list -u alice@example.org")
        .contains("INBOX"));

    // New is live now and receives mail of its own; a second run ends
    // without error and loses nothing on either side.
    mail(
        &lab,
        "deliver",
        "mgnew",
        &["alice@example.org", "straight to new"],
    );
    let new_alice = guids(&snapshot(&lab, "mgnew", "alice@example.org"));
    let before: Vec<String> = users.iter().map(|u| snapshot(&lab, "mgold", u)).collect();
    // A key the admin trusted before stays trusted.
    lab.sh(
        "mgnew",
        &format!(
            "cat >> /root/.ssh/authorized_keys <<'EOF'\n{}\nEOF",
            lab.sh("mgold", "cat /root/.ssh/id_ed25519.pub").trim()
        ),
    );
    let r = migrate(&p, &lab, &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(lab
        .sh("mgnew", "cat /root/.ssh/authorized_keys")
        .contains(old_key.trim()));
    assert_eq!(
        r.status("Initial copy of all mail to new (doveadm backup)", "mgold"),
        "skipped",
        "{}",
        r.all()
    );
    for (u, old) in users.iter().zip(&before) {
        assert_eq!(&snapshot(&lab, "mgold", u), old, "{u} on old");
        let new = guids(&snapshot(&lab, "mgnew", u));
        assert!(guids(old).iter().all(|g| new.contains(g)), "{u} on new");
    }
    let after = guids(&snapshot(&lab, "mgnew", "alice@example.org"));
    assert!(
        new_alice.iter().all(|g| after.contains(g)),
        "new's own mail kept"
    );
    assert!(lab.sh("mgnew", "sshd -T").contains("permitrootlogin no"));
}

#[test]
fn doveadm_killed_mid_backup_is_rerun_from_the_ledger() {
    let lab = Lab::up_with(&["--dovecot"], &["kold", "knew"]);
    let users = ["ann@ex.org", "ben@ex.org", "cy@ex.org"];
    mail(&lab, "users", "kold", &users);
    mail(&lab, "users", "knew", &users);
    mail(&lab, "populate", "kold", &users);
    // ben's dsync-server on new starts slowly (a delay in front of the real
    // doveadm, in new's own /usr/local), so his backup can be caught.
    lab.sh(
        "knew",
        "printf '#!/bin/sh\\ncase \"$*\" in *dsync-server*-uben@*) sleep 30 ;; esac\\nexec /usr/bin/doveadm \"$@\"\\n' > /usr/local/bin/doveadm; chmod 755 /usr/local/bin/doveadm",
    );
    let p = project(&lab, "");
    dsync_book(
        &p,
        "b.yml",
        "kold",
        "doveadm_backup",
        "remote: knew\nparallel: 1\nretries: 0\nledger: ledger.json\n",
    );
    let child = {
        let book = p.path().join("b.yml");
        std::process::Command::new(env!("CARGO_BIN_EXE_mailrun"))
            .args([book.to_str().unwrap(), "-i", "lab.ini", "--output", "json"])
            .current_dir(p.path())
            .env("HOME", lab.home())
            .env_remove("SSH_AUTH_SOCK")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // Kill ben's doveadm on old once it runs.
    let started = std::time::Instant::now();
    while !lab
        .exec("kold", "pkill -9 -f '[d]oveadm.* backup -u ben@ex.org'")
        .status
        .success()
    {
        assert!(started.elapsed().as_secs() < 60, "ben's backup never ran");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::new(),
    };
    assert_eq!(r.code, 2, "{}", r.all());
    let res = result(&r, "t", "kold");
    assert_eq!(
        res["failed_users"],
        serde_json::json!(["ben@ex.org"]),
        "{}",
        r.all()
    );
    let l: Value =
        serde_json::from_str(&std::fs::read_to_string(p.path().join("ledger.json")).unwrap())
            .unwrap();
    assert_eq!(l["users"]["ben@ex.org"]["status"], "failed", "{l}");
    assert_eq!(l["users"]["ann@ex.org"]["status"], "done", "{l}");
    // Old lost nothing; the rerun does only ben.
    lab.sh("knew", "rm -f /usr/local/bin/doveadm");
    let r = play(&p, &lab, "b.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        result(&r, "t", "kold")["done"],
        serde_json::json!(["ben@ex.org"])
    );
    for u in users {
        assert_eq!(snapshot(&lab, "kold", u), snapshot(&lab, "knew", u), "{u}");
    }
}
