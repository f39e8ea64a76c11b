//! `file_copy`: a file from the control machine (`src`), inline `content`
//! or another inventory host (`from_host` + `src`, read there through the
//! control machine) to the host, unchanged when the checksums match.
//! [`install`] is shared with `template`.

use super::args::{self, Mode};
use crate::connection::{self, ConnError, FileStat};
use crate::local::sha256_hex;
use crate::module::{ArgError, ArgSpec, Context, Diff, Module, ModuleDoc, Outcome};
use crate::quote::quote;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

pub struct FileCopy;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    src: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    content: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    from_host: Option<String>,
    dest: String,
    #[serde(default, deserialize_with = "args::mode")]
    mode: Option<Mode>,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    owner: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    group: Option<String>,
    #[serde(default, deserialize_with = "args::bool_lenient")]
    backup: bool,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    validate: Option<String>,
    #[serde(
        default = "super::command::yes",
        deserialize_with = "args::bool_lenient"
    )]
    force: bool,
}

/// How to install a file: everything but its content.
#[derive(Debug, Clone, Default)]
pub(super) struct InstallOpts {
    pub(super) dest: String,
    pub(super) mode: Option<Mode>,
    pub(super) owner: Option<String>,
    pub(super) group: Option<String>,
    pub(super) backup: bool,
    pub(super) validate: Option<String>,
    pub(super) force: bool,
    /// The destination's stat, when `resolve_dest` already made it.
    pub(super) known: Option<Option<FileStat>>,
    /// The content's SHA-256, when already known.
    pub(super) checksum: Option<Arc<str>>,
}

/// The argument specs `file_copy` and `template` share (after `src`).
pub(super) fn install_args() -> Vec<ArgSpec> {
    vec![
        ArgSpec {
            name: "dest",
            kind: "path",
            required: true,
            default: None,
            description: "Where the file goes on the host; ending in `/` or an existing directory puts it inside, named after src.",
        },
        ArgSpec {
            name: "mode",
            kind: "mode",
            required: false,
            default: None,
            description: "Permissions, quoted octal (\"0644\") or symbolic (\"u=rw,go=r\"); default keeps the old file's, or 0666 minus umask.",
        },
        ArgSpec {
            name: "owner",
            kind: "string",
            required: false,
            default: None,
            description: "Owner (name or uid), set with chown.",
        },
        ArgSpec {
            name: "group",
            kind: "string",
            required: false,
            default: None,
            description: "Group (name or gid), set with chgrp.",
        },
        ArgSpec {
            name: "backup",
            kind: "bool",
            required: false,
            default: Some("false"),
            description: "Copy the old file to `dest.<UTC time>~` before replacing it; the result's backup_file names it.",
        },
        ArgSpec {
            name: "validate",
            kind: "string",
            required: false,
            default: None,
            description: "A command checking the new file before it is installed; `%s` is replaced by its temp path. If it fails nothing is installed.",
        },
        ArgSpec {
            name: "force",
            kind: "bool",
            required: false,
            default: Some("true"),
            description: "Replace a dest whose content differs; false only creates a missing file.",
        },
    ]
}

/// Module-specific checks shared with `template`.
pub(super) fn check_validate(module: &str, validate: Option<&str>) -> Result<(), ArgError> {
    match validate {
        Some(v) if !v.contains("%s") => Err(ArgError {
            arg: Some("validate".into()),
            msg: format!(
                "{module}: argument 'validate' must contain %s (the path of the file to check)"
            ),
            help: Some("e.g. validate: \"sshd -t -f %s\"".into()),
        }),
        _ => Ok(()),
    }
}

fn parse_params(args: &Value) -> Result<Params, ArgError> {
    let p: Params = args::typed("file_copy", args)?;
    match (&p.src, &p.content) {
        (None, None) => {
            return Err(ArgError {
                arg: None,
                msg: "file_copy: one of 'src' or 'content' is required".into(),
                help: None,
            })
        }
        (Some(_), Some(_)) => {
            return Err(ArgError {
                arg: Some("content".into()),
                msg: "file_copy: 'src' and 'content' are mutually exclusive".into(),
                help: None,
            })
        }
        _ => {}
    }
    if p.from_host.is_some() && p.src.is_none() {
        return Err(ArgError {
            arg: Some("from_host".into()),
            msg: "file_copy: from_host needs src (the file's path on that host)".into(),
            help: None,
        });
    }
    check_validate("file_copy", p.validate.as_deref())?;
    Ok(p)
}

