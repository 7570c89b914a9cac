//! The local administration socket: the control port's requests and replies over a Unix stream
//! socket under the runtime directory, where file permissions (mode 0660: the service's user
//! and group) decide who may administer the show, as ntpd-rs's and systemd's own sockets do.
//! No token, rate limit or reply bound applies: only the socket's owners reach it.
//!
//! Framing: each OSC packet is preceded by its size as a big-endian 32-bit integer (the OSC 1.0
//! stream framing). OSC rather than a second grammar keeps one parser and one set of replies;
//! a stream rather than datagrams lets a status of any size through (a long string value is
//! sent whole here, clipped over UDP) and needs no client-side socket file to reply to.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context};
use rosc::OscMessage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{oneshot, Semaphore};

use super::control::{self, Ctx, Limited, Peer};
use super::request;
use crate::config::ControlConfig;

/// The socket's name in the runtime directory.
pub const SOCKET_NAME: &str = "chopd.sock";

/// The largest packet either side accepts (a status of thousands of parameters fits).
pub const MAX_FRAME: usize = 16 << 20;

/// Requests larger than this are refused: a long string value fits, a flood does not.
const MAX_REQUEST: usize = 1 << 20;

/// Clients served at once; more wait for a slot.
const MAX_CLIENTS: usize = 16;

/// A client silent this long gives its slot back: a forgotten connection must not keep the
/// socket from the technician who needs it.
const IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// Where the daemon puts its socket: the config's `socket`, else `chopd.sock` in
/// `$RUNTIME_DIRECTORY` (the unit's `RuntimeDirectory=`), else in `$XDG_RUNTIME_DIR/chopd`,
/// else in `/tmp/chopd-UID` (a directory only this user may enter).
pub fn path(cfg: Option<&ControlConfig>) -> PathBuf {
    if let Some(p) = cfg.and_then(|c| c.socket.clone()) {
        return p;
    }
    if let Some(dir) = runtime_directory() {
        return dir.join(SOCKET_NAME);
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("chopd").join(SOCKET_NAME);
    }
    fallback_dir().join(SOCKET_NAME)
}

/// Where `chopd ctl` looks, in order, for the daemon of `config` (a config file and its
/// `[control]`) or, without one, for any: this environment's runtime directory, then the system
/// service's (`/run/chopd`, or `/run/chopd/NAME` for the template's instance `chopd@NAME`),
/// then the user's. A technician's shell has no `RUNTIME_DIRECTORY`; these find the service's.
pub fn candidates(config: Option<(&Path, Option<&ControlConfig>)>) -> Vec<PathBuf> {
    if let Some(p) = config.and_then(|(_, c)| c.and_then(|c| c.socket.clone())) {
        return vec![p];
    }
    let mut out = Vec::new();
    if let Some(dir) = runtime_directory() {
        out.push(dir.join(SOCKET_NAME));
    }
    let run = Path::new("/run/chopd");
    match config.and_then(|(f, _)| f.file_stem()) {
        Some(stem) if stem == "chopd" => out.push(run.join(SOCKET_NAME)),
        Some(stem) => out.push(run.join(stem).join(SOCKET_NAME)),
        None => out.push(run.join(SOCKET_NAME)),
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        out.push(PathBuf::from(dir).join("chopd").join(SOCKET_NAME));
    }
    out.push(fallback_dir().join(SOCKET_NAME));
    out.dedup();
    out
}

/// systemd sets `RUNTIME_DIRECTORY` to a colon-separated list when a unit names several.
fn runtime_directory() -> Option<PathBuf> {
    let v = std::env::var("RUNTIME_DIRECTORY").ok()?;
    v.split(':').find(|s| !s.is_empty()).map(PathBuf::from)
}

fn fallback_dir() -> PathBuf {
    // SAFETY: getuid cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir().join(format!("chopd-{uid}"))
}

/// The open socket; dropping it stops serving and removes the file.
pub struct LocalSocket {
    pub path: PathBuf,
    _close: oneshot::Sender<()>,
}

