//! One SSH session: TCP connect (own timeout, nodelay), key exchange with the
//! host-key check, and authentication (key files, ssh-agent, default keys,
//! password, keyboard-interactive).

use super::config::{HostKeyPolicy, Target};
use super::known_hosts::{fingerprint, KnownHosts, Verdict};
use russh::client::{self, AuthResult, KeyboardInteractiveAuthResponse, Msg};
use russh::keys::agent::client::AgentClient;
use russh::keys::{Algorithm, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{Channel, ChannelOpenFailure};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the host-key check decided, read after the handshake (the handler
/// callback itself stays trivial: no prompts, no writes).
#[derive(Debug, Default)]
pub(crate) struct KeyCheck {
    /// accept-new: record this key once the handshake has finished.
    pub learn: Option<russh::keys::PublicKey>,
    /// Why the key was refused.
    pub refused: Option<String>,
}

pub(crate) struct Client {
    target: Target,
    policy: HostKeyPolicy,
    known: Arc<KnownHosts>,
    check: Arc<Mutex<KeyCheck>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        if self.policy == HostKeyPolicy::Off {
            return Ok(true);
        }
        let key = key.public_key();
        let t = &self.target;
        let verdict = self.known.check(&t.known_names(), t.port, &key);
        let mut check = self.check.lock().unwrap_or_else(|e| e.into_inner());
        match verdict {
            Verdict::Match => return Ok(true),
            Verdict::Unknown if self.policy == HostKeyPolicy::AcceptNew => {
                check.learn = Some(key);
                return Ok(true);
            }
            Verdict::Unknown => {
                check.refused = Some(format!(
                    "host key verification failed: {} is not in {} ({}); \
                     add it (ssh-keyscan, or a first run with --host-key-checking accept-new)",
                    super::known_hosts::host_port(&t.addr, t.port),
                    self.known.user_file.display(),
                    fingerprint(&key),
                ));
            }
            Verdict::Changed(old) => {
                let olds: Vec<String> = old
                    .iter()
                    .map(|r| format!("{} ({}:{})", fingerprint(&r.key), r.file.display(), r.line))
                    .collect();
                check.refused = Some(format!(
                    "HOST KEY CHANGED for {}: known as {}, now offers {}; \
                     refusing to connect (someone may be intercepting, or the host was reinstalled: \
                     remove the old entry with ssh-keygen -R if the change is expected)",
                    super::known_hosts::host_port(&t.addr, t.port),
                    olds.join(", "),
                    fingerprint(&key),
                ));
            }
            Verdict::Revoked { file, line } => {
                check.refused = Some(format!(
                    "host key {} is marked @revoked ({}:{line})",
                    fingerprint(&key),
                    file.display()
                ));
            }
        }
        Ok(false)
    }

    // mailrun asks for no forwarding: refuse whatever the server opens.
    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _connected_address: &str,
        _connected_port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn server_channel_open_agent_forward(
        &mut self,
        _channel: Channel<Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn server_channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn server_channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }
}

pub(crate) type Handle = client::Handle<Client>;

/// Why a connection attempt failed, and whether another try may help.
#[derive(Debug)]
pub(crate) struct ConnectError {
    pub msg: String,
    pub retry: bool,
}

fn fail(msg: impl Into<String>, retry: bool) -> ConnectError {
    ConnectError {
        msg: msg.into(),
        retry,
    }
}

/// Client settings: nodelay (Nagle costs ~40 ms a round trip), keepalive
/// (3 unanswered: dead, so a vanished peer is noticed in ~4 intervals),
/// AES-GCM first (faster than chacha20 with AES-NI).
pub(crate) fn base_config(keepalive: Duration) -> client::Config {
    let mut preferred = russh::Preferred::DEFAULT.clone();
    let mut ciphers: Vec<russh::cipher::Name> = preferred.cipher.to_vec();
    ciphers.sort_by_key(|c| *c != russh::cipher::AES_256_GCM);
    preferred.cipher = ciphers.into();
    client::Config {
        nodelay: true,
        keepalive_interval: Some(keepalive),
        keepalive_max: 3,
        preferred,
        ..Default::default()
    }
}

/// Opens TCP and runs the handshake. With a host key on record, only its
/// algorithms are negotiated (as OpenSSH does), so a host known under one
/// type is never silently learnt under another.
pub(crate) async fn handshake(
    target: &Target,
    policy: HostKeyPolicy,
    known: &Arc<KnownHosts>,
) -> Result<(Handle, Option<russh::keys::PublicKey>), ConnectError> {
    let mut config = base_config(target.keepalive);
    if policy != HostKeyPolicy::Off {
        let (recorded, _) = known.recorded(&target.known_names(), target.port);
        let algs: Vec<Algorithm> = recorded.iter().map(|r| r.key.algorithm()).collect();
        if !algs.is_empty() {
            let mut keys: Vec<Algorithm> = config
                .preferred
                .key
                .iter()
                .filter(|a| algs.iter().any(|r| same_family(r, a)))
                .cloned()
                .collect();
            if keys.is_empty() {
                keys = algs;
            }
            config.preferred.key = keys.into();
        }
    }
    // The name first, so that a name that does not resolve says so.
    let lookup = tokio::net::lookup_host((target.addr.as_str(), target.port));
    let addrs: Vec<std::net::SocketAddr> =
        match tokio::time::timeout(target.connect_timeout, lookup).await {
            Ok(Ok(found)) => found.collect(),
            Ok(Err(e)) => {
                return Err(fail(
                    format!(
                        "cannot resolve the host name {}: {} (check ansible_host, /etc/hosts or DNS)",
                        target.addr,
                        io_reason(&e)
                    ),
                    false,
                ))
            }
            Err(_) => {
                return Err(fail(
                    format!(
                        "cannot resolve the host name {}: no answer within {}s (check ansible_host, /etc/hosts or DNS)",
                        target.addr,
                        target.connect_timeout.as_secs_f64()
                    ),
                    false,
                ))
            }
        };
    let stream = match tokio::time::timeout(
        target.connect_timeout,
        tokio::net::TcpStream::connect(&addrs[..]),
    )
    .await
    {
        Err(_) => {
            return Err(fail(
                format!(
                    "connect to {}:{} timed out after {}s",
                    target.addr,
                    target.port,
                    target.connect_timeout.as_secs_f64()
                ),
                false,
            ))
        }
        Ok(Err(e)) => {
            let retry = e.kind() == std::io::ErrorKind::ConnectionRefused;
            return Err(fail(
                format!(
                    "connect to {}:{}: {}",
                    target.addr,
                    target.port,
                    io_reason(&e)
                ),
                retry,
            ));
        }
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let check = Arc::new(Mutex::new(KeyCheck::default()));
    let client = Client {
        target: target.clone(),
        policy,
        known: known.clone(),
        check: check.clone(),
    };
    let res = tokio::time::timeout(
        target.connect_timeout,
        client::connect_stream(Arc::new(config), stream, client),
    )
    .await;
    let take = || std::mem::take(&mut *check.lock().unwrap_or_else(|e| e.into_inner()));
    match res {
        Err(_) => Err(fail(
            format!(
                "SSH handshake with {}:{} timed out after {}s (the port answers but does not speak SSH?)",
                target.addr,
                target.port,
                target.connect_timeout.as_secs_f64()
            ),
            false,
        )),
        Ok(Err(e)) => {
            if let Some(refused) = take().refused {
                return Err(fail(refused, false));
            }
            // sshd's MaxStartups drops handshakes beyond its limit at random.
            let retry = matches!(&e, russh::Error::IO(_) | russh::Error::Disconnect | russh::Error::HUP);
            Err(fail(
                format!("SSH handshake with {}:{} failed: {}", target.addr, target.port, russh_reason(&e)),
                retry,
            ))
        }
        Ok(Ok(handle)) => Ok((handle, take().learn)),
    }
}

fn same_family(recorded: &Algorithm, offered: &Algorithm) -> bool {
    match (recorded, offered) {
        (Algorithm::Rsa { .. }, Algorithm::Rsa { .. }) => true,
        (a, b) => a == b,
    }
}

pub(crate) fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset by peer".into(),
        std::io::ErrorKind::HostUnreachable => "no route to host".into(),
        std::io::ErrorKind::NetworkUnreachable => "network unreachable".into(),
        std::io::ErrorKind::TimedOut => "timed out".into(),
        _ => e.to_string(),
    }
}

