//! OpenSSH's known_hosts, read the way `ssh` reads it: plain and hashed
//! (`|1|salt|hash`) host lists, `[host]:port` for other ports, `*`/`?`
//! wildcards and `!` negations, `@revoked` keys, tabs or spaces. russh's own
//! helper misses wildcards, negations, markers and tabs, and calls a host
//! known only under another key type "unknown"; here that is "changed", as
//! mailrun negotiates only the key types a host is recorded with.

use data_encoding::BASE64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::{HashAlg, PublicKey};
use sha1::Sha1;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One recorded key for a host.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub key: PublicKey,
    pub file: PathBuf,
    pub line: usize,
}

/// What the files say about a host's key.
#[derive(Debug)]
pub enum Verdict {
    Match,
    /// The host has no entry.
    Unknown,
    /// The host is recorded with other keys.
    Changed(Vec<Recorded>),
    /// The key is marked `@revoked`.
    Revoked {
        file: PathBuf,
        line: usize,
    },
}

/// The known_hosts files to read: the user's (written by accept-new) and the
/// system-wide one (read only).
#[derive(Debug, Clone)]
pub struct KnownHosts {
    pub user_file: PathBuf,
    pub system_file: PathBuf,
}

/// `host` for port 22, `[host]:port` otherwise.
pub fn host_port(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

pub fn fingerprint(key: &PublicKey) -> String {
    format!("{} {}", key.algorithm(), key.fingerprint(HashAlg::Sha256))
}

/// `*` and `?` as OpenSSH's match_pattern, case-insensitively.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some((c, rest)) => {
            text.first().is_some_and(|t| t.eq_ignore_ascii_case(c)) && glob(rest, &text[1..])
        }
    }
}

/// Whether a hashed entry (`|1|salt|hash`) names `name`.
pub(crate) fn hashed_match(entry: &str, name: &str) -> bool {
    let mut parts = entry.trim_start_matches("|1|").splitn(2, '|');
    let (Some(salt), Some(hash)) = (parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (
        BASE64.decode(salt.as_bytes()),
        BASE64.decode(hash.as_bytes()),
    ) else {
        return false;
    };
    let Ok(mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt) else {
        return false;
    };
    mac.chain_update(name.as_bytes())
        .verify_slice(&hash)
        .is_ok()
}

/// `|1|salt|hash` for `name` with a fresh random salt (as `ssh-keygen -H`).
pub(crate) fn hash_name(name: &str) -> String {
    use std::io::Read;
    let mut salt = [0u8; 20];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut salt);
    }
    let mac = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt)
        .expect("HMAC takes any key length")
        .chain_update(name.as_bytes())
        .finalize()
        .into_bytes();
    format!("|1|{}|{}", BASE64.encode(&salt), BASE64.encode(&mac))
}

/// Whether a comma-separated host list names `name` (a negation wins).
fn list_matches(list: &str, name: &str) -> bool {
    if list.starts_with("|1|") {
        return hashed_match(list, name);
    }
    let mut hit = false;
    for entry in list.split(',') {
        if let Some(neg) = entry.strip_prefix('!') {
            if glob(neg.as_bytes(), name.as_bytes()) {
                return false;
            }
        } else if glob(entry.as_bytes(), name.as_bytes()) {
            hit = true;
        }
    }
    hit
}

/// The keys recorded for `name` (already in `[host]:port` form) in one file,
/// and the revoked keys in it.
fn read_file(path: &Path, name: &str) -> (Vec<Recorded>, Vec<Recorded>) {
    let mut keys = Vec::new();
    let mut revoked = Vec::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return (keys, revoked);
    };
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next().unwrap_or("");
        let marker = first.strip_prefix('@').map(str::to_string);
        if marker.is_some() {
            first = fields.next().unwrap_or("");
        }
        let (Some(kind), Some(b64)) = (fields.next(), fields.next()) else {
            continue;
        };
        let into = match marker.as_deref() {
            // A revoked key is refused whichever host it is presented by.
            Some("revoked") => &mut revoked,
            // Host certificates are not used by mailrun.
            Some(_) => continue,
            None if list_matches(first, name) => &mut keys,
            None => continue,
        };
        // Only the lines that count are decoded (a big file, many hosts).
        let Ok(key) = PublicKey::from_openssh(&format!("{kind} {b64}")) else {
            continue;
        };
        into.push(Recorded {
            key,
            file: path.to_path_buf(),
            line: i + 1,
        });
    }
    (keys, revoked)
}

impl KnownHosts {
    pub fn new(home: &Path, user_file: Option<PathBuf>) -> Self {
        KnownHosts {
            user_file: user_file.unwrap_or_else(|| home.join(".ssh/known_hosts")),
            system_file: PathBuf::from("/etc/ssh/ssh_known_hosts"),
        }
    }

