//! `service`: a system service started, stopped, restarted, reloaded,
//! enabled or disabled. systemctl when PID 1 is systemd
//! (`/run/systemd/system` exists, as Ansible checks), else the SysV init
//! script — run with its stdio detached, or the daemon it starts would keep
//! the SSH channel open and the task would never end. The state is read
//! from the real service, so a second run reports `ok`.

use super::args;
use crate::connection::ConnError;
use crate::module::{ArgError, ArgSpec, Context, Module, ModuleDoc, Outcome};
use crate::quote::quote;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

pub struct Service;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    name: String,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    state: Option<String>,
    #[serde(default, deserialize_with = "args::opt_bool_lenient")]
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "args::bool_lenient")]
    skip_missing: bool,
    #[serde(default, deserialize_with = "args::opt_bool_lenient")]
    masked: Option<bool>,
    #[serde(default, deserialize_with = "args::bool_lenient")]
    daemon_reload: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Started,
    Stopped,
    Restarted,
    Reloaded,
}

fn parse_params(args: &Value) -> Result<(Params, Option<Want>), ArgError> {
    let p: Params = args::typed("service", args)?;
    let want = match p.state.as_deref() {
        None => None,
        Some("started") => Some(Want::Started),
        Some("stopped") => Some(Want::Stopped),
        Some("restarted") => Some(Want::Restarted),
        Some("reloaded") => Some(Want::Reloaded),
        Some(other) => {
            let choices = ["started", "stopped", "restarted", "reloaded"];
            return Err(ArgError {
                arg: Some("state".into()),
                msg: format!(
                    "service: state must be one of {}, got '{other}'",
                    choices.join(", ")
                ),
                help: crate::suggest::did_you_mean(other, choices.iter().copied()),
            });
        }
    };
    if want.is_none() && p.enabled.is_none() && p.masked.is_none() && !p.daemon_reload {
        return Err(ArgError {
            arg: None,
            msg: "service: one of 'state', 'enabled', 'masked' or 'daemon_reload' is required"
                .into(),
            help: None,
        });
    }
    if p.name.is_empty()
        || p.name.starts_with('-')
        || !p
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | ':'))
    {
        return Err(ArgError {
            arg: Some("name".into()),
            msg: format!("service: '{}' is not a service name", p.name),
            help: None,
        });
    }
    Ok((p, want))
}

/// The init system's commands for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Init {
    Systemd,
    SysV,
}

impl Init {
    /// The script that prints `installed running enabled` as 0/1 words.
    pub(super) fn probe(&self, name: &str) -> String {
        let n = quote(name);
        match self {
            // A masked unit has no unit file to `cat` but is there.
            Init::Systemd => format!(
                "l=$(systemctl show -p LoadState --value -- {n} 2>/dev/null)\n\
                 if [ \"$l\" = masked ]; then m=1; else m=0; fi\n\
                 if [ $m = 1 ] || systemctl cat -- {n} >/dev/null 2>&1; then i=1; else i=0; fi\n\
                 if systemctl is-active --quiet -- {n}; then r=1; else r=0; fi\n\
                 if systemctl is-enabled --quiet -- {n} 2>/dev/null; then e=1; else e=0; fi\n\
                 echo \"$i $r $e $m\""
            ),
            Init::SysV => format!(
                "s=/etc/init.d/{name}\n\
                 if [ -x \"$s\" ]; then i=1; else echo '0 0 0 0'; exit 0; fi\n\
                 \"$s\" status </dev/null >/dev/null 2>&1 && r=1 || r=0\n\
                 if ls /etc/rc[2345].d/S[0-9][0-9]{name} >/dev/null 2>&1; then e=1; else e=0; fi\n\
                 echo \"$i $r $e 0\""
            ),
        }
    }

    /// The command for an action: start, stop, restart, reload.
    pub(super) fn action(&self, name: &str, action: &str) -> String {
        match self {
            Init::Systemd => format!("systemctl {action} -- {}", quote(name)),
            // The daemon must not inherit the SSH channel's stdio; its
            // messages go to a temp file shown on failure.
            Init::SysV => format!(
                "log=$(mktemp)\n\
                 /etc/init.d/{name} {action} </dev/null >\"$log\" 2>&1\n\
                 rc=$?\n\
                 if [ $rc -ne 0 ]; then cat \"$log\" >&2; fi\n\
                 rm -f \"$log\"\n\
                 exit $rc"
            ),
        }
    }

