//! The local connection (`ansible_connection=local`): runs on the control
//! machine with tokio processes and std files, no SSH.

use crate::connection::{Command, ConnError, Connection, ExecOutput, FileStat};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use tokio::io::AsyncWriteExt;

/// The control machine as a host.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalConnection;

fn io_err(what: &str, path: &str, e: impl std::fmt::Display) -> ConnError {
    ConnError::Io(format!("{what} {path}: {e}"))
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ConnError> + Send + 'static,
) -> Result<T, ConnError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ConnError::Io(format!("local task failed: {e}")))?
}

#[async_trait]
impl Connection for LocalConnection {
    async fn exec(&self, cmd: &Command) -> Result<ExecOutput, ConnError> {
        let mut proc = match cmd.become_user.as_deref() {
            Some(user) if !is_current_user(user) => {
                let mut p = tokio::process::Command::new("sudo");
                p.args(["-n", "-u", user, "--", "/bin/sh", "-c", &cmd.cmd]);
                p
            }
            _ => {
                let mut p = tokio::process::Command::new("/bin/sh");
                p.arg("-c").arg(&cmd.cmd);
                p
            }
        };
        proc.stdin(if cmd.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout can end the whole pipeline.
        .process_group(0)
        .kill_on_drop(true);
        let mut child = proc
            .spawn()
            .map_err(|e| ConnError::Io(format!("cannot start /bin/sh: {e}")))?;
        let pid = child.id();
        if let (Some(data), Some(mut stdin)) = (cmd.stdin.clone(), child.stdin.take()) {
            // A command that does not read its input closes the pipe: not an error.
            tokio::spawn(async move {
                let _ = stdin.write_all(&data).await;
                let _ = stdin.shutdown().await;
            });
        }
        // Only a command running when Ctrl-C comes is ended by it.
        let armed = !crate::interrupt::requested();
        let waited = async {
            match cmd.timeout {
                None => Ok(child.wait_with_output().await),
                Some(limit) => tokio::time::timeout(limit, child.wait_with_output())
                    .await
                    .map_err(|_| ConnError::Timeout(limit)),
            }
        };
        let ended = tokio::select! {
            r = waited => r,
            _ = crate::interrupt::wait_armed(armed) => Err(ConnError::Interrupted),
        };
        let output = match ended {
            Ok(out) => out,
            Err(e) => {
                // The child itself was killed when its future was dropped;
                // its process group may still hold grandchildren.
                if let Some(pid) = pid {
                    kill_group(pid);
                }
                return Err(e);
            }
        }
        .map_err(|e| ConnError::Io(format!("running command: {e}")))?;
        Ok(ExecOutput {
            rc: exit_code(&output.status),
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }

    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, ConnError> {
        match tokio::fs::read(path).await {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("cannot read", path, e)),
        }
    }

    async fn write_file(
        &self,
        path: &str,
        data: &[u8],
        mode: Option<u32>,
    ) -> Result<(), ConnError> {
        let path = path.to_string();
        let data = data.to_vec();
        blocking(move || {
            write_atomic(Path::new(&path), &data, mode)
                .map_err(|e| io_err("cannot write", &path, e))
        })
        .await
    }

    async fn stat(&self, path: &str) -> Result<Option<FileStat>, ConnError> {
        let path = path.to_string();
        blocking(move || stat_path(Path::new(&path)).map_err(|e| io_err("cannot stat", &path, e)))
            .await
    }
}

/// The exit code, or 128 + signal like a shell reports a killed command.
fn exit_code(status: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => -1,
    }
}

/// SIGKILL to a process group (no `unsafe`: through kill(1)).
pub(crate) fn kill_group(pgid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The effective uid of this process, from /proc (no `unsafe`).
fn current_uid() -> Option<u32> {
    static UID: OnceLock<Option<u32>> = OnceLock::new();
    *UID.get_or_init(|| {
        let status = fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("Uid:"))?;
        line.split_whitespace().nth(2)?.parse().ok()
    })
}

/// Whether `user` (a name or a numeric uid) is who we already run as.
fn is_current_user(user: &str) -> bool {
    match current_uid() {
        Some(uid) => user == uid.to_string() || user_name(uid).as_deref() == Some(user),
        None => std::env::var("USER").is_ok_and(|u| u == user),
    }
}

/// The name in an /etc/passwd- or /etc/group-style file for an id.
fn name_for_id(file: &str, id: u32) -> Option<String> {
    let text = fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        let found: u32 = fields.next()?.parse().ok()?;
        (found == id && !name.is_empty()).then(|| name.to_string())
    })
}

fn user_name(uid: u32) -> Option<String> {
    name_for_id("/etc/passwd", uid)
}

fn group_name(gid: u32) -> Option<String> {
    name_for_id("/etc/group", gid)
}

fn stat_path(path: &Path) -> io::Result<Option<FileStat>> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // Only regular files are hashed (a FIFO would block); an unreadable one
    // still exists, without a checksum.
    let sha256 = if meta.is_file() {
        match sha256_file(path) {
            Ok(sum) => Some(sum),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => None,
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    Ok(Some(FileStat {
        is_dir: meta.is_dir(),
        size: meta.len(),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        owner: user_name(meta.uid()),
        group: group_name(meta.gid()),
        sha256,
    }))
}

/// Hex SHA-256 of a file, read in blocks.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Hex SHA-256 of bytes in memory (the same form `stat` gives).
/// ring's SHA-256 (assembly with the CPU's SHA or AVX2 instructions, from
/// the crate russh already builds): several times sha2's portable code on
/// a file of megabytes.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// The process umask, from /proc (no `unsafe`); 022 when unknown.
fn umask() -> u32 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Umask:"))?;
            u32::from_str_radix(line.split_whitespace().nth(1)?, 8).ok()
        })
        .unwrap_or(0o022)
}

