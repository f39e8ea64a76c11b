//! The engine of `doveadm_backup` and `doveadm_sync`: per user, in
//! parallel, with doveadm's exit codes as a policy, a ledger on the control
//! machine, and the refusal to back up over mail the source lacks.
//!
//! Exit codes (LAB-NOTES.md): 0 done; 2 "run again" (repeated, bounded);
//! 75 "something went wrong", told apart by stderr: the user unknown on the
//! remote, divergence damage, and the source's own Dovecot being down fail
//! without a retry; trust problems (host key, login) stop every user; the
//! rest (remote down, remote Dovecot down, network) is retried with
//! backoff; 67 no such user on the source (skipped, said so); 73 the
//! remote cannot store the user's mail (that user fails); 77/78
//! permission/configuration (stop every user).

use super::dovecot::{self, last_lines, MailState, Remote, Side, StateError};
use crate::connection::ConnError;
use crate::module::{Context, Outcome};
use crate::quote::quote;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Backup,
    Sync { one_way: bool },
}

impl Op {
    fn word(self) -> &'static str {
        match self {
            Op::Backup => "backup",
            Op::Sync { .. } => "sync",
        }
    }
    fn module(self) -> &'static str {
        match self {
            Op::Backup => "doveadm_backup",
            Op::Sync { .. } => "doveadm_sync",
        }
    }
}

/// Everything a run needs, from either module's arguments.
pub(super) struct Job {
    pub(super) op: Op,
    pub(super) remote: String,
    pub(super) remote_user: String,
    pub(super) user: Option<String>,
    pub(super) users: Option<Vec<String>>,
    pub(super) parallel: usize,
    pub(super) full: bool,
    pub(super) force: bool,
    /// Backup only: a destination that holds mail the source lacks is
    /// skipped (true) or fails the user (false).
    pub(super) skip_diverged: bool,
    pub(super) retries: u32,
    pub(super) retry_delay: u64,
    pub(super) user_timeout: Option<u64>,
    pub(super) ledger: Option<String>,
    pub(super) fresh: bool,
}

/// How one user ended.
#[derive(Debug, Clone, PartialEq)]
enum Status {
    Done,
    /// Not on the source (67) or diverged with `diverged: skip`.
    Skipped,
    Failed,
    /// Not run: an earlier fatal error stopped the task.
    NotRun,
}

impl Status {
    fn word(&self) -> &'static str {
        match self {
            Status::Done => "done",
            Status::Skipped => "skipped",
            Status::Failed => "failed",
            Status::NotRun => "not run",
        }
    }
}

struct UserResult {
    status: Status,
    changed: bool,
    msg: String,
    data: Map<String, Value>,
}

impl UserResult {
    fn new(status: Status, msg: String) -> UserResult {
        UserResult {
            status,
            changed: false,
            msg,
            data: Map::new(),
        }
    }

    /// Not run (or cut short): not done, so a rerun does it.
    fn not_run(msg: &str) -> UserResult {
        Self::new(Status::NotRun, msg.to_string())
    }
}

/// What doveadm's failure means, from its rc and stderr.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Verdict {
    Again,
    Retry(String),
    FailUser(String),
    NoSuchUser,
    StopAll(String),
}