    /// The service's own status report (for a failure message).
    pub(super) fn status(&self, name: &str) -> String {
        match self {
            Init::Systemd => format!(
                "systemctl status --no-pager -n 5 -- {} 2>&1 | tail -n 12",
                quote(name)
            ),
            Init::SysV => format!("/etc/init.d/{name} status </dev/null 2>&1 | tail -n 12"),
        }
    }

    /// The command that enables or disables the service at boot.
    pub(super) fn enable(&self, name: &str, on: bool) -> String {
        match self {
            Init::Systemd => format!(
                "systemctl {} -- {}",
                if on { "enable" } else { "disable" },
                quote(name)
            ),
            Init::SysV if on => {
                format!("update-rc.d {name} defaults >/dev/null && update-rc.d {name} enable")
            }
            Init::SysV => format!("update-rc.d {name} disable"),
        }
    }
}

/// How the host's init system is recognised (as Ansible does).
pub(super) const DETECT: &str =
    "if [ -d /run/systemd/system ]; then echo systemd; else echo sysv; fi";

pub(super) fn init_from(detect_output: &str) -> Init {
    if detect_output.trim() == "systemd" {
        Init::Systemd
    } else {
        Init::SysV
    }
}

/// What the probe read of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    installed: bool,
    running: bool,
    enabled: bool,
    masked: bool,
}

/// installed, running, enabled, masked from the probe's output.
fn parse_probe(text: &str) -> Option<State> {
    let w: Vec<bool> = text.split_whitespace().map(|w| w == "1").collect();
    match w[..] {
        [installed, running, enabled, masked] => Some(State {
            installed,
            running,
            enabled,
            masked,
        }),
        _ => None,
    }
}

#[async_trait]
impl Module for Service {
    fn doc(&self) -> ModuleDoc {
        ModuleDoc {
            name: "service",
            description: "Starts, stops, restarts or reloads a service, enables or disables it at boot, masks or unmasks it (systemd), with an optional daemon-reload first. systemctl where PID 1 is systemd, else the init script in /etc/init.d (with its output detached from the SSH session); the state is read from the real service, so a second run is `ok`.",
            args: vec![
                ArgSpec {
                    name: "name",
                    kind: "string",
                    required: true,
                    default: None,
                    description: "The service (systemd unit or /etc/init.d script name).",
                },
                ArgSpec {
                    name: "state",
                    kind: "started|stopped|restarted|reloaded",
                    required: false,
                    default: None,
                    description: "started/stopped change only what differs; restarted and reloaded always act (changed).",
                },
                ArgSpec {
                    name: "enabled",
                    kind: "bool",
                    required: false,
                    default: None,
                    description: "Start at boot (systemctl enable/disable, or update-rc.d).",
                },
                ArgSpec {
                    name: "masked",
                    kind: "bool",
                    required: false,
                    default: None,
                    description: "systemd only: masked (cannot be started at all: systemctl mask) or unmasked.",
                },
                ArgSpec {
                    name: "daemon_reload",
                    kind: "bool",
                    required: false,
                    default: Some("false"),
                    description: "systemd only: systemctl daemon-reload before anything else (after a unit file changed); not counted as a change, as in Ansible.",
                },
                ArgSpec {
                    name: "skip_missing",
                    kind: "bool",
                    required: false,
                    default: Some("false"),
                    description: "A service that is not installed is `ok` (\"not installed\") instead of a failure: for \"stop whichever MTA is installed\".",
                },
            ],
            check_mode: true,
            example: "- name: Stop the MTA if there is one\n  service:\n    name: postfix\n    state: stopped\n    skip_missing: true\n",
            free_form: None,
        }
    }

    fn parse(&self, args: &Value) -> Result<(), ArgError> {
        parse_params(args).map(|_| ())
    }

