//! What the mail modules (`doveadm_backup`, `doveadm_sync`, `mail_verify`)
//! share: the two sides of a migration, a user's mail as doveadm lists it
//! (mailboxes, message GUIDs and flags, Sieve scripts), and how two such
//! lists compare.

use crate::connection::{Command, ConnError, Connection, ExecOutput};
use crate::module::Context;
use crate::quote::quote;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// Where doveadm commands for one side run.
#[derive(Clone)]
pub(super) enum Via {
    /// The control machine's own connection to the host.
    Direct(Arc<dyn Connection>),
    /// Through the source host's ssh (a remote outside the inventory).
    Ssh {
        source: Arc<dyn Connection>,
        ssh: String,
    },
}

/// One side of a migration.
#[derive(Clone)]
pub(super) struct Side {
    /// The name shown in messages (inventory name or address).
    pub(super) name: String,
    pub(super) via: Via,
    pub(super) become_user: Option<String>,
}

impl Side {
    /// The task's own host.
    pub(super) fn this(ctx: &Context) -> Side {
        Side {
            name: ctx.host.clone(),
            via: Via::Direct(ctx.conn.clone()),
            become_user: ctx.become_user.clone(),
        }
    }

    /// Runs a shell script on this side.
    pub(super) async fn sh(
        &self,
        script: &str,
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, ConnError> {
        let (conn, cmd) = match &self.via {
            Via::Direct(c) => (c, script.to_string()),
            Via::Ssh { source, ssh } => (
                source,
                format!("{ssh} {}", quote(&format!("sh -c {}", quote(script)))),
            ),
        };
        conn.exec(&Command {
            cmd,
            stdin: None,
            timeout,
            become_user: self.become_user.clone(),
        })
        .await
    }
}

/// A Dovecot version (`dovecot --version`: "2.4.1-4 (7d8c0e5759)").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Version(pub(super) u32, pub(super) u32, pub(super) u32);

impl Version {
    pub(super) fn parse(text: &str) -> Option<Version> {
        let word = text.split_whitespace().next()?;
        let mut nums = word.split(['.', '-']).map(|n| n.parse::<u32>().ok());
        let major = nums.next()??;
        let minor = nums.next()??;
        let patch = nums.next().flatten().unwrap_or(0);
        Some(Version(major, minor, patch))
    }

    /// Dovecot 2.4's rules: `dsync-server` without `-U`, `%{user}` in
    /// `dsync_remote_cmd`, the 2.4 configuration syntax.
    pub(super) fn is_2_4(self) -> bool {
        self >= Version(2, 4, 0)
    }