pub(super) fn classify(rc: i32, stderr: &str, remote: &str, source: &str) -> Verdict {
    let has = |s: &str| stderr.contains(s);
    let tail = last_lines(stderr, 3);
    match rc {
        2 => Verdict::Again,
        67 => Verdict::NoSuchUser,
        77 | 78 => Verdict::StopAll(format!(
            "doveadm on {source} reports a permission or configuration error (rc {rc}): {tail}"
        )),
        _ if has("Host key verification failed") => Verdict::StopAll(format!(
            "{source} does not know {remote}'s host key (Host key verification failed): add it to root's known_hosts on {source} (known_hosts module) first"
        )),
        _ if has("Permission denied (") || has("Too many authentication failures") => {
            Verdict::StopAll(format!(
                "{source} cannot log in to {remote} over ssh ({tail}): authorize {source}'s root key on {remote} (authorized_key) and allow root key login (sshd_config)"
            ))
        }
        _ if has("Remote command returned error 67") => Verdict::FailUser(format!(
            "the user is unknown on {remote} (copy the users file to {remote} first): {tail}"
        )),
        _ if has("already exists locally for a different mail") || has("Couldn't delete mailbox") => {
            Verdict::FailUser(format!(
                "{remote} had mail of its own and doveadm could not reconcile it (the mailbox on {remote} may have lost messages; never back up onto a server that takes mail): {tail}"
            ))
        }
        _ if (has("auth-userdb") || has("auth-master")) && !has("Remote command returned") => {
            Verdict::StopAll(format!(
                "Dovecot's auth service on {source} does not answer (is Dovecot running on {source}? doveadm needs it): {tail}"
            ))
        }
        // Killed from outside (an admin, the OOM killer, a shutdown): not
        // retried behind their back; the ledger keeps the user for a rerun.
        129 | 130 | 137 | 143 => Verdict::FailUser(format!(
            "doveadm was killed on {source} ({}); the user is not done: run again to finish it (the ledger keeps it)",
            match rc {
                129 => "SIGHUP",
                130 => "SIGINT",
                137 => "SIGKILL",
                _ => "SIGTERM",
            }
        )),
        // EX_CANTCREAT: the remote could not store the mail (a file
        // system full or over its quota; Dovecot's own quota does not
        // limit dsync): that user waits for the admin, the others go on.
        73 => Verdict::FailUser(format!(
            "{remote} could not store this user's mail (doveadm 73: disk full or over quota there): {tail}"
        )),
        // A dsync of this user still holds the mailbox's lock: usually the
        // remote's dsync-server of a connection that was lost (its sshd
        // has not noticed yet, and may not for a long time).
        _ if has("for dsyncing") && has("lock held by pid") => Verdict::Retry(format!(
            "another dsync of this user still holds its mailbox lock (pid {}; after a lost connection it is often the remote's old dsync-server, which may linger until its sshd notices: end it, then run again): {tail}",
            lock_holder(stderr).unwrap_or("?")
        )),
        124 => Verdict::Retry(format!("doveadm timed out: {tail}")),
        _ => Verdict::Retry(format!("doveadm {rc}: {tail}")),
    }
}

/// The pid in doveadm's "WRITE lock held by pid N".
fn lock_holder(stderr: &str) -> Option<&str> {
    let rest = stderr.split("lock held by pid ").nth(1)?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

/// The dsync command for one user.
pub(super) fn dsync_command(
    op: Op,
    full: bool,
    user: &str,
    remote: &Remote,
    mux: Option<&str>,
) -> String {
    let mut verb = match op {
        Op::Backup => "backup".to_string(),
        Op::Sync { one_way: true } => "sync -1".to_string(),
        Op::Sync { one_way: false } => "sync".to_string(),
    };
    if full {
        verb.push_str(" -f");
    }
    format!(
        "doveadm -o {} {verb} -u {} {}",
        quote(&remote.dsync_remote_cmd(mux)),
        quote(user),
        quote(&remote.destination())
    )
}

/// The ledger: each user's last result, so a rerun resumes.
struct Ledger {
    path: PathBuf,
    data: Map<String, Value>,
}

impl Ledger {
    fn default_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
            return PathBuf::from(d).join("mailrun");
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
        PathBuf::from(home).join(".local/state/mailrun")
    }

    fn path_for(job: &Job, source: &str) -> PathBuf {
        if let Some(p) = &job.ledger {
            return PathBuf::from(p);
        }
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        Self::default_dir().join(format!(
            "ledger-{}-{}-to-{}.json",
            job.op.word(),
            clean(source),
            clean(&job.remote)
        ))
    }

    fn load(path: PathBuf) -> Result<Ledger, String> {
        let data = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(m)) => m,
                _ => {
                    return Err(format!(
                        "the ledger {} is not valid JSON; move it away to start afresh",
                        path.display()
                    ))
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
            Err(e) => return Err(format!("cannot read the ledger {}: {e}", path.display())),
        };
        Ok(Ledger { path, data })
    }

    fn complete(&self) -> bool {
        self.data
            .get("complete")
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }

    fn done(&self, user: &str) -> bool {
        self.data
            .get("users")
            .and_then(|u| u.get(user))
            .and_then(|u| u.get("status"))
            .and_then(Value::as_str)
            == Some("done")
    }

    fn start(&mut self, job: &Job, source: &str, users: &[String], resume: bool) {
        if !resume {
            self.data = Map::new();
        }
        self.data.insert("op".into(), json!(job.op.word()));
        self.data.insert("source".into(), json!(source));
        self.data.insert("remote".into(), json!(job.remote));
        self.data.insert("complete".into(), json!(false));
        let entry = self.data.entry("users").or_insert_with(|| json!({}));
        if let Value::Object(m) = entry {
            for u in users {
                m.entry(u.clone())
                    .or_insert_with(|| json!({"status": "pending"}));
            }
        }
    }

    fn record(&mut self, user: &str, status: &str, msg: &str) {
        if let Some(Value::Object(m)) = self.data.get_mut("users") {
            m.insert(
                user.to_string(),
                json!({"status": status, "msg": msg, "at": now()}),
            );
        }
    }

    fn finish(&mut self, complete: bool) {
        self.data.insert("complete".into(), json!(complete));
    }

    fn save(&self) -> Result<(), String> {
        let dir = self.path.parent().unwrap_or(std::path::Path::new("."));
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        let text = serde_json::to_vec_pretty(&Value::Object(self.data.clone())).unwrap_or_default();
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, &self.path))
            .map_err(|e| format!("cannot write the ledger {}: {e}", self.path.display()))
    }
}

fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    secs.to_string()
}

/// doveadm puts the user name into the ssh command line it runs for the
/// remote (`dsync-server -u%u`) without quoting, and the remote's shell
/// reads it: a name outside Dovecot's default `auth_username_chars` (plus
/// `+`), or one starting with `-`, is refused rather than run.
fn unsafe_user_name(user: &str) -> Option<String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@' | '+');
    if !user.is_empty() && !user.starts_with('-') && user.chars().all(ok) {
        return None;
    }
    Some(format!(
        "refused: the user name {user:?} has characters outside Dovecot's default \
         auth_username_chars (letters, digits, . - _ @ +) or starts with '-': doveadm would \
         hand it unquoted to the remote's shell through ssh. Copy this user by hand"
    ))
}

/// Why every user stops, once one has said so.
fn stop_reason(stop: &Mutex<Option<String>>) -> Option<String> {
    stop.lock().ok().and_then(|s| s.clone())
}

/// After Ctrl-C: the remote's `doveadm dsync-server` of each cut-short user
/// ends by itself once its peer on the source is gone; wait for that (up
/// to 10 s), then end any left, so that no doveadm outlives the run.
async fn reap_dsync_servers(remote: &Side, users: &[&str]) {
    if users.is_empty() {
        return;
    }
    let list: Vec<String> = users
        .iter()
        .map(|u| quote(&format!("-u{u}")).into_owned())
        .collect();
    let script = format!(
        "pids() {{ for d in /proc/[0-9]*; do a=$(tr '\\0' '\\n' < \"$d/cmdline\" 2>/dev/null) || continue; \
         printf '%s\\n' \"$a\" | grep -qx dsync-server || continue; \
         for u in {}; do printf '%s\\n' \"$a\" | grep -qxF -e \"$u\" && echo \"${{d#/proc/}}\"; done; done; }}\n\
         i=0; while [ $i -lt 50 ] && [ -n \"$(pids)\" ]; do sleep 0.2; i=$((i+1)); done\n\
         p=$(pids); [ -n \"$p\" ] && kill -TERM $p 2>/dev/null && sleep 1\n\
         p=$(pids); [ -n \"$p\" ] && kill -KILL $p 2>/dev/null; true",
        list.join(" ")
    );
    let _ = remote.sh(&script, Some(Duration::from_secs(30))).await;
}

