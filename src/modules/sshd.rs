//! `sshd_config`: directives in sshd's configuration, safely. The candidate
//! file is checked with `sshd -T -f` (which also validates it) before it is
//! installed: sshd takes the first value it reads and Debian includes
//! `sshd_config.d/*.conf` at the top, so a drop-in may win — the module
//! names the file and installs nothing. The original is kept as
//! `PATH.mailrun-orig`, sshd is reloaded, and a fresh SSH login must work or
//! the change is rolled back. `restore: true` puts the original back.

use super::args;
use super::svc::{init_from, Init, DETECT};
use crate::connection::{self, ConnError, ExecOutput};
use crate::module::{ArgError, ArgSpec, Context, Diff, Module, ModuleDoc, Outcome};
use crate::quote::quote;
use async_trait::async_trait;
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;

pub struct SshdConfig;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    settings: Option<IndexMap<String, Value>>,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    state: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    path: Option<String>,
    #[serde(
        default = "super::command::yes",
        deserialize_with = "args::bool_lenient"
    )]
    backup: bool,
    #[serde(default, deserialize_with = "args::bool_lenient")]
    restore: bool,
    #[serde(
        default = "super::command::yes",
        deserialize_with = "args::bool_lenient"
    )]
    reload: bool,
    #[serde(
        default = "super::command::yes",
        deserialize_with = "args::bool_lenient"
    )]
    verify_login: bool,
}

struct Job {
    settings: Vec<(String, String)>,
    present: bool,
    path: String,
    backup: bool,
    restore: bool,
    reload: bool,
    verify_login: bool,
}

fn arg_err(arg: Option<&str>, msg: String) -> ArgError {
    ArgError {
        arg: arg.map(str::to_string),
        msg,
        help: None,
    }
}

fn parse_params(args: &Value) -> Result<Job, ArgError> {
    let p: Params = args::typed("sshd_config", args)?;
    let present = match p.state.as_deref() {
        None | Some("present") => true,
        Some("absent") => false,
        Some(o) => {
            return Err(arg_err(
                Some("state"),
                format!("sshd_config: state must be present or absent, got '{o}'"),
            ))
        }
    };
    let mut settings = Vec::new();
    for (k, v) in p.settings.unwrap_or_default() {
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(arg_err(
                Some("settings"),
                format!("sshd_config: '{k}' is not an sshd keyword"),
            ));
        }
        let v = match v {
            Value::String(s) => s,
            Value::Bool(b) => if b { "yes" } else { "no" }.to_string(),
            Value::Number(n) => n.to_string(),
            Value::Null if !present => String::new(),
            other => {
                return Err(arg_err(
                    Some("settings"),
                    format!("sshd_config: the value of {k} must be a string, got {other}"),
                ))
            }
        };
        if v.contains(['\n', '\r']) || (present && v.trim().is_empty()) {
            return Err(arg_err(
                Some("settings"),
                format!("sshd_config: the value of {k} must be one non-empty line"),
            ));
        }
        settings.push((k, v.trim().to_string()));
    }
    if settings.is_empty() && !p.restore {
        return Err(arg_err(
            None,
            "sshd_config: 'settings' (or restore: true) is required".into(),
        ));
    }
    if !settings.is_empty() && p.restore {
        return Err(arg_err(
            Some("restore"),
            "sshd_config: restore puts the backup back; it takes no settings".into(),
        ));
    }
    Ok(Job {
        settings,
        present,
        path: p.path.unwrap_or_else(|| "/etc/ssh/sshd_config".into()),
        backup: p.backup,
        restore: p.restore,
        reload: p.reload,
        verify_login: p.verify_login,
    })
}

/// The keyword of an active config line (not a comment), lower-cased.
fn keyword(line: &str) -> Option<String> {
    let t = line.trim_start();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    let end = t
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(t.len());
    Some(t[..end].to_ascii_lowercase())
}

/// The end of the global part: the first `Match` line (or the end).
fn global_end(lines: &[String]) -> usize {
    lines
        .iter()
        .position(|l| keyword(l).as_deref() == Some("match"))
        .unwrap_or(lines.len())
}

