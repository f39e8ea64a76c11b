//! What a module may do on a host. Modules never see SSH: the same module runs
//! over the local connection (`ansible_connection=local`) and, later, over the
//! russh pool.

use async_trait::async_trait;
use std::time::Duration;

/// The result of one command on a host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecOutput {
    pub rc: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// A file's metadata as the host sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileStat {
    pub is_dir: bool,
    pub size: u64,
    /// Permission bits only (e.g. 0o644).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Owner and group names, where the host can resolve them.
    pub owner: Option<String>,
    pub group: Option<String>,
    /// Hex SHA-256 of the content, when the connection computed it with the
    /// metadata (the local connection, the shell script); None for
    /// directories and over SFTP (callers compare content themselves).
    pub sha256: Option<String>,
}

/// One command to run: a shell command line (`sh -c` semantics), optional
/// stdin, optional timeout, optional privilege escalation.
#[derive(Debug, Clone, Default)]
pub struct Command {
    pub cmd: String,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
    pub become_user: Option<String>,
}

impl Command {
    pub fn new(cmd: impl Into<String>) -> Self {
        Command {
            cmd: cmd.into(),
            ..Default::default()
        }
    }
}

/// Why a host could not be used at all: reported as `unreachable`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnError {
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(String),
    /// Ctrl-C ended the command (its processes were signalled).
    #[error("interrupted (Ctrl-C)")]
    Interrupted,
}

#[async_trait]
pub trait Connection: Send + Sync {
    /// Runs a shell command line and reads its output until it ends.
    async fn exec(&self, cmd: &Command) -> Result<ExecOutput, ConnError>;
    /// The file's bytes, or None when it does not exist.
    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, ConnError>;
    /// Writes atomically: a temp file (mode 0600) in the same directory, then
    /// renamed over `path`; `mode` is applied before the rename.
    async fn write_file(&self, path: &str, data: &[u8], mode: Option<u32>)
        -> Result<(), ConnError>;
    /// Metadata, or None when the path does not exist.
    async fn stat(&self, path: &str) -> Result<Option<FileStat>, ConnError>;
    /// As `stat`, where owner and group names may be left out (None) when
    /// finding them costs more (over SFTP, reading the host's user list).
    async fn stat_ids(&self, path: &str) -> Result<Option<FileStat>, ConnError> {
        self.stat(path).await
    }
    /// Whether the file holds exactly `data` (None when it does not exist).
    async fn content_equals(&self, path: &str, data: &[u8]) -> Result<Option<bool>, ConnError> {
        Ok(self.read_file(path).await?.map(|d| d == data))
    }
    /// Whether the path exists, as `[ -e PATH ]` tells (symbolic links
    /// followed; false where the user may not look).
    async fn exists(&self, path: &str) -> Result<bool, ConnError> {
        exists_by_exec(self, path, None, None).await
    }
    /// Proves that a new login to the host works now (after an sshd
    /// change): a separate connection with the same settings runs `true`.
    /// The live session is left as it is. The local connection has no
    /// login to prove.
    async fn probe_login(&self) -> Result<(), ConnError> {
        Ok(())
    }
    /// The address and port this connection reaches (what other hosts can
    /// use too); None for the local connection.
    fn address(&self) -> Option<(String, u16)> {
        None
    }
}

/// `[ -e PATH ]` run on the host (as `become_user`, within `timeout`).
pub async fn exists_by_exec<C: Connection + ?Sized>(
    conn: &C,
    path: &str,
    become_user: Option<String>,
    timeout: Option<Duration>,
) -> Result<bool, ConnError> {
    let out = conn
        .exec(&Command {
            cmd: format!("[ -e {} ]", crate::quote::quote(path)),
            stdin: None,
            timeout,
            become_user,
        })
        .await?;
    match out.rc {
        0 => Ok(true),
        1 => Ok(false),
        rc => Err(ConnError::Io(format!(
            "cannot tell whether {path} exists (rc {rc}): {}",
            out.stderr_str().trim_end()
        ))),
    }
}

/// A shell script that prints a path's metadata and checksum in one round
/// trip: `missing`, or `file|dir|other MODE UID GID SIZE USER GROUP` and a
/// line with the SHA-256 (or `-`). Parsed by [`parse_stat_output`].
pub fn stat_script(path: &str) -> String {
    format!(
        "p={}\n\
         [ -e \"$p\" ] || {{ echo missing; exit 0; }}\n\
         if [ -d \"$p\" ]; then t=dir; elif [ -f \"$p\" ]; then t=file; else t=other; fi\n\
         printf '%s ' \"$t\"\n\
         stat -L -c '%a %u %g %s %U %G' -- \"$p\" || exit 1\n\
         if [ \"$t\" = file ] && [ -r \"$p\" ]; then sha256sum < \"$p\"; else echo -; fi",
        crate::quote::quote(path)
    )
}

/// Shell lines, for a `set -e` script that has set `$t` (a temp file beside
/// the destination) and `$p` (the destination), that put `$t` in place of
/// `$p`: with the old file's owner and mode (or the umask's for a new
/// file), then `mode` if given, then renamed over it.
pub fn replace_lines(mode: Option<u32>) -> String {
    let chmod = match mode {
        Some(m) => format!("chmod {m:04o} -- \"$t\"\n"),
        None => String::new(),
    };
    format!(
        "if [ -e \"$p\" ]; then\n\
         chown \"$(stat -L -c %u:%g -- \"$p\")\" -- \"$t\" 2>/dev/null || true\n\
         chmod \"$(stat -L -c %a -- \"$p\")\" -- \"$t\"\n\
         else\n\
         chmod \"$(printf '%o' $((0666 & ~0$(umask))))\" -- \"$t\"\n\
         fi\n\
         {chmod}mv -f -- \"$t\" \"$p\""
    )
}

/// Reads what [`stat_script`] printed.
pub fn parse_stat_output(text: &str) -> Result<Option<FileStat>, String> {
    if text.trim() == "missing" {
        return Ok(None);
    }
    let parse = || -> Option<FileStat> {
        let mut lines = text.lines();
        let mut f = lines.next()?.split_whitespace();
        let kind = f.next()?;
        let mode = u32::from_str_radix(f.next()?, 8).ok()?;
        let uid = f.next()?.parse().ok()?;
        let gid = f.next()?.parse().ok()?;
        let size = f.next()?.parse().ok()?;
        let name = |n: Option<&str>| n.filter(|n| *n != "UNKNOWN").map(str::to_string);
        let owner = name(f.next());
        let group = name(f.next());
        // `sha256sum` prints the sum and `-` (its input's name).
        let sum = lines
            .next()
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("-");
        Some(FileStat {
            is_dir: kind == "dir",
            size,
            mode: mode & 0o7777,
            uid,
            gid,
            owner,
            group,
            sha256: (sum.len() == 64 && kind == "file").then(|| sum.to_string()),
        })
    };
    parse()
        .map(Some)
        .ok_or_else(|| format!("unexpected output {text:?}"))
}
