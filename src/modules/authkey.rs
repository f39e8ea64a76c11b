//! `authorized_key`: a public key in a user's `authorized_keys`, as
//! Ansible's module. A key is known by its type and base64 (options and
//! comment may change); the file is written 0600, owned by the user.

use super::args;
use crate::connection::{self, ConnError};
use crate::module::{ArgError, ArgSpec, Context, Diff, Module, ModuleDoc, Outcome};
use crate::quote::quote;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

pub struct AuthorizedKey;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    user: String,
    key: String,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    state: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    key_options: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    path: Option<String>,
    #[serde(
        default = "super::command::yes",
        deserialize_with = "args::bool_lenient"
    )]
    manage_dir: bool,
    #[serde(default, deserialize_with = "args::bool_lenient")]
    exclusive: bool,
}

/// One key: options (as written), type, base64, comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Key {
    pub(super) options: String,
    pub(super) kind: String,
    pub(super) blob: String,
    pub(super) comment: String,
}

impl Key {
    fn line(&self) -> String {
        let mut s = String::new();
        if !self.options.is_empty() {
            s.push_str(&self.options);
            s.push(' ');
        }
        s.push_str(&self.kind);
        s.push(' ');
        s.push_str(&self.blob);
        if !self.comment.is_empty() {
            s.push(' ');
            s.push_str(&self.comment);
        }
        s
    }
    fn same_key(&self, other: &Key) -> bool {
        self.kind == other.kind && self.blob == other.blob
    }
}

pub(super) fn is_key_type(t: &str) -> bool {
    t.starts_with("ssh-") || t.starts_with("ecdsa-") || t.starts_with("sk-")
}

/// Splits on blanks outside double quotes (authorized_keys options may
/// hold quoted spaces).
fn tokens(line: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => {
                quoted = !quoted;
                start.get_or_insert(i);
            }
            c if c.is_whitespace() && !quoted => {
                if let Some(s) = start.take() {
                    out.push((s, i));
                }
            }
            _ => {
                start.get_or_insert(i);
            }
        }
    }
    if let Some(s) = start {
        out.push((s, line.len()));
    }
    out
}

/// Parses an authorized_keys line (None for comments, blanks, junk).
pub(super) fn parse_key(line: &str) -> Option<Key> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    let toks = tokens(t);
    let i = toks.iter().position(|&(s, e)| is_key_type(&t[s..e]))?;
    let (ks, ke) = toks[i];
    let &(bs, be) = toks.get(i + 1)?;
    let options = if i == 0 {
        ""
    } else {
        t[..toks[i - 1].1].trim()
    };
    let comment = toks.get(i + 2).map(|&(s, _)| t[s..].trim()).unwrap_or("");
    Some(Key {
        options: options.to_string(),
        kind: t[ks..ke].to_string(),
        blob: t[bs..be].to_string(),
        comment: comment.to_string(),
    })
}

/// The file with `keys` present (or absent); `exclusive` drops every other
/// key line.
pub(super) fn edit(text: &str, keys: &[Key], present: bool, exclusive: bool) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if !present {
        lines.retain(|l| !parse_key(l).is_some_and(|k| keys.iter().any(|w| w.same_key(&k))));
    } else {
        for want in keys {
            let hits: Vec<usize> = (0..lines.len())
                .filter(|&i| parse_key(&lines[i]).is_some_and(|k| k.same_key(want)))
                .collect();
            match hits.split_first() {
                Some((&first, rest)) => {
                    let have = parse_key(&lines[first]).expect("matched");
                    if have.options != want.options {
                        lines[first] = want.line();
                    }
                    for &i in rest.iter().rev() {
                        lines.remove(i);
                    }
                }
                None => lines.push(want.line()),
            }
        }
        if exclusive {
            lines.retain(|l| match parse_key(l) {
                Some(k) => keys.iter().any(|w| w.same_key(&k)),
                None => true,
            });
        }
    }
    let mut out = lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

fn parse_params(args: &Value) -> Result<(Params, Vec<Key>), ArgError> {
    let p: Params = args::typed("authorized_key", args)?;
    let err = |arg: &str, msg: String| ArgError {
        arg: Some(arg.into()),
        msg,
        help: None,
    };
    if !matches!(p.state.as_deref(), None | Some("present" | "absent")) {
        return Err(err(
            "state",
            "authorized_key: state must be present or absent".into(),
        ));
    }
    if p.user.is_empty() || p.user.starts_with('-') || p.user.contains(['/', ' ', ':', '\n']) {
        return Err(err(
            "user",
            format!("authorized_key: '{}' is not a user name", p.user),
        ));
    }
    if p.key_options.as_deref().is_some_and(|o| o.contains('\n')) {
        return Err(err(
            "key_options",
            "authorized_key: key_options must be one line".into(),
        ));
    }
    let mut keys = Vec::new();
    for line in p.key.lines().filter(|l| !l.trim().is_empty()) {
        let mut k = parse_key(line).ok_or_else(|| {
            err(
                "key",
                format!("authorized_key: not a public key line: '{}'", line.trim()),
            )
        })?;
        // Given (even empty), key_options replace the key line's own.
        if let Some(o) = p.key_options.as_deref() {
            k.options = o.trim().to_string();
        }
        keys.push(k);
    }
    if keys.is_empty() {
        return Err(err("key", "authorized_key: key is empty".into()));
    }
    Ok((p, keys))
}