    /// The versions whose doveadm mailrun speaks.
    pub(super) fn supported(self) -> bool {
        (Version(2, 3, 0)..Version(2, 5, 0)).contains(&self)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// Each host's Dovecot version, read once per run.
static VERSIONS: std::sync::Mutex<BTreeMap<String, Version>> =
    std::sync::Mutex::new(BTreeMap::new());

impl Side {
    /// This side's Dovecot version (read once per run and host).
    pub(super) async fn version(&self) -> Result<Version, String> {
        let key = match &self.via {
            Via::Direct(_) => self.name.clone(),
            Via::Ssh { ssh, .. } => format!("{ssh} ({})", self.name),
        };
        if let Some(v) = VERSIONS.lock().ok().and_then(|m| m.get(&key).copied()) {
            return Ok(v);
        }
        let out = self
            .sh("dovecot --version", Some(Duration::from_secs(60)))
            .await
            .map_err(|e| format!("cannot ask {} for its Dovecot version: {e}", self.name))?;
        let text = out.stdout_str();
        let v = Version::parse(&text)
            .filter(|_| out.rc == 0)
            .ok_or_else(|| {
                format!(
                    "cannot read the Dovecot version on {} (dovecot --version, rc {}): {}",
                    self.name,
                    out.rc,
                    last_lines(&format!("{text}\n{}", out.stderr_str()), 2)
                )
            })?;
        if let Ok(mut m) = VERSIONS.lock() {
            m.insert(key, v);
        }
        Ok(v)
    }
}

/// The remote side of a transfer: how old's dsync reaches it and how the
/// control machine asks it questions.
pub(super) struct Remote {
    pub(super) side: Side,
    /// `LOGIN@ADDR` for `remote:` and `-p PORT` when not 22.
    pub(super) login: String,
    pub(super) addr: String,
    pub(super) port: u16,
    /// Dovecot on the source and on the remote (see `versions`).
    pub(super) source_version: Version,
    pub(super) version: Version,
}

impl Remote {
    /// Resolves `remote`: an inventory host (its `ansible_host`/port, asked
    /// over the control's own connection) or an address old's ssh reaches.
    pub(super) fn resolve(ctx: &Context, remote: &str, login: &str) -> Result<Remote, String> {
        if !valid_login(login) {
            return Err(format!("remote_user '{login}' is not a valid user name"));
        }
        let conn = ctx.hosts.connection(remote).map_err(|e| e.to_string())?;
        let (addr, port) = match conn.as_ref().and_then(|c| c.address()) {
            Some(a) => a,
            None => (remote.to_string(), 22),
        };
        if !valid_addr(&addr) {
            return Err(format!(
                "remote '{remote}': '{addr}' is not a host name or address doveadm can use"
            ));
        }
        let ssh_opts = ssh_options(port);
        let via = match conn {
            Some(c) => Via::Direct(c),
            None => Via::Ssh {
                source: ctx.conn.clone(),
                ssh: format!("ssh {ssh_opts} -l {} -- {}", quote(login), quote(&addr)),
            },
        };
        Ok(Remote {
            side: Side {
                name: remote.to_string(),
                via,
                become_user: ctx.become_user.clone(),
            },
            login: login.to_string(),
            addr,
            port,
            source_version: Version(2, 3, 0),
            version: Version(2, 3, 0),
        })
    }

    /// Reads both sides' Dovecot versions; a pair mailrun cannot move mail
    /// between is refused, before anything is touched.
    pub(super) async fn versions(&mut self, source: &Side) -> Result<(), String> {
        let (a, b) = tokio::join!(source.version(), self.side.version());
        let (a, b) = (a?, b?);
        for (v, who) in [(a, &source.name), (b, &self.side.name)] {
            if !v.supported() {
                return Err(format!(
                    "{who} runs Dovecot {v}: mailrun moves mail between Dovecot 2.3 and 2.4 only (either way); refused before anything was touched"
                ));
            }
        }
        self.source_version = a;
        self.version = b;
        Ok(())
    }

    /// doveadm's `-o dsync_remote_cmd=…`: never a prompt (BatchMode), a
    /// bounded connect, keepalives; over the task's shared connection when
    /// there is one (`mux`, a socket that a missing master makes ssh
    /// ignore: it then connects on its own). The source's doveadm expands
    /// the user (`%u` in 2.3, `%{user}` in 2.4); the remote's
    /// `dsync-server` takes `-U` in 2.3 and refuses it in 2.4.
    pub(super) fn dsync_remote_cmd(&self, mux: Option<&str>) -> String {
        let mux = match mux {
            Some(path) => format!(" -o ControlMaster=no -o ControlPath={path}"),
            None => String::new(),
        };
        let user = if self.source_version.is_2_4() {
            "%{user}"
        } else {
            "%u"
        };
        let flags = if self.version.is_2_4() { "" } else { " -U" };
        format!(
            "dsync_remote_cmd=ssh {}{mux} -l%{{login}} %{{host}} doveadm dsync-server -u{user}{flags}",
            ssh_options(self.port)
        )
    }

    /// A shell script that starts one shared ssh connection to the remote
    /// (a ControlMaster) in a new private directory and prints the socket's
    /// path: the users' dsyncs then open sessions on it instead of each
    /// paying a key exchange and a login. It ends 30 s after its last
    /// session (if `mux_close` never runs).
    pub(super) fn mux_open_script(&self) -> String {
        format!(
            "d=$(mktemp -d /tmp/mailrun-dsync.XXXXXX) || exit 1\n\
             ssh {} -o ControlMaster=yes -o ControlPath=\"$d/mux\" -o ControlPersist=30 -fN -l {} {} </dev/null >/dev/null 2>&1 \
             || {{ rm -rf -- \"$d\"; exit 1; }}\n\
             echo \"$d/mux\"",
            ssh_options(self.port),
            quote(&self.login),
            quote(&self.addr)
        )
    }

    /// Ends the shared connection and removes its directory.
    pub(super) fn mux_close_script(&self, mux: &str) -> String {
        let dir = mux.strip_suffix("/mux").unwrap_or(mux);
        format!(
            "ssh -o ControlPath={} -O exit -l {} {} >/dev/null 2>&1; rm -rf -- {}",
            quote(mux),
            quote(&self.login),
            quote(&self.addr),
            quote(dir)
        )
    }

    /// doveadm's destination argument.
    pub(super) fn destination(&self) -> String {
        format!("remote:{}@{}", self.login, self.addr)
    }
}

fn ssh_options(port: u16) -> String {
    let mut s = "-o BatchMode=yes -o ConnectTimeout=15 -o ServerAliveInterval=15".to_string();
    if port != 22 {
        s.push_str(&format!(" -p {port}"));
    }
    s
}

fn valid_login(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn valid_addr(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
}

/// The users a task works on: `user`, `users`, or every user of the source's
/// userdb (`doveadm user '*'`, what `-A` iterates).
pub(super) async fn users(
    source: &Side,
    user: Option<&str>,
    users: Option<&[String]>,
) -> Result<Vec<String>, String> {
    let mut list: Vec<String> = Vec::new();
    if let Some(u) = user {
        list.push(u.to_string());
    }
    list.extend(users.unwrap_or_default().iter().cloned());
    if list.is_empty() {
        let out = source
            .sh("doveadm user '*'", None)
            .await
            .map_err(|e| e.to_string())?;
        if out.rc != 0 {
            return Err(format!(
                "cannot list the users on {} (doveadm user '*', rc {}): {}",
                source.name,
                out.rc,
                out.stderr_str().trim()
            ));
        }
        list = out
            .stdout_str()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
    }
    let mut seen = BTreeSet::new();
    list.retain(|u| seen.insert(u.clone()));
    Ok(list)
}

/// One message as `doveadm fetch` lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Message {
    pub(super) mailbox: String,
    pub(super) guid: String,
    /// Sorted, without `\Recent` (a per-session flag).
    pub(super) flags: String,
    pub(super) message_id: String,
}

/// A Sieve script: name, active, SHA-256 of its text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Script {
    pub(super) name: String,
    pub(super) active: bool,
    pub(super) sha256: String,
}

/// A user's mail on one side.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct MailState {
    pub(super) mailboxes: BTreeSet<String>,
    pub(super) messages: Vec<Message>,
    /// None when the host has no Sieve support in doveadm.
    pub(super) sieve: Option<Vec<Script>>,
}

/// Why a user's mail could not be listed.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum StateError {
    /// doveadm exit 67: the userdb does not know the user.
    UnknownUser,
    Failed(String),
}

