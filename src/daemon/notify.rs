//! systemd notification (sd_notify(3)): one unix datagram per state change to `$NOTIFY_SOCKET`
//! (a path, or `@name` for the abstract namespace). Also the heartbeat check that decides whether
//! the watchdog may be fed.
//!
//! The `sd-notify` crate supplies the vocabulary (`NotifyState`, the `MONOTONIC_USEC` clock) and
//! reads `$WATCHDOG_USEC`/`$WATCHDOG_PID`; the sending stays here. Its `notify` (0.5.0) hands
//! `$NOTIFY_SOCKET` to `connect` as a path, so `@name` fails with ENOENT and an abstract socket,
//! which systemd may hand us, is never reached; it also ends every line with a newline
//! (`WATCHDOG=1\n`), where our datagrams have always been the bare `KEY=VALUE` lines joined by
//! newlines. It opens a fresh socket and rereads the environment on every call, too.
//!
//! Without `$NOTIFY_SOCKET` every call is a no-op, so the daemon behaves the same outside
//! systemd. Nothing here blocks: a datagram that cannot be sent is logged at debug and dropped
//! (systemd then times out on its own, which is the right outcome).

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// Where and how to tell systemd about our state.
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID` (sd_watchdog_enabled(3)).
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let addr = match socket_addr(path.as_encoded_bytes()) {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("NOTIFY_SOCKET {path:?} is unusable: {e}");
                    return None;
                }
            };
            match UnixDatagram::unbound() {
                Ok(s) => Some((s, addr)),
                Err(e) => {
                    tracing::warn!("cannot create the systemd notification socket: {e}");
                    None
                }
            }
        });
        // `WATCHDOG_USEC=0` comes back as a zero interval; systemd means "no watchdog" by it.
        let watchdog = sd_notify::watchdog_enabled().filter(|d| !d.is_zero());
        Notifier { target, watchdog }
    }

    /// A notifier that sends nothing (tests of `run` in-process).
    pub fn none() -> Notifier {
        Notifier {
            target: None,
            watchdog: None,
        }
    }

    /// The interval systemd expects pings within, when it expects any.
    pub fn watchdog(&self) -> Option<Duration> {
        self.target.as_ref().and(self.watchdog)
    }

    /// Sends `states` as one datagram, one `KEY=VALUE` line each.
    fn send(&self, states: &[NotifyState]) {
        if let Some((sock, addr)) = &self.target {
            let msg = states
                .iter()
                .map(NotifyState::to_string)
                .collect::<Vec<_>>()
                .join("\n");
            if let Err(e) = sock.send_to_addr(msg.as_bytes(), addr) {
                tracing::debug!("systemd notification {msg:?} not sent: {e}");
            }
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// Reload begins. `MONOTONIC_USEC` lets systemd tell this reload from an earlier one.
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[
                NotifyState::Reloading,
                now,
                NotifyState::Status("reloading"),
            ]),
            Err(e) => {
                tracing::warn!("CLOCK_MONOTONIC unreadable ({e}); reload notified without it");
                self.send(&[NotifyState::Reloading, NotifyState::Status("reloading")]);
            }
        }
    }

    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    pub fn watchdog_ping(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }
}

/// `$NOTIFY_SOCKET` → address: `@name` is abstract (Linux), anything else a filesystem path.
fn socket_addr(raw: &[u8]) -> std::io::Result<SocketAddr> {
    match raw {
        [] => Err(std::io::Error::other("empty")),
        [b'@', name @ ..] => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)
        }
        path => {
            use std::os::unix::ffi::OsStrExt;
            SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(path))
        }
    }
}

/// Watches the clock's frame counter: alive while it moved within `limit`.
pub struct Heartbeat {
    last: u64,
    changed: Instant,
    stalled: bool,
}

/// What a heartbeat check found.
#[derive(Debug, PartialEq)]
pub enum Health {
    Alive,
    /// The counter has not moved for this long; reported once per stall.
    Stalled(Duration),
    StillStalled,
    /// Frames run again after a stall of this long.
    Recovered(Duration),
}

impl Heartbeat {
    pub fn new(count: u64, now: Instant) -> Heartbeat {
        Heartbeat {
            last: count,
            changed: now,
            stalled: false,
        }
    }

    pub fn check(&mut self, count: u64, now: Instant, limit: Duration) -> Health {
        if count != self.last {
            let quiet = now.saturating_duration_since(self.changed);
            self.last = count;
            self.changed = now;
            if std::mem::take(&mut self.stalled) {
                return Health::Recovered(quiet);
            }
            return Health::Alive;
        }
        let quiet = now.saturating_duration_since(self.changed);
        if quiet < limit {
            Health::Alive
        } else if self.stalled {
            Health::StillStalled
        } else {
            self.stalled = true;
            Health::Stalled(quiet)
        }
    }

    pub fn alive(&self) -> bool {
        !self.stalled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abstract_and_path_addresses() {
        use std::os::linux::net::SocketAddrExt;
        let a = socket_addr(b"@chopd/notify").unwrap();
        assert_eq!(a.as_abstract_name(), Some(&b"chopd/notify"[..]));
        let p = socket_addr(b"/run/systemd/notify").unwrap();
        assert_eq!(
            p.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        assert!(socket_addr(b"").is_err());
    }

    #[test]
    fn datagrams_reach_a_listening_socket() {
        let dir = std::env::temp_dir().join(format!("chopd-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let rx = UnixDatagram::bind(&dir).unwrap();
        let n = Notifier {
            target: Some((
                UnixDatagram::unbound().unwrap(),
                SocketAddr::from_pathname(&dir).unwrap(),
            )),
            watchdog: None,
        };
        n.ready("running");
        n.reloading();
        let mut buf = [0u8; 256];
        let k = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"READY=1\nSTATUS=running");
        let k = rx.recv(&mut buf).unwrap();
        let s = std::str::from_utf8(&buf[..k]).unwrap();
        assert!(s.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{s}");
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn an_abstract_socket_gets_bare_lines() {
        let name = format!("chopd-notify-test-{}", std::process::id());
        let rx =
            UnixDatagram::bind_addr(&socket_addr(format!("@{name}").as_bytes()).unwrap()).unwrap();
        let n = Notifier {
            target: Some((
                UnixDatagram::unbound().unwrap(),
                socket_addr(format!("@{name}").as_bytes()).unwrap(),
            )),
            watchdog: None,
        };
        n.watchdog_ping();
        n.stopping();
        let mut buf = [0u8; 256];
        let k = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"WATCHDOG=1");
        let k = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"STOPPING=1\nSTATUS=stopping");
    }

    #[test]
    fn heartbeat_stall_and_recovery() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut h = Heartbeat::new(1, t0);
        assert_eq!(h.check(2, t0 + ms(10), ms(100)), Health::Alive);
        assert_eq!(h.check(2, t0 + ms(50), ms(100)), Health::Alive);
        assert_eq!(h.check(2, t0 + ms(120), ms(100)), Health::Stalled(ms(110)));
        assert!(!h.alive());
        assert_eq!(h.check(2, t0 + ms(500), ms(100)), Health::StillStalled);
        assert_eq!(
            h.check(3, t0 + ms(510), ms(100)),
            Health::Recovered(ms(500))
        );
        assert!(h.alive());
        assert_eq!(h.check(3, t0 + ms(520), ms(100)), Health::Alive);
    }
}
