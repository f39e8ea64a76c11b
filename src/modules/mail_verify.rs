//! `mail_verify`: the migration's proof. Per user and mailbox, every message
//! here (by GUID, else Message-ID) must be on `remote`, with its flags,
//! and every Sieve script with the same text and the same active one.

use super::args;
use super::dovecot::{self, Remote, Side, StateError};
use crate::connection::ConnError;
use crate::module::{ArgError, ArgSpec, Context, Module, ModuleDoc, Outcome};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub struct MailVerify;

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
    #[serde(
        default = "super::command::yes",
        deserialize_with = "args::bool_lenient"
    )]
    flags: bool,
    #[serde(
        default = "super::command::yes",
        deserialize_with = "args::bool_lenient"
    )]
    sieve: bool,
    #[serde(
        default = "super::command::yes",
        deserialize_with = "args::bool_lenient"
    )]
    sieve_compile: bool,
    #[serde(
        default = "super::doveadm_backup::four",
        deserialize_with = "args::int_lenient"
    )]
    parallel: usize,
}

fn parse_params(args: &Value) -> Result<Params, ArgError> {
    let p: Params = args::typed("mail_verify", args)?;
    super::doveadm_backup::check_users("mail_verify", p.parallel, None)?;
    Ok(p)
}

/// Missing items shown per user before "and N more".
const SHOWN: usize = 20;