impl MailState {
    /// Messages per mailbox (every mailbox, empty ones with 0).
    pub(super) fn counts(&self) -> BTreeMap<String, usize> {
        let mut m: BTreeMap<String, usize> =
            self.mailboxes.iter().map(|b| (b.clone(), 0)).collect();
        for msg in &self.messages {
            *m.entry(msg.mailbox.clone()).or_default() += 1;
        }
        m
    }

    pub(super) fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "mailboxes": self.mailboxes.len(),
            "messages": self.messages.len(),
            "sieve_scripts": self.sieve.as_ref().map(|s| s.len()).unwrap_or(0),
        })
    }

    /// Equal mailboxes, messages and Sieve scripts by name and activity
    /// (their texts not compared: an after-state reads no texts).
    pub(super) fn same_apart_from_sieve_text(&self, other: &MailState) -> bool {
        let names = |s: &MailState| {
            s.sieve.as_ref().map(|v| {
                v.iter()
                    .map(|x| (x.name.clone(), x.active))
                    .collect::<Vec<_>>()
            })
        };
        self.mailboxes == other.mailboxes
            && self.messages == other.messages
            && names(self) == names(other)
    }

    /// Whether a script both sides have by name differs in text.
    pub(super) fn sieve_texts_differ(&self, other: &MailState) -> bool {
        let (Some(a), Some(b)) = (&self.sieve, &other.sieve) else {
            return false;
        };
        a.iter()
            .any(|x| b.iter().any(|y| y.name == x.name && y.sha256 != x.sha256))
    }

    fn guids(&self) -> BTreeSet<&str> {
        self.messages.iter().map(|m| m.guid.as_str()).collect()
    }

    /// What `backup` from `src` would delete here: messages (by GUID, in
    /// any mailbox) and Sieve scripts src lacks or holds differently.
    pub(super) fn lost_by_backup_from(&self, src: &MailState) -> Vec<String> {
        let theirs = src.guids();
        let mut out = Vec::new();
        let mut per_box: BTreeMap<&str, usize> = BTreeMap::new();
        for m in &self.messages {
            if !theirs.contains(m.guid.as_str()) {
                *per_box.entry(m.mailbox.as_str()).or_default() += 1;
            }
        }
        for (b, n) in per_box {
            out.push(format!("{n} message(s) in '{b}'"));
        }
        if let (Some(mine), Some(theirs)) = (&self.sieve, &src.sieve) {
            for s in mine {
                match theirs.iter().find(|t| t.name == s.name) {
                    None => out.push(format!("Sieve script '{}'", s.name)),
                    Some(t) if t.sha256 != s.sha256 => {
                        out.push(format!("a different Sieve script '{}'", s.name))
                    }
                    _ => {}
                }
            }
        }
        out
    }
}

