//! `fail`: fails the task with a message (usually under `when`).

use super::args;
use crate::connection::ConnError;
use crate::module::{ArgError, ArgSpec, Context, Module, ModuleDoc, Outcome};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

pub struct Fail;

const DEFAULT_MSG: &str = "Failed as requested from task";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    msg: Option<String>,
}

#[async_trait]
impl Module for Fail {
    fn doc(&self) -> ModuleDoc {
        ModuleDoc {
            name: "fail",
            description: "Fails the task with a message (use it with `when`).",
            args: vec![ArgSpec {
                name: "msg",
                kind: "string",
                required: false,
                default: Some(DEFAULT_MSG),
                description: "Why the run must stop.",
            }],
            check_mode: true,
            example: "- name: Refuse to migrate without users\n  fail:\n    msg: \"no users on the old server\"\n  when: user_count.stdout == '0'\n",
            free_form: None,
        }
    }

    fn parse(&self, args: &Value) -> Result<(), ArgError> {
        args::typed::<Params>("fail", args).map(|_| ())
    }

    async fn run(&self, _ctx: &Context, args: Value) -> Result<Outcome, ConnError> {
        let msg = match args::typed::<Params>("fail", &args) {
            Ok(p) => p.msg.unwrap_or_else(|| DEFAULT_MSG.into()),
            Err(e) => e.msg,
        };
        Ok(Outcome::failed(msg))
    }
}