/// The file with the settings applied (present: first active line's value
/// replaced and later duplicates dropped, or a new line after a commented
/// `#Keyword`, else before the first Match, else at the end; absent: every
/// active line of the keyword in the global part removed).
pub(super) fn edit(text: &str, settings: &[(String, String)], present: bool) -> String {
    let crlf = text.contains("\r\n");
    let final_newline = text.is_empty() || text.ends_with('\n');
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for (key, value) in settings {
        let k = key.to_ascii_lowercase();
        let end = global_end(&lines);
        let hits: Vec<usize> = (0..end)
            .filter(|&i| keyword(&lines[i]).as_deref() == Some(k.as_str()))
            .collect();
        let wanted = format!("{key} {value}");
        if !present {
            for &i in hits.iter().rev() {
                lines.remove(i);
            }
            continue;
        }
        if let Some((&first, rest)) = hits.split_first() {
            if lines[first].trim() != wanted {
                let indent: String = lines[first]
                    .chars()
                    .take_while(|c| c.is_whitespace())
                    .collect();
                lines[first] = format!("{indent}{wanted}");
            }
            for &i in rest.iter().rev() {
                lines.remove(i);
            }
            continue;
        }
        let commented = (0..end).find(|&i| {
            let t = lines[i].trim_start();
            t.strip_prefix('#')
                .map(|r| {
                    let r = r.trim_start();
                    r.len() >= k.len()
                        && r[..k.len()].eq_ignore_ascii_case(&k)
                        && r[k.len()..].starts_with([' ', '\t', '='])
                })
                .unwrap_or(false)
        });
        match commented {
            Some(i) => lines.insert(i + 1, wanted),
            None => lines.insert(end, wanted),
        }
    }
    // Line ends as the file had them.
    let nl = if crlf { "\r\n" } else { "\n" };
    let mut out = lines.join(nl);
    if !out.is_empty() && final_newline {
        out.push_str(nl);
    }
    out
}

/// `sshd -T` output: keyword -> values (some keywords repeat).
pub(super) fn parse_effective(text: &str) -> IndexMap<String, Vec<String>> {
    let mut m: IndexMap<String, Vec<String>> = IndexMap::new();
    for line in text.lines() {
        let mut it = line.splitn(2, ' ');
        if let (Some(k), Some(v)) = (it.next(), it.next()) {
            m.entry(k.to_ascii_lowercase())
                .or_default()
                .push(v.trim().to_string());
        }
    }
    m
}

/// A value as sshd -T prints it, for comparing.
pub(super) fn normal(v: &str) -> String {
    let v = v
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase();
    match v.as_str() {
        "prohibit-password" => "without-password".into(),
        _ => v,
    }
}

/// Runs a script under become with `stdin`.
async fn run(
    ctx: &Context,
    script: String,
    stdin: Option<Vec<u8>>,
) -> Result<ExecOutput, ConnError> {
    ctx.conn
        .exec(&connection::Command {
            cmd: script,
            stdin,
            timeout: ctx.timeout,
            become_user: ctx.become_user.clone(),
        })
        .await
}

/// Writes stdin to a temp file beside `path`, runs `check` on it (`$t`
/// names it; sshd's complaint on stderr and rc 3 when it fails), keeps a
/// backup once when `backup`, and puts the file in place with the old
/// file's owner and mode.
fn install_script(path: &str, check: &str, backup: bool) -> String {
    let keep = if backup {
        "[ -e \"$p.mailrun-orig\" ] || cp -p -- \"$p\" \"$p.mailrun-orig\"\n"
    } else {
        ""
    };
    format!(
        "set -e\np={}\nt=$(mktemp -- \"$p.mailrun.XXXXXX\")\n\
         trap 'rm -f -- \"$t\"' EXIT\ntrap 'exit 143' TERM INT HUP\ncat > \"$t\"\n\
         if ! out=$({check} 2>&1); then rm -f -- \"$t\"; printf '%s\\n' \"$out\" >&2; exit 3; fi\n\
         {keep}{}\n",
        quote(path),
        connection::replace_lines(None)
    )
}

