//! `command`: runs a program with arguments, without a shell. Also the
//! runner `shell` shares: creates/removes, chdir, stdin, result data.

use super::args;
use crate::connection::{self, ConnError};
use crate::module::{ArgSpec, Context, Module, ModuleDoc, Outcome};
use crate::quote::{join, quote, split};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

pub struct Command;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    cmd: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string_list_lenient")]
    argv: Option<Vec<String>>,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    creates: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    removes: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    chdir: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    stdin: Option<String>,
    #[serde(default = "yes", deserialize_with = "args::bool_lenient")]
    stdin_add_newline: bool,
}

/// Arguments `command` and `shell` share (serde's `flatten` does not mix
/// with `deny_unknown_fields`, so each params struct lists them and moves
/// them here).
#[derive(Debug)]
pub(super) struct Common {
    pub(super) creates: Option<String>,
    pub(super) removes: Option<String>,
    pub(super) chdir: Option<String>,
    pub(super) stdin: Option<String>,
    pub(super) stdin_add_newline: bool,
}

pub(super) fn yes() -> bool {
    true
}

/// The argument specs `command` and `shell` share.
pub(super) fn common_args() -> Vec<ArgSpec> {
    vec![
        ArgSpec {
            name: "creates",
            kind: "path",
            required: false,
            default: None,
            description: "A path on the host; when it exists the command is not run.",
        },
        ArgSpec {
            name: "removes",
            kind: "path",
            required: false,
            default: None,
            description: "A path on the host; when it does not exist the command is not run.",
        },
        ArgSpec {
            name: "chdir",
            kind: "path",
            required: false,
            default: None,
            description: "Change into this directory before running (also the base of a relative creates/removes).",
        },
        ArgSpec {
            name: "stdin",
            kind: "string",
            required: false,
            default: None,
            description: "Text fed to the command's standard input.",
        },
        ArgSpec {
            name: "stdin_add_newline",
            kind: "bool",
            required: false,
            default: Some("true"),
            description: "Append a newline to stdin.",
        },
    ]
}

fn parse_params(args: &Value) -> Result<Params, crate::module::ArgError> {
    let p: Params = args::typed("command", args)?;
    match (&p.cmd, &p.argv) {
        (None, None) => Err(crate::module::ArgError {
            arg: None,
            msg: "command: one of 'cmd' or 'argv' is required".into(),
            help: Some("write the command as free text (`command: ls -l /tmp`) or as `argv: [ls, -l, /tmp]`".into()),
        }),
        (Some(_), Some(_)) => Err(crate::module::ArgError {
            arg: Some("argv".into()),
            msg: "command: 'cmd' and 'argv' are mutually exclusive".into(),
            help: None,
        }),
        _ => Ok(p),
    }
}

#[async_trait]
impl Module for Command {
    fn doc(&self) -> ModuleDoc {
        let mut a = vec![
            ArgSpec {
                name: "cmd",
                kind: "string",
                required: false,
                default: None,
                description: "The command line, split into words like a shell would but never run by one: no pipes, redirections or variables.",
            },
            ArgSpec {
                name: "argv",
                kind: "list",
                required: false,
                default: None,
                description: "The program and its arguments as a list (instead of cmd).",
            },
        ];
        a.extend(common_args());
        ModuleDoc {
            name: "command",
            description:
                "Runs a program on the host without a shell; reports rc, stdout and stderr.",
            args: a,
            check_mode: true,
            example: "- name: Check the Dovecot configuration\n  command: doveconf -n\n",
            free_form: Some("cmd"),
        }
    }

    fn parse(&self, args: &Value) -> Result<(), crate::module::ArgError> {
        parse_params(args).map(|_| ())
    }

    async fn run(&self, ctx: &Context, args: Value) -> Result<Outcome, ConnError> {
        let p = match parse_params(&args) {
            Ok(p) => p,
            Err(e) => return Ok(super::arg_failure(e)),
        };
        let common = Common {
            creates: p.creates,
            removes: p.removes,
            chdir: p.chdir,
            stdin: p.stdin,
            stdin_add_newline: p.stdin_add_newline,
        };
        let argv = match (p.argv, p.cmd) {
            (Some(argv), _) => argv,
            (None, Some(cmd)) => match split(&cmd) {
                Ok(words) => words,
                Err(e) => return Ok(Outcome::failed(format!("command: {e}"))),
            },
            (None, None) => Vec::new(),
        };
        if argv.is_empty() {
            return Ok(Outcome::failed("command: no command given"));
        }
        let line = format!("exec {}", join(&argv));
        let shown = Value::Array(argv.into_iter().map(Value::String).collect());
        execute(ctx, &common, line, shown).await
    }
}

