//! The few SFTP operations the pool needs, on russh-sftp's raw session:
//! stat, whole-file read, a new file written with several writes in
//! flight, setstat, remove and an atomic rename over an existing file
//! (OpenSSH's `posix-rename@openssh.com`, which the high-level client does
//! not offer). Every one is a request to the host's one `sftp-server`
//! process: no process is started on the host per operation.

use futures_util::future::join_all;
pub use russh_sftp::client::error::Error;
use russh_sftp::client::rawsession::Limits;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};

/// Bytes per read or write request, and how many are in flight at once per
/// file: writes 64 KiB (what is in flight stays in the session's send
/// buffer for good, per host), reads 256 KiB.
const CHUNK: usize = 32 * 1024;
const IN_FLIGHT: usize = 2;
const READS_IN_FLIGHT: usize = 8;

pub struct Client {
    raw: RawSftpSession,
    posix_rename: bool,
}

/// A file's attributes as SFTP gives them (no names, no checksum).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attrs {
    pub is_dir: bool,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

pub fn is_missing(e: &Error) -> bool {
    matches!(e, Error::Status(s) if s.status_code == StatusCode::NoSuchFile)
}

pub fn is_denied(e: &Error) -> bool {
    matches!(e, Error::Status(s) if s.status_code == StatusCode::PermissionDenied)
}

/// Whether the session itself failed (not just this request): it is then
/// dropped and opened again on next use.
pub fn is_broken(e: &Error) -> bool {
    !matches!(e, Error::Status(_))
}

/// The server's words for a failed request (russh-sftp's own display says
/// the status twice: "Permission denied: Permission denied").
pub fn describe(e: &Error) -> String {
    match e {
        Error::Status(s) if s.error_message.trim().is_empty() => format!("{:?}", s.status_code),
        Error::Status(s) => s.error_message.trim().to_string(),
        other => other.to_string(),
    }
}

