//! The command line, as ansible-playbook names its options.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "mailrun",
    version,
    about = "An Ansible-style task runner with a native SSH pool, built for Dovecot migrations",
    args_conflicts_with_subcommands = true,
    after_help = "Exit codes: 0 ok, 1 error, 2 a host failed, 3 a host unreachable, 4 parse error (nothing ran), 5 bad options, 99 interrupted, 250 unexpected."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: PlaybookArgs,
    /// A folder of plugin modules, searched first (repeatable, or a `:` list;
    /// then MAILRUN_MODULE_PATH, `modules/` beside the playbook, the project's `modules/`).
    #[arg(long = "module-path", value_name = "DIR", global = true)]
    pub module_path: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one module on the hosts matching PATTERN.
    Adhoc(AdhocArgs),
    /// Show the inventory as mailrun reads it (ansible-inventory's JSON).
    Inventory(InventoryArgs),
    /// List the available modules.
    Modules,
    /// Show a module's arguments, check-mode support and an example.
    Doc {
        /// The module's name.
        module: String,
    },
    /// Print a shell completion script (bash, zsh or fish) made from this command line.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page (roff), made from this command line: `mailrun man > mailrun.1`.
    Man {
        /// Write one page per command (mailrun.1, mailrun-adhoc.1, …) into DIR instead.
        #[arg(long = "out-dir", value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConnectionType {
    Local,
    Ssh,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HostKeyChecking {
    Strict,
    AcceptNew,
    Off,
}

/// Options shared by playbook runs and ad hoc tasks.
#[derive(Debug, Args, Clone)]
pub struct CommonArgs {
    /// Inventory: a file, a directory, or a comma list `a,b,` (repeatable).
    #[arg(short = 'i', long = "inventory", value_name = "INVENTORY")]
    pub inventory: Vec<String>,
    /// Limit the run to hosts matching this pattern.
    #[arg(short = 'l', long = "limit", value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Extra variables: `k=v`, JSON/YAML, or `@file` (repeatable; highest precedence).
    #[arg(short = 'e', long = "extra-vars", value_name = "VARS")]
    pub extra_vars: Vec<String>,
    /// How many (task, host) nodes run at once.
    #[arg(short = 'f', long = "forks", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub forks: u32,
    /// Don't change anything; report what would change.
    #[arg(short = 'C', long = "check")]
    pub check: bool,
    /// Show the differences of changed files.
    #[arg(short = 'D', long = "diff")]
    pub diff: bool,
    /// Output format.
    #[arg(long = "output", value_enum, default_value_t = Output::Human)]
    pub output: Output,
    /// Answer prompts and confirmations with yes (`pause` goes on).
    #[arg(long = "yes")]
    pub yes: bool,
    /// More output (-v results, -vv…).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Connect as this user.
    #[arg(short = 'u', long = "user", value_name = "USER")]
    pub user: Option<String>,
    /// The private key file to log in with.
    #[arg(long = "private-key", value_name = "FILE")]
    pub private_key: Option<PathBuf>,
    /// Ask for the connection password.
    #[arg(short = 'k', long = "ask-pass")]
    pub ask_pass: bool,
    /// Run tasks with privilege escalation (sudo).
    #[arg(short = 'b', long = "become")]
    pub become_: bool,
    /// The user to become (default root).
    #[arg(long = "become-user", value_name = "USER")]
    pub become_user: Option<String>,
    /// Ask for the become (sudo) password.
    #[arg(short = 'K', long = "ask-become-pass")]
    pub ask_become_pass: bool,
    /// The connection type for every host: `local` runs on this machine,
    /// `ssh` over the pool (as `-e ansible_connection=…`).
    #[arg(short = 'c', long = "connection", value_enum, value_name = "TYPE")]
    pub connection: Option<ConnectionType>,
    /// Stop any task that runs longer than this many seconds (a task's own
    /// `timeout` wins; 0: no limit).
    #[arg(long = "task-timeout", value_name = "SECONDS")]
    pub task_timeout: Option<u64>,
    /// How unknown and changed host keys are treated.
    #[arg(long = "host-key-checking", value_enum, default_value_t = HostKeyChecking::Strict)]
    pub host_key_checking: HostKeyChecking,
}

#[derive(Debug, Args)]
pub struct PlaybookArgs {
    /// The playbooks to run, in order.
    #[arg(value_name = "PLAYBOOK")]
    pub playbooks: Vec<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
    /// Only run tasks with these tags (comma-separated, repeatable).
    #[arg(short = 't', long = "tags", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Skip tasks with these tags.
    #[arg(long = "skip-tags", value_delimiter = ',')]
    pub skip_tags: Vec<String>,
    /// Check the playbooks' syntax and exit.
    #[arg(long = "syntax-check")]
    pub syntax_check: bool,
    /// List the hosts each play would run on and exit.
    #[arg(long = "list-hosts")]
    pub list_hosts: bool,
    /// List the tasks each play would run and exit.
    #[arg(long = "list-tasks")]
    pub list_tasks: bool,
    /// Start at the task with this name.
    #[arg(long = "start-at-task", value_name = "NAME")]
    pub start_at_task: Option<String>,
    /// Print the (task, host) graph as Graphviz DOT and exit.
    #[arg(long = "graph")]
    pub graph: bool,
}

#[derive(Debug, Args)]
pub struct AdhocArgs {
    /// The host pattern.
    pub pattern: String,
    /// The module to run.
    #[arg(short = 'm', long = "module-name", default_value = "command")]
    pub module: String,
    /// The module's arguments: `k=v k2="a b"`, or JSON/YAML.
    #[arg(short = 'a', long = "args", default_value = "")]
    pub args: String,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct InventoryArgs {
    /// Inventory: a file, a directory, or a comma list (repeatable).
    #[arg(short = 'i', long = "inventory")]
    pub inventory: Vec<String>,
    /// Print the whole inventory as JSON.
    #[arg(long = "list", conflicts_with_all = ["host", "graph"])]
    pub list: bool,
    /// Print one host's variables as JSON.
    #[arg(long = "host", value_name = "HOST")]
    pub host: Option<String>,
    /// Print the group tree (optionally from GROUP).
    #[arg(long = "graph", value_name = "GROUP", num_args = 0..=1, default_missing_value = "all")]
    pub graph: Option<String>,
    /// With --graph: show each host's and group's variables.
    #[arg(long = "vars", requires = "graph")]
    pub vars: bool,
    /// Read group_vars/ and host_vars/ beside this directory too (as beside a playbook).
    #[arg(long = "playbook-dir", value_name = "DIR")]
    pub playbook_dir: Option<PathBuf>,
}