/// What the check step decided.
enum Plan {
    /// `creates`/`removes` says there is nothing to do.
    Skip(String),
    Run,
}

/// A relative `creates`/`removes` is taken from `chdir`.
fn host_path(path: &str, chdir: Option<&str>) -> String {
    match chdir {
        Some(dir) if !path.starts_with('/') => format!("{}/{path}", dir.trim_end_matches('/')),
        _ => path.to_string(),
    }
}

/// Whether a path exists on the host, as `[ -e ]` tells it to the task's
/// user (over SSH without become: one SFTP request, no process).
async fn exists(ctx: &Context, path: &str) -> Result<Result<bool, Outcome>, ConnError> {
    let r = match &ctx.become_user {
        None => ctx.conn.exists(path).await,
        Some(u) => {
            connection::exists_by_exec(ctx.conn.as_ref(), path, Some(u.clone()), ctx.timeout).await
        }
    };
    Ok(match r {
        Ok(found) => Ok(found),
        Err(ConnError::Io(e)) => Err(Outcome::failed(e)),
        Err(e) => return Err(e),
    })
}

async fn check(ctx: &Context, c: &Common) -> Result<Result<Plan, Outcome>, ConnError> {
    if let Some(creates) = &c.creates {
        match exists(ctx, &host_path(creates, c.chdir.as_deref())).await? {
            Ok(true) => return Ok(Ok(Plan::Skip(format!("skipped, since {creates} exists")))),
            Ok(false) => {}
            Err(failed) => return Ok(Err(failed)),
        }
    }
    if let Some(removes) = &c.removes {
        match exists(ctx, &host_path(removes, c.chdir.as_deref())).await? {
            Ok(false) => {
                return Ok(Ok(Plan::Skip(format!(
                    "skipped, since {removes} does not exist"
                ))))
            }
            Ok(true) => {}
            Err(failed) => return Ok(Err(failed)),
        }
    }
    Ok(Ok(Plan::Run))
}

/// Output as Ansible registers it: trailing newlines stripped.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_end_matches(['\r', '\n'])
        .to_string()
}

fn lines(s: &str) -> Value {
    Value::Array(s.lines().map(|l| Value::String(l.to_string())).collect())
}

fn with_output(o: Outcome, rc: i32, stdout: &str, stderr: &str, shown: Value) -> Outcome {
    o.with("rc", rc)
        .with("stdout", stdout)
        .with("stderr", stderr)
        .with("stdout_lines", lines(stdout))
        .with("stderr_lines", lines(stderr))
        .with("cmd", shown)
}

/// Check (creates/removes), then run `line` through the connection's shell.
/// `shown` is the `cmd` the result data reports.
pub(super) async fn execute(
    ctx: &Context,
    c: &Common,
    line: String,
    shown: Value,
) -> Result<Outcome, ConnError> {
    match check(ctx, c).await? {
        Ok(Plan::Skip(msg)) => return Ok(with_output(Outcome::ok().msg(msg), 0, "", "", shown)),
        Ok(Plan::Run) => {}
        Err(failed) => return Ok(failed),
    }
    if ctx.check {
        // As Ansible: a command is not run in check mode, and says so.
        let mut o = Outcome::ok().msg("would run (not run in check mode)").with("cmd", shown);
        o.skipped = true;
        return Ok(o);
    }
    apply(ctx, c, line, shown).await
}

async fn apply(
    ctx: &Context,
    c: &Common,
    line: String,
    shown: Value,
) -> Result<Outcome, ConnError> {
    let line = match &c.chdir {
        Some(dir) => format!("cd -- {} || exit 1\n{line}", quote(dir)),
        None => line,
    };
    let stdin = c.stdin.as_ref().map(|s| {
        let mut b = s.clone().into_bytes();
        if c.stdin_add_newline {
            b.push(b'\n');
        }
        b
    });
    let cmd = connection::Command {
        cmd: line,
        stdin,
        timeout: ctx.timeout,
        become_user: ctx.become_user.clone(),
    };
    let out = match ctx.conn.exec(&cmd).await {
        Ok(out) => out,
        Err(ConnError::Timeout(d)) => {
            let o = Outcome::failed(format!("command timed out after {}s", d.as_secs_f64()));
            return Ok(with_output(
                Outcome { changed: true, ..o },
                124,
                "",
                "",
                shown,
            ));
        }
        Err(e) => return Err(e),
    };
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let o = if out.rc == 0 {
        Outcome::changed()
    } else {
        Outcome {
            changed: true,
            ..Outcome::failed("non-zero return code")
        }
    };
    Ok(with_output(o, out.rc, &stdout, &stderr, shown))
}

#[cfg(test)]
mod tests {
    use crate::modules::testutil::{ctx, p, rt, run};
    use serde_json::json;