    async fn run(&self, ctx: &Context, args: Value) -> Result<Outcome, ConnError> {
        let (p, want) = match parse_params(&args) {
            Ok(x) => x,
            Err(e) => return Ok(super::arg_failure(e)),
        };
        let name = p.name.as_str();
        let init = init_from(&super::sh(ctx, DETECT).await?.stdout_str());
        let kind = match init {
            Init::Systemd => "systemd",
            Init::SysV => "sysv",
        };
        let probe = |ctx: &Context| {
            let script = init.probe(name);
            let ctx_conn = ctx.conn.clone();
            let become_user = ctx.become_user.clone();
            let timeout = ctx.timeout;
            async move {
                let out = ctx_conn
                    .exec(&crate::connection::Command {
                        cmd: script,
                        stdin: None,
                        timeout,
                        become_user,
                    })
                    .await?;
                Ok::<_, ConnError>(parse_probe(&out.stdout_str()))
            }
        };
        if init == Init::SysV && p.masked.is_some() {
            return Ok(Outcome::failed(format!(
                "service: masked needs systemd, and {} has no systemd as PID 1",
                ctx.host
            )));
        }
        // As Ansible's systemd module: daemon-reload first (not a change).
        if p.daemon_reload && init == Init::Systemd && !ctx.check {
            let out = super::sh(ctx, "systemctl daemon-reload").await?;
            if out.rc != 0 {
                return Ok(Outcome::failed(format!(
                    "service: systemctl daemon-reload failed (rc {}): {}",
                    out.rc,
                    out.stderr_str().trim()
                )));
            }
        }
        let Some(st) = probe(ctx).await? else {
            return Ok(Outcome::failed(format!(
                "service: cannot read the state of {name}"
            )));
        };
        if !st.installed && p.masked != Some(true) {
            return Ok(if p.skip_missing {
                Outcome::ok()
                    .msg(format!("{name} is not installed"))
                    .with("installed", false)
            } else {
                Outcome::failed(format!(
                    "service: {name} is not installed ({})",
                    match init {
                        Init::Systemd => "no such systemd unit",
                        Init::SysV => "no /etc/init.d script",
                    }
                ))
            });
        }
        // Ansible's order: masked, enabled, then the state.
        let mut todo: Vec<(String, String)> = Vec::new();
        if let Some(m) = p.masked {
            if m != st.masked {
                let word = if m { "mask" } else { "unmask" };
                todo.push((word.into(), format!("systemctl {word} -- {}", quote(name))));
            }
        }
        if let Some(on) = p.enabled {
            if on != st.enabled {
                todo.push((
                    if on { "enable" } else { "disable" }.into(),
                    init.enable(name, on),
                ));
            }
        }
        let running = st.running;
        match want {
            Some(Want::Started) if !running => {
                todo.push(("start".into(), init.action(name, "start")))
            }
            Some(Want::Stopped) if running => todo.push(("stop".into(), init.action(name, "stop"))),
            Some(Want::Restarted) => todo.push((
                "restart".into(),
                init.action(name, if running { "restart" } else { "start" }),
            )),
            // Reloading a stopped service starts nothing: it is started.
            Some(Want::Reloaded) => todo.push((
                if running { "reload" } else { "start" }.into(),
                init.action(name, if running { "reload" } else { "start" }),
            )),
            _ => {}
        }
        let with_state = |o: Outcome, st: &State| {
            o.with("name", name)
                .with("init", kind)
                .with("running", st.running)
                .with("enabled", st.enabled)
                .with("masked", st.masked)
        };
        if todo.is_empty() {
            return Ok(with_state(Outcome::ok(), &st).msg(format!(
                "{name} is {}{}{}",
                if running { "running" } else { "stopped" },
                if st.enabled { ", enabled" } else { "" },
                if st.masked { ", masked" } else { "" }
            )));
        }
        let done: Vec<String> = todo.iter().map(|(w, _)| w.clone()).collect();
        if ctx.check {
            let mut o = with_state(Outcome::ok(), &st)
                .msg(format!("would {} {name}", done.join(" and ")));
            o.changed = true;
            return Ok(o);
        }
        for (i, (word, cmd)) in todo.iter().enumerate() {
            let out = super::sh(ctx, cmd).await?;
            if out.rc != 0 {
                let mut o = Outcome::failed(format!(
                    "service: {word} {name} failed (rc {}): {}{}",
                    out.rc,
                    out.stderr_str().trim(),
                    if i > 0 {
                        format!(" (done before: {})", done[..i].join(", "))
                    } else {
                        String::new()
                    }
                ));
                // What was done before the failing step changed the host.
                o.changed = i > 0;
                return Ok(o);
            }
        }
        // The state after: what was asked must have taken.
        let now = probe(ctx).await?.unwrap_or(st);
        let bad = match want {
            Some(Want::Started | Want::Restarted | Want::Reloaded) if !now.running => Some(
                format!("{name} is not running after {}", done.join(" and ")),
            ),
            Some(Want::Stopped) if now.running => {
                Some(format!("{name} is still running after stop"))
            }
            _ if p.masked.is_some_and(|m| m != now.masked) => Some(format!(
                "{name} is {}masked after {}",
                if now.masked { "still " } else { "not " },
                done.join(" and ")
            )),
            _ => None,
        };
        if let Some(why) = bad {
            // What the service says about itself.
            let status = super::sh(ctx, &init.status(name)).await?;
            let text = format!("{}{}", status.stdout_str(), status.stderr_str());
            let text = text.trim();
            return Ok(Outcome::failed(if text.is_empty() {
                format!("service: {why}")
            } else {
                format!("service: {why}; status (rc {}): {text}", status.rc)
            }));
        }
        let mut o = with_state(Outcome::changed(), &now)
            .msg(format!("{name}: {}", done.join(", ")))
            .with("actions", json!(done));
        o.changed = true;
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_commands() {
        assert_eq!(init_from("systemd\n"), Init::Systemd);
        assert_eq!(init_from("sysv\n"), Init::SysV);
        assert!(DETECT.contains("/run/systemd/system"));
        let s = Init::Systemd;
        assert_eq!(s.action("dovecot", "reload"), "systemctl reload -- dovecot");
        assert_eq!(s.enable("postfix", false), "systemctl disable -- postfix");
        let probe = s.probe("dovecot");
        assert!(probe.contains("systemctl is-active --quiet -- dovecot"));
        assert!(probe.contains("systemctl is-enabled --quiet -- dovecot"));
        assert!(probe.contains("systemctl cat -- dovecot"));
    }

    #[test]
    fn sysv_commands_detach_the_daemon() {
        let v = Init::SysV;
        let start = v.action("dovecot", "start");
        assert!(
            start.contains("/etc/init.d/dovecot start </dev/null >\"$log\" 2>&1"),
            "{start}"
        );
        assert!(v.probe("ssh").contains("/etc/init.d/ssh\n"));
        assert!(v
            .enable("exim4", false)
            .contains("update-rc.d exim4 disable"));
        assert_eq!(
            parse_probe("1 0 1 0\n"),
            Some(State {
                installed: true,
                running: false,
                enabled: true,
                masked: false
            })
        );
        assert_eq!(parse_probe("1 0 1\n"), None);
        assert_eq!(parse_probe(""), None);
    }

    #[test]
    fn argument_errors() {
        let e = parse_params(&json!({"name": "x", "state": "start"})).unwrap_err();
        assert!(e.msg.contains("state must be one of"));
        assert!(parse_params(&json!({"name": "x"})).is_err());
        assert!(parse_params(&json!({"name": "a;b", "state": "started"})).is_err());
        assert!(parse_params(&json!({"name": "dovecot", "enabled": "yes"})).is_ok());
        assert!(parse_params(&json!({"name": "dovecot", "masked": true})).is_ok());
        assert!(parse_params(&json!({"name": "dovecot", "daemon_reload": true})).is_ok());
    }

    /// The local machine has an init script for something; a missing one
    /// is reported (or skipped).
    #[test]
    fn missing_service() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = super::super::testutil::ctx(dir.path());
        let rt = super::super::testutil::rt();
        let o = rt.block_on(super::super::testutil::run(
            &ctx,
            "service",
            json!({"name": "no-such-service-mailrun", "state": "stopped"}),
        ));
        assert!(o.failed && o.msg.unwrap().contains("not installed"));
        let o = rt.block_on(super::super::testutil::run(
            &ctx,
            "service",
            json!({"name": "no-such-service-mailrun", "state": "stopped", "skip_missing": true}),
        ));
        assert!(!o.failed && !o.changed);
    }
}