pub(crate) fn russh_reason(e: &russh::Error) -> String {
    match e {
        russh::Error::IO(io) => io_reason(io),
        russh::Error::Disconnect => "the server closed the connection".into(),
        other => other.to_string(),
    }
}

/// Decrypted keys, loaded once per run (decrypting costs ~170 ms).
#[derive(Default)]
pub(crate) struct KeyCache {
    keys: tokio::sync::Mutex<HashMap<PathBuf, Result<Arc<PrivateKey>, String>>>,
}

impl KeyCache {
    /// The key at `path`; an encrypted key asks for its passphrase on the
    /// terminal (one prompt at a time). `explicit` keys that are missing are
    /// an error; missing default keys are skipped (None).
    pub async fn get(
        &self,
        path: &Path,
        explicit: bool,
    ) -> Option<Result<Arc<PrivateKey>, String>> {
        let mut keys = self.keys.lock().await;
        if let Some(k) = keys.get(path) {
            return Some(k.clone());
        }
        if !path.exists() {
            if !explicit {
                return None;
            }
            let r = Err(format!("{}: no such key file", path.display()));
            keys.insert(path.to_path_buf(), r.clone());
            return Some(r);
        }
        let p = path.to_path_buf();
        let loaded = tokio::task::spawn_blocking(move || load_key(&p))
            .await
            .unwrap_or_else(|e| Err(format!("key loader failed: {e}")));
        keys.insert(path.to_path_buf(), loaded.clone());
        Some(loaded)
    }
}