/// Reads `src` on inventory host `from` through the control machine (with
/// the task's become): its bytes and its mode, owner and group.
async fn read_remote(
    ctx: &Context,
    from: &str,
    src: &str,
) -> Result<Result<(Vec<u8>, u32, String, String), Outcome>, ConnError> {
    let Some(conn) = ctx.hosts.connection(from)? else {
        return Ok(Err(Outcome::failed(format!(
            "file_copy: from_host '{from}' is not in the inventory"
        ))));
    };
    let script = format!(
        "p={}\n\
         [ -f \"$p\" ] || {{ echo \"no such file: $p\" >&2; exit 2; }}\n\
         stat -L -c '%a %U %G %u %g' -- \"$p\" && cat -- \"$p\"",
        quote(src)
    );
    let out = conn
        .exec(&connection::Command {
            cmd: script,
            stdin: None,
            timeout: ctx.timeout,
            become_user: ctx.become_user.clone(),
        })
        .await?;
    if out.rc != 0 {
        return Ok(Err(Outcome::failed(format!(
            "file_copy: cannot read {src} on {from}: {}",
            out.stderr_str().trim()
        ))));
    }
    let Some(nl) = out.stdout.iter().position(|&b| b == b'\n') else {
        return Ok(Err(Outcome::failed(format!(
            "file_copy: unexpected answer reading {src} on {from}"
        ))));
    };
    let head = String::from_utf8_lossy(&out.stdout[..nl]).into_owned();
    let f: Vec<&str> = head.split_whitespace().collect();
    let (Some(mode), [owner, group, uid, gid]) = (
        f.first().and_then(|m| u32::from_str_radix(m, 8).ok()),
        f.get(1..).unwrap_or_default(),
    ) else {
        return Ok(Err(Outcome::failed(format!(
            "file_copy: unexpected stat of {src} on {from}: {head}"
        ))));
    };
    // A name the source host cannot resolve: its number.
    let name = |name: &str, id: &str| if name == "UNKNOWN" { id } else { name }.to_string();
    Ok(Ok((
        out.stdout[nl + 1..].to_vec(),
        mode & 0o7777,
        name(owner, uid),
        name(group, gid),
    )))
}

#[async_trait]
impl Module for FileCopy {
    fn doc(&self) -> ModuleDoc {
        let mut a = vec![
            ArgSpec {
                name: "src",
                kind: "path",
                required: false,
                default: None,
                description: "A file on the control machine, relative to the playbook's directory (or content).",
            },
            ArgSpec {
                name: "content",
                kind: "string",
                required: false,
                default: None,
                description: "The file's content, given inline (instead of src).",
            },
            ArgSpec {
                name: "from_host",
                kind: "string",
                required: false,
                default: None,
                description: "Copy src from this inventory host instead: read there through the control machine's connection (with the task's become, so root-only files can be read); mode, owner and group default to the source file's.",
            },
        ];
        a.extend(install_args());
        ModuleDoc {
            name: "file_copy",
            description: "Copies a file (from the control machine, inline content, or another inventory host) to the host; unchanged when the checksums match.",
            args: a,
            check_mode: true,
            example: "- name: The users file from old (mode and owner kept)\n  file_copy:\n    from_host: old.example.org\n    src: /etc/dovecot/users\n    dest: /etc/dovecot/users\n",
            free_form: None,
        }
    }

    fn parse(&self, args: &Value) -> Result<(), ArgError> {
        parse_params(args).map(|_| ())
    }

    async fn run(&self, ctx: &Context, args: Value) -> Result<Outcome, ConnError> {
        let p = match parse_params(&args) {
            Ok(p) => p,
            Err(e) => return Ok(super::arg_failure(e)),
        };
        let mut p = p;
        // From another host: which of mode, owner, group the source gave.
        let mut kept: Vec<&str> = Vec::new();
        let (data, checksum, src_name) = match (&p.src, p.content.take()) {
            (_, Some(content)) => (Arc::new(content.into_bytes()), None, None),
            (Some(src), None) if p.from_host.is_some() => {
                let from = p.from_host.clone().unwrap_or_default();
                match read_remote(ctx, &from, src).await? {
                    Ok((data, mode, owner, group)) => {
                        for (given, what) in [
                            (p.mode.is_some(), "mode"),
                            (p.owner.is_some(), "owner"),
                            (p.group.is_some(), "group"),
                        ] {
                            if !given {
                                kept.push(what);
                            }
                        }
                        p.mode = p.mode.or(Some(Mode::Bits(mode)));
                        p.owner = p.owner.or(Some(owner));
                        p.group = p.group.or(Some(group));
                        (Arc::new(data), None, file_name(src))
                    }
                    Err(failed) => return Ok(failed),
                }
            }
            (Some(src), None) => match read_local(ctx, "file_copy", src).await? {
                Ok(s) => (s.data, Some(s.sha256), file_name(src)),
                Err(failed) => return Ok(failed),
            },
            (None, None) => return Ok(Outcome::failed("file_copy: no src or content")),
        };
        let (dest, known) =
            match resolve_dest(ctx, "file_copy", &p.dest, src_name.as_deref()).await? {
                Ok(d) => d,
                Err(failed) => return Ok(failed),
            };
        let opts = InstallOpts {
            dest,
            known,
            checksum,
            mode: p.mode,
            owner: p.owner,
            group: p.group,
            backup: p.backup,
            validate: p.validate,
            force: p.force,
        };
        let mut out = install(ctx, &data, &opts).await?;
        if let (Some(from), Some(src), false) = (&p.from_host, &p.src, out.failed) {
            let kept = match kept.as_slice() {
                [] => String::new(),
                [one] => format!(" ({one} kept)"),
                ["mode", "owner", "group"] => " (mode and owner kept)".into(),
                [a, b] => format!(" ({a} and {b} kept)"),
                more => format!(" ({} kept)", more.join(", ")),
            };
            out.msg = Some(if out.changed {
                format!(
                    "{}{src} from {from} to {}:{}{kept}",
                    if ctx.check { "would copy " } else { "" },
                    ctx.host,
                    opts.dest
                )
            } else {
                format!("{} on {} is already {src} of {from}", opts.dest, ctx.host)
            });
            out = out
                .with("from_host", from.as_str())
                .with("src", src.as_str());
        }
        Ok(out)
    }
}

