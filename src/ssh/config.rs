//! Where and as whom to connect: inventory variables (Ansible's names),
//! command-line options and `~/.ssh/config` (HostName, User, Port,
//! IdentityFile, UserKnownHostsFile), in Ansible's order of precedence.

use serde_json::{Map, Value};
use ssh2_config::{ParseRule, SshConfig};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How host keys are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Unknown and changed keys are refused.
    Strict,
    /// Unknown keys are learnt into known_hosts; changed keys are refused.
    AcceptNew,
    /// Nothing is checked.
    Off,
}

/// Settings for the whole run, from the command line.
#[derive(Clone)]
pub struct SshOptions {
    /// `-u`: the user when neither the inventory nor the play names one.
    pub user: Option<String>,
    /// `--private-key`.
    pub private_key: Option<PathBuf>,
    /// `-k`: asked once at start.
    pub password: Option<String>,
    /// `-K`: asked once at start.
    pub become_password: Option<String>,
    pub host_key_checking: HostKeyPolicy,
    /// The control user's home (`$HOME`): `.ssh/config`, `known_hosts`, keys.
    pub home: PathBuf,
    pub connect_timeout: Duration,
}

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            user: None,
            private_key: None,
            password: None,
            become_password: None,
            host_key_checking: HostKeyPolicy::Strict,
            home: home_dir(),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

pub fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

/// The user running mailrun, for when nothing names one (as `ssh` does).
pub fn local_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "root".into())
}

/// One host's connection settings.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The inventory name, for messages.
    pub alias: String,
    /// What to connect to (ansible_host, else HostName from ssh config, else
    /// the alias).
    pub addr: String,
    pub port: u16,
    pub user: String,
    /// Key files to try first (inventory, `--private-key`, IdentityFile).
    pub key_files: Vec<PathBuf>,
    pub password: Option<String>,
    pub become_password: Option<String>,
    pub known_hosts_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// A keepalive after this much silence; 3 unanswered: the session is
    /// dead (ServerAliveInterval in ~/.ssh/config, default 5 s).
    pub keepalive: Duration,
}

impl Target {
    /// The names the host's key is looked up under in known_hosts: the
    /// address connected to, and the inventory name when it differs.
    pub fn known_names(&self) -> Vec<String> {
        let mut names = vec![self.addr.clone()];
        if self.alias != self.addr {
            names.push(self.alias.clone());
        }
        names
    }
}

/// Passwords never appear in debug output.
fn secret(s: &Option<String>) -> &'static str {
    if s.is_some() {
        "Some(<secret>)"
    } else {
        "None"
    }
}

impl std::fmt::Debug for SshOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshOptions")
            .field("user", &self.user)
            .field("private_key", &self.private_key)
            .field("password", &secret(&self.password))
            .field("become_password", &secret(&self.become_password))
            .field("host_key_checking", &self.host_key_checking)
            .field("home", &self.home)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("alias", &self.alias)
            .field("addr", &self.addr)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("key_files", &self.key_files)
            .field("password", &secret(&self.password))
            .field("become_password", &secret(&self.become_password))
            .field("known_hosts_file", &self.known_hosts_file)
            .field("connect_timeout", &self.connect_timeout)
            .field("keepalive", &self.keepalive)
            .finish()
    }
}

fn var(vars: &Map<String, Value>, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| match vars.get(*n)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn expand_tilde(p: &str, home: &Path) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None if p == "~" => home.to_path_buf(),
        None => PathBuf::from(p),
    }
}