/// Runs the job: the module's whole `run`.
pub(super) async fn run(ctx: &Context, job: Job) -> Result<Outcome, ConnError> {
    let module = job.op.module();
    let source = Side::this(ctx);
    let mut remote = match Remote::resolve(ctx, &job.remote, &job.remote_user) {
        Ok(r) => r,
        Err(e) => return Ok(Outcome::failed(format!("{module}: {e}"))),
    };
    if remote.addr == "localhost" || remote.side.name == ctx.host {
        return Ok(Outcome::failed(format!(
            "{module}: remote '{}' is this host: source and destination must differ",
            job.remote
        )));
    }
    // Both versions first; if they cannot be read (the remote down) or the
    // pair is refused, no user starts and each is reported as not run.
    let version_error = remote.versions(&source).await.err();
    let all = match dovecot::users(&source, job.user.as_deref(), job.users.as_deref()).await {
        Ok(u) => u,
        Err(e) => return Ok(Outcome::failed(format!("{module}: {e}"))),
    };
    let arrow = format!("{} → {} ({})", ctx.host, job.remote, remote.destination());
    if all.is_empty() {
        return Ok(Outcome::ok().msg(format!("{module} {arrow}: no users")));
    }

    // The ledger: users done in an unfinished earlier run are skipped.
    let ledger_path = Ledger::path_for(&job, &ctx.host);
    let mut ledger = match Ledger::load(ledger_path.clone()) {
        Ok(l) => l,
        Err(e) => return Ok(Outcome::failed(format!("{module}: {e}"))),
    };
    let resume = !job.fresh && !ledger.complete();
    let (todo, earlier): (Vec<String>, Vec<String>) = all
        .iter()
        .cloned()
        .partition(|u| !(resume && ledger.done(u)));
    if !ctx.check {
        ledger.start(&job, &ctx.host, &all, resume);
        if let Err(e) = ledger.save() {
            return Ok(Outcome::failed(format!("{module}: {e}")));
        }
    }

    // One ssh connection from this host to the remote, shared by the users.
    let mux = Arc::new(if ctx.check || todo.is_empty() || version_error.is_some() {
        Mux::none()
    } else {
        Mux::open(&source, &remote).await
    });

    let ledger = Arc::new(Mutex::new(ledger));
    let stop: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(version_error));
    let running: Arc<Mutex<BTreeMap<String, ()>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(job.parallel.clamp(1, 8)));
    let job = Arc::new(job);
    let remote = Arc::new(remote);
    let total = todo.len();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, user) in todo.iter().enumerate() {
        let mux = mux.clone();
        let (job, remote, source, gate, stop, running, finished, ledger, progress) = (
            job.clone(),
            remote.clone(),
            source.clone(),
            gate.clone(),
            stop.clone(),
            running.clone(),
            finished.clone(),
            ledger.clone(),
            ctx.progress.clone(),
        );
        let user = user.clone();
        let check = ctx.check;
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.expect("never closed");
            let record = |res: &UserResult| {
                if !check {
                    if let Ok(mut l) = ledger.lock() {
                        l.record(&user, res.status.word(), &res.msg);
                        let _ = l.save();
                    }
                }
            };
            let before_start = if crate::interrupt::requested() {
                Some(UserResult::not_run(crate::interrupt::MSG))
            } else if let Some(why) = unsafe_user_name(&user) {
                Some(UserResult::new(Status::Failed, why))
            } else {
                stop_reason(&stop).map(|why| UserResult::not_run(&format!("not run: {why}")))
            };
            if let Some(res) = before_start {
                record(&res);
                return (i, user, res);
            }
            let show = |running: &Mutex<BTreeMap<String, ()>>| {
                let names: Vec<String> = running
                    .lock()
                    .map(|r| r.keys().cloned().collect())
                    .unwrap_or_default();
                progress.update(&format!(
                    "{}/{total} users done; running: {}",
                    finished.load(Ordering::Relaxed),
                    names.join(", ")
                ));
            };
            if let Ok(mut r) = running.lock() {
                r.insert(user.clone(), ());
            }
            show(&running);
            let mut res = one_user(&job, &source, &remote, &user, check, &stop, &mux).await;
            if crate::interrupt::requested() && res.status == Status::Failed {
                // Cut short by Ctrl-C: not done, so the ledger has it rerun.
                res = UserResult::not_run(&format!("{}: {}", crate::interrupt::MSG, res.msg));
            }
            if let Ok(mut r) = running.lock() {
                r.remove(&user);
            }
            finished.fetch_add(1, Ordering::Relaxed);
            show(&running);
            record(&res);
            (i, user, res)
        });
    }
    let mut results: Vec<Option<(String, UserResult)>> = (0..total).map(|_| None).collect();
    let mut abnormal = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((i, user, r)) => results[i] = Some((user, r)),
            Err(e) => abnormal = Some(e),
        }
    }
    if crate::interrupt::requested() && !ctx.check {
        let cut: Vec<&str> = results
            .iter()
            .flatten()
            .filter(|(_, r)| r.status == Status::NotRun)
            .map(|(u, _)| u.as_str())
            .collect();
        reap_dsync_servers(&remote.side, &cut).await;
    }
    mux.close(&source, &remote).await;
    if let Some(e) = abnormal {
        return Ok(Outcome::failed(format!(
            "{module}: a user's run ended abnormally: {e}"
        )));
    }

    // The outcome: per user, then a summary.
    let mut per_user = Map::new();
    let (mut done, mut failed, mut skipped, mut not_run) = (vec![], vec![], vec![], vec![]);
    let mut changed = false;
    let mut lines = Vec::new();
    for (user, r) in results.into_iter().flatten() {
        changed |= r.changed;
        match r.status {
            Status::Done => done.push(user.clone()),
            Status::Skipped => skipped.push(user.clone()),
            Status::Failed => failed.push(user.clone()),
            Status::NotRun => not_run.push(user.clone()),
        }
        if !r.msg.is_empty() {
            lines.push(format!("  {user}: {} — {}", r.status.word(), r.msg));
        } else {
            lines.push(format!("  {user}: {}", r.status.word()));
        }
        let mut d = r.data;
        d.insert("status".into(), json!(r.status.word()));
        if !r.msg.is_empty() {
            d.insert("msg".into(), json!(r.msg));
        }
        per_user.insert(user, Value::Object(d));
    }
    for user in &earlier {
        per_user.insert(
            user.clone(),
            json!({"status": "done", "msg": "done in an earlier run (ledger)"}),
        );
    }
    let complete = failed.is_empty() && not_run.is_empty();
    if !ctx.check {
        if let Ok(mut l) = ledger.lock() {
            l.finish(complete);
            let _ = l.save();
        }
    }
    let stopped = stop_reason(&stop);
    let verb = if ctx.check { "would run" } else { "ran" };
    let mut head = format!(
        "{module} {arrow}: {verb} {} user(s): {} done, {} skipped, {} failed{}",
        total,
        done.len(),
        skipped.len(),
        failed.len(),
        if not_run.is_empty() {
            String::new()
        } else {
            format!(", {} not run", not_run.len())
        }
    );
    if !earlier.is_empty() {
        head.push_str(&format!(
            "; resumed: {} user(s) done in an earlier run were not run again ({})",
            earlier.len(),
            ledger_path.display()
        ));
    }
    if let Some(why) = &stopped {
        head.push_str(&format!("\nstopped: {why}"));
    }
    let msg = format!("{head}\n{}", lines.join("\n"));
    let mut o = if complete {
        if changed {
            Outcome::changed()
        } else {
            Outcome::ok()
        }
    } else {
        let mut o = Outcome::failed(msg.clone());
        o.changed = changed;
        o
    };
    o.msg = Some(msg);
    Ok(o.with("users", Value::Object(per_user))
        .with("done", json!(done))
        .with("failed_users", json!(failed))
        .with("skipped_users", json!(skipped))
        .with("not_run", json!(not_run))
        .with("direction", json!(arrow))
        .with("ledger", json!(ledger_path.display().to_string())))
}

