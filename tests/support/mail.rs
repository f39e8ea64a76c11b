//! Mail on the lab's Dovecot hosts (tests/lab/mail.sh) and dsync results.
#![allow(dead_code)]

use super::lab::Lab;
use super::Run;
use serde_json::Value;

/// tests/lab/mail.sh CMD on a host (its real name), stdout.
pub fn mail(lab: &Lab, cmd: &str, short: &str, args: &[&str]) -> String {
    let script = Lab::script().with_file_name("mail.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg(cmd)
        .arg(lab.name(short))
        .args(args)
        .env("LAB_DIR", lab.dir())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run mail.sh");
    assert!(
        out.status.success(),
        "mail.sh {cmd} {short} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn snapshot(lab: &Lab, short: &str, user: &str) -> String {
    mail(lab, "snapshot", short, &[user])
}

/// Messages (GUID lines) of a snapshot.
pub fn guids(snap: &str) -> Vec<String> {
    snap.split("== messages\n")
        .nth(1)
        .unwrap_or("")
        .split("== sieve")
        .next()
        .unwrap_or("")
        .lines()
        .map(|l| l.split('\t').take(2).collect::<Vec<_>>().join("\t"))
        .collect()
}

/// The module's result (last host_result of the task on `host`).
pub fn result(r: &Run, task: &str, host: &str) -> Value {
    r.results(task)
        .into_iter()
        .rfind(|e| e["host"] == host)
        .map(|e| e["result"].clone())
        .unwrap_or(Value::Null)
}