/// An SSH string: a big-endian u32 length, then the bytes.
fn ssh_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl Client {
    pub async fn new<S>(stream: S, timeout_secs: u64) -> Result<Client, Error>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let cfg = russh_sftp::client::Config {
            request_timeout_secs: timeout_secs,
            ..Default::default()
        };
        let mut raw = RawSftpSession::new_with_config(stream, cfg);
        let version = raw.init().await?;
        let has = |name: &str, ver: &str| version.extensions.get(name).is_some_and(|v| v == ver);
        if has("limits@openssh.com", "1") {
            let limits = Limits::from(raw.limits().await?);
            raw.set_limits(limits);
        }
        Ok(Client {
            posix_rename: has("posix-rename@openssh.com", "1"),
            raw,
        })
    }

    /// Whether `rename_over` can replace a file atomically.
    pub fn can_rename_over(&self) -> bool {
        self.posix_rename
    }

    /// `stat` (symbolic links followed); None when the path does not exist.
    pub async fn stat(&self, path: &str) -> Result<Option<Attrs>, Error> {
        match self.raw.stat(path).await {
            Ok(a) => Ok(Some(attrs(&a.attrs))),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The whole file; None when it does not exist.
    pub async fn read(&self, path: &str) -> Result<Option<Vec<u8>>, Error> {
        let mut data = Vec::new();
        let found = self
            .read_with(path, |size, piece| {
                if data.is_empty() {
                    data.reserve(size.min(64 << 20) as usize);
                }
                data.extend_from_slice(piece);
                true
            })
            .await?;
        Ok(found.then_some(data))
    }

    /// Whether the file holds exactly `data`, read back in chunks and
    /// compared as they come (stops at the first difference; holds no copy).
    /// None when the file does not exist.
    pub async fn equals(&self, path: &str, data: &[u8]) -> Result<Option<bool>, Error> {
        let mut pos = 0usize;
        let mut same = true;
        let found = self
            .read_with(path, |size, piece| {
                same = same
                    && size == data.len() as u64
                    && data.get(pos..pos + piece.len()) == Some(piece);
                pos += piece.len();
                same
            })
            .await?;
        Ok(found.then_some(same && pos == data.len()))
    }

    /// Opens `path` (false when it does not exist) and reads it to its end
    /// with a few requests in flight, handing each piece in order (with the
    /// size fstat gave) to `take` until it returns false. A short
    /// read at or past that size is the end; one before it (a server may
    /// answer less) is asked again from where it stopped.
    async fn read_with(
        &self,
        path: &str,
        mut take: impl FnMut(u64, &[u8]) -> bool,
    ) -> Result<bool, Error> {
        let handle = match self
            .raw
            .open(path, OpenFlags::READ, FileAttributes::empty())
            .await
        {
            Ok(h) => h.handle,
            Err(e) if is_missing(&e) => return Ok(false),
            Err(e) => return Err(e),
        };
        let read = async {
            let size = self
                .raw
                .fstat(handle.as_str())
                .await?
                .attrs
                .size
                .unwrap_or(0);
            let mut offset = 0u64;
            loop {
                let left = size.saturating_sub(offset) as usize;
                let n = left.div_ceil(CHUNK).clamp(1, READS_IN_FLIGHT);
                let reqs: Vec<_> = (0..n)
                    .map(|i| {
                        self.raw
                            .read(handle.as_str(), offset + (i * CHUNK) as u64, CHUNK as u32)
                    })
                    .collect();
                for r in join_all(reqs).await {
                    let piece = match r {
                        Ok(d) => d.data,
                        Err(Error::Status(s)) if s.status_code == StatusCode::Eof => return Ok(()),
                        Err(e) => return Err(e),
                    };
                    if piece.is_empty() {
                        return Ok(());
                    }
                    offset += piece.len() as u64;
                    if !take(size, &piece) {
                        return Ok(());
                    }
                    if piece.len() < CHUNK {
                        if offset >= size {
                            return Ok(());
                        }
                        // The rest of this batch started past a gap.
                        break;
                    }
                }
            }
        };
        let r = read.await;
        let _ = self.raw.close(handle).await;
        r.map(|()| true)
    }

    /// Creates `path` (which must not exist) with `perm` (the sftp-server's
    /// umask applies) and writes `data` into it.
    pub async fn write_new(&self, path: &str, data: &[u8], perm: u32) -> Result<(), Error> {
        let attrs = FileAttributes {
            permissions: Some(perm),
            ..FileAttributes::empty()
        };
        let flags = OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::WRITE;
        let handle = self.raw.open(path, flags, attrs).await?.handle;
        let write = async {
            for (g, bytes) in data.chunks(CHUNK * IN_FLIGHT).enumerate() {
                let base = (g * CHUNK * IN_FLIGHT) as u64;
                let reqs: Vec<_> = bytes
                    .chunks(CHUNK)
                    .enumerate()
                    .map(|(i, c)| {
                        self.raw
                            .write(handle.as_str(), base + (i * CHUNK) as u64, c.to_vec())
                    })
                    .collect();
                for r in join_all(reqs).await {
                    r?;
                }
            }
            Ok(())
        };
        let r: Result<(), Error> = write.await;
        let closed = self.raw.close(handle).await;
        r?;
        closed.map(|_| ())
    }

    /// Bytes free for unprivileged users on the file system that holds
    /// `path` (OpenSSH's statvfs@openssh.com); None when the server cannot
    /// say.
    pub async fn free_bytes(&self, path: &str) -> Option<u64> {
        let st = self.raw.statvfs(path).await.ok()?;
        Some(st.blocks_avail.saturating_mul(st.fragment_size))
    }

    pub async fn set_mode(&self, path: &str, mode: u32) -> Result<(), Error> {
        let attrs = FileAttributes {
            permissions: Some(mode),
            ..FileAttributes::empty()
        };
        self.raw.setstat(path, attrs).await.map(|_| ())
    }

    pub async fn set_owner(&self, path: &str, uid: u32, gid: u32) -> Result<(), Error> {
        let attrs = FileAttributes {
            uid: Some(uid),
            gid: Some(gid),
            ..FileAttributes::empty()
        };
        self.raw.setstat(path, attrs).await.map(|_| ())
    }

    pub async fn remove(&self, path: &str) -> Result<(), Error> {
        self.raw.remove(path).await.map(|_| ())
    }

    /// rename(2): `to` replaced atomically if it exists.
    pub async fn rename_over(&self, from: &str, to: &str) -> Result<(), Error> {
        let mut data = Vec::with_capacity(8 + from.len() + to.len());
        ssh_string(&mut data, from);
        ssh_string(&mut data, to);
        match self.raw.extended("posix-rename@openssh.com", data).await? {
            Packet::Status(s) if s.status_code == StatusCode::Ok => Ok(()),
            Packet::Status(s) => Err(Error::Status(s)),
            _ => Err(Error::UnexpectedPacket),
        }
    }

    pub fn close(&self) {
        let _ = self.raw.close_session();
    }
}

fn attrs(a: &FileAttributes) -> Attrs {
    let bits = a.permissions.unwrap_or(0);
    Attrs {
        is_dir: bits & 0o170000 == 0o040000,
        size: a.size.unwrap_or(0),
        mode: bits & 0o7777,
        uid: a.uid.unwrap_or(0),
        gid: a.gid.unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh_sftp::protocol::Status;

    fn status(code: StatusCode, msg: &str) -> Error {
        Error::Status(Status {
            id: 1,
            status_code: code,
            error_message: msg.into(),
            language_tag: "en".into(),
        })
    }

    #[test]
    fn errors_say_it_once_and_only_broken_sessions_are_dropped() {
        let denied = status(StatusCode::PermissionDenied, "Permission denied");
        assert_eq!(describe(&denied), "Permission denied");
        assert_eq!(describe(&status(StatusCode::Failure, " ")), "Failure");
        assert!(is_denied(&denied) && !is_broken(&denied));
        assert!(is_missing(&status(StatusCode::NoSuchFile, "No such file")));
        assert!(is_broken(&Error::Timeout));
    }

    #[test]
    fn ssh_strings_are_length_prefixed() {
        let mut out = Vec::new();
        ssh_string(&mut out, "/a");
        ssh_string(&mut out, "");
        assert_eq!(out, [0, 0, 0, 2, b'/', b'a', 0, 0, 0, 0]);
    }
}
