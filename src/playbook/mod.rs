//! Playbooks: YAML files to checked plays and tasks. Parsing only: no host is
//! contacted here, and every static error (YAML, unknown module or argument,
//! unknown task key, unknown `needs` id, a cycle) is found before anything runs.

mod loader;
pub(crate) use loader::mentions_play_world;

pub use loader::{load, load_str, LoadOptions};

use crate::error::Pos;
use crate::expr::Expr;
use serde_json::{Map, Value};
use std::path::PathBuf;

/// Every play of the playbooks given, in order (`import_playbook` flattened).
#[derive(Debug, Clone, Default)]
pub struct Playbook {
    /// The files given on the command line.
    pub paths: Vec<PathBuf>,
    pub plays: Vec<Play>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Ansible's order: each host runs the play's tasks one after another.
    #[default]
    Linear,
    /// Tasks ordered only by `needs`.
    Graph,
}

/// Where something was written: the file and the position in it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Origin {
    pub file: PathBuf,
    pub pos: Pos,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.file.display(),
            self.pos.line,
            self.pos.col
        )
    }
}

#[derive(Debug, Clone, Default)]
pub struct Play {
    pub name: String,
    /// The host pattern, as written (templates rendered with extra vars).
    pub hosts: String,
    pub vars: Map<String, Value>,
    /// Merged content of `vars_files`, above `vars`.
    pub vars_files: Map<String, Value>,
    pub tasks: Vec<Task>,
    pub handlers: Vec<Task>,
    pub become_: Option<bool>,
    pub become_user: Option<String>,
    /// `connection: local|ssh` for the play's hosts (above the inventory's).
    pub connection: Option<String>,
    /// `remote_user`: the login user for the play's hosts (used with SSH).
    pub remote_user: Option<String>,
    pub tags: Vec<String>,
    pub id: Option<String>,
    pub needs: Vec<(String, Origin)>,
    /// The play says what it `needs` (even `needs: []`): no implicit
    /// barrier after the previous play.
    pub needs_given: bool,
    pub strategy: Strategy,
    pub any_errors_fatal: bool,
    pub origin: Origin,
    /// The directory of the playbook file this play came from.
    pub dir: PathBuf,
    /// Which of the playbooks given on the command line it belongs to.
    pub top: usize,
}

impl Play {
    /// The task (or, with `handler`, the handler) at `index`.
    pub fn task(&self, index: usize, handler: bool) -> &Task {
        if handler {
            &self.handlers[index]
        } else {
            &self.tasks[index]
        }
    }
}

/// A condition: a YAML boolean, or expressions that must all hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    Const(bool),
    All(Vec<Expr>),
}

#[derive(Debug, Clone, Default)]
pub struct Task {
    /// The name shown in output: `name`, or the module and its arguments.
    pub name: String,
    pub named: bool,
    pub module: String,
    /// Arguments as written (templates not yet rendered).
    pub args: Map<String, Value>,
    pub id: Option<String>,
    pub needs: Vec<(String, Origin)>,
    pub when: Option<Cond>,
    pub loop_: Option<Value>,
    pub loop_var: String,
    pub loop_label: Option<String>,
    pub register: Option<String>,
    pub notify: Vec<String>,
    /// Where each `notify` name was written.
    pub notify_at: Vec<Origin>,
    /// For handlers: topics from `listen`.
    pub listen: Vec<String>,
    pub tags: Vec<String>,
    pub become_: Option<bool>,
    pub become_user: Option<String>,
    pub ignore_errors: bool,
    pub changed_when: Option<Cond>,
    pub failed_when: Option<Cond>,
    pub retries: Option<u32>,
    pub until: Option<Cond>,
    pub delay: f64,
    pub delegate_to: Option<String>,
    pub run_once: bool,
    pub no_log: bool,
    pub timeout: Option<u64>,
    pub check_mode: Option<bool>,
    /// Task vars (and vars passed by `include_tasks`).
    pub vars: Map<String, Value>,
    pub any_errors_fatal: bool,
    pub origin: Origin,
    /// Names of variables the task's strings mention (to build only the
    /// context it needs: `hostvars`, `groups`).
    pub mentions_hostvars: bool,
    /// The task as written (JSON), to see which variables it names.
    pub source: String,
    pub mentions_groups: bool,
    /// Its place in the play's `tasks` (or `handlers`), and which list.
    pub index: usize,
    pub handler: bool,
}
