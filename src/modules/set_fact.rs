//! `set_fact`: sets variables on the host for the rest of the run.
//!
//! Its arguments are the variables (any names). The result carries them as
//! `ansible_facts`, which the engine keeps for the host (above play vars,
//! below extra vars, as registered results).

use crate::connection::ConnError;
use crate::module::{ArgError, ArgSpec, Context, Module, ModuleDoc, Outcome};
use async_trait::async_trait;
use serde_json::Value;

pub struct SetFact;

#[async_trait]
impl Module for SetFact {
    fn doc(&self) -> ModuleDoc {
        ModuleDoc {
            name: "set_fact",
            description: "Sets variables on the host for the tasks after it.",
            args: vec![ArgSpec {
                name: "*",
                kind: "any",
                required: false,
                default: None,
                description: "Any name: the variable to set, with its value (templated). `cacheable` is accepted and ignored.",
            }],
            check_mode: true,
            example: "- name: Remember the backup directory\n  set_fact:\n    backup_dir: \"/var/backups/{{ inventory_hostname }}\"\n",
            free_form: None,
        }
    }

    fn parse(&self, args: &Value) -> Result<(), ArgError> {
        match args {
            Value::Object(m) if !m.is_empty() => {
                let bad = m.keys().find(|k| {
                    !k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                        || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                });
                match bad {
                    Some(k) => Err(ArgError {
                        arg: Some(k.clone()),
                        msg: format!("set_fact: '{k}' is not a valid variable name (letters, digits and _, not starting with a digit)"),
                        help: None,
                    }),
                    None => Ok(()),
                }
            }
            _ => Err(ArgError { arg: None, msg: "set_fact: give at least one variable (name: value)".into(), help: None }),
        }
    }

    async fn run(&self, _ctx: &Context, args: Value) -> Result<Outcome, ConnError> {
        let mut facts = match args {
            Value::Object(m) => m,
            _ => return Ok(Outcome::failed("set_fact: give at least one variable (name: value)")),
        };
        facts.remove("cacheable");
        Ok(Outcome::ok().with("ansible_facts", Value::Object(facts)))
    }
}