fn counts_json(st: &MailState) -> Value {
    let mut v = st.summary();
    if let Value::Object(m) = &mut v {
        m.insert(
            "per_mailbox".into(),
            serde_json::to_value(st.counts()).unwrap_or(Value::Null),
        );
    }
    v
}

/// The task's shared ssh connection to the remote, if it could be opened
/// and the remote lets sessions share it.
struct Mux {
    path: Option<String>,
    ok: std::sync::atomic::AtomicBool,
}

impl Mux {
    fn none() -> Mux {
        Mux {
            path: None,
            ok: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Starts the shared connection on the source; none if it cannot.
    async fn open(source: &Side, remote: &Remote) -> Mux {
        let path = source
            .sh(&remote.mux_open_script(), Some(Duration::from_secs(30)))
            .await
            .ok()
            .filter(|o| o.rc == 0)
            .map(|o| o.stdout_str().trim().to_string())
            .filter(|p| p.starts_with("/tmp/mailrun-dsync.") && !p.contains(char::is_whitespace));
        Mux {
            path,
            ..Mux::none()
        }
    }

    /// Ends the shared connection and removes its directory.
    async fn close(&self, source: &Side, remote: &Remote) {
        if let Some(path) = &self.path {
            let _ = source
                .sh(
                    &remote.mux_close_script(path),
                    Some(Duration::from_secs(30)),
                )
                .await;
        }
    }

    fn current(&self) -> Option<&str> {
        self.path
            .as_deref()
            .filter(|_| self.ok.load(Ordering::Relaxed))
    }
}

/// ssh's words when the shared connection cannot take another session (the
/// remote's MaxSessions): the users go on with their own connections.
fn mux_refused(stderr: &str) -> bool {
    stderr.contains("mux_client_request_session") || stderr.contains("Session open refused")
}

/// Backup or sync of one user, with the exit-code policy.
async fn one_user(
    job: &Job,
    source: &Side,
    remote: &Remote,
    user: &str,
    check: bool,
    stop: &Mutex<Option<String>>,
    mux: &Mux,
) -> UserResult {
    let timeout = job.user_timeout.map(Duration::from_secs);
    let stop_all = |why: String| {
        if let Ok(mut s) = stop.lock() {
            s.get_or_insert(why);
        }
    };
    let fail = |msg: String, data: Map<String, Value>| UserResult {
        data,
        ..UserResult::new(Status::Failed, msg)
    };
    let mut data = Map::new();
    // Both sides read at once (the remote's retried like dsync itself: it
    // may be down briefly).
    let (src_before, dst_before) = tokio::join!(
        dovecot::state(source, user, false, true, timeout),
        remote_state(job, remote, user, timeout)
    );
    let src_before = match src_before {
        Ok(s) => s,
        Err(StateError::UnknownUser) => {
            return UserResult {
                status: Status::Skipped,
                changed: false,
                msg: format!("no such user on {} (doveadm 67)", source.name),
                data,
            }
        }
        Err(StateError::Failed(e)) => {
            if e.contains("auth-userdb") || e.contains("auth-master") {
                stop_all(format!(
                    "Dovecot's auth service on {} does not answer: {e}",
                    source.name
                ));
            }
            return fail(
                format!("cannot read the mail on {}: {e}", source.name),
                data,
            );
        }
    };
    data.insert("source_before".into(), counts_json(&src_before));
    let dst_before = match dst_before {
        Ok(s) => s,
        // Check mode: the users file may be copied by an earlier task
        // that did not run either.
        Err(StateError::UnknownUser) if check => {
            return UserResult {
                status: Status::Done,
                changed: true,
                msg: format!(
                    "{} mailboxes, {} messages on {}; the user is not on {} yet: all of it to copy",
                    src_before.mailboxes.len(),
                    src_before.messages.len(),
                    source.name,
                    remote.side.name
                ),
                data,
            };
        }
        Err(StateError::UnknownUser) => {
            return fail(
                format!(
                    "the user is unknown on {} (copy the users file to {} first)",
                    remote.side.name, remote.side.name
                ),
                data,
            )
        }
        Err(StateError::Failed(e)) => {
            return fail(
                format!("cannot read the mail on {}: {e}", remote.side.name),
                data,
            )
        }
    };
    data.insert("remote_before".into(), counts_json(&dst_before));

    if job.op == Op::Backup {
        let lost = dst_before.lost_by_backup_from(&src_before);
        if !lost.is_empty() && !job.force {
            let what = format!(
                "{} holds mail {} lacks ({}); a backup would delete it. Use doveadm_sync (one-way keeps both), or force: true to mirror anyway",
                remote.side.name,
                source.name,
                lost.join(", ")
            );
            return if job.skip_diverged {
                UserResult {
                    status: Status::Skipped,
                    changed: false,
                    msg: format!("not backed up: {what}"),
                    data,
                }
            } else {
                fail(format!("refused: {what}"), data)
            };
        }
    }

    if check {
        let missing = dovecot::missing_on(&src_before, &dst_before, false).len();
        let would_delete = if job.op == Op::Backup {
            dst_before.lost_by_backup_from(&src_before).len()
        } else {
            0
        };
        let msg = format!(
            "{} mailboxes, {} messages on {}; {} on {}; {missing} item(s) to copy{}",
            src_before.mailboxes.len(),
            src_before.messages.len(),
            source.name,
            dst_before.messages.len(),
            remote.side.name,
            if would_delete > 0 {
                format!(", {would_delete} to delete (force)")
            } else {
                String::new()
            }
        );
        return UserResult {
            status: Status::Done,
            changed: missing > 0 || would_delete > 0,
            msg,
            data,
        };
    }

    let mut reruns = 0u32;
    let mut retries = 0u32;
    loop {
        if crate::interrupt::requested() {
            return UserResult {
                data,
                ..UserResult::not_run(crate::interrupt::MSG)
            };
        }
        if let Some(why) = stop_reason(stop) {
            return UserResult {
                data,
                ..UserResult::not_run(&format!("not run: {why}"))
            };
        }
        let cmd = dsync_command(job.op, job.full, user, remote, mux.current());
        let out = match source.sh(&cmd, timeout).await {
            Ok(o) => o,
            Err(ConnError::Timeout(t)) => crate::connection::ExecOutput {
                rc: 124,
                stdout: vec![],
                stderr: format!("killed after {} s (user_timeout)", t.as_secs()).into_bytes(),
            },
            Err(ConnError::Interrupted) => {
                return UserResult {
                    data,
                    ..UserResult::not_run(crate::interrupt::MSG)
                }
            }
            Err(e) => return fail(format!("lost the connection to {}: {e}", source.name), data),
        };
        if out.rc == 0 {
            break;
        }
        let stderr = out.stderr_str();
        if mux.current().is_some() && mux_refused(&stderr) {
            mux.ok.store(false, Ordering::Relaxed);
            continue;
        }
        match classify(out.rc, &stderr, &remote.side.name, &source.name) {
            Verdict::Again if reruns < 5 => reruns += 1,
            Verdict::Again => {
                return fail(
                    "doveadm kept asking for another run (rc 2, 5 times)".to_string(),
                    data,
                )
            }
            Verdict::NoSuchUser => {
                return UserResult {
                    status: Status::Skipped,
                    changed: false,
                    msg: format!("no such user on {} (doveadm 67)", source.name),
                    data,
                }
            }
            Verdict::StopAll(why) => {
                stop_all(why.clone());
                return fail(why, data);
            }
            Verdict::FailUser(why) => return fail(why, data),
            Verdict::Retry(why) => {
                if retries >= job.retries {
                    return fail(format!("{why} (after {} attempt(s))", retries + 1), data);
                }
                retries += 1;
                tokio::select! {
                    _ = tokio::time::sleep(backoff(job.retry_delay, retries)) => {}
                    _ = crate::interrupt::wait() => {}
                }
            }
        }
    }

    let after = |side: &Side| {
        let side = side.clone();
        let user = user.to_string();
        // Without the Sieve texts (a doveadm run per script): what changed
        // in them is known from before.
        async move { dovecot::state(&side, &user, false, false, timeout).await }
    };
    // Only a two-way sync changes the source: after a backup or a one-way
    // sync its state is the one read before.
    let (src_after, dst_after) = if job.op == (Op::Sync { one_way: false }) {
        tokio::join!(after(source), after(&remote.side))
    } else {
        (Ok(src_before.clone()), after(&remote.side).await)
    };
    let mut changed = true;
    if let (Ok(s), Ok(d)) = (&src_after, &dst_after) {
        data.insert("source_after".into(), counts_json(s));
        data.insert("remote_after".into(), counts_json(d));
        changed = !d.same_apart_from_sieve_text(&dst_before)
            || !s.same_apart_from_sieve_text(&src_before)
            || src_before.sieve_texts_differ(&dst_before);
    }
    let summary = match &dst_after {
        Ok(d) if !changed => format!(
            "unchanged: {} mailboxes, {} messages on {}",
            d.mailboxes.len(),
            d.messages.len(),
            remote.side.name
        ),
        Ok(d) => format!(
            "{} mailboxes, {} messages on {} (was {})",
            d.mailboxes.len(),
            d.messages.len(),
            remote.side.name,
            dst_before.messages.len()
        ),
        Err(_) => String::new(),
    };
    data.insert("reruns".into(), json!(reruns));
    data.insert("retries".into(), json!(retries));
    UserResult {
        status: Status::Done,
        changed,
        msg: summary,
        data,
    }
}

/// The remote's state of a user, retried like dsync itself (it may be down
/// briefly); an unknown user is looked up once more after 1.5 s, since
/// Dovecot re-reads a changed passwd-file at most once a second and a users
/// file copied a moment ago may not be seen yet.
async fn remote_state(
    job: &Job,
    remote: &Remote,
    user: &str,
    timeout: Option<Duration>,
) -> Result<MailState, StateError> {
    let mut attempt = 0u32;
    let mut looked_again = false;
    loop {
        match dovecot::state(&remote.side, user, false, true, timeout).await {
            Err(StateError::UnknownUser) if !looked_again => {
                looked_again = true;
                tokio::time::sleep(Duration::from_millis(1500)).await;
            }
            Err(StateError::Failed(_)) if attempt < job.retries => {
                attempt += 1;
                tokio::time::sleep(backoff(job.retry_delay, attempt)).await;
            }
            other => return other,
        }
    }
}

fn backoff(base: u64, attempt: u32) -> Duration {
    Duration::from_secs(base.saturating_mul(1 << attempt.saturating_sub(1).min(5)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_a_policy() {
        let c = |rc, e: &str| classify(rc, e, "new", "old");
        assert_eq!(c(2, ""), Verdict::Again);
        assert_eq!(c(67, "User doesn't exist"), Verdict::NoSuchUser);
        assert!(matches!(c(77, ""), Verdict::StopAll(_)));
        assert!(matches!(c(78, ""), Verdict::StopAll(_)));
        assert!(matches!(
            c(
                75,
                "Host key verification failed.\nRemote command returned error 255"
            ),
            Verdict::StopAll(_)
        ));
        assert!(matches!(
            c(75, "Error: Remote command returned error 67: ssh …"),
            Verdict::FailUser(m) if m.contains("unknown on new")
        ));
        assert!(matches!(
            c(75, "Warning: Deleting mailbox 'INBOX': UID=4 already exists locally for a different mail"),
            Verdict::FailUser(_)
        ));
        // Dovecot down on the remote: temporary; on the source: stop.
        assert!(matches!(
            c(75, "auth-master: userdb lookup(a): connect(/run/dovecot/auth-userdb) failed: Connection refused\nRemote command returned error 75"),
            Verdict::Retry(_)
        ));
        assert!(matches!(
            c(75, "doveadm(a)<1><>: Error: auth-master: userdb lookup(a): connect(/run/dovecot/auth-userdb) failed: Connection refused"),
            Verdict::StopAll(_)
        ));
        assert!(matches!(
            c(75, "ssh: connect to host 10.0.0.9 port 22: No route to host\nRemote command returned error 255"),
            Verdict::Retry(_)
        ));
        assert!(matches!(c(124, ""), Verdict::Retry(_)));
        assert!(
            matches!(c(73, "Quota exceeded"), Verdict::FailUser(m) if m.contains("over quota"))
        );
        assert!(matches!(
            c(75, "Error: Failed to lock mailbox Archive for dsyncing: file_create_locked(/x/.dovecot-box-sync.lock) failed: fcntl(…) locking failed: Timed out after 30 seconds (WRITE lock held by pid 127)"),
            Verdict::Retry(m) if m.contains("pid 127") && m.contains("still holds its mailbox lock")
        ));
        // Killed from outside: the user waits for a rerun, not a retry.
        assert!(matches!(c(137, ""), Verdict::FailUser(m) if m.contains("SIGKILL")));
        assert!(matches!(c(143, ""), Verdict::FailUser(m) if m.contains("SIGTERM")));
    }

    #[test]
    fn user_names_that_a_remote_shell_would_read_are_refused() {
        for ok in [
            "ann@ex.org",
            "first.last+tag@mail.example.jp",
            "a-b_c@d",
            "user",
        ] {
            assert_eq!(unsafe_user_name(ok), None, "{ok}");
        }
        for bad in [
            "a;touch /tmp/pwned@ex.org",
            "$(id)@ex.org",
            "`id`@x",
            "a b@x",
            "a'b@x",
            "-oProxyCommand=x",
            "a\nb",
            "a|b",
            "%{home}",
            "",
            "ü@x",
        ] {
            assert!(unsafe_user_name(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn backoff_doubles() {
        assert_eq!(backoff(2, 1), Duration::from_secs(2));
        assert_eq!(backoff(2, 2), Duration::from_secs(4));
        assert_eq!(backoff(2, 3), Duration::from_secs(8));
    }
}