/// Reloads sshd (systemd or the init script, detached; HUP as last resort).
async fn reload(ctx: &Context) -> Result<Result<(), String>, ConnError> {
    let init = init_from(&super::sh(ctx, DETECT).await?.stdout_str());
    let script = match init {
        Init::Systemd => "systemctl reload ssh 2>/dev/null || systemctl reload sshd".to_string(),
        Init::SysV => "if [ -x /etc/init.d/ssh ]; then /etc/init.d/ssh reload </dev/null >/dev/null 2>&1 && exit 0; fi\n\
             [ -s /run/sshd.pid ] && kill -HUP \"$(cat /run/sshd.pid)\""
            .to_string(),
    };
    let out = super::sh(ctx, &script).await?;
    Ok(if out.rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "reloading sshd failed (rc {}): {}",
            out.rc,
            out.stderr_str().trim()
        ))
    })
}

/// sshd's main configuration file (where it starts reading).
const MAIN: &str = "/etc/ssh/sshd_config";

/// Where sshd takes `key` from: the first `FILE:LINE` that sets it, reading
/// the main file top to bottom and each Include (relative to /etc/ssh) where
/// it stands, up to the first Match. None when nothing sets it.
async fn first_setter(ctx: &Context, key: &str) -> Result<Option<String>, ConnError> {
    let main = run(ctx, format!("cat -- {MAIN}"), None).await?;
    let k = key.to_ascii_lowercase();
    for (n, line) in main.stdout_str().lines().enumerate() {
        match keyword(line).as_deref() {
            Some(w) if w == k => return Ok(Some(format!("{MAIN}:{}", n + 1))),
            Some("match") => return Ok(None),
            Some("include") => {
                let pats: Vec<String> = line
                    .split_whitespace()
                    .skip(1)
                    .map(|p| {
                        if p.starts_with('/') {
                            p.to_string()
                        } else {
                            format!("/etc/ssh/{p}")
                        }
                    })
                    .collect();
                // Globs stay unquoted (the host expands them); only plain
                // path characters are allowed into the script.
                if pats.iter().any(|p| {
                    !p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "/._-*?[]".contains(c))
                }) {
                    continue;
                }
                let script = format!(
                    "for f in {}; do [ -f \"$f\" ] || continue; n=$(grep -n -i -m1 -E '^[[:space:]]*{k}([[:space:]]|=)' \"$f\" | cut -d: -f1); [ -n \"$n\" ] && {{ echo \"$f:$n\"; exit 0; }}; done; exit 0",
                    pats.join(" ")
                );
                let hit = run(ctx, script, None)
                    .await?
                    .stdout_str()
                    .trim()
                    .to_string();
                if !hit.is_empty() {
                    return Ok(Some(hit));
                }
            }
            _ => {}
        }
    }
    Ok(None)
}

/// The files sshd reads (the main one and its Includes), for `path: auto`
/// restores.
async fn config_files(ctx: &Context) -> Result<Vec<String>, ConnError> {
    let script = format!(
        "echo {MAIN}\nsed -n -E 's/^[[:space:]]*[Ii]nclude[[:space:]]+//p' {MAIN} | while read -r pats; do\n\
         for p in $pats; do case $p in /*) ;; *) p=/etc/ssh/$p ;; esac; for f in $p; do [ -f \"$f\" ] && echo \"$f\"; done; done\n\
         done"
    );
    let out = run(ctx, script, None).await?;
    Ok(out.stdout_str().lines().map(str::to_string).collect())
}

/// Reads a file under become; Err(message) when it cannot be read.
async fn read(ctx: &Context, path: &str) -> Result<Result<String, String>, ConnError> {
    let out = run(ctx, format!("cat -- {}", quote(path)), None).await?;
    Ok(if out.rc == 0 {
        Ok(out.stdout_str())
    } else {
        Err(out.stderr_str().trim().to_string())
    })
}