/// A shell script printing a user's mail for [`parse_state`]: with the
/// Sieve scripts' texts hashed (a doveadm run each) or only listed.
pub(super) fn state_script(user: &str, message_ids: bool, sieve_text: bool) -> String {
    let hash = if sieve_text {
        "s=$(doveadm sieve get -u \"$u\" \"$n\" | sha256sum | cut -c1-64)\n"
    } else {
        "s=\n"
    };
    let fields = if message_ids {
        "mailbox guid flags hdr.message-id"
    } else {
        "mailbox guid flags"
    };
    format!(
        "u={u}\n\
         echo @mailboxes\n\
         doveadm mailbox list -u \"$u\" || exit $?\n\
         echo @messages\n\
         doveadm -f tab fetch -u \"$u\" '{fields}' all || exit $?\n\
         echo @sieve\n\
         if l=$(doveadm -f tab sieve list -u \"$u\" 2>/dev/null); then\n\
         T=$(printf '\\t')\n\
         printf '%s\\n' \"$l\" | tail -n +2 | while IFS=\"$T\" read -r n a; do\n\
         {hash}\
         printf '%s\\t%s\\t%s\\n' \"$n\" \"$a\" \"$s\"\n\
         done\n\
         else echo @nosieve; fi",
        u = quote(user)
    )
}

/// A user's mail on a side.
pub(super) async fn state(
    side: &Side,
    user: &str,
    message_ids: bool,
    sieve_text: bool,
    timeout: Option<Duration>,
) -> Result<MailState, StateError> {
    let out = side
        .sh(&state_script(user, message_ids, sieve_text), timeout)
        .await
        .map_err(|e| StateError::Failed(e.to_string()))?;
    match out.rc {
        0 => parse_state(&out.stdout_str()).map_err(StateError::Failed),
        67 => Err(StateError::UnknownUser),
        rc => Err(StateError::Failed(format!(
            "doveadm on {} failed (rc {rc}): {}",
            side.name,
            last_lines(&out.stderr_str(), 3)
        ))),
    }
}