fn file_name(path: &str) -> Option<String> {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

/// A file on the control machine, read (and hashed) once per run however
/// many hosts copy it, while it does not change.
#[derive(Clone)]
pub(super) struct Source {
    pub(super) data: Arc<Vec<u8>>,
    pub(super) sha256: Arc<str>,
}

type SourceKey = (std::path::PathBuf, Option<std::time::SystemTime>, u64);

fn sources() -> &'static Mutex<HashMap<SourceKey, Source>> {
    static SOURCES: OnceLock<Mutex<HashMap<SourceKey, Source>>> = OnceLock::new();
    SOURCES.get_or_init(Default::default)
}

/// Reads a file on the control machine; a relative path is taken from the
/// playbook's directory. A missing file or a directory is a failed outcome.
pub(super) async fn read_local(
    ctx: &Context,
    module: &str,
    src: &str,
) -> Result<Result<Source, Outcome>, ConnError> {
    let path = ctx.base_dir.join(src);
    let shown = path.to_string_lossy().into_owned();
    let meta = match tokio::fs::metadata(&path).await {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Err(Outcome::failed(format!(
                "{module}: src '{src}' not found (looked for {shown})"
            ))))
        }
        Err(e) => return Err(ConnError::Io(format!("cannot read {shown}: {e}"))),
        Ok(m) => m,
    };
    if meta.is_dir() {
        return Ok(Err(Outcome::failed(format!(
            "{module}: src '{src}' is a directory; copying directories is not supported"
        ))));
    }
    let key = (path.clone(), meta.modified().ok(), meta.len());
    let cached = || {
        sources()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned()
    };
    if let Some(hit) = cached() {
        return Ok(Ok(hit));
    }
    // One reader at a time: the hosts that start together wait for the
    // first one's read instead of each reading (and holding) a copy.
    static READING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _reading = READING.lock().await;
    if let Some(hit) = cached() {
        return Ok(Ok(hit));
    }
    let data = tokio::fs::read(&path)
        .await
        .map_err(|e| ConnError::Io(format!("cannot read {shown}: {e}")))?;
    let source = Source {
        sha256: sha256_hex(&data).into(),
        data: Arc::new(data),
    };
    let mut cache = sources().lock().unwrap_or_else(|e| e.into_inner());
    // An older version of the file is not needed any more.
    cache.retain(|k, _| k.0 != path);
    cache.insert(key, source.clone());
    Ok(Ok(source))
}

/// `dest`, or the file inside it when it ends in `/` or is a directory;
/// with the stat of `dest` when it was made (so it is not made twice).
pub(super) async fn resolve_dest(
    ctx: &Context,
    module: &str,
    dest: &str,
    src_name: Option<&str>,
) -> Result<Result<(String, Option<Option<FileStat>>), Outcome>, ConnError> {
    if !dest.ends_with('/') {
        let st = host_stat_ids(ctx, dest).await?;
        if !st.as_ref().is_some_and(|s| s.is_dir) {
            return Ok(Ok((dest.to_string(), Some(st))));
        }
    }
    Ok(match src_name {
        Some(name) => Ok((format!("{}/{name}", dest.trim_end_matches('/')), None)),
        None => Err(Outcome::failed(format!(
            "{module}: dest '{dest}' is a directory; give the path of a file"
        ))),
    })
}

// Files on the host as the task's user. The connection's `stat`,
// `read_file` and `write_file` take no become user, so with become they are
// done by shell commands run through `exec` as that user.

async fn become_script(
    ctx: &Context,
    script: String,
    stdin: Option<Vec<u8>>,
) -> Result<connection::ExecOutput, ConnError> {
    ctx.conn
        .exec(&connection::Command {
            cmd: script,
            stdin,
            timeout: ctx.timeout,
            become_user: ctx.become_user.clone(),
        })
        .await
}

fn script_failed(what: &str, path: &str, out: &connection::ExecOutput) -> ConnError {
    ConnError::Io(format!(
        "cannot {what} {path} (rc {}): {}",
        out.rc,
        out.stderr_str().trim_end()
    ))
}

/// As [`host_stat`], names left out where they cost more.
async fn host_stat_ids(ctx: &Context, path: &str) -> Result<Option<FileStat>, ConnError> {
    if ctx.become_user.is_none() {
        return ctx.conn.stat_ids(path).await;
    }
    host_stat(ctx, path).await
}