/// Puts `content` at `path` (validated by `sshd -t -f` first when `path`
/// is sshd's main file; a drop-in alone is no complete configuration).
async fn put(
    ctx: &Context,
    path: &str,
    content: &str,
    backup: bool,
) -> Result<Result<(), String>, ConnError> {
    let check = if path == MAIN {
        "sshd -t -f \"$t\""
    } else {
        "true"
    };
    let out = run(
        ctx,
        install_script(path, check, backup),
        Some(content.as_bytes().to_vec()),
    )
    .await?;
    Ok(if out.rc == 0 {
        Ok(())
    } else {
        Err(out.stderr_str().trim().to_string())
    })
}

/// Whether every wanted value is in effect (`sshd -T`, the whole
/// configuration as sshd reads it). Err names the file that wins, or
/// sshd's complaint about the configuration.
async fn in_effect(
    ctx: &Context,
    path: &str,
    settings: &[(String, String)],
) -> Result<Result<(), String>, ConnError> {
    let out = run(ctx, "sshd -T".to_string(), None).await?;
    if out.rc != 0 {
        return Ok(Err(format!(
            "sshd refuses the configuration: {}",
            out.stderr_str().trim()
        )));
    }
    let effective = parse_effective(&out.stdout_str());
    for (key, value) in settings {
        let Some(vals) = effective.get(&key.to_ascii_lowercase()) else {
            continue;
        };
        if vals.iter().any(|v| normal(v) == normal(value)) {
            continue;
        }
        match first_setter(ctx, key).await? {
            Some(file) if file.rsplit_once(':').map(|(f, _)| f) != Some(path) => {
                let f = file.rsplit_once(':').map(|(f, _)| f).unwrap_or(&file);
                return Ok(Err(format!(
                    "{key} is '{}' in effect, not '{value}': {file} sets it first (sshd takes the first value it reads); set it there (path: {f}, or path: auto) or remove it there",
                    vals.join(" ")
                )));
            }
            None if path != MAIN => {
                return Ok(Err(format!(
                    "{key} is '{}' in effect, not '{value}': sshd does not read {path} (no Include covers it)",
                    vals.join(" ")
                )));
            }
            // Our own line is the one sshd reads: it prints the value its
            // own way (2m as 120, …).
            _ => {}
        }
    }
    Ok(Ok(()))
}

