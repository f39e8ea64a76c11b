//! Faults injected into real runs on the lab (issue 7): Ctrl-C (once and
//! twice), sshd killed during a task, a host's link cut, a host that accepts
//! TCP but never speaks SSH, a name that does not resolve, a full disk under
//! `file_copy`, sshd killed on new during a backup and Dovecot stopped on new
//! during a sync. Each run must end (no hang past the configured timeouts)
//! with a clear state per host and the documented exit code; a rerun after
//! the repair completes; old never loses a message (GUIDs compared).

mod support;

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::lab::{play, project, Lab};
use support::mail::{guids, mail, result, snapshot};
use support::{Project, Run};

/// mailrun started in the background, its output going to files (a full
/// pipe must never look like a hang).
struct Bg {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Bg {
    fn start(p: &Project, lab: &Lab, args: &[&str]) -> Bg {
        Self::start_with(p, lab, &[], args)
    }

    /// `wrap`: a command line that execs mailrun as its last arguments.
    fn start_with(p: &Project, lab: &Lab, wrap: &[&str], args: &[&str]) -> Bg {
        let out = p.path().join(format!("bg-{}.out", std::process::id()));
        let err = p.path().join(format!("bg-{}.err", std::process::id()));
        let bin = env!("CARGO_BIN_EXE_mailrun");
        let mut cmd = match wrap.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let child = cmd
            .args(args)
            .current_dir(p.path())
            .env("HOME", lab.home())
            .env("NO_COLOR", "1")
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("MAILRUN_INVENTORY")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("start mailrun");
        Bg { child, out, err }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} mailrun");
    }

    /// Waits for the exit, at most `limit` (then kills it and fails).
    fn finish(mut self, limit: Duration) -> Run {
        let started = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "mailrun still ran after {limit:?} (a hang):\n{}\n{}",
                    std::fs::read_to_string(&self.out).unwrap_or_default(),
                    std::fs::read_to_string(&self.err).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Run {
            code: status.code().unwrap_or(-1),
            stdout: std::fs::read_to_string(&self.out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.err).unwrap_or_default(),
        }
    }
}