/// Writes `data` to a fresh temp file (0600, O_EXCL) beside `path`, syncs
/// it, applies the mode (the given one, else the old file's, else 0666 minus
/// umask) and the old file's owner where allowed, then renames it over
/// `path`. The temp file is removed on any error.
fn write_atomic(path: &Path, data: &[u8], mode: Option<u32>) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let old = match fs::metadata(path) {
        Ok(m) if m.is_dir() => {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory",
            ))
        }
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let final_mode = mode
        .or_else(|| old.as_ref().map(|m| m.mode() & 0o7777))
        .unwrap_or(0o666 & !umask());

    let (tmp, mut file) = loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            ".{}.mailrun-{}-{n}.tmp",
            file_name.to_string_lossy(),
            std::process::id()
        );
        let tmp = dir.join(name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    };
    let result = (|| {
        file.write_all(data)?;
        file.sync_all()?;
        drop(file);
        if let Some(old) = &old {
            // Keep the old owner when we may (root); otherwise the file is ours.
            let _ = std::os::unix::fs::chown(&tmp, Some(old.uid()), Some(old.gid()));
        }
        fs::set_permissions(&tmp, fs::Permissions::from_mode(final_mode))?;
        fs::rename(&tmp, path)?;
        // Make the rename durable; a directory that cannot be synced is fine.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn exec_captures_output_and_rc() {
        rt().block_on(async {
            let c = LocalConnection;
            let out = c
                .exec(&Command::new("echo out; echo err >&2; exit 3"))
                .await
                .expect("exec");
            assert_eq!(out.rc, 3);
            assert_eq!(out.stdout_str(), "out\n");
            assert_eq!(out.stderr_str(), "err\n");
        });
    }

    #[test]
    fn exec_stdin_and_null_stdin() {
        rt().block_on(async {
            let c = LocalConnection;
            let mut cmd = Command::new("tr a-z A-Z");
            cmd.stdin = Some(b"hello".to_vec());
            let out = c.exec(&cmd).await.expect("exec");
            assert_eq!(out.stdout_str(), "HELLO");
            // Without stdin the command reads /dev/null, it does not hang.
            let out = c.exec(&Command::new("cat")).await.expect("exec");
            assert_eq!((out.rc, out.stdout.len()), (0, 0));
            // Input nobody reads is no error.
            let mut cmd = Command::new("true");
            cmd.stdin = Some(vec![b'x'; 1 << 20]);
            assert_eq!(c.exec(&cmd).await.expect("exec").rc, 0);
        });
    }

    #[test]
    fn exec_timeout_kills() {
        rt().block_on(async {
            let c = LocalConnection;
            let mut cmd = Command::new("sleep 5; echo late");
            cmd.timeout = Some(Duration::from_millis(200));
            let start = std::time::Instant::now();
            let r = c.exec(&cmd).await;
            assert!(matches!(r, Err(ConnError::Timeout(_))), "{r:?}");
            assert!(start.elapsed() < Duration::from_secs(3));
        });
    }

    #[test]
    fn exec_become_self_runs_directly() {
        rt().block_on(async {
            let Some(uid) = current_uid() else { return };
            let mut cmd = Command::new("id -u");
            cmd.become_user = Some(uid.to_string());
            let out = LocalConnection.exec(&cmd).await.expect("exec");
            assert_eq!(out.stdout_str().trim(), uid.to_string());
        });
    }

    #[test]
    fn write_read_stat() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("f.txt");
            let p = path.to_str().expect("utf8 path");
            let c = LocalConnection;
            assert_eq!(c.stat(p).await.expect("stat"), None);
            assert_eq!(c.read_file(p).await.expect("read"), None);
            c.write_file(p, b"hello\n", Some(0o640))
                .await
                .expect("write");
            assert_eq!(
                c.read_file(p).await.expect("read").as_deref(),
                Some(&b"hello\n"[..])
            );
            let st = c.stat(p).await.expect("stat").expect("exists");
            assert_eq!(st.mode, 0o640);
            assert_eq!(st.size, 6);
            assert!(!st.is_dir);
            assert_eq!(st.sha256.as_deref(), Some(sha256_hex(b"hello\n").as_str()));
            assert_eq!(
                st.sha256.as_deref(),
                Some("5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03")
            );
            // Rewriting without a mode keeps the old one.
            c.write_file(p, b"again", None).await.expect("write");
            assert_eq!(c.stat(p).await.expect("stat").expect("exists").mode, 0o640);
            // No temp files left behind.
            let names: Vec<_> = fs::read_dir(dir.path())
                .expect("readdir")
                .filter_map(|e| e.ok())
                .map(|e| e.file_name())
                .collect();
            assert_eq!(names, vec![std::ffi::OsString::from("f.txt")]);
            let d = c
                .stat(dir.path().to_str().expect("utf8"))
                .await
                .expect("stat")
                .expect("dir");
            assert!(d.is_dir && d.sha256.is_none());
        });
    }

    #[test]
    fn write_errors_leave_nothing() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let c = LocalConnection;
            let missing = dir.path().join("nodir/f");
            assert!(c
                .write_file(missing.to_str().expect("utf8"), b"x", None)
                .await
                .is_err());
            let sub = dir.path().join("sub");
            fs::create_dir(&sub).expect("mkdir");
            assert!(c
                .write_file(sub.to_str().expect("utf8"), b"x", None)
                .await
                .is_err());
            assert_eq!(fs::read_dir(dir.path()).expect("readdir").count(), 1);
        });
    }

    #[test]
    fn names_from_passwd() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
        assert_eq!(user_name(u32::MAX - 7), None);
    }
}
