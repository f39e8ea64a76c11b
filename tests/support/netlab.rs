//! Lab hosts for tests: real sshd hosts in network namespaces, brought up by
//! tests/lab/mrlab.sh and torn down when the guard drops (also when the test
//! panics). Needs root. Names given by the test are short; the hosts' real
//! names carry a per-process suffix so concurrent tests never collide.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Lab {
    dir: tempfile::TempDir,
    /// (short name, real name, address)
    hosts: Vec<(String, String, String)>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Lab {
    pub fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/mrlab.sh")
    }

    pub fn up(names: &[&str]) -> Lab {
        Self::up_with(&[], names)
    }

    /// `opts` are mrlab.sh's: `--password PW`, `--user NAME:PW`, `--no-mesh`.
    pub fn up_with(opts: &[&str], names: &[&str]) -> Lab {
        let dir = tempfile::Builder::new()
            .prefix("mailrun-lab-")
            .tempdir()
            .expect("lab dir");
        let tag = format!(
            "{}{}",
            std::process::id() % 100_000,
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let mut lab = Lab {
            dir,
            hosts: names
                .iter()
                .map(|n| (n.to_string(), format!("{n}-{tag}"), String::new()))
                .collect(),
        };
        let mut args: Vec<String> = vec!["up".into()];
        args.extend(opts.iter().map(|s| s.to_string()));
        args.extend(lab.hosts.iter().map(|h| h.1.clone()));
        let out = lab.script_run(&args);
        assert!(
            out.status.success(),
            "the lab did not come up (the lab tests need root and scripts/setup.sh's packages):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = std::fs::read_to_string(lab.dir.path().join("hosts")).expect("hosts file");
        for h in &mut lab.hosts {
            h.2 = listing
                .lines()
                .find_map(|l| {
                    let (n, a) = l.split_once(' ')?;
                    (n == h.1).then(|| a.to_string())
                })
                .unwrap_or_else(|| panic!("{} has no address in {listing}", h.1));
        }
        lab
    }

    fn script_run(&self, args: &[String]) -> Output {
        Command::new("bash")
            .arg(Self::script())
            .args(args)
            .env("LAB_DIR", self.dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run mrlab.sh")
    }

    fn real(&self, short: &str) -> &(String, String, String) {
        self.hosts
            .iter()
            .find(|h| h.0 == short)
            .unwrap_or_else(|| panic!("no lab host {short}"))
    }

    /// (short name, address) of every host, in the order given.
    pub fn hosts(&self) -> Vec<(String, String)> {
        self.hosts
            .iter()
            .map(|h| (h.0.clone(), h.2.clone()))
            .collect()
    }

    /// The host's real name (its hostname).
    pub fn name(&self, short: &str) -> String {
        self.real(short).1.clone()
    }

    pub fn addr(&self, short: &str) -> &str {
        &self.real(short).2
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A HOME for the control side: `.ssh/id_ed25519` (authorized on every
    /// host) and `.ssh/known_hosts` (every host, by name and address).
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn control_key(&self) -> PathBuf {
        self.home().join(".ssh/id_ed25519")
    }

    fn host_cmd(&self, verb: &str, short: &str) {
        let out = self.script_run(&[verb.into(), self.name(short)]);
        assert!(
            out.status.success(),
            "mrlab.sh {verb} {short}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `sh -c CMD` inside the host.
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
            "on {short}: {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops sshd and every session (the host is "down" for SSH).
    pub fn sshd_stop(&self, short: &str) {
        self.host_cmd("sshd-stop", short)
    }

    /// Kills sshd and every session, then starts sshd again.
    pub fn sshd_restart(&self, short: &str) {
        self.host_cmd("sshd-restart", short)
    }

    /// A new host key (the control's known_hosts keeps the old one).
    pub fn rekey(&self, short: &str) {
        self.host_cmd("rekey", short)
    }

    /// Removes the host from the control's known_hosts.
    pub fn forget(&self, short: &str) {
        self.host_cmd("forget", short)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.script_run(&["down".into()]);
        if !out.status.success() {
            eprintln!(
                "lab teardown failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