fn load_key(path: &Path) -> Result<Arc<PrivateKey>, String> {
    match russh::keys::load_secret_key(path, None) {
        Ok(k) => Ok(Arc::new(k)),
        Err(russh::keys::Error::KeyIsEncrypted) => {
            let prompt = format!("Enter passphrase for key '{}': ", path.display());
            // rpassword reads /dev/tty with echo off; no terminal, no prompt.
            let pass = rpassword::prompt_password(&prompt).map_err(|_| {
                format!(
                    "{}: the key is encrypted and there is no terminal to ask for its passphrase (load it into ssh-agent)",
                    path.display()
                )
            })?;
            crate::secret::register(&pass);
            russh::keys::load_secret_key(path, Some(&pass))
                .map(Arc::new)
                .map_err(|e| format!("{}: cannot decrypt the key: {e}", path.display()))
        }
        Err(e) => Err(format!("{}: cannot read the key: {e}", path.display())),
    }
}

const DEFAULT_KEYS: &[&str] = &["id_ed25519", "id_ecdsa", "id_rsa"];

/// Opens (and, if encrypted, asks for) the keys a login may use.
pub(crate) async fn preload_keys(keys: &KeyCache, target: &Target, home: &Path) {
    for p in &target.key_files {
        let _ = keys.get(p, true).await;
    }
    for k in DEFAULT_KEYS {
        let _ = keys.get(&home.join(".ssh").join(k), false).await;
    }
}

/// One login's bookkeeping: the methods tried, what the server accepts,
/// and notes on keys that could not be used.
struct Login<'a> {
    handle: &'a mut Handle,
    target: &'a Target,
    rsa_hash: Option<russh::keys::HashAlg>,
    tried: Vec<String>,
    notes: Vec<String>,
    accepts: String,
}

impl Login<'_> {
    /// Records what a refusal says the server still accepts.
    fn refused(&mut self, r: &AuthResult) {
        if let AuthResult::Failure {
            remaining_methods, ..
        } = r
        {
            let m: Vec<&str> = remaining_methods.iter().map(|m| m.into()).collect();
            self.accepts = m.join(",");
        }
    }

    fn lost(e: &russh::Error) -> String {
        format!("connection lost during login: {}", russh_reason(e))
    }

    /// Tries the key files in turn; true once logged in. Missing files are
    /// an error only when `explicit`.
    async fn key_files(
        &mut self,
        keys: &KeyCache,
        files: &[PathBuf],
        explicit: bool,
    ) -> Result<bool, String> {
        for path in files {
            let key = match keys.get(path, explicit).await {
                None => continue,
                Some(Err(e)) => {
                    self.notes.push(e);
                    continue;
                }
                Some(Ok(k)) => k,
            };
            let hash = if key.algorithm().is_rsa() {
                self.rsa_hash
            } else {
                None
            };
            self.tried.push(format!("publickey {}", path.display()));
            let user = self.target.user.clone();
            match self
                .handle
                .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, hash))
                .await
            {
                Ok(r) if r.success() => return Ok(true),
                Ok(r) => self.refused(&r),
                Err(e) => return Err(Self::lost(&e)),
            }
            if self.handle.is_closed() {
                return Err(closed_during_login(self.target, &self.tried));
            }
        }
        Ok(false)
    }

    /// The password, then keyboard-interactive with it if the server
    /// offers that; true once logged in.
    async fn password(&mut self, pw: &str) -> Result<bool, String> {
        let user = self.target.user.clone();
        self.tried.push("password".into());
        match self.handle.authenticate_password(&user, pw).await {
            Ok(r) if r.success() => return Ok(true),
            Ok(r) => self.refused(&r),
            Err(e) => return Err(Self::lost(&e)),
        }
        if self.accepts.split(',').any(|m| m == "keyboard-interactive") {
            self.tried.push("keyboard-interactive".into());
            return Ok(keyboard_interactive(self.handle, &user, pw).await);
        }
        Ok(false)
    }

    /// The error of a login that failed.
    fn failure(self) -> String {
        let t = self.target;
        let tried = if self.tried.is_empty() {
            "no method (no key file, no agent key, no default key, no password)".to_string()
        } else {
            self.tried.join(", ")
        };
        let mut msg = format!(
            "authentication failed for {}@{} ({}:{}); tried {tried}",
            t.user, t.alias, t.addr, t.port
        );
        if !self.accepts.is_empty() {
            msg.push_str(&format!("; the server accepts: {}", self.accepts));
        }
        for n in self.notes {
            msg.push_str(&format!("; {n}"));
        }
        msg
    }
}

