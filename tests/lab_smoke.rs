//! The test lab itself (tests/lab/lab.sh through support::lab::Lab), checked
//! with OpenSSH's own client: hosts come up with their own names, keys and
//! files, and go away completely, also when a test panics. Needs root.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};
use support::lab::Lab;

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn all(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `ssh root@host CMD` must succeed; its stdout.
fn ssh_ok(lab: &Lab, host: &str, cmd: &str) -> String {
    let o = lab.ssh(host, cmd);
    assert!(o.status.success(), "ssh {host} {cmd}: {}", all(&o));
    out(&o)
}

fn netns_list() -> String {
    let o = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    out(&o)
}

/// What must be gone once a lab is down: its netns, its veths (unless the
/// octet went to another lab meanwhile), its processes, its allocations.
struct Traces {
    dir: String,
    netns: Vec<String>,
    octets: Vec<String>,
}

impl Traces {
    fn of(lab: &Lab, hosts: &[&str]) -> Traces {
        Traces {
            dir: lab.dir().display().to_string(),
            netns: hosts.iter().map(|h| lab.netns(h)).collect(),
            octets: hosts
                .iter()
                .map(|h| lab.addr(h).rsplit('.').next().unwrap().to_string())
                .collect(),
        }
    }

    fn assert_gone(&self) {
        let list = netns_list();
        for n in &self.netns {
            assert!(
                !list
                    .lines()
                    .any(|l| l.split(' ').next() == Some(n.as_str())),
                "{n} left behind:\n{list}"
            );
        }
        for o in &self.octets {
            let alloc = std::fs::read_to_string(format!("/run/mailrun-lab/alloc/{o}"));
            if let Ok(a) = &alloc {
                assert!(!a.starts_with(&self.dir), "octet {o} still ours: {a}");
            } else {
                let link = std::process::Command::new("ip")
                    .args(["link", "show", &format!("mrl{o}")])
                    .output()
                    .unwrap();
                assert!(!link.status.success(), "veth mrl{o} left: {}", all(&link));
            }
        }
        for p in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cmd) = std::fs::read(p.path().join("cmdline")) {
                let cmd = String::from_utf8_lossy(&cmd);
                assert!(
                    !cmd.contains(&self.dir),
                    "process {:?} of the lab left: {cmd}",
                    p.file_name()
                );
            }
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(&self.dir), "{mounts}");
    }
}

#[test]
fn two_hosts_have_their_own_names_keys_and_a_root_mesh() {
    let lab = Lab::up(&["a", "b"]);
    assert_ne!(lab.addr("a"), lab.addr("b"));
    for h in ["a", "b"] {
        assert_eq!(ssh_ok(&lab, h, "hostname"), lab.name(h));
        // The control known_hosts knows the host by name and address.
        let kh = std::fs::read_to_string(lab.known_hosts()).unwrap();
        assert!(
            kh.contains(&format!("{},{} ssh-ed25519 ", lab.name(h), lab.addr(h))),
            "{kh}"
        );
    }
    let key = |h| lab.sh(h, "cat /etc/ssh/ssh_host_ed25519_key.pub");
    assert_ne!(key("a"), key("b"));
    assert!(
        !std::fs::read_to_string("/etc/ssh/ssh_host_ed25519_key.pub")
            .unwrap_or_default()
            .contains(key("a").split(' ').nth(1).unwrap())
    );
    // Root mesh: a logs in to b by name, strict host key checking on.
    assert_eq!(
        ssh_ok(
            &lab,
            "a",
            &format!("ssh -o BatchMode=yes {} hostname", lab.name("b"))
        ),
        lab.name("b")
    );
    // Hosts reach only the lab: no default route.
    assert!(!lab.sh("a", "ip route").contains("default"));
    let ini = lab.ini();
    assert!(
        ini.starts_with("[lab]\na ansible_host=") && ini.contains("b ansible_host="),
        "{ini}"
    );
}

#[test]
fn hosts_files_are_their_own() {
    let lab = Lab::up(&["f1", "f2"]);
    let tag = lab.name("f1");
    let dirs = [
        "/etc",
        "/root",
        "/var",
        "/tmp",
        "/home",
        "/srv",
        "/usr/local",
    ];
    let paths: Vec<String> = dirs
        .iter()
        .map(|d| format!("{d}/lab-smoke-{tag}"))
        .collect();
    let list = paths.join(" ");
    ssh_ok(
        &lab,
        "f1",
        &format!("for p in {list}; do echo mine > $p; done"),
    );
    assert_eq!(
        lab.sh("f1", &format!("cat {list}")),
        "mine\n".repeat(paths.len())
    );
    let seen = lab.sh(
        "f2",
        &format!("for p in {list}; do test -e $p && echo $p; done; true"),
    );
    assert_eq!(seen, "", "f1's files seen on f2");
    for p in &paths {
        assert!(!std::path::Path::new(p).exists(), "{p} on the machine");
    }
    // Users made on a host exist only there.
    lab.sh("f1", "useradd -M lab-smoke-user");
    assert!(!lab.exec("f2", "id lab-smoke-user").status.success());
    assert!(!std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .contains("lab-smoke-user"));
    // Processes too: f2 sees only its own.
    assert!(!lab.sh("f2", "ps -eo args").contains(&lab.name("f1")));
}

#[test]
fn teardown_leaves_nothing() {
    let lab = Lab::up(&["t1", "t2"]);
    let traces = Traces::of(&lab, &["t1", "t2"]);
    let list = netns_list();
    assert!(list.contains(&traces.netns[0]), "{list}");
    drop(lab);
    traces.assert_gone();
}