async fn host_stat(ctx: &Context, path: &str) -> Result<Option<FileStat>, ConnError> {
    if ctx.become_user.is_none() {
        return ctx.conn.stat(path).await;
    }
    let out = become_script(ctx, connection::stat_script(path), None).await?;
    if out.rc != 0 {
        return Err(script_failed("stat", path, &out));
    }
    connection::parse_stat_output(&out.stdout_str())
        .map_err(|e| ConnError::Io(format!("cannot stat {path}: {e}")))
}

pub(super) async fn host_read(ctx: &Context, path: &str) -> Result<Option<Vec<u8>>, ConnError> {
    if ctx.become_user.is_none() {
        return ctx.conn.read_file(path).await;
    }
    let q = quote(path);
    let out = become_script(ctx, format!("[ -e {q} ] || exit 3\ncat -- {q}"), None).await?;
    match out.rc {
        0 => Ok(Some(out.stdout)),
        3 => Ok(None),
        _ => Err(script_failed("read", path, &out)),
    }
}

/// Atomic as `write_file`: a temp file beside `path` (mktemp: 0600), the
/// old file's owner and mode (or the wanted mode), then `mv`.
async fn host_write(
    ctx: &Context,
    path: &str,
    data: &[u8],
    mode: Option<u32>,
) -> Result<(), ConnError> {
    if ctx.become_user.is_none() {
        return ctx.conn.write_file(path, data, mode).await;
    }
    let script = format!(
        "set -e\n\
         p={}\n\
         t=$(mktemp -- \"$(dirname -- \"$p\")/.mailrun.XXXXXX\")\n\
         trap 'rm -f -- \"$t\"' EXIT\n\
         trap 'exit 143' TERM INT HUP\n\
         cat > \"$t\"\n\
         {}\n\
         trap - EXIT",
        quote(path),
        connection::replace_lines(mode)
    );
    let out = become_script(ctx, script, Some(data.to_vec())).await?;
    if out.rc != 0 {
        return Err(script_failed("write", path, &out));
    }
    Ok(())
}

/// What the check step found to do.
#[derive(Debug)]
struct Plan {
    /// The file now, if it exists.
    before: Option<FileStat>,
    checksum: String,
    /// The content differs (or the file is missing) and may be replaced.
    write: bool,
    /// The mode to set, when it differs from the file's.
    chmod: Option<u32>,
    chown: Option<String>,
    chgrp: Option<String>,
}

impl Plan {
    fn changes(&self) -> bool {
        self.write || self.chmod.is_some() || self.chown.is_some() || self.chgrp.is_some()
    }
}

fn owned_by(name: &str, by_name: Option<&str>, id: u32) -> bool {
    by_name == Some(name) || id.to_string() == name
}

/// Compares the wanted file with the one on the host.
async fn check(
    ctx: &Context,
    data: &[u8],
    o: &InstallOpts,
) -> Result<Result<Plan, Outcome>, ConnError> {
    // Owner and group names only when they are compared.
    let names = o.owner.is_some() || o.group.is_some();
    let before = match &o.known {
        Some(Some(k)) if names && k.owner.is_none() => host_stat(ctx, &o.dest).await?,
        Some(known) => known.clone(),
        None if names => host_stat(ctx, &o.dest).await?,
        None => host_stat_ids(ctx, &o.dest).await?,
    };
    if before.as_ref().is_some_and(|b| b.is_dir) {
        return Ok(Err(Outcome::failed(format!(
            "dest '{}' is a directory",
            o.dest
        ))));
    }
    let checksum = match &o.checksum {
        Some(c) => c.to_string(),
        None => sha256_hex(data),
    };
    let write = match &before {
        None => true,
        Some(b) => o.force && !same_content(ctx, &o.dest, b, data, &checksum).await?,
    };
    let current = before.as_ref().map(|b| b.mode);
    let wanted = o
        .mode
        .as_ref()
        .map(|m| m.resolve(current.unwrap_or(0o644), false));
    let chmod = wanted.filter(|w| Some(*w) != current);
    let chown = o.owner.clone().filter(|want| {
        !before
            .as_ref()
            .is_some_and(|b| owned_by(want, b.owner.as_deref(), b.uid))
    });
    let chgrp = o.group.clone().filter(|want| {
        !before
            .as_ref()
            .is_some_and(|b| owned_by(want, b.group.as_deref(), b.gid))
    });
    Ok(Ok(Plan {
        before,
        checksum,
        write,
        chmod,
        chown,
        chgrp,
    }))
}

/// Files up to this size are compared by reading them back (no process on
/// the host); larger ones by their SHA-256 computed there.
const COMPARE_BY_READING: u64 = 2 * 1024 * 1024;

/// Whether the file on the host (`st`) holds `data`: by the checksum the
/// stat gave, else by size, then by reading a small file back or hashing a
/// large one on the host.
async fn same_content(
    ctx: &Context,
    path: &str,
    st: &FileStat,
    data: &[u8],
    checksum: &str,
) -> Result<bool, ConnError> {
    if let Some(sum) = &st.sha256 {
        return Ok(sum == checksum);
    }
    if st.size != data.len() as u64 {
        return Ok(false);
    }
    if st.size <= COMPARE_BY_READING {
        if ctx.become_user.is_none() {
            return Ok(ctx.conn.content_equals(path, data).await? == Some(true));
        }
        return Ok(host_read(ctx, path).await?.as_deref() == Some(data));
    }
    let out = host_exec(ctx, format!("sha256sum < {}", quote(path))).await?;
    if out.rc != 0 {
        return Err(script_failed("checksum", path, &out));
    }
    Ok(out.stdout.get(..64) == Some(checksum.as_bytes()))
}