/// Logs in, trying in turn: the target's key files, ssh-agent's keys, the
/// default keys, the password (and keyboard-interactive with it). The error
/// names the host, the user and every method tried.
pub(crate) async fn authenticate(
    handle: &mut Handle,
    target: &Target,
    keys: &KeyCache,
    home: &Path,
) -> Result<(), String> {
    let rsa_hash = handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten();
    let mut login = Login {
        handle,
        target,
        rsa_hash,
        tried: Vec::new(),
        notes: Vec::new(),
        accepts: String::new(),
    };
    let defaults: Vec<PathBuf> = DEFAULT_KEYS
        .iter()
        .map(|k| home.join(".ssh").join(k))
        .filter(|p| !target.key_files.contains(p))
        .collect();
    if login.key_files(keys, &target.key_files, true).await? {
        return Ok(());
    }
    match agent_auth(login.handle, &target.user, rsa_hash, &mut login.tried).await {
        Some(Ok(true)) => return Ok(()),
        Some(Err(e)) => login.notes.push(e),
        _ => {}
    }
    if login.key_files(keys, &defaults, false).await? {
        return Ok(());
    }
    if login.handle.is_closed() {
        return Err(closed_during_login(target, &login.tried));
    }
    if let Some(pw) = &target.password {
        if login.password(pw).await? {
            return Ok(());
        }
    }
    Err(login.failure())
}

fn closed_during_login(target: &Target, tried: &[String]) -> String {
    format!(
        "the server closed the connection during the login of {}@{} ({}:{}) after {} attempts \
         (its MaxAuthTries?); tried {}",
        target.user,
        target.alias,
        target.addr,
        target.port,
        tried.len(),
        tried.join(", ")
    )
}

/// Some(Ok(true)) logged in; Some(Ok(false)) no agent key worked; None no agent.
async fn agent_auth(
    handle: &mut Handle,
    user: &str,
    rsa_hash: Option<russh::keys::HashAlg>,
    tried: &mut Vec<String>,
) -> Option<Result<bool, String>> {
    std::env::var_os("SSH_AUTH_SOCK")?;
    let mut agent = match AgentClient::connect_env().await {
        Ok(a) => a,
        Err(e) => return Some(Err(format!("ssh-agent: {e}"))),
    };
    let ids = match agent.request_identities().await {
        Ok(ids) => ids,
        Err(e) => return Some(Err(format!("ssh-agent: {e}"))),
    };
    for id in ids {
        let key = id.public_key().into_owned();
        let hash = if key.algorithm().is_rsa() {
            rsa_hash
        } else {
            None
        };
        tried.push(format!("publickey (agent) {}", fingerprint(&key)));
        match handle
            .authenticate_publickey_with(user, key, hash, &mut agent)
            .await
        {
            Ok(r) if r.success() => return Some(Ok(true)),
            Ok(_) if handle.is_closed() => return Some(Ok(false)),
            Ok(_) => {}
            Err(e) => return Some(Err(format!("ssh-agent: {e:?}"))),
        }
    }
    Some(Ok(false))
}

/// Answers every prompt with the password (PAM's "Password:").
async fn keyboard_interactive(handle: &mut Handle, user: &str, pw: &str) -> bool {
    let Ok(mut r) = handle
        .authenticate_keyboard_interactive_start(user, None)
        .await
    else {
        return false;
    };
    for _ in 0..5 {
        match r {
            KeyboardInteractiveAuthResponse::Success => return true,
            KeyboardInteractiveAuthResponse::Failure { .. } => return false,
            KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                let answers = prompts.iter().map(|_| pw.to_string()).collect();
                match handle
                    .authenticate_keyboard_interactive_respond(answers)
                    .await
                {
                    Ok(next) => r = next,
                    Err(_) => return false,
                }
            }
        }
    }
    false
}