#[async_trait]
impl Module for SshdConfig {
    fn doc(&self) -> ModuleDoc {
        ModuleDoc {
            name: "sshd_config",
            description: "Sets (or removes) directives in sshd's configuration, safely. The new main file is checked with `sshd -t -f` before it is installed (invalid: nothing installed); once in place, `sshd -T` must show every value in effect — when another file sshd reads first (a drop-in in sshd_config.d) sets a directive, the module names it and puts the previous file back. The original file is kept once as PATH.mailrun-orig; sshd is reloaded; a fresh SSH login must then succeed or the change is rolled back. `restore: true` puts the original back (and removes the backup). A second run with the same settings is `ok` (and still proves them in effect).",
            args: vec![
                ArgSpec {
                    name: "settings",
                    kind: "map",
                    required: false,
                    default: None,
                    description: "Directive -> value (e.g. PermitRootLogin: prohibit-password). Required unless restore.",
                },
                ArgSpec {
                    name: "state",
                    kind: "present|absent",
                    required: false,
                    default: Some("present"),
                    description: "present: the directive has the value (its first line is changed in place, later duplicates removed; a new one goes after a commented `#Directive` line, else before the first Match); absent: its lines are removed (values ignored).",
                },
                ArgSpec {
                    name: "path",
                    kind: "path",
                    required: false,
                    default: Some("/etc/ssh/sshd_config"),
                    description: "The file to edit (a drop-in in sshd_config.d works too), or `auto`: the file sshd takes the (first) directive from — the main file, or the drop-in that sets it first — so the change takes effect; with restore, every file sshd reads that has a backup.",
                },
                ArgSpec {
                    name: "backup",
                    kind: "bool",
                    required: false,
                    default: Some("true"),
                    description: "Keep the original as PATH.mailrun-orig on the first change (later changes keep that first original).",
                },
                ArgSpec {
                    name: "restore",
                    kind: "bool",
                    required: false,
                    default: Some("false"),
                    description: "Put PATH.mailrun-orig back (validated, reloaded, login checked) and remove it; ok when there is none.",
                },
                ArgSpec {
                    name: "reload",
                    kind: "bool",
                    required: false,
                    default: Some("true"),
                    description: "Reload sshd after a change (systemctl, else the init script, else SIGHUP).",
                },
                ArgSpec {
                    name: "verify_login",
                    kind: "bool",
                    required: false,
                    default: Some("true"),
                    description: "After the reload, log in afresh (a new SSH connection with the same settings); if that fails the previous file is put back and sshd reloaded again.",
                },
            ],
            check_mode: true,
            example: "- name: Root may log in with a key\n  sshd_config:\n    settings:\n      PermitRootLogin: prohibit-password\n  become: true\n",
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
        if job.restore {
            let targets = if job.path == "auto" {
                config_files(ctx).await?
            } else {
                vec![job.path.clone()]
            };
            return restore(ctx, &job, &targets).await;
        }
        let path = if job.path == "auto" {
            let key = &job.settings[0].0;
            match first_setter(ctx, key).await? {
                Some(file) => file
                    .rsplit_once(':')
                    .map(|(f, _)| f.to_string())
                    .unwrap_or(file),
                None => MAIN.to_string(),
            }
        } else {
            job.path.clone()
        };
        let path = path.as_str();
        let before = match read(ctx, path).await? {
            Ok(t) => t,
            Err(e) => {
                return Ok(Outcome::failed(format!(
                    "sshd_config: cannot read {path}: {e}"
                )))
            }
        };
        let after = edit(&before, &job.settings, job.present);
        let diff = (ctx.diff && after != before).then(|| Diff {
            path: path.to_string(),
            before: before.clone(),
            after: after.clone(),
        });
        let wanted: &[(String, String)] = if job.present { &job.settings } else { &[] };
        if after == before {
            // Unchanged; still proven in effect (a second run checks too).
            if let Err(why) = in_effect(ctx, path, wanted).await? {
                return Ok(Outcome::failed(format!("sshd_config: {why}")));
            }
            let mut o = Outcome::ok()
                .msg(format!("{path} already has the settings"))
                .with("path", path);
            o.diff = diff;
            return Ok(o);
        }
        if ctx.check {
            let mut o = Outcome::changed()
                .msg(format!("would change {path}"))
                .with("path", path);
            o.diff = diff;
            return Ok(o);
        }
        let backup_file = format!("{path}.mailrun-orig");
        let had_backup = run(ctx, format!("test -e {}", quote(&backup_file)), None)
            .await?
            .rc
            == 0;
        // From here on, any failure — also a command cut short (Ctrl-C) or
        // a dropped connection — puts the previous file back: a new file
        // that was never proven must not wait for sshd's next restart.
        let applied = match put(ctx, path, &after, job.backup).await {
            Ok(Err(e)) => {
                return Ok(Outcome::failed(format!(
                    "sshd_config: sshd refuses the new {path}, nothing installed: {e}"
                )))
            }
            Err(e) => Err(format!("installing {path} did not finish: {e}")),
            // In effect (and valid as a whole), then reloaded and a fresh
            // login proven.
            Ok(Ok(())) => match in_effect(ctx, path, wanted).await {
                Ok(Ok(())) => apply(ctx, &job).await.unwrap_or_else(|e| Err(e.to_string())),
                Ok(Err(why)) => Err(why),
                Err(e) => Err(e.to_string()),
            },
        };
        if let Err(why) = applied {
            let mut undone = undo(ctx, &job, path, &before).await?;
            // The backup this run made holds what is back in place now.
            if job.backup && !had_backup {
                let rm = run(ctx, format!("rm -f -- {}", quote(&backup_file)), None).await?;
                if rm.rc != 0 {
                    undone.push_str(&format!(" ({backup_file} left behind)"));
                }
            }
            return Ok(Outcome::failed(format!("sshd_config: {why}; {undone}")));
        }
        let mut o = Outcome::changed()
            .msg(format!(
                "{path} changed{}",
                if job.reload { ", sshd reloaded" } else { "" }
            ))
            .with("path", path);
        if job.backup {
            o = o.with("backup_file", backup_file);
        }
        o.diff = diff;
        Ok(o)
    }
}

/// Puts `before` back at `path` and reloads sshd; says how that went.
async fn undo(ctx: &Context, job: &Job, path: &str, before: &str) -> Result<String, ConnError> {
    let back = put(ctx, path, before, false).await?;
    let reloaded = if job.reload {
        reload(ctx).await?
    } else {
        Ok(())
    };
    Ok(match (back, reloaded) {
        (Ok(()), Ok(())) => format!(
            "the previous {path} was put back{}",
            if job.reload { " and sshd reloaded" } else { "" }
        ),
        (b, r) => format!(
            "putting the previous {path} back FAILED too ({}{}) — check sshd on this host now",
            b.err().unwrap_or_default(),
            r.err().unwrap_or_default()
        ),
    })
}

/// Reload and prove a fresh login.
async fn apply(ctx: &Context, job: &Job) -> Result<Result<(), String>, ConnError> {
    if !job.reload {
        return Ok(Ok(()));
    }
    if let Err(e) = reload(ctx).await? {
        return Ok(Err(e));
    }
    if job.verify_login {
        if let Err(e) = ctx.conn.probe_login().await {
            return Ok(Err(format!(
                "a fresh SSH login failed after the change: {e}"
            )));
        }
    }
    Ok(Ok(()))
}

/// Puts each target's `.mailrun-orig` back (those that have one).
async fn restore(ctx: &Context, job: &Job, targets: &[String]) -> Result<Outcome, ConnError> {
    let mut restored: Vec<(String, String)> = Vec::new();
    let mut diffs = Vec::new();
    for path in targets {
        let backup_file = format!("{path}.mailrun-orig");
        let Ok(original) = read(ctx, &backup_file).await? else {
            continue;
        };
        let current = match read(ctx, path).await? {
            Ok(t) => t,
            Err(e) => {
                return Ok(Outcome::failed(format!(
                    "sshd_config: cannot read {path}: {e}"
                )))
            }
        };
        diffs.push(Diff {
            path: path.clone(),
            before: current.clone(),
            after: original.clone(),
        });
        if ctx.check {
            restored.push((path.clone(), current));
            continue;
        }
        if let Err(e) = put(ctx, path, &original, false).await? {
            return Ok(Outcome::failed(format!(
                "sshd_config: sshd refuses {backup_file}, {path} not restored: {e}"
            )));
        }
        restored.push((path.clone(), current));
    }
    if restored.is_empty() {
        return Ok(Outcome::ok().msg(format!(
            "nothing to restore (no {}.mailrun-orig)",
            targets.join(".mailrun-orig, no ")
        )));
    }
    let names: Vec<&str> = restored.iter().map(|(p, _)| p.as_str()).collect();
    if ctx.check {
        let mut o = Outcome::changed().msg(format!("would restore {}", names.join(", ")));
        o.diff = ctx.diff.then(|| diffs.swap_remove(0));
        return Ok(o);
    }
    let applied = match in_effect(ctx, MAIN, &[]).await? {
        Err(why) => Err(why),
        Ok(()) => apply(ctx, job).await?,
    };
    if let Err(why) = applied {
        let mut undone = Vec::new();
        for (path, current) in &restored {
            undone.push(undo(ctx, job, path, current).await?);
        }
        return Ok(Outcome::failed(format!(
            "sshd_config: {why}; {} (backups kept)",
            undone.join("; ")
        )));
    }
    for path in &names {
        let _ = run(
            ctx,
            format!("rm -f -- {}", quote(&format!("{path}.mailrun-orig"))),
            None,
        )
        .await?;
    }
    let mut o = Outcome::changed().msg(format!(
        "{} restored from .mailrun-orig{}",
        names.join(", "),
        if job.reload { ", sshd reloaded" } else { "" }
    ));
    o.diff = ctx.diff.then(|| diffs.swap_remove(0));
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: &str = "Include /etc/ssh/sshd_config.d/*.conf\n\n#Port 22\n#PermitRootLogin prohibit-password\n#MaxAuthTries 6\nPasswordAuthentication yes\nUsePAM yes\n\nMatch User anoncvs\n\tPermitRootLogin yes\n";

    fn set(k: &str, v: &str) -> Vec<(String, String)> {
        vec![(k.into(), v.into())]
    }

    #[test]
    fn new_line_goes_after_the_commented_one_and_match_is_untouched() {
        let out = edit(DEBIAN, &set("PermitRootLogin", "no"), true);
        assert!(
            out.contains("#PermitRootLogin prohibit-password\nPermitRootLogin no\n#MaxAuthTries"),
            "{out}"
        );
        assert!(out.ends_with("Match User anoncvs\n\tPermitRootLogin yes\n"));
        // Idempotent.
        assert_eq!(edit(&out, &set("PermitRootLogin", "no"), true), out);
        // Changed in place, duplicates dropped.
        let twice = format!("PermitRootLogin yes\n{out}");
        let again = edit(&twice, &set("permitrootlogin", "prohibit-password"), true);
        assert!(
            again.starts_with("permitrootlogin prohibit-password\n"),
            "{again}"
        );
        assert_eq!(again.matches("ermitRootLogin no").count(), 0, "{again}");
        assert!(again.contains("\tPermitRootLogin yes"));
    }

    #[test]
    fn without_a_comment_it_goes_before_match_and_absent_removes() {
        let out = edit(DEBIAN, &set("AllowUsers", "mailadm"), true);
        assert!(
            out.contains("UsePAM yes\n\nAllowUsers mailadm\nMatch User"),
            "{out}"
        );
        let gone = edit(&out, &set("allowusers", ""), false);
        assert_eq!(gone, DEBIAN);
        let plain = edit("Port 22\n", &set("PasswordAuthentication", "no"), true);
        assert_eq!(plain, "Port 22\nPasswordAuthentication no\n");
        assert_eq!(
            keyword("  PermitRootLogin=no"),
            Some("permitrootlogin".into())
        );
    }

    #[test]
    fn line_ends_are_kept() {
        let no_nl = "Port 22\nPermitRootLogin no";
        assert_eq!(edit(no_nl, &set("PermitRootLogin", "no"), true), no_nl);
        let crlf = "Port 22\r\nPermitRootLogin no\r\n";
        assert_eq!(edit(crlf, &set("PermitRootLogin", "no"), true), crlf);
        assert_eq!(
            edit(crlf, &set("PermitRootLogin", "yes"), true),
            "Port 22\r\nPermitRootLogin yes\r\n"
        );
        assert_eq!(edit("", &set("Port", "2222"), true), "Port 2222\n");
    }

    #[test]
    fn effective_values() {
        let m = parse_effective(
            "port 22\npermitrootlogin without-password\nacceptenv LANG\nacceptenv LC_*\n",
        );
        assert_eq!(m["acceptenv"].len(), 2);
        assert_eq!(
            normal(&m["permitrootlogin"][0]),
            normal("prohibit-password")
        );
        assert_eq!(normal("  Yes "), "yes");
    }

    #[test]
    fn argument_errors() {
        use serde_json::json;
        assert!(parse_params(&json!({})).is_err());
        assert!(parse_params(&json!({"settings": {"Permit Root": "no"}})).is_err());
        assert!(parse_params(&json!({"settings": {"X": "a\nb"}})).is_err());
        assert!(parse_params(&json!({"settings": {"X": "a"}, "restore": true})).is_err());
        assert!(parse_params(&json!({"settings": {"X": "a"}, "state": "gone"})).is_err());
        let j = parse_params(&json!({"settings": {"PasswordAuthentication": false}})).unwrap();
        assert_eq!(j.settings[0].1, "no");
        assert!(parse_params(&json!({"restore": "yes"})).is_ok());
    }
}