/// Text for a diff, or None for binary content.
fn as_text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok().filter(|s| !s.contains('\0'))
}

async fn diff(ctx: &Context, data: &[u8], o: &InstallOpts, plan: &Plan) -> Result<Diff, ConnError> {
    let old = match plan.before {
        Some(_) => host_read(ctx, &o.dest).await?.unwrap_or_default(),
        None => Vec::new(),
    };
    Ok(match (as_text(&old), as_text(data)) {
        (Some(before), Some(after)) => Diff {
            path: o.dest.clone(),
            before: before.to_string(),
            after: after.to_string(),
        },
        _ => Diff {
            path: o.dest.clone(),
            before: String::new(),
            after: "binary file, diff omitted\n".into(),
        },
    })
}

/// Runs a command on the host with the task's become and timeout.
async fn host_exec(ctx: &Context, line: String) -> Result<connection::ExecOutput, ConnError> {
    ctx.conn
        .exec(&connection::Command {
            cmd: line,
            stdin: None,
            timeout: ctx.timeout,
            become_user: ctx.become_user.clone(),
        })
        .await
}

fn failed_exec(what: &str, out: &connection::ExecOutput) -> Outcome {
    let stderr = out.stderr_str().trim_end().to_string();
    let msg = if stderr.is_empty() {
        format!("{what} (rc {})", out.rc)
    } else {
        format!("{what} (rc {}): {stderr}", out.rc)
    };
    Outcome::failed(msg)
        .with("rc", out.rc)
        .with("stdout", out.stdout_str().trim_end())
        .with("stderr", stderr)
}