impl Drop for LocalSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the socket at `path` and serves it. A socket file that nothing answers (left by a
/// crash) is replaced; one another daemon answers on is an error, as a taken port is.
pub fn open(path: &Path, ctx: Ctx) -> anyhow::Result<LocalSocket> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    prepare_dir(dir)?;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(anyhow!(
                "{} exists and is not a socket: not replacing it",
                path.display()
            ));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(anyhow!(
                "another chopd serves {} (give this one another [control] socket)",
                path.display()
            ));
        }
        tracing::info!("replacing the stale socket {}", path.display());
    }
    // Bound under a temporary name, given its mode, then renamed into place: the socket never
    // exists at its path with the default mode, and a stale one is replaced in one step.
    let tmp = path.with_extension(format!("sock.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let std = std::os::unix::net::UnixListener::bind(&tmp)
        .with_context(|| format!("bind the control socket {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o660))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            anyhow!("put the control socket at {}: {e}", path.display())
        })?;
    std.set_nonblocking(true)?;
    let listener = UnixListener::from_std(std)?;
    tracing::info!(kind = "control-socket", path = %path.display(), "listening");
    let (close, close_rx) = oneshot::channel();
    tokio::spawn(serve(listener, ctx, close_rx));
    Ok(LocalSocket {
        path: path.to_path_buf(),
        _close: close,
    })
}

/// Creates the socket's directory when missing (mode 0700); the fallback under /tmp must be
/// ours and not a link, or someone else could have made it to sit in the middle.
fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("create {}", dir.display()))?;
    }
    if dir.starts_with(std::env::temp_dir()) {
        let meta = std::fs::symlink_metadata(dir)?;
        // SAFETY: getuid cannot fail and touches no memory.
        let uid = unsafe { libc::getuid() };
        if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o022 != 0 {
            return Err(anyhow!(
                "{} is not a directory of this user's that only it may write: \
                 set [control] socket",
                dir.display()
            ));
        }
    }
    Ok(())
}

async fn serve(listener: UnixListener, ctx: Ctx, mut close: oneshot::Receiver<()>) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    let failed = Arc::new(Mutex::new(Limited::new()));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut close => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (ctx, failed) = (ctx.clone(), failed.clone());
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = client(stream, &ctx, &failed).await {
                tracing::debug!("control socket client: {e}");
            }
        });
    }
}

async fn client(mut s: UnixStream, ctx: &Ctx, failed: &Mutex<Limited>) -> std::io::Result<()> {
    loop {
        let mut size = [0u8; 4];
        match tokio::time::timeout(IDLE, s.read_exact(&mut size)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return Ok(()),
        }
        let n = u32::from_be_bytes(size) as usize;
        if n > MAX_REQUEST {
            return Err(std::io::Error::other(format!("a {n}-byte request")));
        }
        let mut buf = vec![0u8; n];
        tokio::time::timeout(IDLE, s.read_exact(&mut buf))
            .await
            .map_err(|_| std::io::Error::other("a request cut short"))??;
        ctx.counters
            .packets
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let packet = match request::parse_packet(&buf, None, request::MAX_REQUESTS_LOCAL) {
            Ok(p) => p,
            Err(e) => {
                ctx.counters
                    .malformed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Err(std::io::Error::other(format!("malformed packet: {e}")));
            }
        };
        let groups = control::answer(packet.requests, Peer::Local, false, ctx, failed).await;
        let mut out = Vec::new();
        for m in groups.into_iter().flatten() {
            frame_message(&mut out, m)?;
        }
        s.write_all(&out).await?;
    }
}

fn frame_message(out: &mut Vec<u8>, m: OscMessage) -> std::io::Result<()> {
    let bytes = rosc::encoder::encode(&rosc::OscPacket::Message(m))
        .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(&bytes);
    Ok(())
}

/// Writes one framed packet (the client's side).
pub fn write_frame(w: &mut impl Write, packet: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(packet.len() + 4);
    out.extend_from_slice(&(packet.len() as u32).to_be_bytes());
    out.extend_from_slice(packet);
    w.write_all(&out)
}

/// Reads one framed packet (the client's side).
pub fn read_frame(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut size = [0u8; 4];
    r.read_exact(&mut size)?;
    let n = u32::from_be_bytes(size) as usize;
    if n > MAX_FRAME {
        return Err(std::io::Error::other(format!("a {n}-byte reply")));
    }
    let mut buf = vec![0u8; n];
    r.read_exact(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_back() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"/chopd/ping\0,\0\0\0").unwrap();
        assert_eq!(&buf[..4], &[0, 0, 0, 16]);
        let back = read_frame(&mut buf.as_slice()).unwrap();
        assert_eq!(back, b"/chopd/ping\0,\0\0\0");
    }
}
