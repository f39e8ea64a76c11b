//! `doveadm_backup`: makes `remote` an exact mirror of this host's mail
//! (mailboxes, messages, flags, Sieve scripts) per user, with `doveadm
//! backup` run here; refuses when the remote holds mail this host lacks.

use super::args;
use super::dsync::{self, Job, Op};
use crate::connection::ConnError;
use crate::module::{ArgError, ArgSpec, Context, Module, ModuleDoc, Outcome};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

pub struct DoveadmBackup;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Params {
    pub(super) remote: String,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    pub(super) remote_user: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    pub(super) user: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string_list_lenient")]
    pub(super) users: Option<Vec<String>>,
    #[serde(default = "four", deserialize_with = "args::int_lenient")]
    pub(super) parallel: usize,
    #[serde(default, deserialize_with = "args::bool_lenient")]
    pub(super) full: bool,
    #[serde(default, deserialize_with = "args::bool_lenient")]
    force: bool,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    diverged: Option<String>,
    #[serde(default = "two", deserialize_with = "args::int_lenient")]
    pub(super) retries: u32,
    #[serde(default = "two_u64", deserialize_with = "args::int_lenient")]
    pub(super) retry_delay: u64,
    #[serde(default, deserialize_with = "args::opt_int_lenient")]
    pub(super) user_timeout: Option<u64>,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    pub(super) ledger: Option<String>,
    #[serde(default, deserialize_with = "args::bool_lenient")]
    pub(super) fresh: bool,
}

pub(super) fn four() -> usize {
    4
}
pub(super) fn two() -> u32 {
    2
}
pub(super) fn two_u64() -> u64 {
    2
}

/// The arguments both dsync modules take (after `remote`).
pub(super) fn common_args() -> Vec<ArgSpec> {
    vec![
        ArgSpec {
            name: "remote",
            kind: "string",
            required: true,
            default: None,
            description: "The other server: an inventory host (its ansible_host and ansible_port are used, and the control machine reads its mail for the before/after counts) or an address this host's ssh reaches.",
        },
        ArgSpec {
            name: "remote_user",
            kind: "string",
            required: false,
            default: Some("root"),
            description: "Who this host's ssh logs in as on the remote (doveadm dsync-server runs there as that user). The ssh never prompts (BatchMode=yes): the remote's host key must be in this host's known_hosts and this host's key authorized there.",
        },
        ArgSpec {
            name: "user",
            kind: "string",
            required: false,
            default: None,
            description: "One user (as the userdb knows them, e.g. alice@example.org).",
        },
        ArgSpec {
            name: "users",
            kind: "list",
            required: false,
            default: None,
            description: "Several users. Without user and users: every user of this host's userdb (`doveadm user '*'`, what -A iterates).",
        },
        ArgSpec {
            name: "parallel",
            kind: "int",
            required: false,
            default: Some("4"),
            description: "Users transferred at a time (1 to 8).",
        },
        ArgSpec {
            name: "full",
            kind: "bool",
            required: false,
            default: Some("false"),
            description: "A full pass (-f): compare every message instead of trusting mailbox summaries (dsync otherwise skips a mailbox whose counters match, even when the messages differ). Use it for the final pass.",
        },
        ArgSpec {
            name: "retries",
            kind: "int",
            required: false,
            default: Some("2"),
            description: "Retries of a user after a temporary failure (doveadm 75: remote down, its Dovecot down, network), with doubling delays.",
        },
        ArgSpec {
            name: "retry_delay",
            kind: "int",
            required: false,
            default: Some("2"),
            description: "Seconds before the first retry (then doubled).",
        },
        ArgSpec {
            name: "user_timeout",
            kind: "int",
            required: false,
            default: None,
            description: "Seconds one user's doveadm may take; it is then killed (on the host) and retried as a temporary failure.",
        },
        ArgSpec {
            name: "ledger",
            kind: "path",
            required: false,
            default: None,
            description: "The ledger file on the control machine (default ~/.local/state/mailrun/ledger-OP-HOST-to-REMOTE.json, or under $XDG_STATE_HOME). It records each user's last result: a rerun after a failure or an interruption runs only the users not done; once every user is done the next run starts afresh.",
        },
        ArgSpec {
            name: "fresh",
            kind: "bool",
            required: false,
            default: Some("false"),
            description: "Ignore an unfinished ledger and run every user.",
        },
    ]
}

