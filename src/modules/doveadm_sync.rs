//! `doveadm_sync`: carries this host's mail changes to `remote` with
//! `doveadm sync`, one-way (`-1`) by default: never deletes on the remote
//! what only the remote has. The delta pass of a migration.

use super::args;
use super::doveadm_backup::{check_users, common_args, four, two, two_u64};
use super::dsync::{self, Job, Op};
use crate::connection::ConnError;
use crate::module::{ArgError, ArgSpec, Context, Module, ModuleDoc, Outcome};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

pub struct DoveadmSync;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    remote: String,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    remote_user: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    user: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string_list_lenient")]
    users: Option<Vec<String>>,
    #[serde(default = "four", deserialize_with = "args::int_lenient")]
    parallel: usize,
    #[serde(default, deserialize_with = "args::bool_lenient")]
    full: bool,
    #[serde(
        default = "super::command::yes",
        deserialize_with = "args::bool_lenient"
    )]
    one_way: bool,
    #[serde(default = "two", deserialize_with = "args::int_lenient")]
    retries: u32,
    #[serde(default = "two_u64", deserialize_with = "args::int_lenient")]
    retry_delay: u64,
    #[serde(default, deserialize_with = "args::opt_int_lenient")]
    user_timeout: Option<u64>,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    ledger: Option<String>,
    #[serde(default, deserialize_with = "args::bool_lenient")]
    fresh: bool,
}

fn parse_params(args: &Value) -> Result<Params, ArgError> {
    let p: Params = args::typed("doveadm_sync", args)?;
    check_users("doveadm_sync", p.parallel, None)?;
    Ok(p)
}

#[async_trait]
impl Module for DoveadmSync {
    fn doc(&self) -> ModuleDoc {
        let mut args = common_args();
        args.push(ArgSpec {
            name: "one_way",
            kind: "bool",
            required: false,
            default: Some("true"),
            description: "`doveadm sync -1`: only this host's changes go to the remote, nothing is deleted there that only the remote has (conflicting UIDs are renumbered on the remote). false = two-way sync (changes both sides).",
        });
        ModuleDoc {
            name: "doveadm_sync",
            description: "Carries every user's mail changes from this host to `remote` with `doveadm sync`, one-way (-1) by default: the delta pass of a migration. `full: true` adds -f and compares every message. Same users, parallelism, shared ssh connection, Dovecot 2.3/2.4 handling, exit-code policy, ledger and per-user results as doveadm_backup. Runs on the source, as root (become).",
            args,
            check_mode: true,
            example: "- name: Final one-way full pass\n  doveadm_sync:\n    remote: new.example.org\n    full: true\n  become: true\n",
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
            op: Op::Sync { one_way: p.one_way },
            remote: p.remote,
            remote_user: p.remote_user.unwrap_or_else(|| "root".into()),
            user: p.user,
            users: p.users,
            parallel: p.parallel,
            full: p.full,
            force: false,
            skip_diverged: false,
            retries: p.retries,
            retry_delay: p.retry_delay,
            user_timeout: p.user_timeout,
            ledger: p.ledger,
            fresh: p.fresh,
        };
        dsync::run(ctx, job).await
    }
}
