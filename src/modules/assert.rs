//! `assert`: checks that expressions hold (the `when` language).

use super::args;
use crate::connection::ConnError;
use crate::expr;
use crate::module::{ArgError, ArgSpec, Context, Module, ModuleDoc, Outcome};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

pub struct Assert;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    that: Option<Value>,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    fail_msg: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    msg: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    success_msg: Option<String>,
    #[serde(default, deserialize_with = "args::opt_bool_lenient")]
    quiet: Option<bool>,
}

/// `that` as a list of expression texts (a single string, a list, a boolean).
fn conditions(that: &Option<Value>) -> Vec<String> {
    let one = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match that {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().map(one).collect(),
        Some(v) => vec![one(v)],
    }
}

#[async_trait]
impl Module for Assert {
    fn doc(&self) -> ModuleDoc {
        ModuleDoc {
            name: "assert",
            description: "Fails unless every expression in `that` holds.",
            args: vec![
                ArgSpec {
                    name: "that",
                    kind: "any",
                    required: true,
                    default: None,
                    description: "An expression (the `when` language), or a list of them, that must all hold.",
                },
                ArgSpec {
                    name: "fail_msg",
                    kind: "string",
                    required: false,
                    default: None,
                    description: "The message when one does not hold.",
                },
                ArgSpec { name: "msg", kind: "string", required: false, default: None, description: "Same as fail_msg." },
                ArgSpec {
                    name: "success_msg",
                    kind: "string",
                    required: false,
                    default: Some("All assertions passed"),
                    description: "The message when all hold.",
                },
                ArgSpec {
                    name: "quiet",
                    kind: "bool",
                    required: false,
                    default: Some("false"),
                    description: "Say nothing on success.",
                },
            ],
            check_mode: true,
            example: "- name: Both servers agree\n  assert:\n    that:\n      - old_count.stdout == new_count.stdout\n    fail_msg: \"message counts differ\"\n",
            free_form: None,
        }
    }

    fn parse(&self, args: &Value) -> Result<(), ArgError> {
        let p: Params = args::typed("assert", args)?;
        for t in &conditions(&p.that) {
            if let Err(e) = expr::parse(t) {
                return Err(ArgError { arg: Some("that".into()), msg: format!("assert: `{t}`: {e}"), help: None });
            }
        }
        Ok(())
    }

    async fn run(&self, ctx: &Context, args: Value) -> Result<Outcome, ConnError> {
        let p: Params = match args::typed("assert", &args) {
            Ok(p) => p,
            Err(e) => return Ok(Outcome::failed(e.msg)),
        };
        for t in &conditions(&p.that) {
            let held = expr::parse(t).and_then(|e| expr::eval_bool(&e, &ctx.vars));
            match held {
                Ok(true) => {}
                Ok(false) => {
                    let msg = p.fail_msg.or(p.msg).unwrap_or_else(|| format!("Assertion failed: {t}"));
                    return Ok(Outcome::failed(msg).with("assertion", t.as_str()));
                }
                Err(e) => return Ok(Outcome::failed(format!("assert: `{t}`: {e}")).with("assertion", t.as_str())),
            }
        }
        let mut o = Outcome::ok();
        if !p.quiet.unwrap_or(false) {
            o = o.msg(p.success_msg.unwrap_or_else(|| "All assertions passed".into()));
        }
        Ok(o)
    }
}