/// Reads a file under become: (exists, content).
pub(super) async fn read_text(
    ctx: &Context,
    path: &str,
) -> Result<Result<(bool, String), String>, ConnError> {
    let out = super::sh(
        ctx,
        &format!(
            "p={}\nif [ -e \"$p\" ]; then echo y; cat -- \"$p\"; else echo n; fi",
            quote(path)
        ),
    )
    .await?;
    if out.rc != 0 {
        return Ok(Err(out.stderr_str().trim().to_string()));
    }
    let text = out.stdout_str();
    Ok(Ok(match text.split_once('\n') {
        Some(("y", rest)) => (true, rest.to_string()),
        _ => (false, String::new()),
    }))
}

/// How [`write_text`] sets the file's mode and owner.
#[derive(Debug, Clone, Copy)]
pub(super) enum Perms<'a> {
    /// Always this mode, owned by this user (and its login group).
    Force(u32, &'a str),
    /// An existing file keeps its mode and owner; a new one gets this mode
    /// (owned by the user the task runs as).
    Keep(u32),
}

/// Writes `content` to `path` under become: its directory created (0700,
/// owned as the file) when `mkdir`, the file replaced atomically (a temp
/// file beside it, renamed over it; removed again on failure).
pub(super) async fn write_text(
    ctx: &Context,
    path: &str,
    content: &str,
    perms: Perms<'_>,
    mkdir: bool,
) -> Result<Result<(), String>, ConnError> {
    let (chown, set_perms) = match perms {
        Perms::Force(mode, owner) => {
            let chown = |what: &str| format!("chown -- {} {what}\n", quote(&format!("{owner}:")));
            (
                chown("\"$d\""),
                format!("{}chmod {mode:04o} -- \"$t\"\n", chown("\"$t\"")),
            )
        }
        Perms::Keep(mode) => (
            String::new(),
            format!(
                "if [ -e \"$p\" ]; then\n\
                 chown \"$(stat -L -c %u:%g -- \"$p\")\" -- \"$t\" 2>/dev/null || true\n\
                 chmod \"$(stat -L -c %a -- \"$p\")\" -- \"$t\"\n\
                 else\nchmod {mode:04o} -- \"$t\"\nfi\n"
            ),
        ),
    };
    let dir = if mkdir {
        format!(
            "d=$(dirname -- \"$p\")\nif [ ! -d \"$d\" ]; then\nmkdir -p -- \"$d\"\nchmod 700 -- \"$d\"\n{chown}fi\n"
        )
    } else {
        String::new()
    };
    let script = format!(
        "set -e\np={}\n{dir}t=$(mktemp -- \"$p.mailrun.XXXXXX\")\ntrap 'rm -f -- \"$t\"' EXIT\ntrap 'exit 143' TERM INT HUP\ncat > \"$t\"\n{set_perms}mv -f -- \"$t\" \"$p\"\ntrap - EXIT",
        quote(path),
    );
    let out = ctx
        .conn
        .exec(&connection::Command {
            cmd: script,
            stdin: Some(content.as_bytes().to_vec()),
            timeout: ctx.timeout,
            become_user: ctx.become_user.clone(),
        })
        .await?;
    Ok(if out.rc == 0 {
        Ok(())
    } else {
        Err(out.stderr_str().trim().to_string())
    })
}

/// The home directory of `user` on the host (None: the user the task runs
/// as), from its passwd entry (`$HOME` as a fallback for the task's user);
/// Ok(None) when there is no such user.
pub(super) async fn home_of(
    ctx: &Context,
    user: Option<&str>,
) -> Result<Option<String>, ConnError> {
    let script = match user {
        Some(u) => format!("getent passwd -- {} | cut -d: -f6", quote(u)),
        None => {
            "h=$(getent passwd \"$(id -un)\" | cut -d: -f6)\nprintf '%s\\n' \"${h:-$HOME}\"".into()
        }
    };
    let out = super::sh(ctx, &script).await?;
    let home = out.stdout_str().trim().to_string();
    Ok((!home.is_empty()).then_some(home))
}