/// Compiles a user's Sieve scripts on a side with its own `sievec` (in a
/// private temp dir, removed after): the scripts that do not compile, each
/// with sievec's first error and the extension it names. No `sievec`
/// there: nothing to say (Pigeonhole is not installed).
pub(super) async fn sieve_compile(
    side: &Side,
    user: &str,
    scripts: &[String],
) -> Result<Vec<String>, String> {
    let names: Vec<String> = scripts.iter().map(|n| quote(n).into_owned()).collect();
    let script = format!(
        r#"command -v sievec >/dev/null 2>&1 || {{ echo @nosievec; exit 0; }}
d=$(mktemp -d /tmp/mailrun-sieve.XXXXXX) || exit 1
trap 'rm -rf -- "$d"' EXIT
# sievec -u runs as the user: the directory is theirs.
uid=$(doveadm user -f uid -- {u}) && gid=$(doveadm user -f gid -- {u}) && chown -- "$uid:$gid" "$d" || exit 1
i=0
for n in {names}; do
  i=$((i+1))
  # doveadm prints the script under a "sieve script:" heading.
  if ! doveadm sieve get -u {u} "$n" > "$d/get" 2>"$d/err"; then
    echo "@get $i"; head -n 3 "$d/err"; continue
  fi
  sed '1{{/^sieve script:$/d;}}' "$d/get" > "$d/$i.sieve"
  # As the user (an include :personal is looked up in their storage).
  if sievec -u {u} "$d/$i.sieve" "$d/$i.svbin" >"$d/err" 2>&1; then
    echo "@ok $i"
  else
    echo "@bad $i"; grep -i error "$d/err" | head -n 5
  fi
done"#,
        names = names.join(" "),
        u = quote(user)
    );
    let out = side
        .sh(&script, Some(Duration::from_secs(300)))
        .await
        .map_err(|e| format!("cannot compile the Sieve scripts on {}: {e}", side.name))?;
    if out.rc != 0 {
        return Err(format!(
            "cannot compile the Sieve scripts on {} (rc {}): {}",
            side.name,
            out.rc,
            last_lines(&out.stderr_str(), 2)
        ));
    }
    let why = if side.version().await.is_ok_and(Version::is_2_4) {
        "Pigeonhole 2.4 dropped notify, imapflags and vnd.dovecot.duplicate"
    } else {
        "not enabled in its sieve_extensions"
    };
    Ok(parse_sieve_compile(&out.stdout_str(), scripts, why))
}

/// What `sieve_compile`'s script printed: the scripts that failed.
fn parse_sieve_compile(text: &str, scripts: &[String], why: &str) -> Vec<String> {
    let mut bad = Vec::new();
    let mut current: Option<(String, bool, Vec<String>)> = None;
    let flush = |c: Option<(String, bool, Vec<String>)>, bad: &mut Vec<String>| {
        if let Some((name, compile, lines)) = c {
            bad.push(sieve_failure(&name, compile, &lines, why));
        }
    };
    for line in text.lines() {
        if line == "@nosievec" {
            return Vec::new();
        }
        let mut words = line.splitn(2, ' ');
        let (tag, rest) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        if matches!(tag, "@ok" | "@bad" | "@get") {
            flush(current.take(), &mut bad);
            let name = rest
                .parse::<usize>()
                .ok()
                .and_then(|i| scripts.get(i.wrapping_sub(1)))
                .cloned()
                .unwrap_or_else(|| rest.to_string());
            if tag != "@ok" {
                current = Some((name, tag == "@bad", Vec::new()));
            }
        } else if let Some((_, _, lines)) = current.as_mut() {
            lines.push(line.trim().to_string());
        }
    }
    flush(current, &mut bad);
    bad
}

