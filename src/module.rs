//! The module contract: typed arguments that reject unknown fields, check
//! mode, diff, and an [`Outcome`] whose data `register` captures.

use crate::connection::Connection;
use async_trait::async_trait;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::sync::Arc;

/// One argument as `mailrun doc` shows it and validation checks it.
#[derive(Debug, Clone)]
pub struct ArgSpec {
    pub name: &'static str,
    /// "string", "bool", "int", "list", "map", "path", "mode", "any", or
    /// choices written "a|b|c".
    pub kind: &'static str,
    pub required: bool,
    pub default: Option<&'static str>,
    pub description: &'static str,
}

/// A module's documentation: the one source for `mailrun doc` and for the
/// validation done before anything runs.
#[derive(Debug, Clone)]
pub struct ModuleDoc {
    pub name: &'static str,
    pub description: &'static str,
    pub args: Vec<ArgSpec>,
    pub check_mode: bool,
    /// A YAML task using the module.
    pub example: &'static str,
    /// The argument that free-form text (`shell: echo hi`) fills, if any.
    pub free_form: Option<&'static str>,
}

/// A unified diff a module proposes or made.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diff {
    pub path: String,
    pub before: String,
    pub after: String,
}

/// What a module run came to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub changed: bool,
    pub failed: bool,
    /// The module did not act and says so: shown as `skipped` (e.g. a
    /// command in check mode, which Ansible does not run either).
    pub skipped: bool,
    pub msg: Option<String>,
    pub diff: Option<Diff>,
    /// Extra data `register` captures (rc, stdout, stderr, …).
    pub data: Map<String, Value>,
}

impl Outcome {
    pub fn ok() -> Self {
        Outcome::default()
    }
    pub fn changed() -> Self {
        Outcome {
            changed: true,
            ..Default::default()
        }
    }
    pub fn failed(msg: impl Into<String>) -> Self {
        Outcome {
            failed: true,
            msg: Some(msg.into()),
            ..Default::default()
        }
    }
    pub fn msg(mut self, msg: impl Into<String>) -> Self {
        self.msg = Some(msg.into());
        self
    }
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.data.insert(key.to_string(), value.into());
        self
    }
}

/// Asks the operator something (the `pause` module).
pub trait Prompter: Send + Sync {
    /// `Ok(answer)`; `Err(msg)` when no answer can be had (no terminal and no `--yes`).
    fn ask(&self, prompt: &str) -> Result<String, String>;
}

/// Live progress of a long task, shown on a terminal.
pub trait Progress: Send + Sync {
    fn update(&self, text: &str);
}

/// The other inventory hosts, for modules that work across hosts
/// (`file_copy from_host`, `doveadm_backup`, `mail_verify`).
pub trait Hosts: Send + Sync {
    /// The control machine's connection to inventory host `name`, as its
    /// own tasks would use it; None when `name` is not in the inventory.
    fn connection(
        &self,
        name: &str,
    ) -> Result<Option<Arc<dyn Connection>>, crate::connection::ConnError>;
}

/// Everything a module may use. Built per (task, host) by the engine.
pub struct Context {
    pub host: String,
    /// The host the task acts on (itself, or its `delegate_to`).
    pub conn: Arc<dyn Connection>,
    /// The control machine, for reading a local `src`.
    pub local: Arc<dyn Connection>,
    pub check: bool,
    pub diff: bool,
    pub become_user: Option<String>,
    /// The host's variables (already merged), for `template`.
    pub vars: Value,
    /// Where relative `src` paths are looked up (the playbook's directory).
    pub base_dir: PathBuf,
    pub prompter: Arc<dyn Prompter>,
    pub progress: Arc<dyn Progress>,
    pub timeout: Option<std::time::Duration>,
    /// The other inventory hosts.
    pub hosts: Arc<dyn Hosts>,
}

/// Why arguments were refused: a message naming module and argument.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgError {
    /// The argument at fault, for pointing at its position.
    pub arg: Option<String>,
    pub msg: String,
    pub help: Option<String>,
}

#[async_trait]
pub trait Module: Send + Sync {
    fn doc(&self) -> ModuleDoc;
    /// Why the module cannot be used at all (a plugin whose `describe`
    /// failed); checked before its arguments.
    fn unusable(&self) -> Option<ArgError> {
        None
    }
    /// The checks of arguments as written (templates not yet rendered):
    /// names, required ones, kinds of the values that are not templates.
    fn check_args(&self, args: &Map<String, Value>) -> Result<(), ArgError> {
        crate::modules::args::validate(&self.doc(), args)
    }
    /// Typed parse of rendered arguments (serde, `deny_unknown_fields`).
    fn parse(&self, args: &Value) -> Result<(), ArgError>;
    /// Runs with rendered arguments. Failures on the host are an Outcome
    /// with `failed`, not an Err; Err is for a lost connection.
    async fn run(
        &self,
        ctx: &Context,
        args: Value,
    ) -> Result<Outcome, crate::connection::ConnError>;
}