/// `path` with a leading `~` or `~user` resolved on the host.
pub(super) async fn expand_home(
    ctx: &Context,
    module: &str,
    path: &str,
) -> Result<Result<String, Outcome>, ConnError> {
    let Some(rest) = path.strip_prefix('~') else {
        return Ok(Ok(path.to_string()));
    };
    let (user, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let who = (!user.is_empty()).then_some(user);
    Ok(match home_of(ctx, who).await? {
        Some(home) => Ok(format!("{}{tail}", home.trim_end_matches('/'))),
        None => Err(Outcome::failed(format!(
            "{module}: cannot resolve {path}: no user '{}' on this host",
            who.unwrap_or("(the task's user)")
        ))),
    })
}

#[async_trait]
impl Module for AuthorizedKey {
    fn doc(&self) -> ModuleDoc {
        ModuleDoc {
            name: "authorized_key",
            description: "Adds or removes SSH public keys in a user's authorized_keys (as Ansible's module). A key is matched by type and base64; its options are set as given; the file is 0600 and owned by the user.",
            args: vec![
                ArgSpec {
                    name: "user",
                    kind: "string",
                    required: true,
                    default: None,
                    description: "Whose authorized_keys (its home from the host's passwd).",
                },
                ArgSpec {
                    name: "key",
                    kind: "string",
                    required: true,
                    default: None,
                    description: "One or more public key lines (`ssh-ed25519 AAAA… comment`).",
                },
                ArgSpec {
                    name: "state",
                    kind: "present|absent",
                    required: false,
                    default: Some("present"),
                    description: "absent removes the keys (whatever their options).",
                },
                ArgSpec {
                    name: "key_options",
                    kind: "string",
                    required: false,
                    default: None,
                    description: "authorized_keys options for the keys, e.g. `from=\"192.0.2.10\",restrict`, replacing any the key line has; empty means none. A key already in the file with other options gets these.",
                },
                ArgSpec {
                    name: "path",
                    kind: "path",
                    required: false,
                    default: Some("~user/.ssh/authorized_keys"),
                    description: "Another authorized_keys file.",
                },
                ArgSpec {
                    name: "manage_dir",
                    kind: "bool",
                    required: false,
                    default: Some("true"),
                    description: "Create the file's directory (0700, owned by the user) if it is missing.",
                },
                ArgSpec {
                    name: "exclusive",
                    kind: "bool",
                    required: false,
                    default: Some("false"),
                    description: "Remove every other key from the file.",
                },
            ],
            check_mode: true,
            example: "- name: Let old's root in\n  authorized_key:\n    user: root\n    key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJoVqZbKcGJc3BbGMXbb7Rtj3jZ2kKQm1bCmlHGiNyOj root@old\"\n",
            free_form: None,
        }
    }

    fn parse(&self, args: &Value) -> Result<(), ArgError> {
        parse_params(args).map(|_| ())
    }

    async fn run(&self, ctx: &Context, args: Value) -> Result<Outcome, ConnError> {
        let (p, keys) = match parse_params(&args) {
            Ok(x) => x,
            Err(e) => return Ok(super::arg_failure(e)),
        };
        let present = p.state.as_deref() != Some("absent");
        let path = match expand_home(
            ctx,
            "authorized_key",
            p.path
                .as_deref()
                .unwrap_or(&format!("~{}/.ssh/authorized_keys", p.user)),
        )
        .await?
        {
            Ok(path) => path,
            Err(failed) => return Ok(failed),
        };
        let (exists, before) = match read_text(ctx, &path).await? {
            Ok(x) => x,
            Err(e) => {
                return Ok(Outcome::failed(format!(
                    "authorized_key: cannot read {path}: {e}"
                )))
            }
        };
        let after = edit(&before, &keys, present, p.exclusive);
        let diff = (ctx.diff && after != before).then(|| Diff {
            path: path.clone(),
            before: before.clone(),
            after: after.clone(),
        });
        if after == before && (exists || !present) {
            let mut o = Outcome::ok().msg(format!("{path}: nothing to change"));
            o.diff = diff;
            return Ok(o);
        }
        if !ctx.check {
            if let Err(e) = write_text(
                ctx,
                &path,
                &after,
                Perms::Force(0o600, &p.user),
                p.manage_dir,
            )
            .await?
            {
                return Ok(Outcome::failed(format!(
                    "authorized_key: cannot write {path}: {e}"
                )));
            }
        }
        let mut o = Outcome::changed()
            .msg(format!(
                "{}{} key(s) {} {path}",
                if ctx.check { "would have " } else { "" },
                keys.len(),
                if present { "in" } else { "removed from" }
            ))
            .with("path", path);
        o.diff = diff;
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA1 root@old";
    const K2: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ2 admin";

    #[test]
    fn parses_options_with_quoted_spaces() {
        let k = parse_key(r#"from="10.0.0.1",command="echo a b" ssh-ed25519 AAAA x y"#).unwrap();
        assert_eq!(k.options, r#"from="10.0.0.1",command="echo a b""#);
        assert_eq!(
            (k.kind.as_str(), k.blob.as_str(), k.comment.as_str()),
            ("ssh-ed25519", "AAAA", "x y")
        );
        assert!(parse_key("# comment").is_none());
        assert!(parse_key("garbage").is_none());
    }

    #[test]
    fn edits_by_key_identity() {
        let k1 = parse_key(K1).unwrap();
        let text = format!("{K2}\n");
        let added = edit(&text, std::slice::from_ref(&k1), true, false);
        assert_eq!(added, format!("{K2}\n{K1}\n"));
        assert_eq!(edit(&added, std::slice::from_ref(&k1), true, false), added);
        // Options change: the line is rewritten in place.
        let mut with_opts = k1.clone();
        with_opts.options = "from=\"10.0.0.2\"".into();
        let changed = edit(&added, std::slice::from_ref(&with_opts), true, false);
        assert!(
            changed.contains("from=\"10.0.0.2\" ssh-ed25519"),
            "{changed}"
        );
        assert_eq!(changed.lines().count(), 2);
        // Absent matches whatever the options.
        assert_eq!(
            edit(&changed, std::slice::from_ref(&k1), false, false),
            format!("{K2}\n")
        );
        // Exclusive drops the others.
        assert_eq!(edit(&added, &[k1], true, true), format!("{K1}\n"));
    }
}

#[cfg(test)]
mod run_tests {
    use crate::modules::testutil::{ctx, p, rt, run};
    use serde_json::json;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    const K: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA1 root@old";

    fn me() -> String {
        let out = std::process::Command::new("id")
            .arg("-un")
            .output()
            .expect("id");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn mode_of(path: &str) -> u32 {
        fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0)
    }

    #[test]
    fn adds_updates_options_removes_and_checks() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = p(dir.path(), "dotssh/authorized_keys");
            let args = json!({"user": me(), "key": K, "path": path});
            let mut c = ctx(dir.path());
            c.check = true;
            let o = run(&c, "authorized_key", args.clone()).await;
            assert!(o.changed && !o.failed, "{o:?}");
            assert!(!dir.path().join("dotssh").exists());
            let c = ctx(dir.path());
            let o = run(&c, "authorized_key", args.clone()).await;
            assert!(o.changed && !o.failed, "{o:?}");
            assert_eq!(fs::read_to_string(&path).ok().as_deref(), Some(&*format!("{K}\n")));
            assert_eq!(mode_of(&path), 0o600);
            assert_eq!(mode_of(&p(dir.path(), "dotssh")), 0o700);
            let o = run(&c, "authorized_key", args.clone()).await;
            assert!(!o.changed && !o.failed, "{o:?}");
            // Another comment: the same key, nothing to do.
            let o = run(&c, "authorized_key", json!({"user": me(), "key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA1 other", "path": path})).await;
            assert!(!o.changed && !o.failed, "{o:?}");
            // Options: the line is updated, not added.
            let opts = json!({"user": me(), "key": K, "path": path, "key_options": "from=\"10.0.0.2\",restrict"});
            let o = run(&c, "authorized_key", opts.clone()).await;
            assert!(o.changed && !o.failed, "{o:?}");
            assert_eq!(
                fs::read_to_string(&path).ok().as_deref(),
                Some(&*format!("from=\"10.0.0.2\",restrict {K}\n"))
            );
            let o = run(&c, "authorized_key", opts).await;
            assert!(!o.changed, "{o:?}");
            // Empty key_options: none, also over the key line's own.
            let bare = json!({"user": me(), "key": format!("restrict {K}"), "path": path, "key_options": ""});
            let o = run(&c, "authorized_key", bare.clone()).await;
            assert!(o.changed && !o.failed, "{o:?}");
            assert_eq!(fs::read_to_string(&path).ok().as_deref(), Some(&*format!("{K}\n")));
            let o = run(&c, "authorized_key", bare).await;
            assert!(!o.changed, "{o:?}");
            // Absent, whatever the options.
            let o = run(&c, "authorized_key", json!({"user": me(), "key": K, "path": path, "state": "absent"})).await;
            assert!(o.changed && !o.failed, "{o:?}");
            assert_eq!(fs::read_to_string(&path).ok().as_deref(), Some(""));
            // `~user` resolves on the host; an unknown user is named.
            let o = run(&c, "authorized_key", json!({"user": "no-such-user-mr", "key": K})).await;
            assert!(o.failed && o.msg.as_deref().unwrap_or("").contains("no user 'no-such-user-mr'"), "{o:?}");
        });
    }
}
