//! Lab hosts for tests: real OpenSSH sshd hosts (optionally Dovecot) in
//! network namespaces, brought up by tests/lab/lab.sh and torn down when the
//! guard drops, also when the test panics. Needs root: without it, or when
//! the lab cannot come up, `Lab::up` panics (a lab test never passes
//! silently).
//!
//! Tests name hosts with short names ("old", "new"); the hosts' real names
//! (their hostnames, netns `mr-REAL`) carry a per-process tag so that
//! concurrent tests and test binaries never collide. The API takes and
//! returns the short names; `name()` gives the real one.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Host {
    short: String,
    name: String,
    addr: String,
}

pub struct Lab {
    dir: tempfile::TempDir,
    hosts: Vec<Host>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn base36(mut n: usize, width: usize) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    while n > 0 || out.len() < width {
        out.push(digits[n % 36]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Lab {
    /// tests/lab/lab.sh.
    pub fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/lab.sh")
    }

    /// Hosts with sshd, root key login, a full root mesh.
    pub fn up(names: &[&str]) -> Lab {
        Self::up_with(&[], names)
    }

    /// `opts` are lab.sh's: `--password PW`, `--user NAME:PW` (repeatable),
    /// `--dovecot`, `--no-mesh`.
    pub fn up_with(opts: &[&str], names: &[&str]) -> Lab {
        let is_root = std::os::unix::fs::MetadataExt::uid(
            &std::fs::metadata("/proc/self").expect("/proc/self"),
        ) == 0;
        assert!(
            is_root,
            "the lab tests need root (network and mount namespaces): run them as root \
             after scripts/setup.sh"
        );
        let dir = tempfile::Builder::new()
            .prefix("mailrun-lab-")
            .tempdir()
            .expect("lab dir");
        let mut lab = Lab {
            dir,
            hosts: Vec::new(),
        };
        lab.add(opts, names);
        lab
    }

    /// Brings more hosts up in this lab (the mesh, known_hosts and
    /// /etc/hosts then span all of them).
    pub fn add(&mut self, opts: &[&str], names: &[&str]) {
        // Tag: the process in base 36, then a 2-digit base-36 counter.
        let tag = format!(
            "{}{}",
            base36(std::process::id() as usize, 1),
            base36(COUNTER.fetch_add(1, Ordering::SeqCst) % 1296, 2)
        );
        let mut new: Vec<Host> = Vec::new();
        for n in names {
            assert!(
                self.hosts.iter().chain(&new).all(|h| h.short != *n),
                "lab host {n} named twice"
            );
            new.push(Host {
                short: n.to_string(),
                name: format!("{n}-{tag}"),
                addr: String::new(),
            });
        }
        let mut args: Vec<String> = vec!["up".into()];
        args.extend(opts.iter().map(|s| s.to_string()));
        args.extend(new.iter().map(|h| h.name.clone()));
        self.hosts.extend(new);
        let out = self.script_run(&args);
        assert!(
            out.status.success(),
            "the lab did not come up (lab tests need root and the packages of \
             scripts/setup.sh): lab.sh {}\n{}{}",
            args.join(" "),
            text(&out.stdout),
            text(&out.stderr)
        );
        let listing = std::fs::read_to_string(self.dir.path().join("hosts")).expect("lab hosts");
        for h in &mut self.hosts {
            h.addr = listing
                .lines()
                .find_map(|l| {
                    let (n, a) = l.split_once(' ')?;
                    (n == h.name).then(|| a.to_string())
                })
                .unwrap_or_else(|| panic!("{} has no address in {listing}", h.name));
        }
    }

    fn script_run(&self, args: &[String]) -> Output {
        Command::new("bash")
            .arg(Self::script())
            .args(args)
            .env("LAB_DIR", self.dir.path())
            .env("LAB_OWNER", std::process::id().to_string())
            .stdin(Stdio::null())
            .output()
            .expect("run tests/lab/lab.sh")
    }

    fn host(&self, short: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.short == short)
            .unwrap_or_else(|| panic!("no lab host {short}"))
    }

    /// (short name, address) of every host, in the order given.
    pub fn hosts(&self) -> Vec<(String, String)> {
        self.hosts
            .iter()
            .map(|h| (h.short.clone(), h.addr.clone()))
            .collect()
    }

    /// The host's real name: its hostname, its name in every known_hosts
    /// and /etc/hosts of the lab.
    pub fn name(&self, short: &str) -> String {
        self.host(short).name.clone()
    }

    /// The host's network namespace (`ip netns exec` sees only its network).
    pub fn netns(&self, short: &str) -> String {
        format!("mr-{}", self.host(short).name)
    }

    pub fn addr(&self, short: &str) -> &str {
        &self.host(short).addr
    }

    /// The lab's state dir (LAB_DIR).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A HOME for the control side: `.ssh/id_ed25519` (the control key,
    /// authorized for root on every host) and `.ssh/known_hosts` (every
    /// host as `NAME,ADDR ssh-ed25519 …`). OpenSSH's client takes `~` from
    /// the passwd entry, not HOME: give it `-o UserKnownHostsFile` (see
    /// `ssh_command`).
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.home().join(".ssh/known_hosts")
    }

    /// The control key (no passphrase), also `home()/.ssh/id_ed25519`.
    pub fn control_key(&self) -> PathBuf {
        self.dir.path().join("control/id_ed25519")
    }

    /// An inventory of every host: group `lab`, short names, root.
    pub fn ini(&self) -> String {
        self.ini_with("")
    }

