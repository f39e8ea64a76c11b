//! Events the engine hands to reporters. The engine never prints.

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Changed,
    Failed,
    Skipped,
    Unreachable,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Changed => "changed",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Unreachable => "unreachable",
        }
    }
}

/// Per-host counts for the recap (Ansible's: `ok` includes `changed`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HostStats {
    pub ok: u32,
    pub changed: u32,
    pub unreachable: u32,
    pub failed: u32,
    pub skipped: u32,
    pub rescued: u32,
    pub ignored: u32,
}

/// A unified diff, already rendered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiffText {
    pub path: String,
    pub unified: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // short-lived, passed by reference
pub enum Event {
    PlayStart {
        play: usize,
        name: String,
        hosts: Vec<String>,
    },
    TaskStart {
        play: usize,
        /// The task's index in its play's tasks (or handlers).
        index: usize,
        task: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        handler: bool,
    },
    HostResult {
        play: usize,
        index: usize,
        handler: bool,
        task: String,
        host: String,
        status: Status,
        #[serde(skip_serializing_if = "Option::is_none")]
        item: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        delegated_to: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        msg: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        stderr: Option<String>,
        /// The registered result; None when `no_log` hides it.
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        diff: Option<DiffText>,
        ignored: bool,
        no_log: bool,
        /// The per-host summary of a loop, after its item results.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        summary: bool,
    },
    /// Every host of the task is done (ran, skipped, or left out).
    TaskEnd {
        play: usize,
        index: usize,
        handler: bool,
        task: String,
    },
    Progress {
        task: String,
        host: String,
        text: String,
    },
    Warning {
        msg: String,
    },
    Recap {
        hosts: IndexMap<String, HostStats>,
        interrupted: bool,
        exit_code: i32,
    },
}

/// Receives events; the only printing of a run's output.
pub trait Reporter: Send {
    fn event(&mut self, e: &Event);
}