fn sieve_failure(name: &str, compile: bool, lines: &[String], why: &str) -> String {
    if !compile {
        return format!(
            "Sieve script '{name}' cannot be read ({})",
            lines.join("; ")
        );
    }
    // "…: line 1: error: require command: unknown Sieve capability 'imapflags'."
    let exts: Vec<String> = lines
        .iter()
        .filter_map(|l| l.split("unknown Sieve capability ").nth(1))
        .map(|e| {
            e.trim_end_matches('.')
                .trim_matches(|c| c == '\'' || c == '`')
                .to_string()
        })
        .collect();
    let first = lines
        .iter()
        .find(|l| !l.contains("validation failed") && !l.contains("Fatal"))
        .map(|l| match l.find(": line ") {
            Some(i) => l[i + 2..].to_string(),
            None => l.clone(),
        })
        .unwrap_or_default();
    if exts.is_empty() {
        format!("Sieve script '{name}' does not compile: {first}")
    } else {
        format!(
            "Sieve script '{name}' does not compile: it uses the extension {} (not available there: {why}); {first}",
            exts.iter()
                .map(|e| format!("'{e}'"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// The last `n` non-empty lines of `text`, joined with "; ".
pub(super) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join("; ")
}

pub(super) fn parse_state(text: &str) -> Result<MailState, String> {
    let mut st = MailState::default();
    let mut section = "";
    let mut sieve = Vec::new();
    let mut has_sieve = true;
    for line in text.lines() {
        match line {
            "@mailboxes" | "@messages" | "@sieve" => {
                section = line;
                continue;
            }
            "@nosieve" => {
                has_sieve = false;
                continue;
            }
            _ => {}
        }
        match section {
            "@mailboxes" if !line.is_empty() => {
                st.mailboxes.insert(line.to_string());
            }
            "@messages" => {
                if line.starts_with("mailbox\tguid") || line.is_empty() {
                    continue;
                }
                let mut f = line.splitn(4, '\t');
                let mailbox = f.next().unwrap_or_default().to_string();
                let guid = f
                    .next()
                    .filter(|g| !g.is_empty())
                    .ok_or_else(|| format!("unexpected doveadm fetch line: {line}"))?
                    .to_string();
                let mut flags: Vec<&str> = f
                    .next()
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter(|fl| !fl.eq_ignore_ascii_case("\\Recent"))
                    .collect();
                flags.sort_unstable();
                st.messages.push(Message {
                    mailbox,
                    guid,
                    flags: flags.join(" "),
                    message_id: f.next().unwrap_or_default().trim().to_string(),
                });
            }
            "@sieve" if !line.is_empty() => {
                let mut f = line.split('\t');
                let name = f.next().unwrap_or_default().to_string();
                let active = f.next().unwrap_or_default().eq_ignore_ascii_case("ACTIVE");
                let sha256 = f.next().unwrap_or_default().to_string();
                sieve.push(Script {
                    name,
                    active,
                    sha256,
                });
            }
            _ => {}
        }
    }
    if section.is_empty() {
        return Err("doveadm printed nothing".into());
    }
    st.messages.sort();
    sieve.sort();
    st.sieve = has_sieve.then_some(sieve);
    Ok(st)
}

/// What `remote` lacks of `here`'s mail: missing mailboxes, messages (by
/// GUID, else by Message-ID in the same mailbox), flag differences (when
/// `flags`), Sieve scripts missing, different or with another active one.
pub(super) fn missing_on(here: &MailState, there: &MailState, flags: bool) -> Vec<String> {
    let mut out = Vec::new();
    for b in &here.mailboxes {
        if !there.mailboxes.contains(b) {
            out.push(format!("mailbox '{b}' is missing"));
        }
    }
    let by_guid: BTreeMap<(&str, &str), &Message> = there
        .messages
        .iter()
        .map(|m| ((m.mailbox.as_str(), m.guid.as_str()), m))
        .collect();
    let by_id: BTreeMap<(&str, &str), &Message> = there
        .messages
        .iter()
        .filter(|m| !m.message_id.is_empty())
        .map(|m| ((m.mailbox.as_str(), m.message_id.as_str()), m))
        .collect();
    for m in &here.messages {
        let found = by_guid
            .get(&(m.mailbox.as_str(), m.guid.as_str()))
            .or_else(|| {
                (!m.message_id.is_empty())
                    .then(|| by_id.get(&(m.mailbox.as_str(), m.message_id.as_str())))
                    .flatten()
            });
        match found {
            None => {
                let id = if m.message_id.is_empty() {
                    String::new()
                } else {
                    format!(" {}", m.message_id)
                };
                out.push(format!(
                    "message {}{id} in '{}' is missing",
                    m.guid, m.mailbox
                ));
            }
            Some(t) if flags && !flags_kept(&m.flags, &t.flags) => out.push(format!(
                "message {} in '{}' has flags '{}' there, '{}' here",
                m.guid, m.mailbox, t.flags, m.flags
            )),
            _ => {}
        }
    }
    if let (Some(mine), Some(theirs)) = (&here.sieve, &there.sieve) {
        for s in mine {
            match theirs.iter().find(|t| t.name == s.name) {
                None => out.push(format!("Sieve script '{}' is missing", s.name)),
                Some(t) if t.sha256 != s.sha256 => {
                    out.push(format!("Sieve script '{}' differs", s.name))
                }
                Some(t) if t.active != s.active => out.push(format!(
                    "Sieve script '{}' is {} there, {} here",
                    s.name,
                    if t.active { "active" } else { "inactive" },
                    if s.active { "active" } else { "inactive" }
                )),
                _ => {}
            }
        }
    }
    out
}

/// Whether a message's flags there keep every flag it has here. Flags set
/// there since (the user's own, on the new server) are fine, but not
/// `\Deleted`: the next expunge there would lose the message.
fn flags_kept(here: &str, there: &str) -> bool {
    let deleted_there_only = has_flag(there, "\\Deleted") && !has_flag(here, "\\Deleted");
    !deleted_there_only
        && here
            .split(' ')
            .filter(|f| !f.is_empty())
            .all(|f| there.split(' ').any(|g| g == f))
}

fn has_flag(flags: &str, flag: &str) -> bool {
    flags.split(' ').any(|f| f.eq_ignore_ascii_case(flag))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "@mailboxes\nINBOX\nArchive\nArchive/2024\nÜnïcode\nEmpty\n@messages\nmailbox\tguid\tflags\thdr.message-id\nINBOX\tg1\t\\Seen \\Recent \\Flagged\t<m1@x>\nINBOX\tg2\t\\Recent\t<m2@x>\nArchive/2024\tg3\t\t\n@sieve\nspare\t\tabc\nmain\tACTIVE\tdef\n";

    #[test]
    fn parses_doveadm_listing() {
        let st = parse_state(SAMPLE).unwrap();
        assert_eq!(st.mailboxes.len(), 5);
        assert!(st.mailboxes.contains("Ünïcode"));
        assert_eq!(st.messages.len(), 3);
        let g1 = st.messages.iter().find(|m| m.guid == "g1").unwrap();
        assert_eq!(g1.flags, "\\Flagged \\Seen");
        assert_eq!(g1.message_id, "<m1@x>");
        let sieve = st.sieve.as_ref().unwrap();
        assert_eq!(sieve.len(), 2);
        assert!(sieve.iter().any(|s| s.name == "main" && s.active));
        assert_eq!(st.counts()["Empty"], 0);
        assert_eq!(st.counts()["INBOX"], 2);
        let no = parse_state("@mailboxes\nINBOX\n@messages\n@sieve\n@nosieve\n").unwrap();
        assert!(no.sieve.is_none());
        assert!(parse_state("").is_err());
    }

    #[test]
    fn compares_states() {
        let old = parse_state(SAMPLE).unwrap();
        assert!(missing_on(&old, &old, true).is_empty());
        let mut new = old.clone();
        new.mailboxes.remove("Empty");
        new.messages.retain(|m| m.guid != "g3");
        for m in new.messages.iter_mut().filter(|m| m.guid == "g1") {
            m.flags = "\\Seen".into();
        }
        new.sieve.as_mut().unwrap()[0].active = false;
        let miss = missing_on(&old, &new, true).join("\n");
        assert!(miss.contains("mailbox 'Empty' is missing"), "{miss}");
        assert!(
            miss.contains("message g3 in 'Archive/2024' is missing"),
            "{miss}"
        );
        assert!(miss.contains("has flags"), "{miss}");
        assert!(miss.contains("'main' is inactive there"), "{miss}");
        assert!(!missing_on(&old, &new, false).join("\n").contains("flags"));
        // A flag only the remote has (set there since) is no loss.
        let mut more = old.clone();
        for m in more.messages.iter_mut().filter(|m| m.guid == "g1") {
            m.flags = "\\Answered \\Flagged \\Seen".into();
        }
        assert!(missing_on(&old, &more, true).is_empty());
        // …but a \Deleted only there would be expunged there.
        for m in more.messages.iter_mut().filter(|m| m.guid == "g1") {
            m.flags = "\\Deleted \\Flagged \\Seen".into();
        }
        assert!(missing_on(&old, &more, true).join("").contains("has flags"));
        // Same Message-ID under another GUID counts as there.
        let mut renamed = old.clone();
        for m in renamed.messages.iter_mut().filter(|m| m.guid == "g1") {
            m.guid = "other".into();
        }
        assert!(missing_on(&old, &renamed, true).is_empty());
        // What a backup from `new` would delete on `old`.
        let lost = old.lost_by_backup_from(&new).join("\n");
        assert!(lost.contains("1 message(s) in 'Archive/2024'"), "{lost}");
        assert!(old.lost_by_backup_from(&old).is_empty());
        // An after-state lists Sieve scripts without their texts.
        let mut light = old.clone();
        for x in light.sieve.as_mut().unwrap() {
            x.sha256.clear();
        }
        assert!(light.same_apart_from_sieve_text(&old));
        assert!(!new.same_apart_from_sieve_text(&old));
        assert!(!old.sieve_texts_differ(&old));
        let mut edited = old.clone();
        edited.sieve.as_mut().unwrap()[0].sha256 = "other".into();
        assert!(old.sieve_texts_differ(&edited));
    }

    #[test]
    fn sieve_compile_failures_name_the_extension() {
        let scripts = vec![
            "filters".to_string(),
            "old flags".to_string(),
            "x".to_string(),
        ];
        let out = "@ok 1\n@bad 2\n2: line 1: error: require command: unknown Sieve capability 'imapflags'.\n2: line 2: error: unknown command 'addflag' (only reported once at first occurrence).\n2: error: validation failed.\n@bad 3\n3: line 4: error: missing semicolon.\n";
        let why = "Pigeonhole 2.4 dropped notify, imapflags and vnd.dovecot.duplicate";
        let bad = parse_sieve_compile(out, &scripts, why);
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(
            bad[0].starts_with(
                "Sieve script 'old flags' does not compile: it uses the extension 'imapflags'"
            ),
            "{}",
            bad[0]
        );
        assert!(
            bad[0].contains("line 1: error: require command"),
            "{}",
            bad[0]
        );
        assert_eq!(
            bad[1],
            "Sieve script 'x' does not compile: line 4: error: missing semicolon."
        );
        // 2.3 quotes with a backtick.
        let b = parse_sieve_compile(
            "@bad 1\nf: line 1: error: require command: unknown Sieve capability `notify'.\n",
            &scripts,
            why,
        );
        assert!(b[0].contains("extension 'notify'"), "{}", b[0]);
        assert!(b[0].contains("Pigeonhole 2.4 dropped"), "{}", b[0]);
        assert!(parse_sieve_compile("@nosievec\n", &scripts, why).is_empty());
        assert!(parse_sieve_compile("@ok 1\n@ok 2\n", &scripts, why).is_empty());
    }

    #[test]
    fn versions() {
        assert_eq!(
            Version::parse("2.4.1-4 (7d8c0e5759)\n"),
            Some(Version(2, 4, 1))
        );
        assert_eq!(
            Version::parse("2.3.19.1 (9b53102964)"),
            Some(Version(2, 3, 19))
        );
        assert_eq!(Version::parse("2.4"), Some(Version(2, 4, 0)));
        assert_eq!(Version::parse("dovecot: not found"), None);
        assert!(Version(2, 4, 0).is_2_4() && !Version(2, 3, 21).is_2_4());
        assert!(Version(2, 3, 4).supported() && Version(2, 4, 9).supported());
        assert!(!Version(2, 2, 36).supported() && !Version(2, 5, 0).supported());
    }

    #[test]
    fn remote_command_never_prompts() {
        let r = Remote {
            side: Side {
                name: "new".into(),
                via: Via::Direct(Arc::new(crate::local::LocalConnection)),
                become_user: None,
            },
            login: "root".into(),
            addr: "10.0.0.2".into(),
            port: 2222,
            source_version: Version(2, 3, 19),
            version: Version(2, 3, 19),
        };
        let c = r.dsync_remote_cmd(None);
        assert!(c.contains("BatchMode=yes") && c.contains("-p 2222"), "{c}");
        assert!(c.ends_with("doveadm dsync-server -u%u -U"));
        // Dovecot 2.4 on the remote refuses -U; on the source it expands
        // %{user}.
        let mut r = r;
        r.version = Version(2, 4, 1);
        assert!(r.dsync_remote_cmd(None).ends_with("dsync-server -u%u"));
        r.source_version = Version(2, 4, 1);
        assert!(r.dsync_remote_cmd(None).ends_with("dsync-server -u%{user}"));
        r.version = Version(2, 3, 19);
        assert!(r
            .dsync_remote_cmd(None)
            .ends_with("dsync-server -u%{user} -U"));
        assert_eq!(r.destination(), "remote:root@10.0.0.2");
        assert!(
            !valid_addr("-oProxyCommand=x") && !valid_addr("a b") && valid_addr("mx.example.org")
        );
        assert!(!valid_login("root;id") && valid_login("root"));
    }
}
