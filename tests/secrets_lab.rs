//! Secrets never show: real runs against a lab host, every output stream
//! (human with -vvv and --diff, and --output json; stdout and stderr) is
//! searched for each secret, and while the tasks that use the secrets run,
//! the command line of every process on the control machine and on the
//! host is sampled. Each secret is also found where it legitimately goes
//! (a file on the host, a hash that verifies), so the searches are proven
//! to look at real values.
//!
//! Secrets: the SSH password (`ansible_password`), the sudo password
//! (`ansible_become_password`), a `!secret`-tagged variable in
//! group_vars, a variable listed in `secret_vars`, a plugin argument
//! declared `no_log` (dovecot_user's password), and the output of a
//! `no_log` task; and wrong SSH and sudo passwords in the errors they cause.

mod support;

use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use support::lab::Lab;
use support::{Project, Run};

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/modules");

/// A value unique to this run (so no other process could show it by chance).
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}x{nanos:08x}", std::process::id())
}

/// Every process's command line on this machine, one per line (the lab
/// hosts' processes too: their PID namespaces are children of this one).
fn control_cmdlines() -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(raw) = std::fs::read(entry.path().join("cmdline")) {
            let line: Vec<u8> = raw.iter().map(|&b| if b == 0 { b' ' } else { b }).collect();
            all.push_str(&String::from_utf8_lossy(&line));
            all.push('\n');
        }
    }
    all
}

const HOST_CMDLINES: &str =
    "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < \"$f\"; echo; done 2>/dev/null; true";

/// What the samplers saw while mailrun ran.
#[derive(Default)]
struct Samples {
    count: usize,
    /// (where, secret) pairs found on a command line.
    leaks: BTreeSet<(String, String)>,
    /// Lines seen that prove the samples were taken while the tasks ran.
    seen: BTreeSet<String>,
}

/// Runs mailrun (its output captured), sampling the command lines of every
/// process here and on `host` until it ends.
fn run_sampled(
    p: &Project,
    lab: &Lab,
    home: &std::path::Path,
    args: &[&str],
    secrets: &[(&str, String)],
    markers: &[&str],
) -> (Run, Samples) {
    let root = format!("root={}", p.path().display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailrun"))
        .current_dir(p.path())
        .env("NO_COLOR", "1")
        .env("HOME", home)
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("MAILRUN_INVENTORY")
        .args(args)
        .args(["-e", &root, "--module-path", SHIPPED])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mailrun");
    let readers: Vec<_> = [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ]
    .into_iter()
    .map(|mut r| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    })
    .collect();
    let samples = Arc::new(Mutex::new(Samples::default()));
    let done = Arc::new(AtomicBool::new(false));
    let check = |samples: &Mutex<Samples>, place: &str, text: &str| {
        let mut s = samples.lock().unwrap();
        s.count += 1;
        for (what, value) in secrets {
            if text.contains(value.as_str()) {
                s.leaks.insert((place.to_string(), what.to_string()));
            }
        }
        for m in markers {
            if text.contains(m) {
                s.seen.insert(format!("{place}: {m}"));
            }
        }
    };
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                check(&samples, "control", &control_cmdlines());
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        });
        scope.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                let out = lab.exec("sec", HOST_CMDLINES);
                check(&samples, "host", &String::from_utf8_lossy(&out.stdout));
            }
        });
        let status = child.wait().expect("wait for mailrun");
        done.store(true, Ordering::SeqCst);
        let mut outs = readers.into_iter().map(|r| r.join().unwrap());
        let run = Run {
            code: status.code().unwrap_or(-1),
            stdout: outs.next().unwrap(),
            stderr: outs.next().unwrap(),
        };
        let samples = std::mem::take(&mut *samples.lock().unwrap());
        (run, samples)
    })
}