#[async_trait]
impl Module for MailVerify {
    fn doc(&self) -> ModuleDoc {
        ModuleDoc {
            name: "mail_verify",
            description: "Proves that `remote` holds all of this host's mail, per user and mailbox. It compares message counts and GUIDs (a message whose GUID differs is matched by Message-ID in the same mailbox), flags, and the Sieve scripts with their text and which one is active, and compiles every Sieve script on the remote (its Pigeonhole may lack extensions this host has). Fails naming every missing mailbox, message and script, and every script that does not compile there. Mail only the remote has is fine. Changes nothing (runs in check mode too).",
            args: vec![
                ArgSpec {
                    name: "remote",
                    kind: "string",
                    required: true,
                    default: None,
                    description: "The other server: an inventory host (read over the control machine's own connection) or an address this host's ssh reaches.",
                },
                ArgSpec {
                    name: "remote_user",
                    kind: "string",
                    required: false,
                    default: Some("root"),
                    description: "Who this host's ssh logs in as, for a remote outside the inventory.",
                },
                ArgSpec {
                    name: "user",
                    kind: "string",
                    required: false,
                    default: None,
                    description: "One user.",
                },
                ArgSpec {
                    name: "users",
                    kind: "list",
                    required: false,
                    default: None,
                    description: "Several users; without user and users, every user of this host's userdb.",
                },
                ArgSpec {
                    name: "flags",
                    kind: "bool",
                    required: false,
                    default: Some("true"),
                    description: "Compare flags too: every flag a message has here must be on the remote (flags set there since are fine; \\Recent ignored).",
                },
                ArgSpec {
                    name: "sieve",
                    kind: "bool",
                    required: false,
                    default: Some("true"),
                    description: "Compare Sieve scripts (text and which is active).",
                },
                ArgSpec {
                    name: "sieve_compile",
                    kind: "bool",
                    required: false,
                    default: Some("true"),
                    description: "Compile every Sieve script on the remote with its own sievec (Pigeonhole 2.4 dropped the notify, imapflags and vnd.dovecot.duplicate extensions): a script that no longer compiles there is named, with the extension it uses, and fails the user, instead of being found at delivery.",
                },
                ArgSpec {
                    name: "parallel",
                    kind: "int",
                    required: false,
                    default: Some("4"),
                    description: "Users checked at a time (1 to 8).",
                },
            ],
            check_mode: true,
            example: "- name: Nothing was lost\n  mail_verify:\n    remote: new.example.org\n  become: true\n",
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
        let login = p.remote_user.unwrap_or_else(|| "root".into());
        let mut remote = match Remote::resolve(ctx, &p.remote, &login) {
            Ok(r) => r,
            Err(e) => return Ok(Outcome::failed(format!("mail_verify: {e}"))),
        };
        let here = Side::this(ctx);
        if let Err(e) = remote.versions(&here).await {
            return Ok(Outcome::failed(format!("mail_verify: {e}")));
        }
        let users = match dovecot::users(&here, p.user.as_deref(), p.users.as_deref()).await {
            Ok(u) => u,
            Err(e) => return Ok(Outcome::failed(format!("mail_verify: {e}"))),
        };
        let gate = Arc::new(tokio::sync::Semaphore::new(p.parallel));
        let remote_side = Arc::new(remote.side);
        let mut tasks = tokio::task::JoinSet::new();
        for (i, user) in users.iter().enumerate() {
            let (gate, here, there, user) = (
                gate.clone(),
                here.clone(),
                remote_side.clone(),
                user.clone(),
            );
            let (flags, sieve, compile) = (p.flags, p.sieve, p.sieve && p.sieve_compile);
            tasks.spawn(async move {
                let _permit = gate.acquire_owned().await.expect("never closed");
                let (a, b) = tokio::join!(
                    dovecot::state(&here, &user, true, true, None),
                    dovecot::state(&there, &user, true, true, None)
                );
                // Every script on the remote must compile there.
                let scripts: Vec<String> = match &b {
                    Ok(st) if compile => st
                        .sieve
                        .iter()
                        .flatten()
                        .map(|s| s.name.clone())
                        .collect(),
                    _ => Vec::new(),
                };
                let mut verdict = verify_one(a, b, &here.name, &there.name, flags, sieve);
                if !scripts.is_empty() {
                    let bad = match dovecot::sieve_compile(&there, &user, &scripts).await {
                        Ok(bad) => bad,
                        Err(e) => vec![e],
                    };
                    if !bad.is_empty() {
                        let mut all = verdict.err().unwrap_or_default();
                        all.extend(bad.into_iter().map(|b| format!("{b} on {}", there.name)));
                        verdict = Err(all);
                    }
                }
                (i, user, verdict)
            });
        }
        let mut results: Vec<Option<(String, Result<Value, Vec<String>>)>> =
            (0..users.len()).map(|_| None).collect();
        let mut done = 0;
        while let Some(j) = tasks.join_next().await {
            match j {
                Ok((i, user, r)) => {
                    done += 1;
                    ctx.progress
                        .update(&format!("{done}/{} users verified ({user})", users.len()));
                    results[i] = Some((user, r));
                }
                Err(e) => return Ok(Outcome::failed(format!("mail_verify: {e}"))),
            }
        }
        let mut per_user = Map::new();
        let mut problems = Vec::new();
        let mut lines = Vec::new();
        let (mut messages, mut mailboxes) = (0u64, 0u64);
        for (user, r) in results.into_iter().flatten() {
            match r {
                Ok(v) => {
                    messages += v["messages"].as_u64().unwrap_or(0);
                    mailboxes += v["mailboxes"].as_u64().unwrap_or(0);
                    lines.push(format!(
                        "  {user}: ok ({} mailboxes, {} messages, {} Sieve scripts)",
                        v["mailboxes"], v["messages"], v["sieve_scripts"]
                    ));
                    per_user.insert(user, v);
                }
                Err(missing) => {
                    let mut shown: Vec<String> = missing.iter().take(SHOWN).cloned().collect();
                    if missing.len() > SHOWN {
                        shown.push(format!("and {} more", missing.len() - SHOWN));
                    }
                    lines.push(format!("  {user}: {}", shown.join("; ")));
                    problems.push(user.clone());
                    per_user.insert(user, json!({"ok": false, "problems": missing}));
                }
            }
        }
        let head = if problems.is_empty() {
            format!(
                "{} has all of {}'s mail: {} user(s), {mailboxes} mailboxes, {messages} messages",
                p.remote,
                ctx.host,
                users.len()
            )
        } else {
            format!(
                "{} lacks mail of {} of {} user(s) on {}",
                p.remote,
                problems.len(),
                users.len(),
                ctx.host
            )
        };
        let msg = format!("{head}\n{}", lines.join("\n"));
        let o = if problems.is_empty() {
            Outcome::ok().msg(msg)
        } else {
            Outcome::failed(msg)
        };
        Ok(o.with("users", Value::Object(per_user))
            .with("failed_users", json!(problems)))
    }
}

/// One user's verdict: counts, or the list of what is missing.
fn verify_one(
    here: Result<dovecot::MailState, StateError>,
    there: Result<dovecot::MailState, StateError>,
    here_name: &str,
    there_name: &str,
    flags: bool,
    sieve: bool,
) -> Result<Value, Vec<String>> {
    let here = match here {
        Ok(s) => s,
        Err(StateError::UnknownUser) => return Err(vec![format!("no such user on {here_name}")]),
        Err(StateError::Failed(e)) => return Err(vec![format!("cannot read {here_name}: {e}")]),
    };
    let mut there = match there {
        Ok(s) => s,
        Err(StateError::UnknownUser) => {
            return Err(vec![format!("the user is unknown on {there_name}")])
        }
        Err(StateError::Failed(e)) => return Err(vec![format!("cannot read {there_name}: {e}")]),
    };
    let mut here = here;
    if !sieve {
        here.sieve = None;
        there.sieve = None;
    }
    let missing: Vec<String> = dovecot::missing_on(&here, &there, flags)
        .into_iter()
        .map(|m| format!("{m} on {there_name}"))
        .collect();
    if !missing.is_empty() {
        return Err(missing);
    }
    let mut v = here.summary();
    if let Value::Object(m) = &mut v {
        m.insert("ok".into(), json!(true));
        m.insert("remote_messages".into(), json!(there.messages.len()));
        m.insert(
            "per_mailbox".into(),
            serde_json::to_value(here.counts()).unwrap_or(Value::Null),
        );
    }
    Ok(v)
}
