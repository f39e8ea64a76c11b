//! The SSH connection pool on russh: one authenticated session per host and
//! user, opened on first use and shared by every task over many channels.
//!
//! - Channels per host are capped below sshd's MaxSessions (10): tasks queue
//!   instead of failing, and an open refused anyway is retried with backoff.
//! - Handshakes are capped (in all, and per address below MaxStartups) and a
//!   handshake reset by the server is retried with backoff.
//! - Every channel is drained by its own task until the server closes it: one
//!   unread channel would freeze the whole session (RUSSH-NOTES §5).
//! - A session found dead (sshd restarted, keepalive lost) is reopened once,
//!   transparently, when a command has not started yet.
//! - Files go over one SFTP session per host (`sftp.rs`), as requests to
//!   its one sftp-server: a temp file beside the destination, setstat, then
//!   posix-rename over it; stat and content compares too. No process is
//!   started on the host per file operation.

pub mod config;
pub mod known_hosts;
mod session;
mod sftp;

use crate::connection::{self, Command, ConnError, Connection, ExecOutput, FileStat};
use crate::quote::quote;
use async_trait::async_trait;
use bytes::Bytes;
use config::{HostKeyPolicy, SshOptions, Target};
use known_hosts::KnownHosts;
use russh::client::Msg;
use russh::{ChannelMsg, ChannelWriteHalf, Disconnect};
use session::{Handle, KeyCache};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Channels per session: sshd's default MaxSessions is 10, and at exactly 10
/// a few opens still fail because sshd frees a slot late.
const CHANNELS_PER_HOST: usize = 9;
/// Handshakes at once towards one address (sshd's MaxStartups starts
/// dropping at 10) and in all (CPU: key exchange is the expensive part).
const HANDSHAKES_PER_ADDR: usize = 8;
const HANDSHAKES_TOTAL: usize = 32;
const CONNECT_TRIES: u32 = 4;
/// How long output may keep arriving after the exit status before the
/// channel is closed (a background child holding stdout open).
const EXIT_GRACE: Duration = Duration::from_secs(3);

/// The pool: settings of the run and the sessions opened so far.
pub struct Pool {
    opts: SshOptions,
    ssh_config: Option<ssh2_config::SshConfig>,
    keys: KeyCache,
    hosts: Mutex<HashMap<Target, Arc<HostConn>>>,
    handshakes: Arc<Semaphore>,
    per_addr: Mutex<HashMap<(String, u16), Arc<Semaphore>>>,
    /// accept-new writes, one at a time.
    learn_lock: tokio::sync::Mutex<()>,
}

impl Pool {
    /// Reads `~/.ssh/config` (an unreadable one is an error before anything runs).
    pub fn new(opts: SshOptions) -> Result<Arc<Pool>, String> {
        // `-k`/`-K` answers: secrets from the start.
        for s in opts.password.iter().chain(&opts.become_password) {
            crate::secret::register(s);
        }
        let ssh_config = config::load_ssh_config(&opts.home)?;
        Ok(Self::build(opts, ssh_config))
    }

    /// A pool that ignores `~/.ssh/config`.
    pub fn without_ssh_config(opts: SshOptions) -> Arc<Pool> {
        Self::build(opts, None)
    }

    fn build(opts: SshOptions, ssh_config: Option<ssh2_config::SshConfig>) -> Arc<Pool> {
        Arc::new(Pool {
            opts,
            ssh_config,
            keys: KeyCache::default(),
            hosts: Mutex::new(HashMap::new()),
            handshakes: Arc::new(Semaphore::new(HANDSHAKES_TOTAL)),
            per_addr: Mutex::new(HashMap::new()),
            learn_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The connection to a host (no network traffic until first used).
    pub fn get(
        self: &Arc<Self>,
        alias: &str,
        vars: &serde_json::Map<String, serde_json::Value>,
        play_user: Option<&str>,
    ) -> Result<Arc<HostConn>, ConnError> {
        let target = config::target(alias, vars, play_user, &self.opts, self.ssh_config.as_ref())
            .map_err(ConnError::Unreachable)?;
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        Ok(hosts
            .entry(target.clone())
            .or_insert_with(|| {
                let known = KnownHosts::new(&self.opts.home, target.known_hosts_file.clone());
                Arc::new(HostConn {
                    pool: self.clone(),
                    target,
                    known: Arc::new(known),
                    state: tokio::sync::Mutex::new(State::default()),
                    channels: Arc::new(Semaphore::new(CHANNELS_PER_HOST)),
                    sftp_open: tokio::sync::Mutex::new(()),
                    names: tokio::sync::OnceCell::new(),
                })
            })
            .clone())
    }

    /// Ends every session with an SSH disconnect (the end of the run).
    pub async fn close_all(&self) {
        let hosts: Vec<Arc<HostConn>> = self
            .hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, h)| h)
            .collect();
        let mut closes = tokio::task::JoinSet::new();
        for h in hosts {
            closes.spawn(async move { h.disconnect().await });
        }
        let all = async { while closes.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(Duration::from_secs(5), all).await;
    }

    fn addr_gate(&self, t: &Target) -> Arc<Semaphore> {
        self.per_addr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((t.addr.clone(), t.port))
            .or_insert_with(|| Arc::new(Semaphore::new(HANDSHAKES_PER_ADDR)))
            .clone()
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({:?})", self.opts.host_key_checking)
    }
}

struct Live {
    handle: Arc<Handle>,
    generation: u64,
    sftp: Option<Arc<Sftp>>,
}

struct Sftp {
    client: sftp::Client,
    /// The channel slot the SFTP session occupies while open.
    _slot: OwnedSemaphorePermit,
}

#[derive(Default)]
struct State {
    live: Option<Live>,
    generation: u64,
    /// A connect failure, kept so later tasks fail fast with the same reason.
    failed: Option<String>,
}

/// One host (as one user): its session, opened on first use.
pub struct HostConn {
    pool: Arc<Pool>,
    target: Target,
    known: Arc<KnownHosts>,
    state: tokio::sync::Mutex<State>,
    channels: Arc<Semaphore>,
    sftp_open: tokio::sync::Mutex<()>,
    /// User and group names by id, from the host's /etc/passwd and
    /// /etc/group (read once, over SFTP).
    names: tokio::sync::OnceCell<IdNames>,
}

#[derive(Default)]
struct IdNames {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl IdNames {
    /// `name:x:id:…` lines.
    fn parse(text: &str) -> HashMap<u32, String> {
        let mut map = HashMap::new();
        for line in text.lines() {
            let mut f = line.split(':');
            if let (Some(name), Some(_), Some(id)) = (f.next(), f.next(), f.next()) {
                if let Ok(id) = id.parse() {
                    map.entry(id).or_insert_with(|| name.to_string());
                }
            }
        }
        map
    }
}

impl std::fmt::Debug for HostConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostConn({}@{})", self.target.user, self.target.alias)
    }
}

/// Why opening a channel failed.
enum OpenError {
    /// The session is gone: reconnect and try again.
    Dead(String),
    Other(String),
}

impl HostConn {
    fn label(&self) -> String {
        let t = &self.target;
        if t.port == 22 {
            format!("{}@{}", t.user, t.addr)
        } else {
            format!("{}@{}:{}", t.user, t.addr, t.port)
        }
    }