/// `YYYY-MM-DD@HH:MM:SS` in UTC (no local time zone without libc calls).
fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}@{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Runs `validate` on a temp copy beside dest; Some(failed outcome) if it fails.
async fn run_validate(
    ctx: &Context,
    data: &[u8],
    o: &InstallOpts,
    cmd: &str,
) -> Result<Option<Outcome>, ConnError> {
    let (dir, name) = match o.dest.rsplit_once('/') {
        Some((dir, name)) => (if dir.is_empty() { "/" } else { dir }, name),
        None => (".", o.dest.as_str()),
    };
    // A relative directory starting with `-` must not read as an option
    // of the validate command.
    let dir = if dir.starts_with('-') {
        format!("./{dir}")
    } else {
        dir.to_string()
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = format!(
        "{}/.{name}.mailrun-validate-{}-{nanos}",
        dir.trim_end_matches('/'),
        std::process::id()
    );
    host_write(ctx, &tmp, data, Some(0o600)).await?;
    let line = cmd.replace("%s", &quote(&tmp));
    let out = host_exec(ctx, line).await;
    let cleanup = host_exec(ctx, format!("rm -f -- {}", quote(&tmp))).await;
    let out = out?;
    cleanup?;
    Ok((out.rc != 0).then(|| failed_exec(&format!("validation failed: {cmd}"), &out)))
}

/// Installs `data` at `opts.dest`: check (checksum, mode, owner, group on
/// the host), stop there in check mode, else apply the plan.
pub(super) async fn install(
    ctx: &Context,
    data: &[u8],
    opts: &InstallOpts,
) -> Result<Outcome, ConnError> {
    let plan = match check(ctx, data, opts).await? {
        Ok(plan) => plan,
        Err(failed) => return Ok(failed),
    };
    let mut out = if plan.changes() {
        Outcome::changed()
    } else {
        Outcome::ok()
    };
    if ctx.diff && plan.write {
        out.diff = Some(diff(ctx, data, opts, &plan).await?);
    }
    out = out
        .with("dest", opts.dest.as_str())
        .with("checksum", plan.checksum.as_str())
        .with("size", data.len() as u64);
    if ctx.check || !plan.changes() {
        let mode = plan.chmod.or(plan.before.as_ref().map(|b| b.mode));
        if let Some(m) = mode {
            out = out.with("mode", format!("{m:04o}"));
        }
        return Ok(out);
    }
    apply(ctx, data, opts, plan, out).await
}

async fn apply(
    ctx: &Context,
    data: &[u8],
    o: &InstallOpts,
    plan: Plan,
    mut out: Outcome,
) -> Result<Outcome, ConnError> {
    let q = quote(&o.dest).into_owned();
    if plan.write {
        if let Some(cmd) = &o.validate {
            if let Some(failed) = run_validate(ctx, data, o, cmd).await? {
                return Ok(failed);
            }
        }
        if o.backup && plan.before.is_some() {
            let backup = format!("{}.{}~", o.dest, timestamp());
            let r = host_exec(ctx, format!("cp -p -- {q} {}", quote(&backup))).await?;
            if r.rc != 0 {
                return Ok(failed_exec("backup failed", &r));
            }
            out = out.with("backup_file", backup);
        }
        host_write(ctx, &o.dest, data, plan.chmod).await?;
    } else if let Some(m) = plan.chmod {
        let r = host_exec(ctx, format!("chmod {m:04o} -- {q}")).await?;
        if r.rc != 0 {
            return Ok(failed_exec("chmod failed", &r));
        }
    }
    if let Some(owner) = &plan.chown {
        let r = host_exec(ctx, format!("chown -- {} {q}", quote(owner))).await?;
        if r.rc != 0 {
            return Ok(failed_exec("chown failed", &r));
        }
    }
    if let Some(group) = &plan.chgrp {
        let r = host_exec(ctx, format!("chgrp -- {} {q}", quote(group))).await?;
        if r.rc != 0 {
            return Ok(failed_exec("chgrp failed", &r));
        }
    }
    if let Some(st) = host_stat(ctx, &o.dest).await? {
        out = out.with("mode", format!("{:04o}", st.mode));
        if let Some(owner) = st.owner {
            out = out.with("owner", owner);
        }
        if let Some(group) = st.group {
            out = out.with("group", group);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::timestamp;
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
    fn copies_src_then_is_unchanged() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            fs::create_dir(dir.path().join("files")).expect("mkdir");
            fs::write(dir.path().join("files/users"), "alice\nbob\n").expect("write");
            let c = ctx(dir.path());
            let dest = p(dir.path(), "users");
            let args = json!({"src": "files/users", "dest": dest, "mode": "0640"});
            let o = run(&c, "file_copy", args.clone()).await;
            assert!(o.changed && !o.failed, "{o:?}");
            assert_eq!(fs::read_to_string(&dest).ok().as_deref(), Some("alice\nbob\n"));
            assert_eq!(mode_of(&dest), 0o640);
            assert_eq!(o.data["mode"], "0640");
            assert_eq!(o.data["size"], 10);
            assert_eq!(o.data["checksum"], crate::local::sha256_hex(b"alice\nbob\n"));
            let o = run(&c, "file_copy", args).await;
            assert!(!o.changed && !o.failed, "{o:?}");
            // Only the mode differs: changed, content untouched.
            let o = run(&c, "file_copy", json!({"src": "files/users", "dest": dest, "mode": "g+w"})).await;
            assert!(o.changed, "{o:?}");
            assert_eq!(mode_of(&dest), 0o660);
            // Owner and group by name or id: already so, unchanged.
            let meta = fs::metadata(&dest).expect("meta");
            use std::os::unix::fs::MetadataExt;
            let o = run(&c, "file_copy", json!({"src": "files/users", "dest": dest, "owner": meta.uid(), "group": meta.gid().to_string()})).await;
            assert!(!o.changed && !o.failed, "{o:?}");
        });
    }

    #[test]
    fn content_into_directory_and_errors() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let c = ctx(dir.path());
            fs::write(dir.path().join("motd"), "hi\n").expect("write");
            fs::create_dir(dir.path().join("etc")).expect("mkdir");
            let o = run(
                &c,
                "file_copy",
                json!({"src": "motd", "dest": p(dir.path(), "etc")}),
            )
            .await;
            assert!(o.changed, "{o:?}");
            assert_eq!(o.data["dest"], p(dir.path(), "etc/motd"));
            assert!(dir.path().join("etc/motd").exists());
            let o = run(
                &c,
                "file_copy",
                json!({"content": "x", "dest": p(dir.path(), "etc") + "/"}),
            )
            .await;
            assert!(
                o.failed
                    && o.msg
                        .as_deref()
                        .is_some_and(|m| m.contains("is a directory")),
                "{o:?}"
            );
            let o = run(
                &c,
                "file_copy",
                json!({"src": "missing", "dest": p(dir.path(), "x")}),
            )
            .await;
            assert!(
                o.failed && o.msg.as_deref().is_some_and(|m| m.contains("not found")),
                "{o:?}"
            );
            let o = run(
                &c,
                "file_copy",
                json!({"src": "etc", "dest": p(dir.path(), "x")}),
            )
            .await;
            assert!(o.failed, "{o:?}");
            let o = run(&c, "file_copy", json!({"dest": p(dir.path(), "x")})).await;
            assert!(
                o.failed
                    && o.msg.as_deref() == Some("file_copy: one of 'src' or 'content' is required")
            );
            let o = run(
                &c,
                "file_copy",
                json!({"content": "x", "dest": p(dir.path(), "x"), "validate": "true"}),
            )
            .await;
            assert!(
                o.failed
                    && o.msg
                        .as_deref()
                        .is_some_and(|m| m.contains("must contain %s"))
            );
        });
    }

    #[test]
    fn check_mode_and_diff() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut c = ctx(dir.path());
            let dest = p(dir.path(), "conf");
            fs::write(&dest, "a=1\n").expect("write");
            c.check = true;
            c.diff = true;
            let o = run(&c, "file_copy", json!({"content": "a=2\n", "dest": dest})).await;
            assert!(o.changed && !o.failed, "{o:?}");
            let d = o.diff.expect("diff");
            assert_eq!(
                (d.path.as_str(), d.before.as_str(), d.after.as_str()),
                (dest.as_str(), "a=1\n", "a=2\n")
            );
            assert_eq!(fs::read_to_string(&dest).ok().as_deref(), Some("a=1\n"));
            let o = run(
                &c,
                "file_copy",
                json!({"content": "new", "dest": p(dir.path(), "new")}),
            )
            .await;
            assert!(
                o.changed
                    && o.diff
                        .as_ref()
                        .is_some_and(|d| d.before.is_empty() && d.after == "new")
            );
            assert!(!dir.path().join("new").exists());
            // Binary content: no text diff.
            c.check = false;
            fs::write(&dest, [0u8, 159, 146, 150]).expect("write");
            let o = run(&c, "file_copy", json!({"content": "text", "dest": dest})).await;
            assert_eq!(
                o.diff.map(|d| d.after),
                Some("binary file, diff omitted\n".into())
            );
            // Unchanged: no diff at all.
            let o = run(&c, "file_copy", json!({"content": "text", "dest": dest})).await;
            assert!(!o.changed && o.diff.is_none(), "{o:?}");
        });
    }

    #[test]
    fn backup_force_and_validate() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let c = ctx(dir.path());
            let dest = p(dir.path(), "sshd_config");
            fs::write(&dest, "old\n").expect("write");
            let o = run(&c, "file_copy", json!({"content": "new\n", "dest": dest, "backup": "yes"})).await;
            assert!(o.changed, "{o:?}");
            let backup = o.data["backup_file"].as_str().expect("backup_file").to_string();
            assert!(backup.starts_with(&format!("{dest}.")) && backup.ends_with('~'), "{backup}");
            assert_eq!(fs::read_to_string(&backup).ok().as_deref(), Some("old\n"));
            // force=no leaves a differing file alone.
            let o = run(&c, "file_copy", json!({"content": "other\n", "dest": dest, "force": "no"})).await;
            assert!(!o.changed, "{o:?}");
            assert_eq!(fs::read_to_string(&dest).ok().as_deref(), Some("new\n"));
            // A failing validate installs nothing and leaves no temp file.
            let o = run(&c, "file_copy", json!({"content": "bad\n", "dest": dest, "validate": "sh -c 'grep -q good \"$1\" || { echo invalid: $1 >&2; exit 1; }' x %s"})).await;
            assert!(o.failed && !o.changed, "{o:?}");
            assert!(o.msg.as_deref().is_some_and(|m| m.contains("validation failed") && m.contains("invalid:")), "{o:?}");
            assert_eq!(fs::read_to_string(&dest).ok().as_deref(), Some("new\n"));
            let o = run(&c, "file_copy", json!({"content": "good\n", "dest": dest, "validate": "grep -q good %s"})).await;
            assert!(o.changed && !o.failed, "{o:?}");
            assert_eq!(fs::read_to_string(&dest).ok().as_deref(), Some("good\n"));
            let names: Vec<String> = fs::read_dir(dir.path())
                .expect("readdir")
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect();
            assert!(names.is_empty(), "{names:?}");
        });
    }

    /// With become the file work goes through shell commands run as that
    /// user; here the become user is ourselves, so no sudo is needed.
    #[test]
    fn become_path_behaves_the_same() {
        rt().block_on(async {
            use std::os::unix::fs::MetadataExt;
            let dir = tempfile::tempdir().expect("tempdir");
            let mut c = ctx(dir.path());
            let uid = fs::metadata(dir.path()).expect("meta").uid();
            c.become_user = Some(uid.to_string());
            c.diff = true;
            let dest = p(dir.path(), "it's a file");
            let args = json!({"content": "one\n", "dest": dest, "mode": "0640"});
            let o = run(&c, "file_copy", args.clone()).await;
            assert!(o.changed && !o.failed, "{o:?}");
            assert_eq!(fs::read_to_string(&dest).ok().as_deref(), Some("one\n"));
            assert_eq!(mode_of(&dest), 0o640);
            assert_eq!(o.data["mode"], "0640");
            let o = run(&c, "file_copy", args).await;
            assert!(!o.changed && !o.failed, "{o:?}");
            // New content keeps the old mode; diff and backup work.
            let o = run(
                &c,
                "file_copy",
                json!({"content": "two\n", "dest": dest, "backup": true}),
            )
            .await;
            assert!(o.changed, "{o:?}");
            assert_eq!(o.diff.as_ref().map(|d| d.before.as_str()), Some("one\n"));
            assert_eq!(mode_of(&dest), 0o640);
            let backup = o.data["backup_file"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert_eq!(fs::read_to_string(&backup).ok().as_deref(), Some("one\n"));
            fs::remove_file(&backup).expect("rm backup");
            let o = run(
                &c,
                "file_copy",
                json!({"content": "bad", "dest": dest, "validate": "grep -q good %s"}),
            )
            .await;
            assert!(o.failed, "{o:?}");
            assert_eq!(fs::read_to_string(&dest).ok().as_deref(), Some("two\n"));
            assert_eq!(fs::read_dir(dir.path()).expect("readdir").count(), 1);
            // A new file without a mode gets 0666 minus umask, like write_file.
            let fresh = p(dir.path(), "fresh");
            let o = run(&c, "file_copy", json!({"content": "x", "dest": fresh})).await;
            assert!(o.changed && !o.failed, "{o:?}");
            let plain = p(dir.path(), "plain");
            c.become_user = None;
            run(&c, "file_copy", json!({"content": "x", "dest": plain})).await;
            assert_eq!(mode_of(&fresh), mode_of(&plain));
        });
    }

    /// An inventory where `src-host` is this machine.
    struct OneHost;

    impl crate::module::Hosts for OneHost {
        fn connection(
            &self,
            name: &str,
        ) -> Result<
            Option<std::sync::Arc<dyn crate::connection::Connection>>,
            crate::connection::ConnError,
        > {
            Ok((name == "src-host").then(|| {
                std::sync::Arc::new(crate::local::LocalConnection)
                    as std::sync::Arc<dyn crate::connection::Connection>
            }))
        }
    }

    #[test]
    fn from_host_keeps_mode_and_owner() {
        rt().block_on(async {
            use std::os::unix::fs::MetadataExt;
            let dir = tempfile::tempdir().expect("tempdir");
            let mut c = ctx(dir.path());
            c.hosts = std::sync::Arc::new(OneHost);
            let src = p(dir.path(), "users");
            fs::write(&src, "a@x:{PLAIN}s\n").expect("write");
            fs::set_permissions(&src, fs::Permissions::from_mode(0o640)).expect("chmod");
            let dest = p(dir.path(), "copy");
            let args = json!({"from_host": "src-host", "src": src, "dest": dest});
            // Check mode: nothing written.
            c.check = true;
            let o = run(&c, "file_copy", args.clone()).await;
            assert!(o.changed && !o.failed, "{o:?}");
            assert!(!dir.path().join("copy").exists());
            c.check = false;
            let o = run(&c, "file_copy", args.clone()).await;
            assert!(o.changed && !o.failed, "{o:?}");
            let msg = o.msg.clone().unwrap_or_default();
            assert!(
                msg.ends_with(&format!(
                    "{src} from src-host to localhost:{dest} (mode and owner kept)"
                )),
                "{msg}"
            );
            assert_eq!(
                fs::read_to_string(&dest).ok().as_deref(),
                Some("a@x:{PLAIN}s\n")
            );
            assert_eq!(mode_of(&dest), 0o640);
            let (s, d) = (
                fs::metadata(&src).expect("src"),
                fs::metadata(&dest).expect("dest"),
            );
            assert_eq!((s.uid(), s.gid()), (d.uid(), d.gid()));
            let o = run(&c, "file_copy", args.clone()).await;
            assert!(!o.changed && !o.failed, "{o:?}");
            // A mode given wins over the source's; with become the same.
            c.become_user = Some(s.uid().to_string());
            let o = run(
                &c,
                "file_copy",
                json!({"from_host": "src-host", "src": src, "dest": dest, "mode": "0600"}),
            )
            .await;
            assert!(o.changed && !o.failed, "{o:?}");
            assert!(
                o.msg
                    .as_deref()
                    .unwrap_or("")
                    .ends_with("(owner and group kept)"),
                "{o:?}"
            );
            assert_eq!(mode_of(&dest), 0o600);
            // The source changed: copied again, with --diff.
            fs::write(&src, "a@x:{PLAIN}s\nb@x:{PLAIN}t\n").expect("write");
            c.diff = true;
            let o = run(&c, "file_copy", args.clone()).await;
            assert!(o.changed && !o.failed, "{o:?}");
            assert_eq!(
                o.diff.as_ref().map(|d| d.before.as_str()),
                Some("a@x:{PLAIN}s\n")
            );
            assert_eq!(mode_of(&dest), 0o640);
            // Unknown host, missing file: named.
            let o = run(
                &c,
                "file_copy",
                json!({"from_host": "nope", "src": src, "dest": dest}),
            )
            .await;
            assert!(
                o.failed
                    && o.msg.as_deref()
                        == Some("file_copy: from_host 'nope' is not in the inventory"),
                "{o:?}"
            );
            let o = run(
                &c,
                "file_copy",
                json!({"from_host": "src-host", "src": p(dir.path(), "gone"), "dest": dest}),
            )
            .await;
            assert!(
                o.failed && o.msg.as_deref().unwrap_or("").contains("no such file"),
                "{o:?}"
            );
            let o = run(
                &c,
                "file_copy",
                json!({"from_host": "src-host", "content": "x", "dest": dest}),
            )
            .await;
            assert!(o.failed, "{o:?}");
        });
    }

    #[test]
    fn timestamp_shape() {
        let t = timestamp();
        assert_eq!(t.len(), 19, "{t}");
        assert_eq!(&t[10..11], "@");
        assert!(t.as_str() > "2024-01-01");
    }
}
