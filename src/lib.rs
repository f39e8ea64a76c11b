//! mailrun: an Ansible-style task runner with a native SSH pool, built first
//! for moving a Dovecot mail server without losing mail.
//!
//! # Layout
//! - `main.rs` → [`run::run`]: CLI arguments to an exit code; the one place
//!   errors are printed.
//! - [`cli`]: the clap definition.
//! - [`yaml`]: the only YAML reader (positions, YAML 1.1 typing).
//! - [`error`]: the top `Error` with exit codes; `SourceError` excerpts.
//! - [`inventory`]: INI/YAML inventories, group/host vars, patterns,
//!   `mailrun inventory --list/--host/--graph`.
//! - [`playbook`]: playbook files to checked plays and tasks (no host I/O).
//! - [`template`], [`expr`]: handlebars rendering (strict) and the
//!   `when`/`changed_when`/`failed_when`/`until` expression language.
//! - [`module`], [`modules`]: the module contract and the built-in modules
//!   (one file each, one registry line each); [`plugin`]: modules in any
//!   language from `modules/` folders, run over a JSON protocol.
//! - [`connection`], [`local`], [`ssh`]: what a module may do on a host; the
//!   local connection; the SSH pool on russh (sessions, auth, known_hosts,
//!   SFTP, sudo).
//! - [`engine`]: the (task, host) graph and the scheduler; emits events.
//! - [`report`]: the only printing of run output: human and JSON.
//! - [`secret`]: the registry of secret values; everything printed (the
//!   macros below, the engine's events) has them masked.

/// `println!` that ignores a closed stdout (`mailrun … | head`), never a
/// panic, and masks every registered secret ([`secret::redact`]).
#[macro_export]
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let text = format!($($t)*);
        let _ = writeln!(std::io::stdout(), "{}", $crate::secret::redact(&text));
    }};
}

/// `print!` that ignores a closed stdout; secrets masked.
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let text = format!($($t)*);
        let _ = write!(std::io::stdout(), "{}", $crate::secret::redact(&text));
    }};
}

/// `eprintln!` that ignores a closed stderr; secrets masked.
#[macro_export]
macro_rules! errln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let text = format!($($t)*);
        let _ = writeln!(std::io::stderr(), "{}", $crate::secret::redact(&text));
    }};
}

/// `eprint!` that ignores a closed stderr; secrets masked.
#[macro_export]
macro_rules! err {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let text = format!($($t)*);
        let _ = write!(std::io::stderr(), "{}", $crate::secret::redact(&text));
    }};
}

pub mod cli;
pub mod connection;
pub mod engine;
pub mod error;
pub mod expr;
pub mod interrupt;
pub mod inventory;
pub mod local;
pub mod module;
pub mod modules;
pub mod playbook;
pub mod plugin;
pub mod quote;
pub mod report;
pub mod run;
pub mod secret;
pub mod ssh;
pub mod suggest;
pub mod template;
pub mod yaml;