/// The secrets found in a run's output: (stream, secret name).
fn leaks(label: &str, r: &Run, secrets: &[(&str, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (stream, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        for (what, value) in secrets {
            if text.contains(value.as_str()) {
                found.push(format!("{label} {stream}: {what}"));
            }
        }
    }
    found
}

#[test]
fn secrets_never_show_in_output_or_on_a_command_line() {
    let root_pw = unique("SshPw'x\"y");
    let sudo_pw = unique("SudoPw$(z)");
    let tagged = unique("Tagged;Tok");
    let listed = unique("Listed Val");
    let user_pw = unique("DovecotPw");
    let nolog = unique("NoLogOut");
    let lab = Lab::up_with(
        &["--password", &root_pw, "--user", &format!("sam:{sudo_pw}")],
        &["sec"],
    );
    let p = Project::new();
    // No key in HOME: root logs in with the password alone; sam with the
    // control key and sudo with the password.
    let home = p.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::copy(lab.known_hosts(), home.join(".ssh/known_hosts")).unwrap();
    let yaml_str = |s: &str| serde_json::to_string(s).unwrap();
    p.file(
        "inv/hosts.yml",
        &format!(
            "all:\n  hosts:\n    sroot:\n      ansible_host: {addr}\n      ansible_user: root\n      ansible_password: {rp}\n    ssam:\n      ansible_host: {addr}\n      ansible_user: sam\n      ansible_ssh_private_key_file: {key}\n      ansible_become_password: {sp}\n",
            addr = lab.addr("sec"),
            rp = yaml_str(&root_pw),
            sp = yaml_str(&sudo_pw),
            key = lab.control_key().display(),
        ),
    );
    p.file(
        "inv/group_vars/all.yml",
        &format!("tagged_token: !secret {}\n", yaml_str(&tagged)),
    );
    // The no_log task reads a value only the host has.
    lab.sh(
        "sec",
        &format!("printf '%s' '{nolog}' > /root/nolog-src; chmod 644 /root/nolog-src"),
    );
    p.file(
        "sec.yml",
        &format!(
            r#"- hosts: all
  vars:
    listed_value: {lv}
    secret_vars: [listed_value]
  tasks:
    - name: who
      command: id -un
      become: true
      register: who
    - name: values to a file
      file_copy:
        content: "{{{{ tagged_token }}}}|{{{{ listed_value }}}}\n"
        dest: "/tmp/values-{{{{ inventory_hostname }}}}"
        mode: "0600"
      become: true
    - name: slow use over stdin
      shell: "cat > /tmp/stdin-{{{{ inventory_hostname }}}}; sleep 3"
      args:
        stdin: "{{{{ tagged_token }}}}|{{{{ listed_value }}}}"
      become: true
    - name: echo to stderr and fail
      shell: "cat >&2; exit 3"
      args:
        stdin: "{{{{ tagged_token }}}}"
      register: failed_echo
      ignore_errors: true
    - name: the failure's stderr to a file
      file_copy:
        content: "{{{{ failed_echo.stderr }}}}\n"
        dest: "/tmp/stderr-{{{{ inventory_hostname }}}}"
    - name: a bad argument naming a secret
      file_copy:
        content: x
        dest: /tmp/never
        mode: "{{{{ listed_value }}}}"
      ignore_errors: true
    - name: a template error beside a secret
      debug:
        msg: "{{{{ tagged_token }}}} {{{{ no_such_variable }}}}"
      ignore_errors: true
    - name: no_log result
      command: cat /root/nolog-src
      no_log: true
      register: hidden
      become: true
    - name: no_log failure
      shell: "cat /root/nolog-src; cat /root/nolog-src >&2; exit 1"
      no_log: true
      ignore_errors: true
      become: true
    - name: hidden result to a file
      file_copy:
        content: "{{{{ hidden.stdout }}}}"
        dest: "/tmp/nolog-{{{{ inventory_hostname }}}}"
      no_log: true
      become: true
- hosts: sroot
  tasks:
    - name: dovecot user
      dovecot_user:
        name: sec@example.org
        password: {up}
        scheme: SHA512-CRYPT
        path: /root/users
        uid: "5000"
        gid: "5000"
        home: /var/vmail/example.org/sec
"#,
            lv = yaml_str(&listed),
            up = yaml_str(&user_pw),
        ),
    );
    let secrets: Vec<(&str, String)> = vec![
        ("ansible_password", root_pw.clone()),
        ("ansible_become_password", sudo_pw.clone()),
        ("!secret variable", tagged.clone()),
        ("secret_vars variable", listed.clone()),
        ("no_log plugin argument", user_pw.clone()),
        ("no_log result", nolog.clone()),
    ];
    let markers = ["sleep 3", "sudo -H -S", "mailrun"];
    let mut found = Vec::new();
    let mut sampled = 0;
    for (label, extra) in [
        ("human -vvv --diff", &["-vvv", "--diff"][..]),
        (
            "json -vvv --diff",
            &["--output", "json", "-vvv", "--diff"][..],
        ),
    ] {
        let mut args = vec!["sec.yml", "-i", "inv"];
        args.extend(extra);
        // A fresh start each time: the first run changes files (diffs shown).
        lab.sh(
            "sec",
            "rm -f /tmp/values-* /tmp/stdin-* /tmp/stderr-* /tmp/nolog-* /root/users",
        );
        let (r, s) = run_sampled(&p, &lab, &home, &args, &secrets, &markers);
        assert_eq!(r.code, 0, "{label}: {}", r.all());
        found.extend(leaks(label, &r, &secrets));
        for (place, what) in &s.leaks {
            found.push(format!("{label}: {what} on a command line ({place})"));
        }
        // The samples were taken while the secrets were in use.
        for want in ["host: sleep 3", "host: sudo -H -S", "control: mailrun"] {
            assert!(
                s.seen.contains(want),
                "{label}: never saw {want:?}: {:?}",
                s.seen
            );
        }
        sampled += s.count;
        // The masks are there: the secrets were in the output, masked.
        assert!(r.stdout.contains("********"), "{label}: {}", r.all());
        // The errors still say what went wrong.
        assert!(
            r.stdout.contains("no_such_variable"),
            "{label}: {}",
            r.all()
        );
        assert!(
            r.stdout.contains("the output has been hidden"),
            "{label}: {}",
            r.all()
        );
    }
    assert!(found.is_empty(), "secrets shown: {found:#?}");
    assert!(sampled > 20, "too few command-line samples: {sampled}");
    // Each secret is where it belongs: the searches above saw real values.
    for h in ["sroot", "ssam"] {
        assert_eq!(
            lab.sh("sec", &format!("cat /tmp/values-{h}")),
            format!("{tagged}|{listed}\n")
        );
        assert_eq!(
            lab.sh("sec", &format!("cat /tmp/stdin-{h}")),
            format!("{tagged}|{listed}\n")
        );
        assert_eq!(
            lab.sh("sec", &format!("cat /tmp/stderr-{h}")),
            tagged.clone()
        );
        assert_eq!(lab.sh("sec", &format!("cat /tmp/nolog-{h}")), nolog);
    }
    assert!(!lab.exec("sec", "test -e /tmp/never").status.success());
    let users = lab.sh("sec", "cat /root/users");
    let hash = users.split(':').nth(1).unwrap_or_else(|| panic!("{users}"));
    assert!(hash.starts_with("{SHA512-CRYPT}$6$"), "{users}");
    let salt = hash.split('$').nth(2).unwrap();
    let again = lab.sh(
        "sec",
        &format!(
            "printf '%s' {} | openssl passwd -6 -salt {salt} -stdin",
            sh_quote(&user_pw)
        ),
    );
    assert_eq!(format!("{{SHA512-CRYPT}}{}", again.trim()), hash);
    // The passwords work (root logged in with it, sam's sudo took it).
    assert!(lab.sh("sec", "cat /tmp/values-ssam").contains(&tagged));
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[test]
fn wrong_passwords_are_not_printed_in_their_errors() {
    let root_pw = unique("RightRoot");
    let lab = Lab::up_with(
        &["--password", &root_pw, "--user", "sam:sam-Right-pw"],
        &["sec"],
    );
    let p = Project::new();
    let home = p.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::copy(lab.known_hosts(), home.join(".ssh/known_hosts")).unwrap();
    let wrong_ssh = unique("WrongSsh'pw");
    let wrong_sudo = unique("WrongSudo pw");
    let q = |s: &str| serde_json::to_string(s).unwrap();
    p.file(
        "inv.yml",
        &format!(
            "all:\n  hosts:\n    wroot:\n      ansible_host: {addr}\n      ansible_user: root\n      ansible_password: {ws}\n    wsam:\n      ansible_host: {addr}\n      ansible_user: sam\n      ansible_ssh_private_key_file: {key}\n      ansible_become_password: {wb}\n",
            addr = lab.addr("sec"),
            ws = q(&wrong_ssh),
            wb = q(&wrong_sudo),
            key = lab.control_key().display(),
        ),
    );
    p.file(
        "w.yml",
        "- hosts: all\n  tasks:\n    - command: id -un\n      become: true\n",
    );
    let secrets = vec![
        ("wrong ansible_password", wrong_ssh.clone()),
        ("wrong ansible_become_password", wrong_sudo.clone()),
    ];
    let mut found = Vec::new();
    for (label, extra) in [
        ("human -vvv", &["-vvv"][..]),
        ("json -vvv", &["--output", "json", "-vvv"][..]),
    ] {
        let mut args = vec!["w.yml", "-i", "inv.yml"];
        args.extend(extra);
        let (r, s) = run_sampled(&p, &lab, &home, &args, &secrets, &[]);
        // A failed host and an unreachable one: 2, as ansible-playbook.
        assert_eq!(r.code, 2, "{label}: {}", r.all());
        let all = r.all();
        assert!(all.contains("wroot") && all.contains("password"), "{all}");
        assert!(
            all.contains("did not accept the become password"),
            "{label}: {all}"
        );
        found.extend(leaks(label, &r, &secrets));
        for (place, what) in &s.leaks {
            found.push(format!("{label}: {what} on a command line ({place})"));
        }
    }
    assert!(found.is_empty(), "secrets shown: {found:#?}");
    // The sudo password was really tried: sudo logged a failed attempt.
    let log = lab.sh("sec", "cat /var/log/auth.log 2>/dev/null; true");
    assert!(!log.contains(&wrong_sudo), "{log}");
}