    /// The live session, connecting if there is none (or it died).
    async fn session(&self) -> Result<(Arc<Handle>, u64), ConnError> {
        let mut st = self.state.lock().await;
        if let Some(live) = &st.live {
            if !live.handle.is_closed() {
                return Ok((live.handle.clone(), live.generation));
            }
            st.live = None;
        }
        if let Some(why) = &st.failed {
            return Err(ConnError::Unreachable(why.clone()));
        }
        // A login under way when Ctrl-C comes is given up (not recorded as
        // the host's failure: it was not the host's fault).
        let armed = !crate::interrupt::requested();
        let connected = tokio::select! {
            c = self.connect() => c,
            // Not `Interrupted`: no command of ours runs there to end.
            _ = crate::interrupt::wait_armed(armed) => {
                return Err(ConnError::Io(format!(
                    "{}: {} while logging in",
                    self.label(),
                    crate::interrupt::MSG
                )))
            }
        };
        match connected {
            Ok(handle) => {
                st.generation += 1;
                let handle = Arc::new(handle);
                st.live = Some(Live {
                    handle: handle.clone(),
                    generation: st.generation,
                    sftp: None,
                });
                Ok((handle, st.generation))
            }
            Err(e) => {
                st.failed = Some(e.clone());
                Err(ConnError::Unreachable(e))
            }
        }
    }

    /// Forgets a dead session (unless it was already replaced).
    async fn forget(&self, generation: u64) {
        let mut st = self.state.lock().await;
        if st.live.as_ref().is_some_and(|l| l.generation == generation) {
            st.live = None;
        }
    }