    /// As `ini`, with `extra` appended to every host line (host vars).
    pub fn ini_with(&self, extra: &str) -> String {
        let mut ini = String::from("[lab]\n");
        for h in &self.hosts {
            ini.push_str(&format!(
                "{} ansible_host={} ansible_user=root{}{}\n",
                h.short,
                h.addr,
                if extra.is_empty() { "" } else { " " },
                extra
            ));
        }
        ini
    }

    /// OpenSSH's client to USER@host with the control key and the lab's
    /// known_hosts, in batch mode (so an unknown or changed host key fails;
    /// `-o StrictHostKeyChecking=…` may still be added); add the remote
    /// command.
    pub fn ssh_command(&self, user: &str, short: &str) -> Command {
        let mut c = Command::new("ssh");
        c.env("HOME", self.home())
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null())
            .args(["-F", "none", "-o", "BatchMode=yes"])
            .args(["-o", "ConnectTimeout=30"])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.known_hosts().display()
            ))
            .args(["-o", "IdentitiesOnly=yes", "-i"])
            .arg(self.control_key())
            .arg(format!("{user}@{}", self.addr(short)));
        c
    }

    /// `ssh root@host CMD` with the OpenSSH client (see `ssh_command`).
    pub fn ssh(&self, short: &str, cmd: &str) -> Output {
        self.ssh_command("root", short)
            .arg(cmd)
            .output()
            .expect("run ssh")
    }

    /// `sh -c CMD` inside the host (its files, processes and network),
    /// without SSH.
    pub fn exec(&self, short: &str, cmd: &str) -> Output {
        self.script_run(&[
            "exec".into(),
            self.name(short),
            "sh".into(),
            "-c".into(),
            cmd.into(),
        ])
    }

    /// `sh -c CMD` inside the host; it must succeed; its stdout.
    pub fn sh(&self, short: &str, cmd: &str) -> String {
        let out = self.exec(short, cmd);
        assert!(
            out.status.success(),
            "on lab host {short}: {cmd}: exit {:?}\n{}{}",
            out.status.code(),
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    fn host_cmd(&self, verb: &str, short: &str) {
        let out = self.script_run(&[verb.into(), self.name(short)]);
        assert!(
            out.status.success(),
            "lab.sh {verb} {short}: {}",
            text(&out.stderr)
        );
    }

    /// Kills sshd and every session (the host is "down" for SSH).
    pub fn sshd_stop(&self, short: &str) {
        self.host_cmd("sshd-stop", short)
    }

    pub fn sshd_start(&self, short: &str) {
        self.host_cmd("sshd-start", short)
    }

    /// Kills sshd and every session (they drop), then starts sshd again.
    pub fn sshd_restart(&self, short: &str) {
        self.host_cmd("sshd-restart", short)
    }

    /// A new host key, sshd restarted; the control's known_hosts keeps the
    /// old key ("host key changed").
    pub fn rekey(&self, short: &str) {
        self.host_cmd("rekey", short)
    }

    /// Removes the host from the control's known_hosts ("unknown host").
    pub fn forget(&self, short: &str) {
        self.host_cmd("forget", short)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.script_run(&["down".into()]);
        if !out.status.success() {
            eprintln!("lab teardown failed: {}", text(&out.stderr));
        }
    }
}

// Running mailrun on a project whose inventory is the lab.
use super::{Project, Run};

/// A project whose inventory is the lab's hosts (group `lab`).
pub fn project(lab: &Lab, extra_host_vars: &str) -> Project {
    let p = Project::new();
    let mut ini = String::from("[lab]\n");
    for (name, addr) in lab.hosts() {
        ini.push_str(&format!(
            "{name} ansible_host={addr} ansible_user=root {extra_host_vars}\n"
        ));
    }
    p.file("lab.ini", &ini);
    p
}

pub fn run(p: &Project, lab: &Lab, args: &[&str]) -> Run {
    let home = lab.home();
    let root = format!("root={}", p.path().display());
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-e", &root]);
    p.run_env(&all, &[("HOME", home.to_str().unwrap())])
}

pub fn play(p: &Project, lab: &Lab, book: &str, extra: &[&str]) -> Run {
    let mut args = vec![book, "-i", "lab.ini", "--output", "json"];
    args.extend(extra);
    run(p, lab, &args)
}

pub fn sum_changed(r: &Run) -> u64 {
    r.recap()["hosts"]
        .as_object()
        .map(|h| h.values().map(|s| s["changed"].as_u64().unwrap_or(0)).sum())
        .unwrap_or(u64::MAX)
}

/// Runs playbooks/migrate.yml (the project's own) on the project's `inv`
/// inventory, with `--yes` and JSON output.
pub fn migrate(p: &Project, lab: &Lab, extra: &[&str]) -> Run {
    let book = concat!(env!("CARGO_MANIFEST_DIR"), "/playbooks/migrate.yml");
    let mut args = vec![book, "-i", "inv", "--output", "json", "--yes"];
    args.extend(extra);
    p.run_env(&args, &[("HOME", lab.home().to_str().unwrap())])
}

/// Whether ADDR:PORT takes a TCP connection (5 s).
pub fn port_open(addr: &str, port: u16) -> bool {
    let sa: std::net::SocketAddr = format!("{addr}:{port}").parse().unwrap();
    std::net::TcpStream::connect_timeout(&sa, std::time::Duration::from_secs(5)).is_ok()
}