pub(super) fn check_users(
    module: &str,
    parallel: usize,
    diverged: Option<&str>,
) -> Result<(), ArgError> {
    if !(1..=8).contains(&parallel) {
        return Err(ArgError {
            arg: Some("parallel".into()),
            msg: format!("{module}: parallel must be between 1 and 8, got {parallel}"),
            help: None,
        });
    }
    if let Some(d) = diverged {
        if d != "fail" && d != "skip" {
            return Err(ArgError {
                arg: Some("diverged".into()),
                msg: format!("{module}: diverged must be 'fail' or 'skip', got '{d}'"),
                help: None,
            });
        }
    }
    Ok(())
}

fn parse_params(args: &Value) -> Result<Params, ArgError> {
    let p: Params = args::typed("doveadm_backup", args)?;
    check_users("doveadm_backup", p.parallel, p.diverged.as_deref())?;
    Ok(p)
}

#[async_trait]
impl Module for DoveadmBackup {
    fn doc(&self) -> ModuleDoc {
        let mut args = common_args();
        args.push(ArgSpec {
            name: "force",
            kind: "bool",
            required: false,
            default: Some("false"),
            description: "Back up even when the remote holds messages or Sieve scripts this host lacks (they are deleted there). Without it such a user is refused: a backup onto a server that already takes mail destroys mail.",
        });
        args.push(ArgSpec {
            name: "diverged",
            kind: "fail|skip",
            required: false,
            default: Some("fail"),
            description: "What a refused user counts as: a failure, or skipped with the reason (for a rerun of a migration after the remote began taking mail; doveadm_sync then carries the changes).",
        });
        ModuleDoc {
            name: "doveadm_backup",
            description: "Mirrors every user's mail, folders, flags and Sieve scripts from this host to `remote` with `doveadm backup`, per user and in parallel. doveadm's exit codes are a policy (0 done, 2 again, 75 retried or told apart by its stderr, 67 skipped, 73 that user fails (the remote cannot store it), 77/78 stop; killed by a signal: that user fails, no retry), a ledger lets a rerun resume (Ctrl-C records the unfinished users), a user whose remote mailbox holds mail this host lacks is refused, and so is a user name outside Dovecot's default auth_username_chars (plus +) or starting with '-' (doveadm hands it unquoted to the remote's shell). The users' dsyncs share one ssh connection to the remote (an OpenSSH ControlMaster the task starts and ends). Dovecot 2.3 and 2.4 on either side: both versions are read first (a version outside 2.3-2.4 is refused before anything is touched) and the remote's `doveadm dsync-server` is called as that version takes it (-U for 2.3 only). Results: per user, mailboxes and messages on both sides before and after. Runs on the source, as root (become).",
            args,
            check_mode: true,
            example: "- name: Copy all mail to the new server\n  doveadm_backup:\n    remote: new.example.org\n    parallel: 4\n  become: true\n",
            free_form: None,
        }
    }

    fn parse(&self, args: &Value) -> Result<(), ArgError> {
        parse_params(args).map(|_| ())
    }

    async fn run(&self, ctx: &Context, args: Value) -> Result<Outcome, ConnError> {
        let p = match parse_params(&args) {
            Ok(p) => p,
            Err(e) => return Ok(super::arg_failure(e)),
        };
        let job = Job {
            op: Op::Backup,
            remote: p.remote,
            remote_user: p.remote_user.unwrap_or_else(|| "root".into()),
            user: p.user,
            users: p.users,
            parallel: p.parallel,
            full: p.full,
            force: p.force,
            skip_diverged: p.diverged.as_deref() == Some("skip"),
            retries: p.retries,
            retry_delay: p.retry_delay,
            user_timeout: p.user_timeout,
            ledger: p.ledger,
            fresh: p.fresh,
        };
        dsync::run(ctx, job).await
    }
}