    async fn connect(&self) -> Result<Handle, String> {
        let t = &self.target;
        // Keys are opened (and passphrases asked) before any connection, so
        // a prompt never runs against sshd's LoginGraceTime.
        session::preload_keys(&self.pool.keys, t, &self.pool.opts.home).await;
        let gate = self.pool.addr_gate(t);
        let mut last = String::new();
        for attempt in 0..CONNECT_TRIES {
            if attempt > 0 {
                // 250 ms, 500 ms, 1 s, with a little spread between hosts.
                let spread = (t.addr.len() as u64 * 37 + attempt as u64 * 53) % 100;
                tokio::time::sleep(Duration::from_millis((250 << (attempt - 1)) + spread)).await;
            }
            let _addr = gate.clone().acquire_owned().await.expect("never closed");
            let _all = self
                .pool
                .handshakes
                .clone()
                .acquire_owned()
                .await
                .expect("never closed");
            let (mut handle, learn) =
                match session::handshake(t, self.pool.opts.host_key_checking, &self.known).await {
                    Ok(h) => h,
                    Err(e) => {
                        last = e.msg;
                        if e.retry {
                            continue;
                        }
                        return Err(last);
                    }
                };
            if let Some(key) = learn {
                let _w = self.pool.learn_lock.lock().await;
                // Another connection may have recorded the host meanwhile:
                // learn only what is still unknown, refuse a different key.
                match self.known.check(&t.known_names(), t.port, &key) {
                    known_hosts::Verdict::Match => {}
                    known_hosts::Verdict::Unknown => {
                        self.known.learn(&t.addr, t.port, &key).map_err(|e| {
                            format!(
                                "cannot record the host key in {}: {e}",
                                self.known.user_file.display()
                            )
                        })?;
                        crate::errln!(
                            "Warning: permanently added {} ({}) to {}",
                            known_hosts::host_port(&t.addr, t.port),
                            known_hosts::fingerprint(&key),
                            self.known.user_file.display()
                        );
                    }
                    _ => {
                        let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
                        return Err(format!(
                            "HOST KEY CHANGED for {} while connecting: it now offers {}; refusing to connect",
                            known_hosts::host_port(&t.addr, t.port),
                            known_hosts::fingerprint(&key)
                        ));
                    }
                }
            }
            // A login that never ends (a dead peer before keepalives start,
            // a stuck PAM, an agent waiting for a confirmation) is cut short.
            let login_limit = t
                .connect_timeout
                .saturating_mul(3)
                .max(Duration::from_secs(30));
            let login =
                session::authenticate(&mut handle, t, &self.pool.keys, &self.pool.opts.home);
            match tokio::time::timeout(login_limit, login).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(format!(
                        "login to {} did not finish within {} s",
                        self.label(),
                        login_limit.as_secs()
                    ))
                }
            }
            return Ok(handle);
        }
        Err(last)
    }

    /// A channel slot of this host (tasks beyond the limit wait here).
    async fn slot(&self) -> OwnedSemaphorePermit {
        self.channels
            .clone()
            .acquire_owned()
            .await
            .expect("never closed")
    }

    /// Opens a session channel, retrying (about 30 s) while sshd's
    /// MaxSessions is full, e.g. with commands left running in the background.
    async fn open(&self, handle: &Handle) -> Result<russh::Channel<Msg>, OpenError> {
        let mut delay = Duration::from_millis(10);
        for _ in 0..70 {
            // A session whose peer vanished without a word answers nothing.
            let opened =
                tokio::time::timeout(self.target.connect_timeout, handle.channel_open_session())
                    .await
                    .map_err(|_| {
                        OpenError::Dead("no answer to a channel open (the peer is gone)".into())
                    })?;
            match opened {
                Ok(ch) => return Ok(ch),
                Err(russh::Error::ChannelOpenFailure(russh::ChannelOpenFailure::ConnectFailed))
                | Err(russh::Error::ChannelOpenFailure(
                    russh::ChannelOpenFailure::ResourceShortage,
                )) => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                Err(e) if is_dead(&e) || handle.is_closed() => {
                    return Err(OpenError::Dead(session::russh_reason(&e)))
                }
                Err(e) => return Err(OpenError::Other(e.to_string())),
            }
        }
        Err(OpenError::Other(
            "the server refused to open a channel (MaxSessions reached)".into(),
        ))
    }

    /// A fresh channel on a live session; one reconnect if the session died.
    async fn channel(&self) -> Result<(russh::Channel<Msg>, u64), ConnError> {
        let mut reconnected = false;
        loop {
            let (handle, generation) = self.session().await?;
            match self.open(&handle).await {
                Ok(ch) => return Ok((ch, generation)),
                Err(OpenError::Dead(_)) if !reconnected => {
                    self.forget(generation).await;
                    reconnected = true;
                }
                Err(OpenError::Dead(why)) => {
                    return Err(ConnError::Unreachable(format!(
                        "{}: the connection dropped: {why}",
                        self.label()
                    )))
                }
                Err(OpenError::Other(why)) => {
                    return Err(ConnError::Io(format!("{}: {why}", self.label())))
                }
            }
        }
    }

    /// The shell command line sent to sshd: always /bin/sh (whatever the
    /// login shell), through sudo for become.
    ///
    /// Every process of the command carries `MAILRUN_JOB=<job>` in its
    /// environment, so a command that timed out can be found and killed
    /// whole (a channel signal reaches only its first process).
    fn command_line(&self, cmd: &Command, job: &str) -> (String, Option<BecomeCtl>) {
        // `env` puts the tag on the shell itself, not only on its children.
        let tag = format!("env MAILRUN_JOB={job}");
        let sh = format!("{tag} /bin/sh -c {}", quote(&cmd.cmd));
        let Some(user) = cmd
            .become_user
            .as_deref()
            .filter(|u| *u != self.target.user)
        else {
            return (sh, None);
        };
        match &self.target.become_password {
            None => (format!("sudo -H -n -u {} -- {sh}", quote(user)), None),
            Some(pw) => {
                let id = unique_id();
                let marker = format!("[mailrun-sudo-{id}] password:");
                let token = format!("MAILRUN-BECOME-{id}");
                let inner = format!("echo {token}; {}", cmd.cmd);
                (
                    format!(
                        "sudo -H -S -p {} -u {} -- {tag} /bin/sh -c {}",
                        quote(&marker),
                        quote(user),
                        quote(&inner)
                    ),
                    Some(BecomeCtl {
                        marker,
                        token,
                        password: pw.clone(),
                        user: user.to_string(),
                    }),
                )
            }
        }
    }

    async fn run(&self, cmd: &Command) -> Result<ExecOutput, ConnError> {
        let job = unique_id();
        let (closed_tx, mut closed) = tokio::sync::watch::channel(false);
        let mut result = self.exec_once(cmd, &job, Some(closed_tx)).await;
        match result {
            Err(ConnError::Timeout(_)) => self.kill_job(&job, cmd.become_user.clone(), false).await,
            Err(ConnError::Interrupted) => {
                // Until sshd closes the channel (the command is gone): a
                // command whose start raced the interrupt appears only after
                // the first search for its processes.
                for attempt in 0..5 {
                    self.kill_job(&job, cmd.become_user.clone(), attempt == 0)
                        .await;
                    let gone =
                        tokio::time::timeout(Duration::from_secs(2), closed.wait_for(|c| *c)).await;
                    if gone.is_ok() {
                        break;
                    }
                }
            }
            _ => {}
        }
        if let Ok(out) = &mut result {
            let sudo_wants_password = out.rc == 1
                && self.target.become_password.is_none()
                && cmd
                    .become_user
                    .as_deref()
                    .is_some_and(|u| u != self.target.user)
                && out.stderr_str().contains("a password is required");
            if sudo_wants_password {
                out.stderr.extend_from_slice(
                    format!(
                        "\nbecome: sudo on {} needs {}'s password: give it with -K or ansible_become_password",
                        self.target.alias, self.target.user
                    )
                    .as_bytes(),
                );
            }
        }
        result
    }

    /// Runs a command on a channel of its own, tagged with `job`. The
    /// channel is drained by its own task, to the end, even if the caller
    /// goes away.
    async fn exec_once(
        &self,
        cmd: &Command,
        job: &str,
        closed: Option<tokio::sync::watch::Sender<bool>>,
    ) -> Result<ExecOutput, ConnError> {
        let slot = self.slot().await;
        let (ch, _) = self.channel().await?;
        let (line, become_) = self.command_line(cmd, job);
        let exec = Exec {
            line,
            stdin: cmd.stdin.clone(),
            become_,
            timeout: cmd.timeout,
            closed,
        };
        let task = tokio::spawn(drive(ch, exec, self.label(), slot));
        task.await
            .map_err(|e| ConnError::Io(format!("{}: command task failed: {e}", self.label())))?
    }

    /// Kills every process of a command (found by its `MAILRUN_JOB`);
    /// `gently`: SIGTERM first and up to 5 s to exit (doveadm then ends its
    /// transaction and lets go of its locks), SIGKILL for what is left.
    async fn kill_job(&self, job: &str, become_user: Option<String>, gently: bool) {
        let pids = format!(
            "pids() {{ for f in $(grep -lsxz MAILRUN_JOB={job} /proc/[0-9]*/environ); do \
             p=${{f#/proc/}}; echo \"${{p%/environ}}\"; done; }}\n"
        );
        let term = if gently {
            "p=$(pids); [ -n \"$p\" ] && kill -TERM $p 2>/dev/null\n\
             i=0; while [ $i -lt 50 ] && [ -n \"$(pids)\" ]; do sleep 0.1; i=$((i+1)); done\n"
        } else {
            ""
        };
        let script =
            format!("{pids}{term}p=$(pids); [ -n \"$p\" ] && kill -KILL $p 2>/dev/null; true");
        let kill = Command {
            cmd: script,
            stdin: None,
            timeout: Some(Duration::from_secs(30)),
            become_user,
        };
        let _ = self.exec_once(&kill, "kill", None).await;
    }

    async fn sftp(&self) -> Result<Arc<Sftp>, ConnError> {
        let current = || async {
            let st = self.state.lock().await;
            st.live
                .as_ref()
                .filter(|l| !l.handle.is_closed())
                .and_then(|l| l.sftp.clone())
        };
        if let Some(s) = current().await {
            return Ok(s);
        }
        // One SFTP session per host: the first task opens it, the others wait.
        let _opening = self.sftp_open.lock().await;
        if let Some(s) = current().await {
            return Ok(s);
        }
        let slot = self.slot().await;
        let (ch, generation) = self.channel().await?;
        let err = |e: String| ConnError::Io(format!("{}: SFTP: {e}", self.label()));
        if let Err(e) = ch.request_subsystem(true, "sftp").await {
            let _ = ch.close().await;
            return Err(err(e.to_string()));
        }
        let client = sftp::Client::new(ch.into_stream(), 60)
            .await
            .map_err(|e| err(e.to_string()))?;
        let sftp = Arc::new(Sftp {
            client,
            _slot: slot,
        });
        let mut st = self.state.lock().await;
        if let Some(live) = st.live.as_mut().filter(|l| l.generation == generation) {
            if let Some(existing) = &live.sftp {
                return Ok(existing.clone());
            }
            live.sftp = Some(sftp.clone());
        }
        Ok(sftp)
    }

    /// Drops an SFTP session after an error (reopened on next use), unless
    /// it was already replaced.
    async fn drop_sftp(&self, used: &Arc<Sftp>) {
        let mut st = self.state.lock().await;
        if let Some(live) = st.live.as_mut() {
            if live.sftp.as_ref().is_some_and(|s| Arc::ptr_eq(s, used)) {
                live.sftp = None;
            }
        }
    }

    async fn disconnect(&self) {
        let mut st = self.state.lock().await;
        if let Some(live) = st.live.take() {
            if let Some(sftp) = &live.sftp {
                sftp.client.close();
            }
            let _ = live
                .handle
                .disconnect(Disconnect::ByApplication, "", "en")
                .await;
        }
    }

    /// Streams `data` into a new file `tmp` with `perm` (the umask
    /// applies) over SFTP. A session that failed is dropped (reopened on
    /// next use).
    async fn sftp_write(
        &self,
        sftp: &Arc<Sftp>,
        tmp: &str,
        data: &[u8],
        perm: u32,
    ) -> Result<(), ConnError> {
        let _bulk = bulk(data.len()).await;
        if let Err(e) = sftp.client.write_new(tmp, data, perm).await {
            let dir = tmp
                .rsplit_once('/')
                .map_or(".", |(d, _)| if d.is_empty() { "/" } else { d });
            if sftp::is_missing(&e) {
                return Err(ConnError::Io(format!("the directory {dir} does not exist")));
            }
            // SFTP says only "Failure" for a full disk: ask how much room
            // there is.
            if !sftp::is_broken(&e) {
                if let Some(free) = sftp.client.free_bytes(dir).await {
                    if free < data.len() as u64 {
                        return Err(ConnError::Io(format!(
                            "no space left on the file system that holds {dir}: {} KiB free, the file needs {} KiB",
                            free / 1024,
                            (data.len() as u64).div_ceil(1024)
                        )));
                    }
                }
            }
            return Err(ConnError::Io(self.sftp_failed(sftp, &e).await));
        }
        Ok(())
    }

    /// What a failed SFTP request says; a session that broke (not just
    /// refused the request) is dropped, to be opened again on next use.
    async fn sftp_failed(&self, sftp: &Arc<Sftp>, e: &sftp::Error) -> String {
        if sftp::is_broken(e) {
            self.drop_sftp(sftp).await;
        }
        sftp::describe(e)
    }

    /// SFTP's stat, without names (the shell script's, with names, where
    /// SFTP cannot tell: no permission, say).
    async fn sftp_stat(&self, sftp: &Sftp, path: &str) -> Result<Option<FileStat>, ConnError> {
        match sftp.client.stat(path).await {
            Ok(None) => Ok(None),
            Ok(Some(a)) => Ok(Some(FileStat {
                is_dir: a.is_dir,
                size: a.size,
                mode: a.mode,
                uid: a.uid,
                gid: a.gid,
                owner: None,
                group: None,
                sha256: None,
            })),
            Err(_) => self.stat_by_exec(path).await,
        }
    }

    /// The host's user and group names by id (empty if unreadable).
    async fn id_names(&self, sftp: &Sftp) -> &IdNames {
        self.names
            .get_or_init(|| async {
                let read = |p: &'static str| async move {
                    match sftp.client.read(p).await {
                        Ok(Some(d)) => IdNames::parse(&String::from_utf8_lossy(&d)),
                        _ => HashMap::new(),
                    }
                };
                IdNames {
                    users: read("/etc/passwd").await,
                    groups: read("/etc/group").await,
                }
            })
            .await
    }

    /// `stat` by the shell script (names through NSS, checksum).
    async fn stat_by_exec(&self, path: &str) -> Result<Option<FileStat>, ConnError> {
        let out = self
            .run(&Command::new(connection::stat_script(path)))
            .await?;
        if out.rc != 0 {
            return Err(ConnError::Io(format!(
                "{}: cannot stat {path}: {}",
                self.label(),
                out.stderr_str().trim_end()
            )));
        }
        connection::parse_stat_output(&out.stdout_str())
            .map_err(|e| ConnError::Io(format!("{}: cannot stat {path}: {e}", self.label())))
    }

    /// Writes with the shell: SFTP into a temp file, then the replace
    /// script (for an sftp-server without posix-rename).
    async fn write_by_script(
        &self,
        sftp: &Arc<Sftp>,
        path: &str,
        tmp: &str,
        data: &[u8],
        mode: Option<u32>,
    ) -> Result<(), ConnError> {
        let remove_tmp = || async {
            let _ = self
                .run(&Command::new(format!("rm -f -- {}", quote(tmp))))
                .await;
        };
        match self.sftp_write(sftp, tmp, data, 0o600).await {
            Ok(()) => {}
            // The host is gone: nothing to clean up there now.
            Err(e @ ConnError::Unreachable(_)) => return Err(e),
            Err(e) => {
                remove_tmp().await;
                return Err(ConnError::Io(format!(
                    "{}: cannot write {path}: {e}",
                    self.label()
                )));
            }
        }
        // The temp file is removed by the script itself if a step fails.
        let script = format!(
            "set -e\nt={} p={}\ntrap 'rm -f -- \"$t\"' EXIT\n{}\ntrap - EXIT",
            quote(tmp),
            quote(path),
            connection::replace_lines(mode)
        );
        let out = match self.run(&Command::new(script)).await {
            Ok(out) => out,
            Err(e) => {
                if !matches!(e, ConnError::Unreachable(_)) {
                    remove_tmp().await;
                }
                return Err(e);
            }
        };
        if out.rc != 0 {
            return Err(ConnError::Io(format!(
                "{}: cannot write {path}: {}",
                self.label(),
                out.stderr_str().trim_end()
            )));
        }
        Ok(())
    }
}