    #[test]
    fn runs_without_a_shell() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let c = ctx(dir.path());
            let o = run(&c, "command", json!({"cmd": "echo 'a  b' $HOME > x"})).await;
            assert!(o.changed && !o.failed, "{o:?}");
            assert_eq!(o.data["stdout"], "a  b $HOME > x");
            assert_eq!(o.data["stdout_lines"], json!(["a  b $HOME > x"]));
            assert_eq!(o.data["rc"], 0);
            assert_eq!(o.data["cmd"], json!(["echo", "a  b", "$HOME", ">", "x"]));
            assert!(!dir.path().join("x").exists());
            let o = run(
                &c,
                "command",
                json!({"argv": ["printf", "%s\\n", "it's", 1], "chdir": dir.path().to_str()}),
            )
            .await;
            assert_eq!(o.data["stdout_lines"], json!(["it's", "1"]), "{o:?}");
        });
    }

    #[test]
    fn failure_and_stdin() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let c = ctx(dir.path());
            let o = run(
                &c,
                "command",
                json!({"argv": ["sh", "-c", "echo oops >&2; exit 3"]}),
            )
            .await;
            assert!(o.failed && o.changed, "{o:?}");
            assert_eq!(o.msg.as_deref(), Some("non-zero return code"));
            assert_eq!(
                (o.data["rc"].clone(), o.data["stderr"].clone()),
                (json!(3), json!("oops"))
            );
            let o = run(&c, "command", json!({"cmd": "cat", "stdin": "hello"})).await;
            assert_eq!(o.data["stdout"], "hello");
            let o = run(&c, "command", json!({"cmd": "no-such-program-here"})).await;
            assert!(o.failed && o.data["rc"] == 127, "{o:?}");
        });
    }

    #[test]
    fn creates_makes_it_idempotent() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let c = ctx(dir.path());
            let marker = p(dir.path(), "done");
            let args = json!({"argv": ["touch", marker], "creates": marker});
            let o = run(&c, "command", args.clone()).await;
            assert!(o.changed && !o.failed, "{o:?}");
            let o = run(&c, "command", args).await;
            assert!(!o.changed && !o.failed, "{o:?}");
            assert_eq!(o.msg, Some(format!("skipped, since {marker} exists")));
            // removes: relative to chdir.
            let args = json!({"cmd": "rm done", "removes": "done", "chdir": dir.path().to_str()});
            assert!(run(&c, "command", args.clone()).await.changed);
            let o = run(&c, "command", args).await;
            assert!(
                !o.changed && o.msg.as_deref() == Some("skipped, since done does not exist"),
                "{o:?}"
            );
        });
    }

    #[test]
    fn creates_path_is_quoted() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let c = ctx(dir.path());
            let odd = p(dir.path(), "it's $(here) *");
            std::fs::write(&odd, "").expect("write");
            let o = run(&c, "command", json!({"cmd": "false", "creates": odd})).await;
            assert!(!o.changed && !o.failed, "{o:?}");
            let o = run(
                &c,
                "command",
                json!({"cmd": "true", "removes": p(dir.path(), "it's $(gone)")}),
            )
            .await;
            assert!(!o.changed && !o.failed, "{o:?}");
        });
    }

    #[test]
    fn check_mode_does_not_run() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut c = ctx(dir.path());
            c.check = true;
            let marker = p(dir.path(), "m");
            let o = run(&c, "command", json!({"argv": ["touch", marker]})).await;
            assert!(o.skipped && !o.changed, "{o:?}");
            assert!(!dir.path().join("m").exists());
        });
    }

    #[test]
    fn timeout_fails() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut c = ctx(dir.path());
            c.timeout = Some(std::time::Duration::from_millis(100));
            let o = run(&c, "command", json!({"cmd": "sleep 5"})).await;
            assert!(o.failed && o.data["rc"] == 124, "{o:?}");
        });
    }

    #[test]
    fn argument_errors() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let c = ctx(dir.path());
            let o = run(&c, "command", json!({"creates": "/x"})).await;
            assert!(
                o.failed
                    && o.msg
                        .as_deref()
                        .is_some_and(|m| m.contains("one of 'cmd' or 'argv'"))
            );
            let o = run(&c, "command", json!({"cmd": "ls", "argv": ["ls"]})).await;
            assert!(o.failed, "{o:?}");
            let o = run(&c, "command", json!({"cmd": "ls", "chdri": "/"})).await;
            assert_eq!(
                o.msg.as_deref(),
                Some("command: unknown argument 'chdri' (did you mean 'chdir'?)")
            );
            let o = run(&c, "command", json!({"cmd": "echo 'unclosed"})).await;
            assert!(o.failed && o.msg.as_deref().is_some_and(|m| m.contains("unterminated")));
        });
    }
}
