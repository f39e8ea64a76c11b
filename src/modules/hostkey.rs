//! `known_hosts`: a host's public key pinned in a known_hosts file, so that
//! ssh on this host never asks (and trusts no other key of that type). For
//! each name the file ends with exactly the given key for its key type, as
//! Ansible's module: an entry of that name with another key of the same
//! type is dropped — from a comma list only the name is removed; hashed
//! entries are recognised. Keys of other types are left alone (so pinning
//! a host's ed25519 and its ecdsa key in two tasks converges).

use super::args;
use super::authkey::{expand_home, is_key_type, read_text, write_text, Perms};
use crate::connection::ConnError;
use crate::module::{ArgError, ArgSpec, Context, Diff, Module, ModuleDoc, Outcome};
use crate::ssh::known_hosts::{hash_name, hashed_match, host_port};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

pub struct KnownHostsModule;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    name: Value,
    key: String,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    path: Option<String>,
    #[serde(default = "port22", deserialize_with = "args::int_lenient")]
    port: u16,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    state: Option<String>,
    #[serde(default, deserialize_with = "args::bool_lenient")]
    hash_host: bool,
}

fn port22() -> u16 {
    22
}

struct Job {
    /// As written in the file: `name` or `[name]:port`, lower-cased.
    names: Vec<String>,
    kind: String,
    blob: String,
    path: Option<String>,
    present: bool,
    hash: bool,
}

fn parse_params(args: &Value) -> Result<Job, ArgError> {
    let p: Params = args::typed("known_hosts", args)?;
    let err = |arg: &str, msg: String| ArgError {
        arg: Some(arg.into()),
        msg: format!("known_hosts: {msg}"),
        help: None,
    };
    let raw: Vec<String> = match &p.name {
        Value::String(s) => s.split(',').map(str::to_string).collect(),
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(err("name", format!("names must be strings, got {other}"))),
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(err(
                "name",
                format!("expected a name or a list, got {other}"),
            ))
        }
    };
    let mut names = Vec::new();
    for n in raw.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        if n.contains(|c: char| c.is_whitespace() || "*?!,|#".contains(c)) {
            return Err(err("name", format!("'{n}' is not a host name or address")));
        }
        let name = host_port(&n.to_ascii_lowercase(), p.port);
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Err(err("name", "no host name given".into()));
    }
    let words: Vec<&str> = p.key.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| is_key_type(w))
        .filter(|&i| i <= 1 && words.len() > i + 1)
        .ok_or_else(|| err("key", format!("not a public key: '{}'", p.key.trim())))?;
    let present = match p.state.as_deref() {
        None | Some("present") => true,
        Some("absent") => false,
        Some(o) => {
            return Err(err(
                "state",
                format!("state must be present or absent, got '{o}'"),
            ))
        }
    };
    Ok(Job {
        names,
        kind: words[at].to_string(),
        blob: words[at + 1].to_string(),
        path: p.path,
        present,
        hash: p.hash_host,
    })
}

/// Whether a host field entry (plain or hashed) is `name`.
fn entry_is(entry: &str, name: &str) -> bool {
    if entry.starts_with("|1|") {
        hashed_match(entry, name)
    } else {
        entry.eq_ignore_ascii_case(name)
    }
}

/// The file with the names pinned to the key (or removed). Returns the new
/// text and what was replaced.
fn edit(text: &str, job: &Job) -> (String, Vec<String>) {
    let mut out: Vec<String> = Vec::new();
    let mut replaced = Vec::new();
    let mut have: Vec<&str> = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        let mut f = t.split_whitespace();
        let (Some(hosts), Some(kind), Some(blob)) = (f.next(), f.next(), f.next()) else {
            out.push(line.to_string());
            continue;
        };
        if t.starts_with('#') || hosts.starts_with('@') {
            out.push(line.to_string());
            continue;
        }
        let entries: Vec<&str> = hosts.split(',').collect();
        let ours: Vec<&str> = job
            .names
            .iter()
            .map(String::as_str)
            .filter(|n| entries.iter().any(|e| entry_is(e, n)))
            .collect();
        if ours.is_empty() {
            out.push(line.to_string());
            continue;
        }
        if job.present && kind != job.kind {
            // Another key type: not ours to judge.
            out.push(line.to_string());
            continue;
        }
        let same = job.present && blob == job.blob;
        if same {
            have.extend(ours.iter().copied());
            out.push(line.to_string());
            continue;
        }
        if job.present {
            replaced.push(format!("{kind} key for {}", ours.join(", ")));
        }
        let keep: Vec<&str> = entries
            .iter()
            .copied()
            .filter(|e| !ours.iter().any(|n| entry_is(e, n)))
            .collect();
        if !keep.is_empty() {
            let rest: Vec<&str> = t.split_whitespace().skip(1).collect();
            out.push(format!("{} {}", keep.join(","), rest.join(" ")));
        }
    }
    if job.present {
        let missing: Vec<&str> = job
            .names
            .iter()
            .map(String::as_str)
            .filter(|n| !have.contains(n))
            .collect();
        if !missing.is_empty() {
            let hosts = if job.hash {
                missing
                    .iter()
                    .map(|n| hash_name(n))
                    .collect::<Vec<_>>()
                    .join(",")
            } else {
                missing.join(",")
            };
            out.push(format!("{hosts} {} {}", job.kind, job.blob));
        }
    }
    let mut s = out.join("\n");
    if !s.is_empty() {
        s.push('\n');
    }
    (s, replaced)
}

