//! `debug`: shows a message or a variable's value. Never changes anything.

use super::args;
use crate::connection::ConnError;
use crate::expr;
use crate::module::{ArgError, ArgSpec, Context, Module, ModuleDoc, Outcome};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

pub struct Debug;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    msg: Option<Value>,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    var: Option<String>,
    #[serde(default, deserialize_with = "args::opt_int_lenient")]
    #[allow(dead_code)]
    verbosity: Option<u64>,
}

#[async_trait]
impl Module for Debug {
    fn doc(&self) -> ModuleDoc {
        ModuleDoc {
            name: "debug",
            description: "Shows a message or a variable's value (as Ansible's debug).",
            args: vec![
                ArgSpec {
                    name: "msg",
                    kind: "any",
                    required: false,
                    default: Some("Hello world!"),
                    description: "The message to show (templated like every argument).",
                },
                ArgSpec {
                    name: "var",
                    kind: "string",
                    required: false,
                    default: None,
                    description: "A variable (or expression, e.g. `result.stdout`) whose value to show, instead of msg.",
                },
                ArgSpec {
                    name: "verbosity",
                    kind: "int",
                    required: false,
                    default: Some("0"),
                    description: "Accepted for Ansible compatibility; the message is always shown.",
                },
            ],
            check_mode: true,
            example: "- name: Show the user count\n  debug:\n    msg: \"{{ user_count.stdout }} users\"\n",
            free_form: None,
        }
    }

    fn parse(&self, args: &Value) -> Result<(), ArgError> {
        let p: Params = args::typed("debug", args)?;
        if p.msg.is_some() && p.var.is_some() {
            return Err(ArgError { arg: Some("var".into()), msg: "debug: give msg or var, not both".into(), help: None });
        }
        if let Some(var) = &p.var {
            if let Err(e) = expr::parse(var) {
                return Err(ArgError { arg: Some("var".into()), msg: format!("debug: var `{var}`: {e}"), help: None });
            }
        }
        Ok(())
    }

    async fn run(&self, ctx: &Context, args: Value) -> Result<Outcome, ConnError> {
        let p: Params = match args::typed("debug", &args) {
            Ok(p) => p,
            Err(e) => return Ok(Outcome::failed(e.msg)),
        };
        if let Some(var) = p.var {
            let value = match expr::parse(&var).and_then(|e| expr::eval(&e, &ctx.vars)) {
                Ok(v) => v,
                Err(_) => Value::String("VARIABLE IS NOT DEFINED!".into()),
            };
            let shown = match &value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            return Ok(Outcome::ok().msg(format!("{var} = {shown}")).with(&var, value));
        }
        let msg = p.msg.unwrap_or_else(|| Value::String("Hello world!".into()));
        let text = match &msg {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Ok(Outcome::ok().msg(text))
    }
}
