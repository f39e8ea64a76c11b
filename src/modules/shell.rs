//! `shell`: runs a command line through `sh -c` (or `executable -c`), with
//! pipes, redirections and variables. Shares the runner of `command`.

use super::args;
use super::command::{common_args, execute, yes, Common};
use crate::connection::ConnError;
use crate::module::{ArgError, ArgSpec, Context, Module, ModuleDoc, Outcome};
use crate::quote::quote;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

pub struct Shell;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    cmd: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    executable: Option<String>,
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

fn parse_params(args: &Value) -> Result<Params, ArgError> {
    let p: Params = args::typed("shell", args)?;
    match p.cmd.as_deref() {
        Some(c) if !c.trim().is_empty() => Ok(p),
        _ => Err(ArgError {
            arg: Some("cmd".into()),
            msg: "shell: missing required argument 'cmd'".into(),
            help: Some("write the command as free text: `shell: echo hi > /tmp/x`".into()),
        }),
    }
}

#[async_trait]
impl Module for Shell {
    fn doc(&self) -> ModuleDoc {
        let mut a = vec![
            ArgSpec {
                name: "cmd",
                kind: "string",
                required: true,
                default: None,
                description:
                    "The shell command line or script (pipes, redirections and variables work).",
            },
            ArgSpec {
                name: "executable",
                kind: "path",
                required: false,
                default: Some("/bin/sh"),
                description: "The shell to run the command with, as `executable -c cmd`.",
            },
        ];
        a.extend(common_args());
        ModuleDoc {
            name: "shell",
            description: "Runs a command line through a shell on the host; reports rc, stdout and stderr.",
            args: a,
            check_mode: true,
            example: "- name: Count the mail users\n  shell: doveadm user '*' | wc -l > /root/users.count\n  args:\n    creates: /root/users.count\n",
            free_form: Some("cmd"),
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
        let script = p.cmd.unwrap_or_default();
        let line = match &p.executable {
            Some(exe) => format!("exec {} -c {}", quote(exe), quote(&script)),
            None => script.clone(),
        };
        let common = Common {
            creates: p.creates,
            removes: p.removes,
            chdir: p.chdir,
            stdin: p.stdin,
            stdin_add_newline: p.stdin_add_newline,
        };
        execute(ctx, &common, line, Value::String(script)).await
    }
}

#[cfg(test)]
mod tests {
    use crate::modules::testutil::{ctx, p, rt, run};
    use serde_json::json;

    #[test]
    fn runs_through_sh_and_creates_is_idempotent() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let c = ctx(dir.path());
            let out = p(dir.path(), "out");
            let args = crate::modules::args::parse_kv(
                &format!("echo hi | tr a-z A-Z > {out}\necho done creates={out}"),
                Some("cmd"),
            )
            .expect("kv");
            let args = serde_json::Value::Object(args);
            let o = run(&c, "shell", args.clone()).await;
            assert!(o.changed && !o.failed, "{o:?}");
            assert_eq!(o.data["stdout"], "done");
            assert_eq!(std::fs::read_to_string(&out).ok().as_deref(), Some("HI\n"));
            let o = run(&c, "shell", args).await;
            assert!(!o.changed && !o.failed, "{o:?}");
            assert_eq!(o.msg, Some(format!("skipped, since {out} exists")));
        });
    }

    #[test]
    fn chdir_executable_stdin_and_failure() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let c = ctx(dir.path());
            let o = run(&c, "shell", json!({"cmd": "pwd; read x; echo \"got $x\"", "chdir": dir.path().to_str(), "stdin": "in"})).await;
            let want = dir.path().canonicalize().expect("canon");
            assert_eq!(o.data["stdout_lines"], json!([want.to_str(), "got in"]), "{o:?}");
            assert_eq!(o.data["cmd"], "pwd; read x; echo \"got $x\"");
            let o = run(&c, "shell", json!({"cmd": "echo $0", "executable": "/bin/sh"})).await;
            assert_eq!(o.data["stdout"], "/bin/sh", "{o:?}");
            let o = run(&c, "shell", json!({"cmd": "echo bad >&2; false"})).await;
            assert!(o.failed && o.data["stderr"] == "bad" && o.data["rc"] == 1, "{o:?}");
            let o = run(&c, "shell", json!({"cmd": "true", "chdir": "/no/such/dir"})).await;
            assert!(o.failed, "{o:?}");
            let o = run(&c, "shell", json!({"creates": "/x"})).await;
            assert_eq!(o.msg.as_deref(), Some("shell: missing required argument 'cmd' (write the command as free text: `shell: echo hi > /tmp/x`)"));
        });
    }

    #[test]
    fn check_mode_does_not_run() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut c = ctx(dir.path());
            c.check = true;
            let out = p(dir.path(), "out");
            let o = run(&c, "shell", json!({"cmd": format!("touch {out}")})).await;
            assert!(o.skipped && !o.changed, "{o:?}");
            assert!(!dir.path().join("out").exists());
        });
    }
}