#[test]
fn a_lab_dropped_by_a_panic_is_torn_down() {
    let seen = std::sync::Mutex::new(None);
    let r = std::panic::catch_unwind(|| {
        let lab = Lab::up(&["p1"]);
        *seen.lock().unwrap() = Some(Traces::of(&lab, &["p1"]));
        panic!("a test failing with its lab up");
    });
    assert!(r.is_err());
    seen.into_inner()
        .unwrap()
        .expect("lab came up")
        .assert_gone();
}

#[test]
fn rekey_and_forget_make_strict_ssh_refuse() {
    let lab = Lab::up(&["k1"]);
    ssh_ok(&lab, "k1", "true");
    lab.rekey("k1");
    let o = lab.ssh("k1", "true");
    assert_eq!(o.status.code(), Some(255), "{}", all(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        all(&o)
    );
    lab.forget("k1");
    let o = lab.ssh("k1", "true");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(255), "{}", all(&o));
    assert!(
        err.contains("Host key verification failed") && !err.contains("CHANGED"),
        "{}",
        all(&o)
    );
    // accept-new learns the new key.
    let o = lab
        .ssh_command("root", "k1")
        .args(["-o", "StrictHostKeyChecking=accept-new", "hostname"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", all(&o));
    ssh_ok(&lab, "k1", "true");
}

#[test]
fn sshd_restart_drops_sessions_and_stop_refuses() {
    let lab = Lab::up(&["r1"]);
    let mut session = lab
        .ssh_command("root", "r1")
        .arg("echo ready; sleep 60")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(session.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let t = Instant::now();
    lab.sshd_restart("r1");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = session.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            session.kill().ok();
            panic!("the session survived sshd-restart");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(255));
    assert!(t.elapsed() < Duration::from_secs(20));
    ssh_ok(&lab, "r1", "true");
    lab.sshd_stop("r1");
    let o = lab.ssh("r1", "true");
    assert_eq!(o.status.code(), Some(255));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Connection refused"),
        "{}",
        all(&o)
    );
    lab.sshd_start("r1");
    ssh_ok(&lab, "r1", "true");
}

#[test]
fn a_user_with_a_sudo_password_and_root_password_login() {
    let lab = Lab::up_with(
        &["--user", "alice:al1ce pw", "--password", "r00t-pw"],
        &["u1"],
    );
    let sudo = |pw: &str| {
        let mut c = lab
            .ssh_command("alice", "u1")
            .arg("sudo -S -p '' id -u; echo home=$HOME")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(c.stdin.take().unwrap(), "{pw}").unwrap();
        c.wait_with_output().unwrap()
    };
    let o = sudo("al1ce pw");
    assert_eq!(out(&o), "0\nhome=/home/alice", "{}", all(&o));
    // Without the password sudo refuses (no NOPASSWD).
    let o = lab
        .ssh_command("alice", "u1")
        .arg("sudo -n true")
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", all(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("password is required"),
        "{}",
        all(&o)
    );
    // Password login as root (the key is not offered).
    let askpass = lab.dir().join("askpass");
    std::fs::write(&askpass, "#!/bin/sh\necho r00t-pw\n").unwrap();
    std::fs::set_permissions(
        &askpass,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let o = std::process::Command::new("setsid")
        .args(["-w", "ssh", "-F", "none"])
        .args([
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password",
        ])
        .args(["-o", "NumberOfPasswordPrompts=1", "-o", "ConnectTimeout=30"])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            lab.known_hosts().display()
        ))
        .arg(format!("root@{}", lab.addr("u1")))
        .arg("echo password-login")
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", "none")
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out(&o), "password-login", "{}", all(&o));
    // The machine's own users and shadow never learn of alice.
    assert!(!std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .contains("alice:"));
}

#[test]
fn no_mesh_hosts_trust_only_the_control_key() {
    let lab = Lab::up_with(&["--no-mesh"], &["n1", "n2"]);
    ssh_ok(&lab, "n1", "true");
    let o = lab.ssh(
        "n1",
        &format!(
            "ssh -o BatchMode=yes -o StrictHostKeyChecking=no {} true",
            lab.addr("n2")
        ),
    );
    assert_eq!(o.status.code(), Some(255), "{}", all(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "{}",
        all(&o)
    );
}

#[test]
fn dovecot_host_knows_its_users() {
    let lab = Lab::up_with(&["--dovecot"], &["d1"]);
    lab.sh(
        "d1",
        "echo \"u1@example.org:$(doveadm pw -s SHA512-CRYPT -p pw):5000:5000::/var/vmail/example.org/u1::\" >> /etc/dovecot/users",
    );
    let user = ssh_ok(&lab, "d1", "doveadm user u1@example.org");
    assert!(user.contains("/var/vmail/example.org/u1"), "{user}");
    // IMAP answers from the control side.
    let mut s = std::net::TcpStream::connect((lab.addr("d1"), 143)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut greeting = String::new();
    BufReader::new(&mut s).read_line(&mut greeting).unwrap();
    assert!(greeting.starts_with("* OK"), "{greeting}");
    assert!(!std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .contains("vmail:"));
}

#[test]
fn concurrent_labs_get_distinct_addresses() {
    let labs: Vec<Lab> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3).map(|_| s.spawn(|| Lab::up(&["c1", "c2"]))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut addrs: Vec<&str> = labs
        .iter()
        .flat_map(|l| [l.addr("c1"), l.addr("c2")])
        .collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 6, "{addrs:?}");
    for l in &labs {
        assert_eq!(ssh_ok(l, "c2", "hostname"), l.name("c2"));
    }
}