/// Polls a shell test on a host until it succeeds (at most `limit`).
fn wait_until(lab: &Lab, host: &str, test: &str, limit: Duration) {
    let started = Instant::now();
    while !lab.exec(host, test).status.success() {
        assert!(
            started.elapsed() < limit,
            "{host}: `{test}` never became true"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// No doveadm process (client, dsync-server) runs on the host.
fn no_doveadm(lab: &Lab, host: &str) {
    let left = lab.exec(host, "pgrep -a doveadm");
    assert!(
        !left.status.success(),
        "doveadm left running on {host}: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

fn recap(r: &Run) -> Value {
    r.events()
        .into_iter()
        .find(|e| e["event"] == "recap")
        .unwrap_or(Value::Null)
}

fn host_msg(r: &Run, task: &str, host: &str) -> String {
    r.results(task)
        .into_iter()
        .rfind(|e| e["host"] == host)
        .and_then(|e| e["msg"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn ctrl_c_during_migrate_yml_stops_doveadm_keeps_old_and_the_rerun_finishes() {
    let lab = Lab::up_with(
        &[
            "--dovecot",
            "--no-mesh",
            "--admin",
            "mailadm",
            "--root-login",
            "no",
        ],
        &["cold", "cnew"],
    );
    let users = ["ann@ex.org", "bob@ex.org", "cyd@ex.org"];
    mail(&lab, "users", "cold", &users);
    // Large mailboxes, so that the copy is caught while it runs.
    mail(&lab, "bulk", "cold", &["ann@ex.org", "2000"]);
    mail(&lab, "bulk", "cold", &["bob@ex.org", "2000"]);
    mail(&lab, "populate", "cold", &["cyd@ex.org"]);
    let before: Vec<Vec<String>> = users
        .iter()
        .map(|u| guids(&snapshot(&lab, "cold", u)))
        .collect();
    let p = Project::new();
    p.file(
        "inv/hosts.ini",
        &format!(
            "[old]\ncold ansible_host={} ansible_user=mailadm\n[new]\ncnew ansible_host={} ansible_user=mailadm\n",
            lab.addr("cold"),
            lab.addr("cnew")
        ),
    );
    p.file("inv/group_vars/all.yml", "migrate_parallel: 1\n");
    let book = concat!(env!("CARGO_MANIFEST_DIR"), "/playbooks/migrate.yml");
    let args = [book, "-i", "inv", "--output", "json", "--yes"];

    let bg = Bg::start(&p, &lab, &args);
    wait_until(
        &lab,
        "cold",
        "pgrep -f '[d]oveadm.* backup '",
        Duration::from_secs(180),
    );
    std::thread::sleep(Duration::from_millis(300));
    bg.signal("INT");
    let r = bg.finish(Duration::from_secs(60));
    assert_eq!(r.code, 99, "{}", r.all());
    let rc = recap(&r);
    assert_eq!(rc["interrupted"], true, "{}", r.all());
    assert!(r.stderr.contains("interrupted"), "{}", r.stderr);
    // Nothing after the copy ran: old still serves IMAP and takes mail.
    let imap: std::net::SocketAddr = format!("{}:143", lab.addr("cold")).parse().unwrap();
    assert!(std::net::TcpStream::connect_timeout(&imap, Duration::from_secs(5)).is_ok());
    // No doveadm left on either side, the moment mailrun has exited.
    no_doveadm(&lab, "cold");
    no_doveadm(&lab, "cnew");
    assert!(
        !lab.exec("cold", "ls -d /tmp/mailrun-dsync.*")
            .status
            .success(),
        "the shared ssh connection's directory was left on old"
    );
    // The ledger has the users that are not done.
    let ledger = lab
        .home()
        .join(".local/state/mailrun/ledger-backup-cold-to-cnew.json");
    let l: Value = serde_json::from_str(&std::fs::read_to_string(&ledger).unwrap()).unwrap();
    assert_eq!(l["complete"], false, "{l}");
    let not_done: Vec<&str> = users
        .iter()
        .copied()
        .filter(|u| l["users"][u]["status"] != "done")
        .collect();
    assert!(!not_done.is_empty(), "{l}");
    // Each of them recorded (cut short or never started), none left pending.
    for u in &not_done {
        assert_eq!(l["users"][u]["status"], "not run", "{u}: {l}");
    }
    assert!(
        l["users"]
            .as_object()
            .unwrap()
            .values()
            .any(|u| u["msg"].as_str().unwrap_or("").contains("interrupted")),
        "{l}"
    );
    // Old lost nothing.
    for (u, b) in users.iter().zip(&before) {
        assert_eq!(&guids(&snapshot(&lab, "cold", u)), b, "{u} on old");
    }

    // The rerun resumes and finishes: new equals old, root login closed.
    let r = p.run_env(&args, &[("HOME", lab.home().to_str().unwrap())]);
    assert_eq!(r.code, 0, "{}", r.all());
    for (u, b) in users.iter().zip(&before) {
        let old = snapshot(&lab, "cold", u);
        assert_eq!(&guids(&old), b, "{u} on old");
        assert_eq!(old, snapshot(&lab, "cnew", u), "{u}");
    }
    assert!(lab.sh("cnew", "sshd -T").contains("permitrootlogin no"));
}

#[test]
fn a_second_ctrl_c_exits_at_once() {
    let lab = Lab::up(&["twice"]);
    let p = project(&lab, "");
    p.file(
        "b.yml",
        "- hosts: twice\n  tasks:\n    - name: stubborn\n      shell: \"trap '' TERM; sleep 20\"\n",
    );
    let bg = Bg::start(&p, &lab, &["b.yml", "-i", "lab.ini"]);
    wait_until(
        &lab,
        "twice",
        "pgrep -fx 'sleep 20'",
        Duration::from_secs(60),
    );
    bg.signal("INT");
    // The first Ctrl-C waits up to 5 s for the command to end on SIGTERM
    // (it ignores it); the second does not wait.
    std::thread::sleep(Duration::from_millis(1000));
    bg.signal("INT");
    let r = bg.finish(Duration::from_secs(3));
    assert_eq!(r.code, 99, "{}", r.all());
    assert!(r.stderr.contains("interrupted twice"), "{}", r.stderr);
    assert!(!r.stdout.contains("PLAY RECAP"), "{}", r.stdout);
    // What the first Ctrl-C started on the host still ends the command.
    wait_until(
        &lab,
        "twice",
        "! pgrep -fx 'sleep 20'",
        Duration::from_secs(15),
    );
}

#[test]
fn connection_faults_end_with_a_clear_state_per_host_and_a_rerun_completes() {
    let lab = Lab::up(&["fkill", "fcut", "fok"]);
    // A host that accepts TCP and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming() {
            held.push(s);
        }
    });
    let p = project(&lab, "");
    let lab_ini = p.read("lab.ini").unwrap();
    let ini = format!(
        "{}silent ansible_host=127.0.0.1 ansible_port={port} ansible_user=root\n\
         nores ansible_host=nohost.mailrun-lab.invalid ansible_user=root\n",
        lab_ini
    );
    p.file("lab.ini", &ini);
    p.file(
        "b.yml",
        "- hosts: all\n  tasks:\n    - name: work\n      command: sleep 6\n    - name: after\n      command: touch /tmp/after-fault\n",
    );
    // Names are looked up with a resolv.conf that points at loopback (no
    // DNS query leaves the machine; the lookup fails at once).
    let resolv = p.file(
        "resolv.conf",
        "nameserver 127.0.0.1\noptions attempts:1 timeout:1\n",
    );
    let wrap = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        "mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"",
    ];
    let mut wrapped: Vec<&str> = wrap.to_vec();
    let resolv_s = resolv.to_str().unwrap().to_string();
    wrapped.push(&resolv_s);
    let started = Instant::now();
    let bg = Bg::start_with(
        &p,
        &lab,
        &wrapped,
        &["b.yml", "-i", "lab.ini", "--output", "json"],
    );
    // sshd killed (listener and sessions) on one host, the link cut on
    // another, while the task runs.
    wait_until(
        &lab,
        "fkill",
        "pgrep -fx 'sleep 6'",
        Duration::from_secs(60),
    );
    wait_until(&lab, "fcut", "pgrep -fx 'sleep 6'", Duration::from_secs(60));
    lab.sh("fkill", "pkill -KILL -x sshd; true");
    lab.sh("fcut", "ip link set eth0 down");
    // Connect timeout 10 s, keepalive 5 s × 3: all of it well within 60 s.
    let r = bg.finish(Duration::from_secs(60));
    let took = started.elapsed();
    assert_eq!(r.code, 3, "{}", r.all());
    let rc = recap(&r);
    for h in ["fkill", "fcut", "silent", "nores"] {
        assert_eq!(rc["hosts"][h]["unreachable"], 1, "{h}: {}", r.all());
    }
    assert_eq!(rc["hosts"]["fok"]["ok"], 2, "{}", r.all());
    assert_eq!(rc["hosts"]["fok"]["unreachable"], 0, "{}", r.all());
    let msg = |h| host_msg(&r, "work", h);
    assert!(msg("fkill").contains("connection"), "{}", msg("fkill"));
    assert!(
        msg("fcut").contains("fcut") || msg("fcut").contains(lab.addr("fcut")),
        "{}",
        msg("fcut")
    );
    assert!(msg("silent").contains("127.0.0.1"), "{}", msg("silent"));
    assert!(
        msg("nores").contains("nohost.mailrun-lab.invalid") && msg("nores").contains("resolve"),
        "{}",
        msg("nores")
    );
    assert!(took < Duration::from_secs(60), "{took:?}");

    // Repaired, the rerun completes on them (the two that cannot be
    // repaired left out of the inventory: no name lookup outside).
    p.file("lab.ini", &lab_ini);
    lab.sshd_start("fkill");
    lab.sh("fcut", "ip link set eth0 up");
    let r = play(&p, &lab, "b.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    for h in ["fkill", "fcut", "fok"] {
        assert!(
            lab.exec(h, "test -e /tmp/after-fault").status.success(),
            "{h}"
        );
    }
}

#[test]
fn a_full_disk_during_file_copy_leaves_dest_whole() {
    let lab = Lab::up(&["full"]);
    lab.sh(
        "full",
        "mkdir -p /srv/small && mount -t tmpfs -o size=1m tmpfs /srv/small && printf 'old content\\n' > /srv/small/data",
    );
    let p = project(&lab, "");
    let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(p.path().join("big.bin"), &big).unwrap();
    p.file(
        "b.yml",
        "- hosts: full\n  tasks:\n    - name: copy\n      file_copy: {src: big.bin, dest: /srv/small/data, mode: '0644'}\n",
    );
    let r = play(&p, &lab, "b.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    let msg = host_msg(&r, "copy", "full");
    assert!(msg.contains("/srv/small"), "{msg}");
    assert!(msg.to_lowercase().contains("space"), "{msg}");
    // dest untouched, no temp file left beside it.
    assert_eq!(lab.sh("full", "cat /srv/small/data"), "old content\n");
    assert_eq!(lab.sh("full", "ls -A /srv/small"), "data\n");

    // With room, the rerun copies it, and the next one changes nothing.
    lab.sh("full", "mount -o remount,size=16m /srv/small");
    let r = play(&p, &lab, "b.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.status("copy", "full"), "changed");
    assert_eq!(
        lab.sh("full", "sha256sum < /srv/small/data")
            .split(' ')
            .next(),
        Some(
            String::from_utf8_lossy(
                &Command::new("sha256sum")
                    .arg(p.path().join("big.bin"))
                    .output()
                    .unwrap()
                    .stdout
            )
            .split(' ')
            .next()
            .unwrap()
        )
    );
    let r = play(&p, &lab, "b.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.status("copy", "full"), "ok");
}

fn dsync_project(lab: &Lab, src: &str, module: &str, args: &str) -> Project {
    let p = project(lab, "");
    p.file(
        "b.yml",
        &format!(
            "- hosts: {src}\n  tasks:\n    - name: t\n      {module}:\n{}",
            args.lines()
                .map(|l| format!("        {l}\n"))
                .collect::<String>()
        ),
    );
    p
}

#[test]
fn sshd_killed_on_new_during_a_backup_keeps_old_and_the_rerun_finishes() {
    let lab = Lab::up_with(&["--dovecot"], &["sold", "snew"]);
    let users = ["ann@ex.org", "bob@ex.org"];
    mail(&lab, "users", "sold", &users);
    mail(&lab, "users", "snew", &users);
    mail(&lab, "bulk", "sold", &["ann@ex.org", "2000"]);
    mail(&lab, "populate", "sold", &["bob@ex.org"]);
    let before: Vec<Vec<String>> = users
        .iter()
        .map(|u| guids(&snapshot(&lab, "sold", u)))
        .collect();
    let p = dsync_project(
        &lab,
        "sold",
        "doveadm_backup",
        "remote: snew\nusers: [ann@ex.org, bob@ex.org]\nparallel: 2\nretries: 1\nretry_delay: 1\nledger: ledger.json\n",
    );
    let bg = Bg::start(&p, &lab, &["b.yml", "-i", "lab.ini", "--output", "json"]);
    wait_until(
        &lab,
        "snew",
        "pgrep -f '[d]sync-server.*ann@'",
        Duration::from_secs(60),
    );
    std::thread::sleep(Duration::from_millis(300));
    lab.sh("snew", "pkill -KILL -x sshd; true");
    let r = bg.finish(Duration::from_secs(90));
    assert_eq!(r.code, 2, "{}", r.all());
    let res = result(&r, "t", "sold");
    assert!(
        res["failed_users"]
            .as_array()
            .is_some_and(|f| f.contains(&Value::from("ann@ex.org"))),
        "{}",
        r.all()
    );
    let l: Value =
        serde_json::from_str(&std::fs::read_to_string(p.path().join("ledger.json")).unwrap())
            .unwrap();
    assert_ne!(l["users"]["ann@ex.org"]["status"], "done", "{l}");
    for (u, b) in users.iter().zip(&before) {
        assert_eq!(&guids(&snapshot(&lab, "sold", u)), b, "{u} on old");
    }
    wait_until(&lab, "snew", "! pgrep -x doveadm", Duration::from_secs(20));

    lab.sshd_start("snew");
    let r = play(&p, &lab, "b.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    for (u, b) in users.iter().zip(&before) {
        let old = snapshot(&lab, "sold", u);
        assert_eq!(&guids(&old), b, "{u} on old");
        assert_eq!(old, snapshot(&lab, "snew", u), "{u}");
    }
}

#[test]
fn dovecot_stopped_on_new_fails_that_users_sync_and_the_rerun_finishes() {
    let lab = Lab::up_with(&["--dovecot"], &["dold", "dnew"]);
    let users = ["ann@ex.org", "bob@ex.org"];
    mail(&lab, "users", "dold", &users);
    mail(&lab, "users", "dnew", &users);
    mail(&lab, "populate", "dold", &users);
    let before: Vec<Vec<String>> = users
        .iter()
        .map(|u| guids(&snapshot(&lab, "dold", u)))
        .collect();
    // bob is copied first; then Dovecot stops on new for ann's sync.
    let p = dsync_project(
        &lab,
        "dold",
        "doveadm_backup",
        "remote: dnew\nuser: bob@ex.org\nledger: ledger.json\n",
    );
    let r = play(&p, &lab, "b.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    lab.sh("dnew", "doveadm stop");
    let p2 = dsync_project(
        &lab,
        "dold",
        "doveadm_sync",
        "remote: dnew\none_way: true\nuser: ann@ex.org\nretries: 1\nretry_delay: 1\nledger: ledger2.json\n",
    );
    let r = play(&p2, &lab, "b.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    let res = result(&r, "t", "dold");
    assert_eq!(
        res["failed_users"],
        serde_json::json!(["ann@ex.org"]),
        "{}",
        r.all()
    );
    let l: Value =
        serde_json::from_str(&std::fs::read_to_string(p2.path().join("ledger2.json")).unwrap())
            .unwrap();
    assert_eq!(l["users"]["ann@ex.org"]["status"], "failed", "{l}");
    for (u, b) in users.iter().zip(&before) {
        assert_eq!(&guids(&snapshot(&lab, "dold", u)), b, "{u} on old");
    }

    lab.sh(
        "dnew",
        "/usr/sbin/dovecot </dev/null >/dev/null 2>&1; i=0; \
         while [ ! -S /run/dovecot/auth-userdb ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done",
    );
    let r = play(&p2, &lab, "b.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    for u in users {
        assert_eq!(snapshot(&lab, "dold", u), snapshot(&lab, "dnew", u), "{u}");
    }
}

#[test]
fn sigterm_is_taken_as_ctrl_c_and_ends_the_remote_command() {
    let lab = Lab::up(&["term"]);
    let p = project(&lab, "");
    p.file(
        "b.yml",
        "- hosts: term\n  tasks:\n    - name: long\n      command: sleep 30\n    - name: never\n      command: touch /tmp/never\n",
    );
    let bg = Bg::start(&p, &lab, &["b.yml", "-i", "lab.ini", "--output", "json"]);
    wait_until(
        &lab,
        "term",
        "pgrep -fx 'sleep 30'",
        Duration::from_secs(60),
    );
    bg.signal("TERM");
    let r = bg.finish(Duration::from_secs(20));
    assert_eq!(r.code, 99, "{}", r.all());
    assert_eq!(recap(&r)["interrupted"], true, "{}", r.all());
    assert!(
        host_msg(&r, "long", "term").contains("interrupted"),
        "{}",
        r.all()
    );
    // The command was ended on the host before mailrun exited.
    assert!(
        !lab.exec("term", "pgrep -fx 'sleep 30'").status.success(),
        "the remote command outlived the interrupt"
    );
    assert!(!lab.exec("term", "test -e /tmp/never").status.success());
}

#[test]
fn ctrl_c_while_a_host_never_answers_the_handshake_does_not_wait_for_it() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming() {
            held.push(s);
        }
    });
    let p = Project::new();
    p.file(
        "hosts.ini",
        &format!("silent ansible_host=127.0.0.1 ansible_port={port} ansible_user=root ansible_ssh_timeout=60\n"),
    );
    p.file(
        "b.yml",
        "- hosts: silent\n  tasks:\n    - name: t\n      command: 'true'\n",
    );
    let home = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_mailrun"))
        .args(["b.yml", "-i", "hosts.ini", "--output", "json"])
        .current_dir(p.path())
        .env("HOME", home.path())
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let started = Instant::now();
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    // Well before the 60 s connect timeout.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        out.status.code(),
        Some(99),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn ctrl_c_during_an_sshd_reload_puts_the_previous_config_back() {
    let lab = Lab::up(&["rel"]);
    // The first reload hangs (a slow init script), so Ctrl-C catches it.
    lab.sh(
        "rel",
        "test -x /etc/init.d/ssh && mv /etc/init.d/ssh /etc/init.d/ssh.real && \
         printf '#!/bin/sh\\nif [ ! -e /tmp/slept ]; then touch /tmp/slept; sleep 30; fi\\nexec /etc/init.d/ssh.real \"$@\"\\n' > /etc/init.d/ssh && \
         chmod 755 /etc/init.d/ssh",
    );
    let before = lab.sh("rel", "cat /etc/ssh/sshd_config");
    let p = project(&lab, "");
    p.file(
        "b.yml",
        "- hosts: rel\n  tasks:\n    - name: s\n      sshd_config:\n        settings: {MaxAuthTries: \"4\"}\n",
    );
    let bg = Bg::start(&p, &lab, &["b.yml", "-i", "lab.ini", "--output", "json"]);
    wait_until(&lab, "rel", "test -e /tmp/slept", Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300));
    bg.signal("INT");
    let r = bg.finish(Duration::from_secs(30));
    assert_eq!(r.code, 99, "{}", r.all());
    assert!(host_msg(&r, "s", "rel").contains("put back"), "{}", r.all());
    assert_eq!(lab.sh("rel", "cat /etc/ssh/sshd_config"), before);
    assert!(!lab
        .exec("rel", "test -e /etc/ssh/sshd_config.mailrun-orig")
        .status
        .success());
    assert!(!lab.sh("rel", "sshd -T").contains("maxauthtries 4"));
    // The rerun makes the change.
    let r = play(&p, &lab, "b.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(lab.sh("rel", "sshd -T").contains("maxauthtries 4"));
}

#[test]
fn ctrl_c_ends_a_pause() {
    let p = Project::new();
    p.file(
        "b.yml",
        "- hosts: localhost\n  tasks:\n    - name: wait\n      pause: {seconds: 120}\n    - name: never\n      command: touch never\n",
    );
    let child = Command::new(env!("CARGO_BIN_EXE_mailrun"))
        .args(["b.yml", "--output", "json"])
        .current_dir(p.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let started = Instant::now();
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        out.status.code(),
        Some(99),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!p.path().join("never").exists());
}

#[test]
fn sshd_killed_on_new_during_migrate_yml_keeps_old_and_the_rerun_finishes() {
    let lab = Lab::up_with(
        &[
            "--dovecot",
            "--no-mesh",
            "--admin",
            "mailadm",
            "--root-login",
            "no",
        ],
        &["mold", "mnew"],
    );
    let users = ["ann@ex.org", "bob@ex.org"];
    mail(&lab, "users", "mold", &users);
    mail(&lab, "bulk", "mold", &["ann@ex.org", "2000"]);
    mail(&lab, "populate", "mold", &["bob@ex.org"]);
    let before: Vec<Vec<String>> = users
        .iter()
        .map(|u| guids(&snapshot(&lab, "mold", u)))
        .collect();
    let p = Project::new();
    p.file(
        "inv/hosts.ini",
        &format!(
            "[old]\nmold ansible_host={} ansible_user=mailadm\n[new]\nmnew ansible_host={} ansible_user=mailadm\n",
            lab.addr("mold"),
            lab.addr("mnew")
        ),
    );
    p.file("inv/group_vars/all.yml", "migrate_parallel: 2\n");
    let book = concat!(env!("CARGO_MANIFEST_DIR"), "/playbooks/migrate.yml");
    let args = [book, "-i", "inv", "--output", "json", "--yes"];

    let bg = Bg::start(&p, &lab, &args);
    wait_until(
        &lab,
        "mnew",
        "pgrep -f '[d]sync-server.*ann@'",
        Duration::from_secs(180),
    );
    std::thread::sleep(Duration::from_millis(300));
    lab.sh("mnew", "pkill -KILL -x sshd; true");
    let r = bg.finish(Duration::from_secs(300));
    assert!(r.code == 2 || r.code == 3, "{}", r.all());
    // The copy did not finish; old kept serving and lost nothing.
    assert_ne!(
        r.status("Initial copy of all mail to new (doveadm backup)", "mold"),
        "changed",
        "{}",
        r.all()
    );
    let imap: std::net::SocketAddr = format!("{}:143", lab.addr("mold")).parse().unwrap();
    assert!(std::net::TcpStream::connect_timeout(&imap, Duration::from_secs(5)).is_ok());
    for (u, b) in users.iter().zip(&before) {
        assert_eq!(&guids(&snapshot(&lab, "mold", u)), b, "{u} on old");
    }

    // sshd back on new: the rerun completes the migration.
    lab.sshd_start("mnew");
    let r = p.run_env(&args, &[("HOME", lab.home().to_str().unwrap())]);
    assert_eq!(r.code, 0, "{}", r.all());
    for (u, b) in users.iter().zip(&before) {
        let old = snapshot(&lab, "mold", u);
        assert_eq!(&guids(&old), b, "{u} on old");
        assert_eq!(old, snapshot(&lab, "mnew", u), "{u}");
    }
    assert!(lab.sh("mnew", "sshd -T").contains("permitrootlogin no"));
}

#[test]
fn link_cut_to_new_during_a_backup_keeps_old_and_the_rerun_finishes() {
    let lab = Lab::up_with(&["--dovecot"], &["lold", "lnew"]);
    let users = ["ann@ex.org", "bob@ex.org"];
    mail(&lab, "users", "lold", &users);
    mail(&lab, "users", "lnew", &users);
    mail(&lab, "bulk", "lold", &["ann@ex.org", "2000"]);
    mail(&lab, "populate", "lold", &["bob@ex.org"]);
    let before: Vec<Vec<String>> = users
        .iter()
        .map(|u| guids(&snapshot(&lab, "lold", u)))
        .collect();
    let p = dsync_project(
        &lab,
        "lold",
        "doveadm_backup",
        "remote: lnew\nusers: [ann@ex.org, bob@ex.org]\nparallel: 2\nledger: ledger.json\n",
    );
    let bg = Bg::start(&p, &lab, &["b.yml", "-i", "lab.ini", "--output", "json"]);
    wait_until(
        &lab,
        "lnew",
        "pgrep -f '[d]sync-server.*ann@'",
        Duration::from_secs(60),
    );
    lab.sh("lnew", "ip link set eth0 down");
    // ssh's keepalive (15 s × 3), then the retries' connect timeouts (15 s)
    // and delays: about 90 s, never open-ended.
    let r = bg.finish(Duration::from_secs(240));
    assert_eq!(r.code, 2, "{}", r.all());
    let res = result(&r, "t", "lold");
    assert!(
        res["failed_users"]
            .as_array()
            .is_some_and(|f| f.contains(&Value::from("ann@ex.org"))),
        "{}",
        r.all()
    );
    for (u, b) in users.iter().zip(&before) {
        assert_eq!(&guids(&snapshot(&lab, "lold", u)), b, "{u} on old");
    }

    lab.sh("lnew", "ip link set eth0 up");
    // new's dsync-server of the lost connection may still hold ann's
    // mailbox lock (its sshd learns of the dead peer only if old's FIN
    // retransmits outlast the cut): as the admin told so by mailrun's
    // message would, end it before the rerun.
    lab.exec("lnew", "pkill -f '[d]sync-server -uann@'");
    wait_until(
        &lab,
        "lnew",
        "! pgrep -f '[d]sync-server -uann@'",
        Duration::from_secs(30),
    );
    let r = play(&p, &lab, "b.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    for (u, b) in users.iter().zip(&before) {
        let old = snapshot(&lab, "lold", u);
        assert_eq!(&guids(&old), b, "{u} on old");
        assert_eq!(old, snapshot(&lab, "lnew", u), "{u}");
    }
}

#[test]
fn ctrl_c_while_sudo_is_still_starting_the_command_still_ends_it() {
    let lab = Lab::up_with(&["--admin", "slowadm"], &["slow"]);
    // sudo takes 6 s to start the task's command, deaf to SIGTERM: Ctrl-C
    // comes before any process of the command exists, so the first search
    // for them finds none, and the channel's SIGTERM does not stop it.
    lab.sh(
        "slow",
        "printf '#!/bin/sh\\ncase \"$*\" in *\"sleep 40\"*) trap \"\" TERM; sleep 3; sleep 3 ;; esac\\nexec /usr/bin/sudo \"$@\"\\n' > /usr/local/bin/sudo && chmod 755 /usr/local/bin/sudo",
    );
    let p = Project::new();
    p.file(
        "lab.ini",
        &format!(
            "slow ansible_host={} ansible_user=slowadm\n",
            lab.addr("slow")
        ),
    );
    p.file(
        "b.yml",
        "- hosts: slow\n  become: true\n  tasks:\n    - name: long\n      command: sleep 40\n",
    );
    let bg = Bg::start(&p, &lab, &["b.yml", "-i", "lab.ini", "--output", "json"]);
    wait_until(&lab, "slow", "pgrep -fx 'sleep 3'", Duration::from_secs(60));
    bg.signal("INT");
    let r = bg.finish(Duration::from_secs(30));
    assert_eq!(r.code, 99, "{}", r.all());
    // Once the slow sudo is through, the command must not be running.
    wait_until(
        &lab,
        "slow",
        "! pgrep -fx 'sleep 3'",
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !lab.exec("slow", "pgrep -fx 'sleep 40'").status.success(),
        "the command started after the interrupt and was left running"
    );
}
