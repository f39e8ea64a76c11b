//! The migration a mail admin runs, on real machines: Debian root file
//! systems booted with systemd-nspawn (tests/lab/rootfs.sh, lab.sh
//! --machine), systemd as PID 1, Postfix delivering to Dovecot over LMTP.
//! Debian 12 (Dovecot 2.3) to Debian 13 (Dovecot 2.4) is the main case;
//! 12 → 12 and 13 → 13 too. Mail arrives by SMTP before and between the
//! steps. Mail is compared with the lab's own snapshot (tests/lab/mail.sh),
//! not with the module under test.

mod support;

use support::lab::{migrate, play, port_open, project, Lab};
use support::mail::{guids, mail, result, snapshot};
use support::Project;

/// Two mail servers, old and new, each a machine of its release; mailrun
/// logs in as the admin "mailadm" (sudo); root may not log in; the hosts
/// do not trust each other yet.
fn pair(old_rel: &str, new_rel: &str, old: &str, new: &str) -> Lab {
    let opts = |rel: &'static str| {
        vec![
            "--machine",
            rel,
            "--dovecot",
            "--no-mesh",
            "--admin",
            "mailadm",
            "--root-login",
            "no",
        ]
    };
    let rel = |r: &str| -> &'static str {
        if r == "bookworm" {
            "bookworm"
        } else {
            "trixie"
        }
    };
    let mut lab = Lab::up_with(&opts(rel(old_rel)), &[old]);
    lab.add(&opts(rel(new_rel)), &[new]);
    lab
}

/// An inventory of the pair as the migration expects it.
fn inventory(lab: &Lab, old: &str, new: &str) -> Project {
    let p = Project::new();
    p.file(
        "inv/hosts.ini",
        &format!(
            "[old]\n{old} ansible_host={} ansible_user=mailadm\n[new]\n{new} ansible_host={} ansible_user=mailadm\n",
            lab.addr(old),
            lab.addr(new)
        ),
    );
    p.file("inv/group_vars/all.yml", "migrate_parallel: 2\n");
    p
}

/// One message by SMTP to the host's Postfix; its Message-ID.
fn smtp(lab: &Lab, host: &str, user: &str, subject: &str, bytes: usize) -> String {
    mail(lab, "smtp", host, &[user, subject, &bytes.to_string()])
        .trim()
        .to_string()
}