/// Keys of another type than the job's recorded for its names (kept; ssh
/// may be offered one of them first), as `TYPE for NAME`.
fn other_types(text: &str, job: &Job) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        let mut f = t.split_whitespace();
        let (Some(hosts), Some(kind), Some(_)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if t.starts_with('#') || hosts.starts_with('@') || kind == job.kind {
            continue;
        }
        for n in &job.names {
            if hosts.split(',').any(|e| entry_is(e, n)) {
                let s = format!("{kind} for {n}");
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
    }
    out
}

#[async_trait]
impl Module for KnownHostsModule {
    fn doc(&self) -> ModuleDoc {
        ModuleDoc {
            name: "known_hosts",
            description: "Pins a host's public key in a known_hosts file, so ssh on this host never asks and trusts no other key of that type for that name. An entry of the name with another key of the same type is replaced (from a comma list only the name is removed); hashed entries are recognised; keys of other types are kept.",
            args: vec![
                ArgSpec {
                    name: "name",
                    kind: "any",
                    required: true,
                    default: None,
                    description: "The host name or address ssh is given, or a list of them (each gets the key).",
                },
                ArgSpec {
                    name: "key",
                    kind: "string",
                    required: true,
                    default: None,
                    description: "The host's public key: `ssh-ed25519 AAAA… [comment]` (e.g. the host's /etc/ssh/ssh_host_ed25519_key.pub read over a verified connection) or a known_hosts line `names type base64`.",
                },
                ArgSpec {
                    name: "path",
                    kind: "path",
                    required: false,
                    default: Some("~/.ssh/known_hosts"),
                    description: "The file; `~` and `~user` are resolved on the host (default: the home of the user the task runs as, so root's with become). Created 0644 in a 0700 directory if missing; an existing file keeps its mode and owner.",
                },
                ArgSpec {
                    name: "port",
                    kind: "int",
                    required: false,
                    default: Some("22"),
                    description: "The SSH port; other than 22 the entry is `[name]:port`, as ssh looks it up.",
                },
                ArgSpec {
                    name: "state",
                    kind: "present|absent",
                    required: false,
                    default: Some("present"),
                    description: "absent removes every entry of the names (whatever the key or its type).",
                },
                ArgSpec {
                    name: "hash_host",
                    kind: "bool",
                    required: false,
                    default: Some("false"),
                    description: "Write new entries hashed (`|1|salt|hash`, as ssh-keygen -H).",
                },
            ],
            check_mode: true,
            example: "- name: Old knows new's host key\n  known_hosts:\n    name: 192.0.2.20\n    key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJoVqZbKcGJc3BbGMXbb7Rtj3jZ2kKQm1bCmlHGiNyOj\"\n    path: /root/.ssh/known_hosts\n",
            free_form: None,
        }
    }

    fn parse(&self, args: &Value) -> Result<(), ArgError> {
        parse_params(args).map(|_| ())
    }

    async fn run(&self, ctx: &Context, args: Value) -> Result<Outcome, ConnError> {
        let job = match parse_params(&args) {
            Ok(j) => j,
            Err(e) => return Ok(super::arg_failure(e)),
        };
        let path = match expand_home(
            ctx,
            "known_hosts",
            job.path.as_deref().unwrap_or("~/.ssh/known_hosts"),
        )
        .await?
        {
            Ok(path) => path,
            Err(failed) => return Ok(failed),
        };
        let before = match read_text(ctx, &path).await? {
            Ok((_, text)) => text,
            Err(e) => {
                return Ok(Outcome::failed(format!(
                    "known_hosts: cannot read {path}: {e}"
                )))
            }
        };
        let (after, replaced) = edit(&before, &job);
        let diff = (ctx.diff && after != before).then(|| Diff {
            path: path.clone(),
            before: before.clone(),
            after: after.clone(),
        });
        if after == before {
            let mut o = Outcome::ok().msg(format!(
                "{path}: {} already as wanted",
                job.names.join(", ")
            ));
            o.diff = diff;
            return Ok(o);
        }
        if !ctx.check {
            if let Err(e) = write_text(ctx, &path, &after, Perms::Keep(0o644), true).await? {
                return Ok(Outcome::failed(format!(
                    "known_hosts: cannot write {path}: {e}"
                )));
            }
        }
        let mut msg = format!(
            "{}{} {} {path}",
            if ctx.check { "would have " } else { "" },
            job.names.join(", "),
            if job.present {
                "pinned in"
            } else {
                "removed from"
            }
        );
        if !replaced.is_empty() {
            msg.push_str(&format!("; replaced a different {}", replaced.join("; ")));
        }
        let others = if job.present {
            other_types(&after, &job)
        } else {
            Vec::new()
        };
        if !others.is_empty() {
            msg.push_str(&format!(
                "; kept keys of other types: {}",
                others.join(", ")
            ));
        }
        let mut o = Outcome::changed().msg(msg).with("path", path);
        o.diff = diff;
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(name: Value, key: &str, port: u16, present: bool) -> Job {
        parse_params(&json!({"name": name, "key": key, "port": port, "state": if present {"present"} else {"absent"}})).unwrap()
    }

    #[test]
    fn pins_replaces_and_keeps_other_hosts() {
        let j = job(json!("new"), "ssh-ed25519 KEYNEW host@new", 22, true);
        let (out, rep) = edit("", &j);
        assert_eq!(out, "new ssh-ed25519 KEYNEW\n");
        assert!(rep.is_empty());
        assert_eq!(edit(&out, &j).0, out);
        // A different key for a name in a comma list: only that name goes.
        // Another key type of the name is kept.
        let text = "old,new,10.0.0.2 ssh-ed25519 STALE\nother ssh-rsa X\nnew ssh-rsa OLDRSA\n";
        let (out, rep) = edit(text, &j);
        assert_eq!(
            out,
            "old,10.0.0.2 ssh-ed25519 STALE\nother ssh-rsa X\nnew ssh-rsa OLDRSA\nnew ssh-ed25519 KEYNEW\n"
        );
        assert_eq!(rep, vec!["ssh-ed25519 key for new"]);
        assert_eq!(edit(&out, &j), (out.clone(), vec![]));
        assert_eq!(other_types(&out, &j), vec!["ssh-rsa for new"]);
        // Pinning the other type too converges: each task keeps the other's.
        let rsa = job(json!("new"), "ssh-rsa NEWRSA", 22, true);
        let (both, rep) = edit(&out, &rsa);
        assert_eq!(rep, vec!["ssh-rsa key for new"]);
        assert_eq!(edit(&both, &j).0, both);
        assert_eq!(edit(&both, &rsa).0, both);
        // Absent: every entry of the name, whatever its type.
        let gone = job(json!(["new"]), "ssh-ed25519 KEYNEW", 22, false);
        assert_eq!(
            edit(&both, &gone).0,
            "old,10.0.0.2 ssh-ed25519 STALE\nother ssh-rsa X\n"
        );
    }

    fn h_plain() -> Job {
        job(json!("new"), "ssh-ed25519 K", 22, true)
    }

    #[test]
    fn ports_hashes_and_known_hosts_lines() {
        let j = job(json!("10.0.0.2"), "10.0.0.2 ssh-ed25519 K", 2222, true);
        assert_eq!(j.names, vec!["[10.0.0.2]:2222"]);
        assert_eq!(edit("", &j).0, "[10.0.0.2]:2222 ssh-ed25519 K\n");
        let hashed = hash_name("new");
        let text = format!("{hashed} ssh-ed25519 STALE\n");
        let j = job(json!("new"), "ssh-ed25519 K", 22, true);
        assert_eq!(edit(&text, &j).0, "new ssh-ed25519 K\n");
        let mut h = j;
        h.hash = true;
        let (out, _) = edit("", &h);
        assert!(out.starts_with("|1|") && hashed_match(out.split(' ').next().unwrap(), "new"));
        // A hashed name inside a comma list: only that entry goes.
        let text = format!("old,{hashed},10.0.0.2 ssh-ed25519 STALE\n");
        let (out, rep) = edit(&text, &h_plain());
        assert_eq!(out, "old,10.0.0.2 ssh-ed25519 STALE\nnew ssh-ed25519 K\n");
        assert_eq!(rep, vec!["ssh-ed25519 key for new"]);
        // The right key under a hashed entry: nothing to do.
        let text = format!("{hashed} ssh-ed25519 K\n");
        assert_eq!(edit(&text, &h_plain()).0, text);
        // Several names, one of them already right.
        let j = job(json!(["new", "10.0.0.9"]), "ssh-ed25519 K", 22, true);
        let (out, _) = edit("new ssh-ed25519 K\n", &j);
        assert_eq!(out, "new ssh-ed25519 K\n10.0.0.9 ssh-ed25519 K\n");
        // [host]:port entries are another name than the bare host.
        let j = job(json!("new"), "ssh-ed25519 K", 2222, true);
        let (out, rep) = edit("new ssh-ed25519 OTHER\n[new]:2222 ssh-ed25519 OLD\n", &j);
        assert_eq!(out, "new ssh-ed25519 OTHER\n[new]:2222 ssh-ed25519 K\n");
        assert_eq!(rep, vec!["ssh-ed25519 key for [new]:2222"]);
        // Comments, markers and junk stay as they are.
        let text = "# note\n@cert-authority *.example ssh-ed25519 CA\n\nnew\n";
        let (out, _) = edit(text, &h_plain());
        assert_eq!(out, format!("{text}new ssh-ed25519 K\n"));
        assert!(parse_params(&json!({"name": "a b", "key": "ssh-ed25519 K"})).is_err());
        let twice = job(json!(["new", "NEW"]), "ssh-ed25519 K", 22, true);
        assert_eq!(edit("", &twice).0, "new ssh-ed25519 K\n");
        assert!(parse_params(&json!({"name": "a", "key": "nonsense"})).is_err());
    }
}

#[cfg(test)]
mod run_tests {
    use crate::modules::testutil::{ctx, p, rt, run};
    use serde_json::json;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn mode_of(path: &str) -> u32 {
        fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0)
    }

    #[test]
    fn creates_pins_keeps_mode_and_checks() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = p(dir.path(), "ssh/known_hosts");
            let args = json!({"name": "new", "key": "ssh-ed25519 AAAAK host@new", "path": path});
            // Check mode with diff: says what, writes nothing.
            let mut c = ctx(dir.path());
            c.check = true;
            c.diff = true;
            let o = run(&c, "known_hosts", args.clone()).await;
            assert!(o.changed && !o.failed, "{o:?}");
            assert_eq!(
                o.diff.as_ref().map(|d| d.after.as_str()),
                Some("new ssh-ed25519 AAAAK\n")
            );
            assert!(!dir.path().join("ssh").exists());
            // Created: the directory 0700, the file 0644; then unchanged.
            let c = ctx(dir.path());
            let o = run(&c, "known_hosts", args.clone()).await;
            assert!(o.changed && !o.failed, "{o:?}");
            assert_eq!(mode_of(&p(dir.path(), "ssh")), 0o700);
            assert_eq!(mode_of(&path), 0o644);
            let o = run(&c, "known_hosts", args.clone()).await;
            assert!(!o.changed && !o.failed, "{o:?}");
            // A stale key of the same type is replaced and named; an
            // existing file keeps its mode.
            fs::write(&path, "new,old ssh-ed25519 STALE\n").expect("write");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
            let o = run(&c, "known_hosts", args.clone()).await;
            assert!(o.changed && !o.failed, "{o:?}");
            let msg = o.msg.unwrap_or_default();
            assert!(
                msg.contains("replaced a different ssh-ed25519 key for new"),
                "{msg}"
            );
            assert_eq!(
                fs::read_to_string(&path).ok().as_deref(),
                Some("old ssh-ed25519 STALE\nnew ssh-ed25519 AAAAK\n")
            );
            assert_eq!(mode_of(&path), 0o600);
            // Absent.
            let o = run(
                &c,
                "known_hosts",
                json!({"name": "new", "key": "ssh-ed25519 AAAAK", "path": path, "state": "absent"}),
            )
            .await;
            assert!(o.changed && !o.failed, "{o:?}");
            assert_eq!(
                fs::read_to_string(&path).ok().as_deref(),
                Some("old ssh-ed25519 STALE\n")
            );
        });
    }
}
