//! `ping`: proves that the host can be reached, logged into and can run a
//! command (Ansible's habit: `mailrun adhoc all -m ping`). Changes nothing.

use super::args;
use crate::connection::{Command, ConnError};
use crate::module::{ArgError, ArgSpec, Context, Module, ModuleDoc, Outcome};
use crate::quote::quote;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

pub struct Ping;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    data: Option<String>,
}

#[async_trait]
impl Module for Ping {
    fn doc(&self) -> ModuleDoc {
        ModuleDoc {
            name: "ping",
            description: "Checks that the host answers: logs in and runs a command there; returns `ping: pong`.",
            args: vec![ArgSpec {
                name: "data",
                kind: "string",
                required: false,
                default: Some("pong"),
                description: "What to answer with; `crash` makes the task fail (to test error handling).",
            }],
            check_mode: true,
            example: "- name: Are both mail servers there?\n  ping:\n    data: pong\n",
            free_form: None,
        }
    }

    fn parse(&self, args: &Value) -> Result<(), ArgError> {
        args::typed::<Params>("ping", args).map(|_| ())
    }

    async fn run(&self, ctx: &Context, args: Value) -> Result<Outcome, ConnError> {
        let data = match args::typed::<Params>("ping", &args) {
            Ok(p) => p.data.unwrap_or_else(|| "pong".into()),
            Err(e) => return Ok(Outcome::failed(e.msg)),
        };
        if data == "crash" {
            return Ok(Outcome::failed("boom (ping: data=crash)"));
        }
        // Runs even in check mode: it changes nothing.
        let out = ctx
            .conn
            .exec(&Command {
                cmd: format!("printf '%s' {}", quote(&data)),
                stdin: None,
                timeout: ctx.timeout,
                become_user: ctx.become_user.clone(),
            })
            .await?;
        if out.rc != 0 {
            return Ok(Outcome::failed(format!(
                "ping: the host could not run a command (rc {}): {}",
                out.rc,
                out.stderr_str().trim_end()
            )));
        }
        Ok(Outcome::ok().with("ping", out.stdout_str()))
    }
}
