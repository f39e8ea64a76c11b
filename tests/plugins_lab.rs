//! Plugin modules over SSH on a lab Dovecot host: the two shipped plugins
//! (modules/mailbox_report.sh, modules/dovecot_user.py), each run twice,
//! with become and without, and misbehaving plugins over a real channel.

mod support;

use serde_json::Value;
use support::lab::{sum_changed, Lab};
use support::{Project, Run};

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/modules");

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

fn mailrun(p: &Project, lab: &Lab, args: &[&str]) -> Run {
    let home = lab.home();
    let root = format!("root={}", p.path().display());
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-e", &root, "--module-path", SHIPPED]);
    p.run_env(&all, &[("HOME", home.to_str().expect("utf-8"))])
}

fn play(p: &Project, lab: &Lab, book: &str, extra: &[&str]) -> Run {
    let mut args = vec![book, "-i", "lab.ini", "--output", "json"];
    args.extend(extra);
    mailrun(p, lab, &args)
}

fn result(r: &Run, task: &str, host: &str) -> Value {
    r.results(task)
        .into_iter()
        .rfind(|e| e["host"] == host)
        .map(|e| e["result"].clone())
        .unwrap_or(Value::Null)
}

fn mail(lab: &Lab, cmd: &str, short: &str, args: &[&str]) {
    let out = std::process::Command::new("bash")
        .arg(Lab::script().with_file_name("mail.sh"))
        .arg(cmd)
        .arg(lab.name(short))
        .args(args)
        .env("LAB_DIR", lab.dir())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run mail.sh");
    assert!(
        out.status.success(),
        "mail.sh {cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether Dovecot accepts the password, once it has seen the file: it
/// looks at a passwd-file at most once a second, so a change is waited for
/// (up to 5 s) before the answer counts.
fn auth_ok(lab: &Lab, user: &str, password: &str, expect: bool) -> bool {
    let test = || {
        lab.exec("plg", &format!("doveadm auth test '{user}' '{password}'"))
            .status
            .success()
    };
    for _ in 0..10 {
        if test() == expect {
            return expect;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    test()
}

#[test]
fn shipped_plugins_manage_users_and_report_mailboxes_twice() {
    let lab = Lab::up_with(&["--dovecot", "--admin", "mailadm"], &["plg"]);
    let p = project_as(&lab, "mailadm");
    mail(&lab, "users", "plg", &["alice@ex.org", "bob@ex.org"]);
    mail(&lab, "populate", "plg", &["alice@ex.org"]);
    let users_before = lab.sh("plg", "cat /etc/dovecot/users");

    // dovecot_user (Python): check mode changes nothing, then twice.
    p.file(
        "user.yml",
        r#"
- hosts: plg
  become: true
  tasks:
    - name: carol
      dovecot_user:
        name: carol@ex.org
        password: "{{ pw }}"
        uid: 5000
        gid: "5000"
        home: /var/vmail/ex.org/carol
      no_log: true
"#,
    );
    let r = play(
        &p,
        &lab,
        "user.yml",
        &["-e", "pw=first-Secret", "--check", "--diff"],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.status("carol", "plg"), "changed", "{}", r.all());
    assert!(!r.all().contains("first-Secret"), "no_log: {}", r.all());
    assert_eq!(lab.sh("plg", "cat /etc/dovecot/users"), users_before);
    let first = play(&p, &lab, "user.yml", &["-e", "pw=first-Secret"]);
    assert_eq!(first.code, 0, "{}", first.all());
    assert_eq!(first.status("carol", "plg"), "changed", "{}", first.all());
    let second = play(&p, &lab, "user.yml", &["-e", "pw=first-Secret"]);
    assert_eq!(second.code, 0, "{}", second.all());
    assert_eq!(sum_changed(&second), 0, "{}", second.all());
    assert!(auth_ok(&lab, "carol@ex.org", "first-Secret", true));
    let users = lab.sh("plg", "cat /etc/dovecot/users");
    assert!(
        users.starts_with(&users_before),
        "other entries kept: {users}"
    );
    assert!(
        users.contains("carol@ex.org:{SSHA512}")
            && users.contains(":5000:5000::/var/vmail/ex.org/carol::"),
        "{users}"
    );
    assert_eq!(
        lab.sh("plg", "stat -c '%a %U %G' /etc/dovecot/users")
            .trim(),
        "640 root dovecot"
    );
    // Uploaded once into root's private cache (become), named by checksum.
    let cache = lab.sh(
        "plg",
        "stat -c '%a %U' /root/.cache/mailrun/plugins; ls /root/.cache/mailrun/plugins",
    );
    assert!(
        cache.starts_with("700 root\n") && cache.contains("dovecot_user-"),
        "{cache}"
    );

    // A new password: changed, and Dovecot takes it; an existing user's
    // SHA512-CRYPT hash (made by doveadm pw) is checked, not replaced.
    let r = play(&p, &lab, "user.yml", &["-e", "pw=second-Secret"]);
    assert_eq!(r.changed("plg"), 1, "{}", r.all());
    assert!(auth_ok(&lab, "carol@ex.org", "second-Secret", true));
    assert!(!auth_ok(&lab, "carol@ex.org", "first-Secret", false));
    let r = mailrun(
        &p,
        &lab,
        &[
            "adhoc",
            "plg",
            "-i",
            "lab.ini",
            "-b",
            "-m",
            "dovecot_user",
            "-a",
            "name=alice@ex.org password=secret",
            "--output",
            "json",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        r.changed("plg"),
        0,
        "doveadm's hash of the same password: {}",
        r.all()
    );

    // Removed, twice.
    p.file(
        "gone.yml",
        "- hosts: plg\n  become: true\n  tasks:\n    - name: gone\n      dovecot_user: name=carol@ex.org state=absent\n",
    );
    let r = play(&p, &lab, "gone.yml", &[]);
    assert_eq!(r.changed("plg"), 1, "{}", r.all());
    let r = play(&p, &lab, "gone.yml", &[]);
    assert_eq!((r.code, r.changed("plg")), (0, 0), "{}", r.all());
    assert_eq!(lab.sh("plg", "cat /etc/dovecot/users"), users_before);
    assert!(!auth_ok(&lab, "carol@ex.org", "second-Secret", false));

    // mailbox_report (sh): what doveadm says, per user and mailbox, twice.
    p.file(
        "report.yml",
        r#"
- hosts: plg
  become: true
  tasks:
    - name: report
      mailbox_report:
      register: rep
    - name: alice has mail
      assert:
        that:
          - rep.users['alice@ex.org'].messages > 10
          - rep.users['bob@ex.org'].messages == 0
"#,
    );
    let first = play(&p, &lab, "report.yml", &[]);
    assert_eq!(first.code, 0, "{}", first.all());
    let second = play(&p, &lab, "report.yml", &[]);
    assert_eq!(
        (second.code, sum_changed(&second)),
        (0, 0),
        "{}",
        second.all()
    );
    let rep = result(&first, "report", "plg");
    let alice = &rep["users"]["alice@ex.org"];
    // Independent of the plugin: doveadm's own numbers.
    let direct = lab.sh(
        "plg",
        "doveadm -f tab mailbox status -u alice@ex.org 'messages vsize' '*' | sed 1d",
    );
    let (mut messages, mut vsize, mut boxes) = (0u64, 0u64, 0usize);
    for line in direct.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let Some(mailbox) = f.first() else {
            continue;
        };
        let n: u64 = f[1].parse().expect("messages");
        assert_eq!(
            alice["mailboxes"][*mailbox]["messages"], n,
            "{mailbox}: {rep}"
        );
        messages += n;
        vsize += f[2].parse::<u64>().expect("vsize");
        boxes += 1;
    }
    assert_eq!(alice["messages"], messages, "{rep}");
    assert_eq!(alice["vsize"], vsize, "{rep}");
    assert_eq!(alice["mailboxes"].as_object().map(|m| m.len()), Some(boxes));
    assert!(alice["mailboxes"]["Ünïcode/日本"]["messages"] == 1, "{rep}");
    assert_eq!(rep["total"]["users"], 2, "{rep}");

    // Ad hoc with free-form text; an unknown user fails naming the module.
    let r = mailrun(
        &p,
        &lab,
        &[
            "adhoc",
            "plg",
            "-i",
            "lab.ini",
            "-b",
            "-m",
            "mailbox_report",
            "-a",
            "bob@ex.org",
            "--output",
            "json",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        result(&r, "mailbox_report", "plg")["total"]["users"],
        1,
        "{}",
        r.all()
    );
    let r = mailrun(
        &p,
        &lab,
        &[
            "adhoc",
            "plg",
            "-i",
            "lab.ini",
            "-b",
            "-m",
            "mailbox_report",
            "-a",
            "user=nobody@ex.org",
            "--output",
            "json",
        ],
    );
    assert_eq!(r.code, 2, "{}", r.all());
    let msg = r.results("mailbox_report")[0]["msg"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        msg.contains("plugin module mailbox_report") && msg.contains("nobody@ex.org"),
        "{msg}"
    );
}

#[test]
fn plugins_over_ssh_without_become_and_misbehaving() {
    let lab = Lab::up_with(&["--admin", "mailadm"], &["plx"]);
    let p = project_as(&lab, "mailadm");
    let desc = r#"case "$req" in *'"request":"describe"'*) printf '{"protocol":1,"name":"%s","description":"Test.","check_mode":true,"args":{},"example":""}\n' "$(basename "$0" .sh)"; exit 0;; esac"#;
    let write = |name: &str, body: &str| {
        let path = p.file(
            &format!("modules/{name}.sh"),
            &format!("#!/bin/sh\nreq=$(cat)\n{desc}\n{body}\n"),
        );
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(path)
            .status()
            .expect("chmod");
    };
    write(
        "whoami",
        r#"printf '{"changed": false, "failed": false, "uid": %s, "home": "%s"}\n' "$(id -u)" "$HOME""#,
    );
    write("crash", "echo 'about to crash' >&2; kill -SEGV $$");
    write("sleepy", "echo 'sleeping now' >&2; sleep 120; echo '{}'");
    write(
        "garbage",
        "echo 'Traceback (most recent call last)'; echo 'oops' >&2",
    );
    p.file(
        "b.yml",
        r#"
- hosts: plx
  tasks:
    - name: whoami
      whoami:
    - name: whoami root
      whoami:
      become: true
    - name: crash
      crash:
      ignore_errors: true
    - name: sleepy
      sleepy:
      timeout: 3
      ignore_errors: true
    - name: garbage
      garbage:
      ignore_errors: true
"#,
    );
    for round in 0..2 {
        let r = play(&p, &lab, "b.yml", &[]);
        assert_eq!(r.code, 0, "round {round}: {}", r.all());
        let me = result(&r, "whoami", "plx");
        assert_eq!(me["home"], "/home/mailadm", "{}", r.all());
        assert_ne!(me["uid"], 0);
        let root = result(&r, "whoami root", "plx");
        assert_eq!(
            (root["uid"].clone(), root["home"].clone()),
            (0.into(), "/root".into()),
            "{}",
            r.all()
        );
        let msg = |t: &str| {
            r.results(t)[0]["msg"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            msg("crash").contains("plugin module crash") && msg("crash").contains("about to crash"),
            "{}",
            msg("crash")
        );
        assert!(
            msg("sleepy").contains("plugin module sleepy")
                && msg("sleepy").contains("timeout")
                && msg("sleepy").contains("stderr: sleeping now"),
            "{}",
            msg("sleepy")
        );
        assert!(
            msg("garbage").contains("not one JSON object") && msg("garbage").contains("oops"),
            "{}",
            msg("garbage")
        );
    }
    // The admin's own private cache; the sleeper is gone from the host.
    let cache = lab.sh("plx", "stat -c '%a %U' /home/mailadm/.cache/mailrun/plugins; ls /home/mailadm/.cache/mailrun/plugins | wc -l");
    assert_eq!(cache, "700 mailadm\n4\n", "{cache}");
    let left = lab.exec("plx", "pgrep -f '[s]leepy-'");
    assert!(
        left.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&left.stdout)
    );
}