/// Until Postfix on the host has delivered everything it took.
fn delivered(lab: &Lab, host: &str) {
    for _ in 0..600 {
        if lab.sh(host, "postqueue -j 2>/dev/null | wc -l").trim() == "0" {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!(
        "{host}'s Postfix did not deliver its queue: {}",
        lab.sh(host, "postqueue -p; tail -n 20 /var/log/postfix.log")
    );
}

/// The Message-IDs in a user's mailboxes on a host (every message once).
fn message_ids(lab: &Lab, host: &str, user: &str) -> Vec<String> {
    let mut ids: Vec<String> = lab
        .sh(
            host,
            &format!("doveadm -f tab fetch -u {user} 'mailbox hdr.message-id' all | tail -n +2"),
        )
        .lines()
        .map(str::to_string)
        .collect();
    ids.sort();
    ids
}

/// Folders and flags beyond mail.sh populate: a name ending in '%', more
/// non-ASCII names, keywords.
fn odd_mail(lab: &Lab, host: &str, user: &str) {
    lab.sh(
        host,
        &format!(
            "set -e; u={user}
             doveadm mailbox create -u $u -s 'Budget 100%' 'Ärger/日本語/Ελληνικά'
             printf 'From: a@example.net\\nSubject: percent\\nMessage-ID: <pct.$u@lab>\\n\\nx\\n' | doveadm save -u $u -m 'Budget 100%'
             printf 'From: a@example.net\\nSubject: greek\\nMessage-ID: <gr.$u@lab>\\n\\ny\\n' | doveadm save -u $u -m 'Ärger/日本語/Ελληνικά'
             doveadm flags add -u $u 'Work $Important' mailbox INBOX uid 1
             doveadm flags add -u $u '\\Deleted NonJunk' mailbox 'Budget 100%' all"
        ),
    );
}

#[test]
fn migrate_debian12_to_debian13_with_smtp_in_two_sittings() {
    let (old, new) = ("m12o", "m13n");
    let lab = pair("bookworm", "trixie", old, new);
    assert!(lab.sh(old, "dovecot --version").starts_with("2.3."));
    assert!(lab.sh(new, "dovecot --version").starts_with("2.4."));
    for h in [old, new] {
        assert_eq!(lab.sh(h, "cat /proc/1/comm").trim(), "systemd", "{h}");
        // SMTP, IMAP, POP3 and ManageSieve answer.
        for port in [25, 143, 110, 4190] {
            assert!(port_open(lab.addr(h), port), "{h}:{port}");
        }
    }
    let users = ["alice@example.org", "bob@example.org", "dora@example.net"];
    mail(&lab, "users", old, &users);
    mail(&lab, "populate", old, &users);
    odd_mail(&lab, old, "alice@example.org");
    // Mail arrives by SMTP before the copy; one of 21 MB.
    let mut sent = vec![
        smtp(&lab, old, "alice@example.org", "by SMTP before", 0),
        smtp(&lab, old, "bob@example.org", "a big one", 21 * 1024 * 1024),
    ];
    delivered(&lab, old);
    lab.sh(old, "rm -rf /root/.ssh");
    let p = inventory(&lab, old, new);

    // Check mode: the whole migration predicted, nothing touched.
    let r = migrate(&p, &lab, &["--check"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(lab.sh(new, "cat /etc/dovecot/users"), "");
    assert!(port_open(lab.addr(old), 25));

    // First sitting: the preparation and the initial copy.
    let r = migrate(&p, &lab, &["--tags", "prepare,copy"]);
    assert_eq!(r.code, 0, "{}", r.all());
    for u in users {
        assert_eq!(snapshot(&lab, old, u), snapshot(&lab, new, u), "{u}");
    }
    let big = lab.sh(
        new,
        "doveadm -f tab fetch -u bob@example.org 'size.physical' mailbox INBOX all | sort -n | tail -n 1",
    );
    assert!(
        big.trim().parse::<u64>().unwrap() > 20 * 1024 * 1024,
        "{big}"
    );
    // Old still serves and takes mail.
    assert!(port_open(lab.addr(old), 25) && port_open(lab.addr(old), 143));

    // Between the sittings: more SMTP mail, and a flag changed on both
    // sides (the user on old, and on new).
    sent.push(smtp(
        &lab,
        old,
        "alice@example.org",
        "between the sittings",
        0,
    ));
    sent.push(smtp(&lab, old, "dora@example.net", "also between", 0));
    lab.sh(
        old,
        "doveadm flags add -u alice@example.org '\\Flagged' mailbox INBOX uid 4",
    );
    lab.sh(
        new,
        "doveadm flags add -u alice@example.org '\\Answered' mailbox INBOX uid 4",
    );
    // Sent just before the switch: still in old's queue or delivered; the
    // switch drains the queue before Postfix stops.
    sent.push(smtp(
        &lab,
        old,
        "bob@example.org",
        "right before the switch",
        0,
    ));
    // Mail for a user old does not have (Postfix takes it, LMTP refuses
    // it, Postfix bounces it), and outbound mail that stays deferred in
    // old's queue: neither may hold up the switch.
    smtp(&lab, old, "nobody@example.org", "no such user", 0);
    lab.sh(
        old,
        "printf 'Subject: outbound\n\nx\n' | sendmail -f alice@example.org someone@elsewhere.example",
    );

    // Second sitting: the switch, the delta, the proof.
    let r = migrate(&p, &lab, &["--skip-tags", "copy"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let drained = result(
        &r,
        "Old's Postfix takes no more SMTP and delivers what it has queued",
        old,
    );
    assert!(
        drained["stdout"]
            .as_str()
            .unwrap_or("")
            .contains("1 message(s) for other places stay in the queue here"),
        "{}",
        r.all()
    );
    let verify = result(&r, "Prove that new has all of old's mail", old);
    assert_eq!(verify["failed_users"], serde_json::json!([]), "{}", r.all());
    for u in users {
        let (o, n) = (snapshot(&lab, old, u), snapshot(&lab, new, u));
        assert!(o.contains("Ünïcode/日本") && o.contains("Empty") && o.contains("ACTIVE"));
        if u == "alice@example.org" {
            assert!(o.contains("Budget 100%") && o.contains("Ελληνικά"), "{o}");
            assert!(o.contains("$Important") && o.contains("NonJunk"), "{o}");
            // Old's flag arrived; new's own stayed.
            let flags4 = lab.sh(
                new,
                "doveadm -f tab fetch -u alice@example.org flags mailbox INBOX uid 4",
            );
            assert!(
                flags4.contains("\\Flagged") && flags4.contains("\\Answered"),
                "{flags4}"
            );
            assert_eq!(guids(&o), guids(&n), "{u}");
        } else {
            assert_eq!(o, n, "{u}");
        }
        // Every message once on new (nothing doubled), old's all there.
        assert_eq!(message_ids(&lab, old, u), message_ids(&lab, new, u), "{u}");
    }
    let on_new: String = users
        .iter()
        .map(|u| message_ids(&lab, new, u).join("\n"))
        .collect();
    for id in &sent {
        assert_eq!(on_new.matches(id.as_str()).count(), 1, "{id} on new");
    }
    // Old's Postfix is stopped and disabled: no SMTP; no IMAP either;
    // doveadm still works there. New's Dovecot and Postfix run.
    assert_eq!(
        lab.sh(old, "systemctl is-active postfix || true").trim(),
        "inactive"
    );
    assert_eq!(
        lab.sh(old, "systemctl is-enabled postfix || true").trim(),
        "disabled"
    );
    assert!(!port_open(lab.addr(old), 25));
    assert!(!port_open(lab.addr(old), 143));
    assert!(lab
        .sh(old, "doveadm mailbox list -u alice@example.org")
        .contains("INBOX"));
    assert_eq!(
        lab.sh(new, "systemctl is-active dovecot postfix").trim(),
        "active\nactive"
    );
    // Root login on new is closed again.
    assert!(lab.sh(new, "sshd -T").contains("permitrootlogin no"));
    // New takes mail by SMTP now.
    let id = smtp(&lab, new, "alice@example.org", "straight to new", 0);
    delivered(&lab, new);
    assert!(message_ids(&lab, new, "alice@example.org")
        .join("\n")
        .contains(&id));

    // A second run ends without error and loses nothing.
    let before_old: Vec<String> = users.iter().map(|u| snapshot(&lab, old, u)).collect();
    let r = migrate(&p, &lab, &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    for (u, o) in users.iter().zip(&before_old) {
        assert_eq!(&snapshot(&lab, old, u), o, "{u} on old");
        let n = guids(&snapshot(&lab, new, u));
        assert!(guids(o).iter().all(|g| n.contains(g)), "{u} on new");
    }
    assert!(message_ids(&lab, new, "alice@example.org")
        .join("\n")
        .contains(&id));
    assert!(lab.sh(new, "sshd -T").contains("permitrootlogin no"));
}

/// 12 → 12 and 13 → 13, each through migrate.yml in one go.
#[test]
fn migrate_between_machines_of_one_release() {
    for (rel, old, new) in [("bookworm", "s12o", "s12n"), ("trixie", "s13o", "s13n")] {
        let lab = pair(rel, rel, old, new);
        let users = ["erin@example.org", "fred@example.com"];
        mail(&lab, "users", old, &users);
        mail(&lab, "populate", old, &users);
        odd_mail(&lab, old, users[0]);
        let id = smtp(&lab, old, users[1], "by SMTP", 0);
        let mut held = None;
        if rel == "bookworm" {
            // Postfix stopped by the admin with mail for a user still in
            // its queue (deliveries were deferred): the switch starts it,
            // SMTP closed, to deliver that mail before it is copied.
            lab.sh(old, "postconf -e defer_transports=lmtp && postfix reload");
            held = Some(smtp(&lab, old, users[0], "queued while Postfix stops", 0));
            lab.sh(
                old,
                "sleep 1; systemctl stop postfix; postconf -e defer_transports= ; postqueue -j | grep -q erin@",
            );
        }
        lab.sh(old, "rm -rf /root/.ssh");
        let p = inventory(&lab, old, new);
        if rel == "trixie" {
            // A file old's Dovecot refuses (2.3's `protocols = none` on
            // 2.4, forced by an extra var) is removed again and Dovecot is
            // not reloaded: old still serves IMAP.
            let r = migrate(&p, &lab, &["-e", "old_closed_protocols=none"]);
            assert_eq!(r.code, 2, "{}", r.all());
            let check = result(
                &r,
                "Old's Dovecot accepts that file (else it is removed again, nothing reloaded)",
                old,
            );
            assert!(
                check["stderr"]
                    .as_str()
                    .unwrap_or("")
                    .contains("Unknown protocol: none"),
                "{}",
                r.all()
            );
            assert!(!lab
                .exec(old, "test -e /etc/dovecot/conf.d/99-mailrun-migrated.conf")
                .status
                .success());
            assert!(port_open(lab.addr(old), 143), "IMAP on old");
            assert!(lab
                .sh(old, "doveconf -n >/dev/null && echo ok")
                .contains("ok"));
        }
        let r = migrate(&p, &lab, &[]);
        assert_eq!(r.code, 0, "{rel}: {}", r.all());
        for u in users {
            assert_eq!(snapshot(&lab, old, u), snapshot(&lab, new, u), "{rel} {u}");
        }
        assert!(message_ids(&lab, new, users[1]).join("\n").contains(&id));
        if let Some(held) = &held {
            assert!(
                message_ids(&lab, new, users[0])
                    .join("\n")
                    .contains(held.as_str()),
                "{}",
                r.all()
            );
            assert!(
                r.all().contains("Postfix started (SMTP closed)"),
                "{}",
                r.all()
            );
        }
        assert!(!port_open(lab.addr(old), 25), "{rel}");
        assert!(!port_open(lab.addr(old), 143), "{rel}");
        assert!(lab.sh(new, "sshd -T").contains("permitrootlogin no"));
        // The file that closes old is one its Dovecot accepts.
        let protocols = lab.sh(old, "doveconf -h protocols");
        let want = if rel == "bookworm" { "none" } else { "" };
        assert_eq!(protocols.trim(), want, "{rel}");
        let r = migrate(&p, &lab, &[]);
        assert_eq!(r.code, 0, "{rel} again: {}", r.all());
        for u in users {
            assert_eq!(
                snapshot(&lab, old, u),
                snapshot(&lab, new, u),
                "{rel} {u} again"
            );
        }
    }
}

/// The dsync cases admins meet, with doveadm_backup/doveadm_sync and
/// mail_verify directly: mail arriving on old during the backup, a user
/// over quota on new, a Sieve script that no longer compiles on Dovecot 2.4.
#[test]
fn dsync_cases_on_debian12_to_debian13() {
    let (old, new) = ("d12o", "d13n");
    let lab = Lab::up_with(&["--machine", "bookworm", "--dovecot"], &[old]);
    let mut lab = lab;
    lab.add(&["--machine", "trixie", "--dovecot"], &[new]);
    let users = ["gina@example.org", "hank@example.org", "ivy@example.org"];
    mail(&lab, "users", old, &users);
    mail(&lab, "users", new, &users);
    mail(&lab, "populate", old, &users);
    mail(&lab, "bulk", old, &["gina@example.org", "3000"]);
    // hank may store 1 MB on new; he has more.
    mail(&lab, "quota", new, &["hank@example.org", "1M"]);
    mail(&lab, "bulk", old, &["hank@example.org", "400"]);
    // ivy's Sieve script uses imapflags (Pigeonhole 2.3 with it enabled).
    lab.sh(
        old,
        "printf 'require [\"imapflags\"];\\naddflag \"\\\\\\\\Flagged\";\\n' | doveadm sieve put -u ivy@example.org flagger",
    );
    let p = project(&lab, "");
    p.file(
        "b.yml",
        &format!(
            "- hosts: {old}\n  tasks:\n    - name: backup\n      doveadm_backup:\n        remote: {new}\n        parallel: 3\n        ledger: {}/l.json\n    - name: verify\n      mail_verify:\n        remote: {new}\n        users: [hank@example.org, ivy@example.org]\n",
            p.path().display()
        ),
    );
    // Mail arrives by SMTP while gina's big mailbox is copied.
    let real = lab.name(old);
    let dir = lab.dir().to_path_buf();
    let sender = std::thread::spawn(move || {
        let mut ids = Vec::new();
        for i in 0..15 {
            let out = std::process::Command::new("bash")
                .arg(Lab::script().with_file_name("mail.sh"))
                .args(["smtp", &real, "gina@example.org"])
                .arg(format!("during the backup {i}"))
                .env("LAB_DIR", &dir)
                .output()
                .unwrap();
            if out.status.success() {
                ids.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
            }
            std::thread::sleep(std::time::Duration::from_millis(150));
        }
        ids
    });
    let r = play(&p, &lab, "b.yml", &[]);
    let ids = sender.join().unwrap();
    assert_eq!(ids.len(), 15, "every message sent");
    // The backup itself: every user done (hank over quota too: Dovecot's
    // quota does not limit dsync).
    let res = result(&r, "backup", old);
    assert_eq!(res["failed_users"], serde_json::json!([]), "{}", r.all());
    // The proof fails only for ivy's script, named with its extension.
    assert_eq!(r.code, 2, "{}", r.all());
    let v = result(&r, "verify", old);
    assert_eq!(
        v["failed_users"],
        serde_json::json!(["ivy@example.org"]),
        "{}",
        r.all()
    );
    let problems = v["users"]["ivy@example.org"]["problems"].to_string();
    assert!(
        problems.contains("'flagger' does not compile") && problems.contains("'imapflags'"),
        "{problems}"
    );
    // What arrived during the backup comes with a one-way sync.
    delivered(&lab, old);
    p.file(
        "s.yml",
        &format!(
            "- hosts: {old}\n  tasks:\n    - name: sync\n      doveadm_sync:\n        remote: {new}\n        user: gina@example.org\n        full: true\n    - name: verify\n      mail_verify:\n        remote: {new}\n        user: gina@example.org\n"
        ),
    );
    let r = play(&p, &lab, "s.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    let on_new = message_ids(&lab, new, "gina@example.org").join("\n");
    for id in &ids {
        assert_eq!(on_new.matches(id.as_str()).count(), 1, "{id}");
    }
    assert_eq!(
        message_ids(&lab, old, "gina@example.org"),
        message_ids(&lab, new, "gina@example.org")
    );
    assert_eq!(
        snapshot(&lab, old, "hank@example.org"),
        snapshot(&lab, new, "hank@example.org")
    );
}

/// The service module on systemd for real: every state, each twice (the
/// second run `ok`), on a Debian 13 machine, and ansible-core's
/// systemd_service on a twin machine with the same status and end state.
#[test]
fn service_module_on_systemd() {
    // svc13 for mailrun, its twin ans13 for ansible-core: the same steps
    // must leave the same state and report the same status on both.
    let lab = Lab::up_with(&["--machine", "trixie"], &["svc13", "ans13"]);
    let (h, twin) = ("svc13", "ans13");
    for host in [h, twin] {
        // A unit of the test's own, where packages put theirs (one in
        // /etc/systemd/system cannot be masked): a sleeper that reloads on HUP.
        lab.sh(
            host,
            "cat > /usr/lib/systemd/system/mrtest.service <<'EOF'\n[Unit]\nDescription=mailrun test\n[Service]\nExecStart=/bin/sh -c 'trap \"\" HUP; exec sleep infinity'\nExecReload=/bin/kill -HUP $MAINPID\n[Install]\nWantedBy=multi-user.target\nEOF",
        );
    }
    let p = project(&lab, "");
    p.file(
        "ansible.ini",
        &format!(
            "{twin} ansible_host={} ansible_user=root ansible_python_interpreter=/usr/bin/python3\n",
            lab.addr(twin)
        ),
    );
    let state_of = |lab: &Lab, host: &str| {
        lab.sh(
            host,
            "echo $(systemctl is-active mrtest) $(systemctl is-enabled mrtest 2>/dev/null || true)",
        )
        .trim()
        .to_string()
    };
    let state = |lab: &Lab| state_of(lab, h);
    let steps: [(&str, &str); 9] = [
        (
            "name: mrtest\ndaemon_reload: true\nstate: started",
            "active disabled",
        ),
        ("name: mrtest\nenabled: true", "active enabled"),
        ("name: mrtest\nstate: reloaded", "active enabled"),
        ("name: mrtest\nstate: restarted", "active enabled"),
        ("name: mrtest\nstate: stopped", "inactive enabled"),
        ("name: mrtest\nenabled: false", "inactive disabled"),
        ("name: mrtest\nmasked: true", "inactive masked"),
        ("name: mrtest\nmasked: false", "inactive disabled"),
        (
            "name: mrtest\nstate: started\nenabled: true",
            "active enabled",
        ),
    ];
    for (args, want) in steps {
        let book = |hosts: &str| {
            format!(
                "- hosts: {hosts}\n  gather_facts: false\n  tasks:\n    - name: t\n      systemd_service:\n{}",
                args.lines()
                    .map(|l| format!("        {l}\n"))
                    .collect::<String>()
            )
        };
        p.file("s.yml", &book(h));
        p.file("a.yml", &book("all"));
        let r = play(&p, &lab, "s.yml", &[]);
        assert_eq!(r.code, 0, "{args}: {}", r.all());
        let again_is_change = args.contains("reloaded") || args.contains("restarted");
        assert_eq!(r.status("t", h), "changed", "{args}: {}", r.all());
        assert_eq!(state(&lab), want, "{args}");
        assert_eq!(ansible_status(&p, &lab, twin), "changed", "ansible: {args}");
        assert_eq!(state_of(&lab, twin), want, "ansible: {args}");
        let r = play(&p, &lab, "s.yml", &[]);
        assert_eq!(r.code, 0, "{args} again: {}", r.all());
        let second = if again_is_change { "changed" } else { "ok" };
        assert_eq!(r.status("t", h), second, "{args} again: {}", r.all());
        assert_eq!(state(&lab), want, "{args} again");
        assert_eq!(
            ansible_status(&p, &lab, twin),
            second,
            "ansible: {args} again"
        );
        assert_eq!(state_of(&lab, twin), want, "ansible: {args} again");
    }
    // Check mode predicts and changes nothing.
    p.file(
        "s.yml",
        "- hosts: svc13\n  tasks:\n    - name: t\n      service: { name: mrtest, state: stopped }\n",
    );
    let r = play(&p, &lab, "s.yml", &["--check"]);
    assert_eq!(r.status("t", h), "changed", "{}", r.all());
    assert_eq!(state(&lab), "active enabled");
}

/// ansible-core (pinned, in the virtualenv scripts/test.sh makes) runs the
/// project's a.yml on `host` of ansible.ini: the task's status there.
fn ansible_status(p: &Project, lab: &Lab, host: &str) -> String {
    let venv = std::env::var("MAILRUN_ANSIBLE_VENV")
        .unwrap_or_else(|_| "/var/tmp/mailrun-ansible-venv".into());
    let bin = std::path::Path::new(&venv).join("bin/ansible-playbook");
    assert!(
        bin.exists(),
        "{} is missing: scripts/test.sh installs ansible-core there (scripts/ansible-venv.sh)",
        bin.display()
    );
    let ssh_args = format!(
        "-o UserKnownHostsFile={} -o IdentitiesOnly=yes -i {}",
        lab.known_hosts().display(),
        lab.control_key().display()
    );
    let out = std::process::Command::new(&bin)
        .args(["-i", "ansible.ini", "a.yml"])
        .current_dir(p.path())
        .env("HOME", lab.home())
        .env("ANSIBLE_SSH_ARGS", ssh_args)
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_LOCAL_TEMP", p.path().join(".ansible-tmp"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run ansible-playbook");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find_map(|l| {
            let (status, rest) = l.split_once(": [")?;
            rest.starts_with(&format!("{host}]"))
                .then(|| status.to_string())
        })
        .unwrap_or_else(|| {
            panic!(
                "no result for {host} from ansible-playbook:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// Bad inputs on the machines: Dovecot stopped on new, then new
/// unreachable. Each run ends with the users reported and old intact and
/// still taking mail; the rerun with new back completes the migration.
#[test]
fn migration_with_new_broken_leaves_old_intact() {
    let (old, new) = ("f12o", "f13n");
    let lab = pair("bookworm", "trixie", old, new);
    let users = ["jack@example.org", "kate@example.org"];
    mail(&lab, "users", old, &users);
    mail(&lab, "populate", old, &users);
    let p = inventory(&lab, old, new);
    p.file(
        "inv/group_vars/all.yml",
        "migrate_parallel: 2\nmigrate_user_timeout: 120\n",
    );
    let before: Vec<String> = users.iter().map(|u| snapshot(&lab, old, u)).collect();
    let old_intact = |lab: &Lab, when: &str| {
        for (u, b) in users.iter().zip(&before) {
            assert_eq!(&snapshot(lab, old, u), b, "{u} on old {when}");
        }
        assert!(port_open(lab.addr(old), 25), "SMTP on old {when}");
        assert!(port_open(lab.addr(old), 143), "IMAP on old {when}");
        assert_eq!(
            lab.sh(old, "systemctl is-active postfix dovecot").trim(),
            "active\nactive",
            "{when}"
        );
    };

    // Dovecot stopped on new: the copy fails for every user, named.
    lab.sh(new, "systemctl stop dovecot");
    let r = migrate(&p, &lab, &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    let copy = result(&r, "Initial copy of all mail to new (doveadm backup)", old);
    assert_eq!(
        copy["failed_users"],
        serde_json::json!(users),
        "{}",
        r.all()
    );
    old_intact(&lab, "with Dovecot stopped on new");
    // Root login on new is closed again after the failed copy.
    assert!(lab.sh(new, "sshd -T").contains("permitrootlogin no"));

    // New unreachable (its sshd down): new is reported unreachable, the
    // copy on old starts no user (it cannot ask new for its Dovecot
    // version) and reports each; exit 2 (a host failed wins over one unreachable, as
    // ansible-playbook's), old intact.
    lab.sh(new, "systemctl start dovecot");
    lab.sshd_stop(new);
    let r = migrate(&p, &lab, &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert_eq!(r.recap()["hosts"][new]["unreachable"], 1, "{}", r.all());
    let copy = result(&r, "Initial copy of all mail to new (doveadm backup)", old);
    assert!(
        copy["msg"].as_str().unwrap_or("").contains("unreachable"),
        "{}",
        r.all()
    );
    // Every user reported (not run: the ledger has them for the rerun).
    assert_eq!(copy["not_run"], serde_json::json!(users), "{}", r.all());
    old_intact(&lab, "with new unreachable");

    // New back: the rerun completes the migration.
    lab.sshd_start(new);
    let r = migrate(&p, &lab, &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    for (u, b) in users.iter().zip(&before) {
        assert_eq!(&snapshot(&lab, new, u), b, "{u} on new");
    }
    assert!(!port_open(lab.addr(old), 25));
    assert!(lab.sh(new, "sshd -T").contains("permitrootlogin no"));
}

/// A machine is a real booted system with its own identity, and leaves
/// nothing behind on this machine once its lab is down: no process, no
/// mount, no cgroup, no nspawn state.
#[test]
fn a_machine_boots_and_leaves_nothing_behind() {
    let lab = Lab::up_with(&["--machine", "bookworm"], &["bare12"]);
    let h = "bare12";
    let real = lab.name(h);
    assert_eq!(lab.sh(h, "cat /proc/1/comm").trim(), "systemd");
    assert_eq!(lab.sh(h, "hostname").trim(), real);
    assert!(lab.sh(h, "cat /etc/debian_version").starts_with("12."));
    assert_eq!(
        lab.sh(h, "systemctl is-system-running || true").trim(),
        "running"
    );
    // OpenSSH's client logs in with the control key and the lab's
    // known_hosts (strict): the host key is the machine's own.
    let out = lab.ssh(h, "cat /etc/ssh/ssh_host_ed25519_key.pub");
    assert!(out.status.success(), "{out:?}");
    let key = String::from_utf8_lossy(&out.stdout).to_string();
    let mine = std::fs::read_to_string("/etc/ssh/ssh_host_ed25519_key.pub").unwrap_or_default();
    assert!(!mine.is_empty() && key.split(' ').nth(1) != mine.split(' ').nth(1));
    let dir = lab.dir().to_path_buf();
    drop(lab);
    let dir = dir.to_string_lossy().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&dir), "a mount of {dir} is left");
    let root = std::path::PathBuf::from("/sys/fs/cgroup");
    let hierarchies = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .chain([root.clone()]);
    for h in hierarchies {
        let cg = h.join("mailrun-lab").join(&real);
        assert!(!cg.exists(), "{} is left", cg.display());
    }
    assert!(!std::path::Path::new("/run/systemd/nspawn/propagate")
        .join(&real)
        .exists());
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmd).contains(&dir),
            "process {} of the lab is left",
            p.path().display()
        );
    }
}