/// Files larger than this move a few at a time across all hosts: each
/// holds up to 256 KiB of requests in flight plus the session's buffers,
/// and the CPU is the limit anyway, so memory stays flat with the fleet.
const BULK_FILE: usize = 64 * 1024;
const BULK_AT_ONCE: usize = 8;

async fn bulk(len: usize) -> Option<tokio::sync::SemaphorePermit<'static>> {
    static BULK: Semaphore = Semaphore::const_new(BULK_AT_ONCE);
    if len <= BULK_FILE {
        return None;
    }
    BULK.acquire().await.ok()
}

fn is_dead(e: &russh::Error) -> bool {
    matches!(
        e,
        russh::Error::SendError
            | russh::Error::RecvError
            | russh::Error::Disconnect
            | russh::Error::HUP
            | russh::Error::IO(_)
            | russh::Error::KeepaliveTimeout
            | russh::Error::InactivityTimeout
    )
}

fn unique_id() -> String {
    use sha2::{Digest, Sha256};
    static N: AtomicU64 = AtomicU64::new(0);
    let seed = format!(
        "{}-{}-{:?}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
    );
    let h = Sha256::digest(seed.as_bytes());
    h.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// sudo with a password: the prompt `marker` on stderr asks for it; the
/// `token` on stdout says the command has started (then its stdin is sent).
struct BecomeCtl {
    marker: String,
    token: String,
    password: String,
    user: String,
}

/// How long sudo may take to either ask for the password or start the
/// command; anything else it asks (an OTP, an expired password) is refused.
const BECOME_DEADLINE: Duration = Duration::from_secs(30);
/// At most this long after the exit status, however chatty a background
/// child that holds the output open is.
const EXIT_GRACE_MAX: Duration = Duration::from_secs(30);

/// Aborts a spawned task when dropped (the stdin writer of a command that
/// has ended must not wait forever for window space).
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

fn later(d: Duration) -> Option<tokio::time::Instant> {
    tokio::time::Instant::now().checked_add(d)
}

/// What [`drive`] runs on a channel.
struct Exec {
    line: String,
    stdin: Option<Vec<u8>>,
    become_: Option<BecomeCtl>,
    timeout: Option<Duration>,
    /// Set once the server has closed a channel cut short by Ctrl-C.
    closed: Option<tokio::sync::watch::Sender<bool>>,
}

/// Runs one command on an open channel and reads it until the server closes
/// the channel (or the grace after the exit status runs out, or the timeout).
/// The channel slot is held until the server has closed the channel, since
/// sshd frees it only then.
async fn drive(
    ch: russh::Channel<Msg>,
    exec: Exec,
    label: String,
    slot: OwnedSemaphorePermit,
) -> Result<ExecOutput, ConnError> {
    let Exec {
        line,
        stdin,
        become_,
        timeout,
        closed,
    } = exec;
    let (mut rx, tx) = ch.split();
    let tx = Arc::new(tx);
    if let Err(e) = tx.exec(true, line.into_bytes()).await {
        let _ = tx.close().await;
        drain_after_close(rx, slot);
        return Err(ConnError::Unreachable(format!(
            "{label}: the connection dropped: {}",
            session::russh_reason(&e)
        )));
    }
    let mut stdin = stdin;
    let mut pending = become_;
    let mut writer = AbortOnDrop(None);
    if pending.is_none() {
        writer.0 = Some(start_stdin(&tx, stdin.take()));
    }
    let mut out = ExecOutput::default();
    let mut status: Option<i32> = None;
    let mut prompts = 0;
    // Only a command running when Ctrl-C comes is ended by it.
    let armed = !crate::interrupt::requested();
    let deadline = timeout.and_then(later);
    let become_deadline = pending.as_ref().and_then(|_| later(BECOME_DEADLINE));
    let mut grace: Option<tokio::time::Instant> = None;
    let mut grace_end: Option<tokio::time::Instant> = None;
    // Ends the command early: kill it, close the channel, keep draining.
    macro_rules! stop {
        ($result:expr) => {{
            let _ = tx.signal(russh::Sig::KILL).await;
            let _ = tx.close().await;
            drop(writer);
            drain_after_close(rx, slot);
            return $result;
        }};
    }
    loop {
        let until = [deadline, grace, pending.as_ref().and(become_deadline)]
            .into_iter()
            .flatten()
            .min();
        let next = async {
            match until {
                None => Ok(rx.wait().await),
                Some(u) => tokio::time::timeout_at(u, rx.wait()).await,
            }
        };
        let got = tokio::select! {
            got = next => Some(got),
            _ = crate::interrupt::wait_armed(armed && status.is_none()) => None,
        };
        let Some(got) = got else {
            // Ctrl-C: SIGTERM to the command over its channel (the caller
            // then ends every process of the job on the host).
            let _ = tx.signal(russh::Sig::TERM).await;
            let _ = tx.close().await;
            drop(writer);
            drain_then_tell(rx, slot, closed);
            return Err(ConnError::Interrupted);
        };
        let msg = match got {
            Ok(m) => m,
            Err(_) => {
                let now = tokio::time::Instant::now();
                if status.is_some() {
                    // Exited; a background child keeps the channel open.
                    let _ = tx.close().await;
                    drop(writer);
                    drain_after_close(rx, slot);
                    out.rc = status.unwrap_or(-1);
                    return Ok(out);
                }
                if pending.is_some() && become_deadline.is_some_and(|b| now >= b) {
                    let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
                    stop!(Ok(ExecOutput {
                        rc: 1,
                        stdout: Vec::new(),
                        stderr: format!(
                            "become: sudo on {label} neither asked for the password nor started the command within {} s{}",
                            BECOME_DEADLINE.as_secs(),
                            if said.is_empty() { String::new() } else { format!(" (it said: {said})") }
                        )
                        .into_bytes(),
                    }))
                }
                stop!(Err(ConnError::Timeout(timeout.unwrap_or_default())))
            }
        };
        let Some(msg) = msg else {
            if status.is_some() {
                break;
            }
            return Err(ConnError::Unreachable(format!(
                "{label}: the connection dropped while the command ran \
                 (sshd stopped, or the host or the network went away)"
            )));
        };
        match msg {
            ChannelMsg::Data { data } => {
                out.stdout.extend_from_slice(&data);
                if let Some(b) = &pending {
                    if let Some(pos) = find_line(&out.stdout, b.token.as_bytes()) {
                        out.stdout.drain(..pos);
                        pending = None;
                        writer.0 = Some(start_stdin(&tx, stdin.take()));
                    }
                }
                if grace.is_some() {
                    grace = later(EXIT_GRACE).min(grace_end);
                }
            }
            ChannelMsg::ExtendedData { data, ext } => {
                if ext == 1 {
                    out.stderr.extend_from_slice(&data);
                }
                if let Some(b) = &pending {
                    let marker = b.marker.as_bytes();
                    while let Some(pos) = find(&out.stderr, marker) {
                        out.stderr.drain(pos..pos + marker.len());
                        prompts += 1;
                        if prompts > 1 {
                            let user = b.user.clone();
                            stop!(Ok(ExecOutput {
                                rc: 1,
                                stdout: Vec::new(),
                                stderr: format!(
                                    "become: sudo did not accept the become password for {user} on {label}"
                                )
                                .into_bytes(),
                            }))
                        }
                        let pw = Bytes::from(format!("{}\n", b.password));
                        let _ = tx.data_bytes(pw).await;
                    }
                }
            }
            ChannelMsg::ExitStatus { exit_status } => {
                status = Some(exit_status as i32);
                grace = later(EXIT_GRACE);
                grace_end = later(EXIT_GRACE_MAX);
            }
            ChannelMsg::ExitSignal { signal_name, .. } => {
                status = Some(128 + signal_number(&signal_name));
                grace = later(EXIT_GRACE);
                grace_end = later(EXIT_GRACE_MAX);
            }
            ChannelMsg::Failure => {
                let _ = tx.close().await;
                drop(writer);
                drain_after_close(rx, slot);
                return Err(ConnError::Io(format!(
                    "{label}: the server refused to run the command"
                )));
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    // The server closed the channel (or the session ended after the exit).
    let _ = tx.close().await;
    drop(slot);
    out.rc = status.unwrap_or(-1);
    Ok(out)
}

/// Keeps reading a closed channel's leftovers so the session never stalls,
/// and holds its slot until the server has closed it (at most 30 s).
fn drain_after_close(rx: russh::ChannelReadHalf, slot: OwnedSemaphorePermit) {
    drain_then_tell(rx, slot, None);
}

/// As [`drain_after_close`]; `closed` is set once the server has closed the
/// channel (sshd does so only when the command's processes are gone).
fn drain_then_tell(
    mut rx: russh::ChannelReadHalf,
    slot: OwnedSemaphorePermit,
    closed: Option<tokio::sync::watch::Sender<bool>>,
) {
    tokio::spawn(async move {
        let ended = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(m) = rx.wait().await {
                if matches!(m, ChannelMsg::Close) {
                    break;
                }
            }
        })
        .await;
        if ended.is_ok() {
            if let Some(c) = closed {
                let _ = c.send(true);
            }
        }
        drop(slot);
    });
}

/// Sends the command's input in large packets, then EOF, without holding up
/// the reader.
fn start_stdin(
    tx: &Arc<ChannelWriteHalf<Msg>>,
    stdin: Option<Vec<u8>>,
) -> tokio::task::JoinHandle<()> {
    let tx = tx.clone();
    tokio::spawn(async move {
        if let Some(data) = stdin {
            let data = Bytes::from(data);
            let mut off = 0;
            while off < data.len() {
                let end = (off + (256 << 10)).min(data.len());
                if tx.data_bytes(data.slice(off..end)).await.is_err() {
                    return;
                }
                off = end;
            }
        }
        let _ = tx.eof().await;
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The end of the line that holds `token` (the offset after its newline).
fn find_line(hay: &[u8], token: &[u8]) -> Option<usize> {
    let pos = find(hay, token)?;
    let nl = hay[pos..].iter().position(|b| *b == b'\n')?;
    Some(pos + nl + 1)
}

fn signal_number(sig: &russh::Sig) -> i32 {
    use russh::Sig::*;
    match sig {
        HUP => 1,
        INT => 2,
        QUIT => 3,
        ILL => 4,
        ABRT => 6,
        FPE => 8,
        KILL => 9,
        USR1 => 10,
        SEGV => 11,
        PIPE => 13,
        ALRM => 14,
        TERM => 15,
        _ => 0,
    }
}

#[async_trait]
impl Connection for HostConn {
    async fn exec(&self, cmd: &Command) -> Result<ExecOutput, ConnError> {
        self.run(cmd).await
    }

    async fn probe_login(&self) -> Result<(), ConnError> {
        let unreachable = |why: String| {
            ConnError::Unreachable(format!("a new login to {} failed: {why}", self.label()))
        };
        let handle = self.connect().await.map_err(unreachable)?;
        let probe = async {
            let mut ch = handle
                .channel_open_session()
                .await
                .map_err(|e| format!("cannot open a session: {e}"))?;
            ch.exec(true, "true")
                .await
                .map_err(|e| format!("cannot run a command: {e}"))?;
            while let Some(msg) = ch.wait().await {
                if let ChannelMsg::ExitStatus { exit_status } = msg {
                    return match exit_status {
                        0 => Ok(()),
                        rc => Err(format!("`true` exited with {rc}")),
                    };
                }
            }
            Err("the session closed without an exit status".to_string())
        };
        let limit = self.target.connect_timeout.max(Duration::from_secs(10));
        let r = match tokio::time::timeout(limit, probe).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} s", limit.as_secs())),
        };
        let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
        r.map_err(unreachable)
    }

    fn address(&self) -> Option<(String, u16)> {
        Some((self.target.addr.clone(), self.target.port))
    }

    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, ConnError> {
        let sftp = self.sftp().await?;
        match sftp.client.read(path).await {
            Ok(data) => Ok(data),
            Err(e) => Err(ConnError::Io(format!(
                "{}: cannot read {path}: {}",
                self.label(),
                self.sftp_failed(&sftp, &e).await
            ))),
        }
    }

    /// Over SFTP alone when the server can rename over a file (OpenSSH):
    /// a temp file beside `path`, the old file's owner and mode (or
    /// `mode`), then renamed over it. No process is started on the host.
    async fn write_file(
        &self,
        path: &str,
        data: &[u8],
        mode: Option<u32>,
    ) -> Result<(), ConnError> {
        let (dir, name) = match path.rsplit_once('/') {
            Some(("", n)) => ("/", n),
            Some((d, n)) => (d, n),
            None => (".", path),
        };
        let tmp = format!(
            "{}/.{}.mailrun-{}",
            dir.trim_end_matches('/'),
            name,
            unique_id()
        );
        let sftp = self.sftp().await?;
        if !sftp.client.can_rename_over() {
            return self.write_by_script(&sftp, path, &tmp, data, mode).await;
        }
        let failed =
            |e: String| ConnError::Io(format!("{}: cannot write {path}: {e}", self.label()));
        let old = match sftp.client.stat(path).await {
            Ok(old) => old,
            // Not ours to tell (a directory we cannot search): the script knows.
            Err(_) => return self.write_by_script(&sftp, path, &tmp, data, mode).await,
        };
        // A new file without a mode: the umask's, as the shell would give.
        let perm = if old.is_some() || mode.is_some() {
            0o600
        } else {
            0o666
        };
        match self.sftp_write(&sftp, &tmp, data, perm).await {
            Ok(()) => {}
            Err(e @ ConnError::Unreachable(_)) => return Err(e),
            Err(e) => {
                if let Ok(s) = self.sftp().await {
                    let _ = s.client.remove(&tmp).await;
                }
                return Err(failed(e.to_string()));
            }
        }
        let finish = async {
            if let Some(o) = &old {
                // As `chown … || true`: only root may give a file away.
                let _ = sftp.client.set_owner(&tmp, o.uid, o.gid).await;
            }
            if let Some(m) = mode.or(old.map(|o| o.mode)) {
                sftp.client.set_mode(&tmp, m).await?;
            }
            sftp.client.rename_over(&tmp, path).await
        };
        if let Err(e) = finish.await {
            let _ = sftp.client.remove(&tmp).await;
            return Err(failed(sftp::describe(&e)));
        }
        Ok(())
    }

    /// Over SFTP, names from the host's /etc/passwd and /etc/group; by the
    /// shell script when SFTP cannot tell (no permission, an id only NSS
    /// knows). No checksum: callers compare content when they need to.
    async fn stat(&self, path: &str) -> Result<Option<FileStat>, ConnError> {
        let sftp = self.sftp().await?;
        let Some(mut st) = self.sftp_stat(&sftp, path).await? else {
            return Ok(None);
        };
        if st.owner.is_some() {
            return Ok(Some(st));
        }
        let names = self.id_names(&sftp).await;
        let (Some(owner), Some(group)) = (names.users.get(&st.uid), names.groups.get(&st.gid))
        else {
            return self.stat_by_exec(path).await;
        };
        st.owner = Some(owner.clone());
        st.group = Some(group.clone());
        Ok(Some(st))
    }

    async fn stat_ids(&self, path: &str) -> Result<Option<FileStat>, ConnError> {
        let sftp = self.sftp().await?;
        self.sftp_stat(&sftp, path).await
    }

    async fn content_equals(&self, path: &str, data: &[u8]) -> Result<Option<bool>, ConnError> {
        let sftp = self.sftp().await?;
        let _bulk = bulk(data.len()).await;
        match sftp.client.equals(path, data).await {
            Ok(r) => Ok(r),
            Err(e) => Err(ConnError::Io(format!(
                "{}: cannot read {path}: {}",
                self.label(),
                self.sftp_failed(&sftp, &e).await
            ))),
        }
    }

    async fn exists(&self, path: &str) -> Result<bool, ConnError> {
        let sftp = self.sftp().await?;
        match sftp.client.stat(path).await {
            Ok(found) => Ok(found.is_some()),
            // `[ -e ]` says no when it may not look.
            Err(e) if sftp::is_denied(&e) => Ok(false),
            Err(_) => connection::exists_by_exec(self, path, None, None).await,
        }
    }
}

/// Whether the policy is strict (for messages).
pub fn policy_from_cli(p: crate::cli::HostKeyChecking) -> HostKeyPolicy {
    match p {
        crate::cli::HostKeyChecking::Strict => HostKeyPolicy::Strict,
        crate::cli::HostKeyChecking::AcceptNew => HostKeyPolicy::AcceptNew,
        crate::cli::HostKeyChecking::Off => HostKeyPolicy::Off,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(user: &str, become_password: Option<&str>) -> HostConn {
        let pool = Pool::without_ssh_config(SshOptions::default());
        let mut vars = serde_json::Map::new();
        vars.insert("ansible_user".into(), user.into());
        if let Some(pw) = become_password {
            vars.insert("ansible_become_password".into(), pw.into());
        }
        let target = config::target("h", &vars, None, &pool.opts, None).unwrap();
        HostConn {
            known: Arc::new(KnownHosts::new(&pool.opts.home, None)),
            pool,
            target,
            state: tokio::sync::Mutex::new(State::default()),
            channels: Arc::new(Semaphore::new(CHANNELS_PER_HOST)),
            sftp_open: tokio::sync::Mutex::new(()),
            names: tokio::sync::OnceCell::new(),
        }
    }

    #[test]
    fn command_lines_quote_and_never_carry_the_password() {
        let cmd = Command {
            cmd: "echo 'a b'; rm -rf \"$x\"".into(),
            become_user: Some("root".into()),
            ..Default::default()
        };
        // Logged in as the become user: no sudo.
        let (line, ctl) = conn("root", None).command_line(&cmd, "J1");
        assert_eq!(
            line,
            r#"env MAILRUN_JOB=J1 /bin/sh -c 'echo '\''a b'\''; rm -rf "$x"'"#
        );
        assert!(ctl.is_none());
        // No password: sudo -n (fails fast instead of prompting).
        let (line, _) = conn("alice", None).command_line(&cmd, "J2");
        assert!(
            line.starts_with("sudo -H -n -u root -- env MAILRUN_JOB=J2 /bin/sh -c "),
            "{line}"
        );
        // With a password: a prompt marker and a start token, no password.
        let (line, ctl) = conn("alice", Some("pw-s3cret")).command_line(&cmd, "J3");
        let ctl = ctl.unwrap();
        assert!(!line.contains("pw-s3cret"), "{line}");
        assert!(
            line.contains(&ctl.marker) && line.contains(&ctl.token),
            "{line}"
        );
        assert!(line.starts_with("sudo -H -S -p "), "{line}");
    }

    #[test]
    fn token_line_and_marker_search() {
        assert_eq!(find_line(b"junk MAILRUN-X\nout", b"MAILRUN-X"), Some(15));
        assert_eq!(find_line(b"MAILRUN-X", b"MAILRUN-X"), None);
        assert_eq!(find(b"abc[p] password:", b"[p] password:"), Some(3));
        assert_ne!(unique_id(), unique_id());
    }
}