/// `~/.ssh/config`, parsed once per run; None when there is none.
pub fn load_ssh_config(home: &Path) -> Result<Option<SshConfig>, String> {
    let path = home.join(".ssh/config");
    let Ok(file) = std::fs::File::open(&path) else {
        return Ok(None);
    };
    if let Ok(text) = std::fs::read_to_string(&path) {
        if text
            .lines()
            .any(|l| l.trim_start().to_ascii_lowercase().starts_with("match "))
        {
            crate::errln!(
                "Warning: {}: Match blocks are not understood by mailrun; their options count for the Host block before them",
                path.display()
            );
        }
    }
    let rules = ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS;
    SshConfig::default()
        .home_dir(home)
        .parse(&mut BufReader::new(file), rules)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Resolves a host's target. `vars` are the host's variables (inventory and
/// extra vars); `play_user` is the play's `remote_user`.
pub fn target(
    alias: &str,
    vars: &Map<String, Value>,
    play_user: Option<&str>,
    opts: &SshOptions,
    ssh_config: Option<&SshConfig>,
) -> Result<Target, String> {
    let addr_var = var(vars, &["ansible_host", "ansible_ssh_host"]);
    // ssh looks its config up by the name it is given.
    let lookup = addr_var.clone().unwrap_or_else(|| alias.to_string());
    let params = ssh_config.map(|c| c.query(&lookup));
    let addr = match (&addr_var, params.as_ref().and_then(|p| p.host_name.clone())) {
        (Some(a), _) => a.clone(),
        (None, Some(h)) => h.replace("%h", alias),
        (None, None) => alias.to_string(),
    };
    let port = match var(vars, &["ansible_port", "ansible_ssh_port"]) {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("{alias}: ansible_port '{p}' is not a port number"))?,
        None => params.as_ref().and_then(|p| p.port).unwrap_or(22),
    };
    let user = var(vars, &["ansible_user", "ansible_ssh_user"])
        .or_else(|| play_user.map(str::to_string))
        .or_else(|| opts.user.clone())
        .or_else(|| params.as_ref().and_then(|p| p.user.clone()))
        .unwrap_or_else(local_user);
    let mut key_files = Vec::new();
    if let Some(k) = var(
        vars,
        &["ansible_ssh_private_key_file", "ansible_private_key_file"],
    ) {
        key_files.push(expand_tilde(&k, &opts.home));
    }
    if let Some(k) = &opts.private_key {
        key_files.push(k.clone());
    }
    if let Some(files) = params.as_ref().and_then(|p| p.identity_file.clone()) {
        key_files.extend(
            files
                .into_iter()
                .map(|f| expand_tilde(&f.to_string_lossy(), &opts.home)),
        );
    }
    let known_hosts_file = params
        .as_ref()
        .and_then(|p| p.unsupported_fields.get("userknownhostsfile"))
        .and_then(|v| v.first())
        .map(|f| expand_tilde(f, &opts.home));
    let connect_timeout = match var(vars, &["ansible_ssh_timeout", "ansible_timeout"]) {
        Some(t) => Duration::from_secs_f64(
            t.parse::<f64>()
                .ok()
                .filter(|t| *t > 0.0 && t.is_finite())
                // A year is "for ever"; more would overflow a deadline.
                .map(|t| t.min(365.0 * 86400.0))
                .ok_or_else(|| {
                    format!("{alias}: ansible_ssh_timeout '{t}' is not a number of seconds")
                })?,
        ),
        None => params
            .as_ref()
            .and_then(|p| p.connect_timeout)
            .unwrap_or(opts.connect_timeout),
    };
    let keepalive = params
        .as_ref()
        .and_then(|p| p.server_alive_interval)
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(5));
    let password = var(
        vars,
        &[
            "ansible_password",
            "ansible_ssh_pass",
            "ansible_ssh_password",
        ],
    )
    .or_else(|| opts.password.clone());
    let become_password = var(vars, &["ansible_become_password", "ansible_become_pass"])
        .or_else(|| opts.become_password.clone());
    // Never printed, whatever error or output they could end up in.
    for s in password.iter().chain(&become_password) {
        crate::secret::register(s);
    }
    Ok(Target {
        keepalive,
        alias: alias.to_string(),
        addr,
        port,
        user,
        key_files,
        password,
        become_password,
        known_hosts_file,
        connect_timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn inventory_beats_play_beats_cli_beats_ssh_config() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join(".ssh")).unwrap();
        std::fs::write(
            home.path().join(".ssh/config"),
            "User global\n\nHost mx*\n  HostName 10.1.1.1\n  Port 2222\n  User cfg\n  IdentityFile ~/.ssh/mx_key\n  UserKnownHostsFile ~/kh\n",
        )
        .unwrap();
        let opts = SshOptions {
            home: home.path().to_path_buf(),
            user: Some("cli".into()),
            ..Default::default()
        };
        let cfg = load_ssh_config(home.path()).unwrap();
        let t = target("mx1", &Map::new(), None, &opts, cfg.as_ref()).unwrap();
        assert_eq!(
            (t.addr.as_str(), t.port, t.user.as_str()),
            ("10.1.1.1", 2222, "cli")
        );
        assert_eq!(t.key_files, vec![home.path().join(".ssh/mx_key")]);
        assert_eq!(t.known_hosts_file, Some(home.path().join("kh")));
        assert_eq!(t.keepalive, Duration::from_secs(5));
        let t = target("mx1", &Map::new(), Some("play"), &opts, cfg.as_ref()).unwrap();
        assert_eq!(t.user, "play");
        let v = vars(
            json!({"ansible_host": "10.2.2.2", "ansible_port": 22, "ansible_user": "inv",
            "ansible_ssh_private_key_file": "~/k", "ansible_password": "pw"}),
        );
        let t = target("mx1", &v, Some("play"), &opts, cfg.as_ref()).unwrap();
        assert_eq!(
            (t.addr.as_str(), t.port, t.user.as_str()),
            ("10.2.2.2", 22, "inv")
        );
        assert_eq!(t.key_files[0], home.path().join("k"));
        assert_eq!(t.password.as_deref(), Some("pw"));
        let no_cli = SshOptions {
            user: None,
            ..opts.clone()
        };
        let t = target("other", &Map::new(), None, &no_cli, cfg.as_ref()).unwrap();
        assert_eq!(
            (t.addr.as_str(), t.port, t.user.as_str()),
            ("other", 22, "global")
        );
        let bad = vars(json!({"ansible_port": "ssh"}));
        assert!(target("mx1", &bad, None, &opts, None)
            .unwrap_err()
            .contains("ansible_port"));
    }
}
