//! Reporters: the only printing of a run's output. `human` for people,
//! `json` for programs (one event per line).

mod human;
mod json;
mod prompt;

pub use human::Human;
pub use json::Json;
pub use prompt::TerminalPrompter;