    /// Every key recorded for the host (by any of `names`, e.g. the address
    /// and the inventory name).
    pub fn recorded(&self, names: &[String], port: u16) -> (Vec<Recorded>, Vec<Recorded>) {
        let mut keys = Vec::new();
        let mut revoked = Vec::new();
        for name in names {
            // ssh matches host names in lower case (hashed entries too).
            let hp = host_port(&name.to_lowercase(), port);
            for file in [&self.user_file, &self.system_file] {
                let (k, r) = read_file(file, &hp);
                keys.extend(k);
                revoked.extend(r);
            }
        }
        // A line that names the host twice (`name,addr`) counts once.
        keys.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        keys.dedup_by(|a, b| a.file == b.file && a.line == b.line);
        (keys, revoked)
    }

    pub fn check(&self, names: &[String], port: u16, key: &PublicKey) -> Verdict {
        let (keys, revoked) = self.recorded(names, port);
        if let Some(r) = revoked.iter().find(|r| r.key.key_data() == key.key_data()) {
            return Verdict::Revoked {
                file: r.file.clone(),
                line: r.line,
            };
        }
        if keys.is_empty() {
            Verdict::Unknown
        } else if keys.iter().any(|r| r.key.key_data() == key.key_data()) {
            Verdict::Match
        } else {
            Verdict::Changed(keys)
        }
    }

    /// Appends `name key` to the user's file (accept-new). The caller
    /// serialises writers within the process; `O_APPEND` keeps whole lines.
    pub fn learn(&self, name: &str, port: u16, key: &PublicKey) -> std::io::Result<()> {
        if let Some(dir) = self.user_file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let existing = std::fs::read(&self.user_file).unwrap_or_default();
        let mut line = String::new();
        if existing.last().is_some_and(|b| *b != b'\n') {
            line.push('\n');
        }
        let openssh = key
            .to_openssh()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        // The key's comment is not part of a known_hosts entry.
        let mut parts = openssh.split_whitespace();
        let kind = parts.next().unwrap_or_default();
        let b64 = parts.next().unwrap_or_default();
        line.push_str(&format!(
            "{} {kind} {b64}\n",
            host_port(&name.to_lowercase(), port)
        ));
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.user_file)?;
        f.write_all(line.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const ED2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILIG2T/B0l0gaqj3puu510tu9N1OkQ4znY3LYuEm5zCF";

    fn kh(text: &str) -> (tempfile::TempDir, KnownHosts) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".ssh")).unwrap();
        std::fs::write(dir.path().join(".ssh/known_hosts"), text).unwrap();
        let mut k = KnownHosts::new(dir.path(), None);
        k.system_file = dir.path().join("none");
        (dir, k)
    }

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).unwrap()
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn plain_ports_and_lists() {
        let (_d, k) = kh(&format!("# comment\nmx1,10.0.0.1 {ED}\n[mx2]:2222\t{ED}\n"));
        assert!(matches!(
            k.check(&names(&["mx1"]), 22, &key(ED)),
            Verdict::Match
        ));
        assert!(matches!(
            k.check(&names(&["10.0.0.1"]), 22, &key(ED)),
            Verdict::Match
        ));
        assert!(matches!(
            k.check(&names(&["mx2"]), 2222, &key(ED)),
            Verdict::Match
        ));
        assert!(matches!(
            k.check(&names(&["mx2"]), 22, &key(ED)),
            Verdict::Unknown
        ));
        match k.check(&names(&["mx1"]), 22, &key(ED2)) {
            Verdict::Changed(old) => assert_eq!(old[0].line, 2),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn hashed_wildcards_negation_revoked() {
        // `ssh-keygen -H` form of "localhost" with this salt.
        let (_d, k) = kh(&format!(
            "|1|O33ESRMWPVkMYIwJ1Uw+n877jTo=|nuuC5vEqXlEZ/8BXQR7m619W6Ak= {ED2}\n\
             *.example.org,!bad.example.org {ED}\n\
             @revoked * {ED2}\n"
        ));
        assert!(matches!(
            k.check(&names(&["a.example.org"]), 22, &key(ED)),
            Verdict::Match
        ));
        assert!(matches!(
            k.check(&names(&["bad.example.org"]), 22, &key(ED)),
            Verdict::Unknown
        ));
        assert!(matches!(
            k.check(&names(&["x"]), 22, &key(ED2)),
            Verdict::Revoked { .. }
        ));
        let (_d, k) = kh(&format!(
            "|1|O33ESRMWPVkMYIwJ1Uw+n877jTo=|nuuC5vEqXlEZ/8BXQR7m619W6Ak= {ED2}\n"
        ));
        assert!(matches!(
            k.check(&names(&["example.com"]), 22, &key(ED2)),
            Verdict::Match
        ));
    }

    #[test]
    fn learn_appends_one_line() {
        let (d, k) = kh(&format!("mx1 {ED}"));
        k.learn("10.0.0.9", 2200, &key(ED2)).unwrap();
        let text = std::fs::read_to_string(d.path().join(".ssh/known_hosts")).unwrap();
        assert_eq!(text, format!("mx1 {ED}\n[10.0.0.9]:2200 {ED2}\n"));
        assert!(matches!(
            k.check(&names(&["10.0.0.9"]), 2200, &key(ED2)),
            Verdict::Match
        ));
    }
}
