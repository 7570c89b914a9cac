//! OSC In over TCP (`protocol = "tcp"`): the receive thread accepts up to `max_clients`
//! connections, each read by a small thread of its own with blocking reads (as the UDP loop
//! reads: one system call per wake-up, no event loop in between); every packet a
//! connection's [`Deframer`] completes goes to the receiver's handler as a UDP datagram would
//! (OSC In: the same [`super::Decoder`] and bounded queue, so the cook side cannot tell the two
//! apart; the OSC In DAT: its message queue).
//!
//! Bounded per connection: one read buffer and one frame of at most [`MAX_DATAGRAM`] bytes. A
//! frame problem (truncated, badly escaped, oversized) is counted; a size prefix beyond the
//! limit closes its connection, as nothing after it can be framed. Nothing here writes to a
//! client, so one that never reads costs nothing.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::{allowed, Counters, MAX_DATAGRAM, READ_TIMEOUT};
use crate::config::Cidr;
use crate::logging::RateLimit;
use crate::osc::framing::{Deframer, Fatal, FrameError, Framing};

/// Default `max_clients`: a console, a cue server and a few laptops, with room to spare.
pub const DEFAULT_MAX_CLIENTS: usize = 64;

/// Counters of the TCP side, shared by the receive thread and the Info CHOP.
#[derive(Default, Debug)]
pub struct TcpCounters {
    /// Connections open now.
    pub clients: AtomicU64,
    /// Connections accepted in all.
    pub connections: AtomicU64,
    /// Connections closed because `max_clients` were open.
    pub clients_refused: AtomicU64,
    /// Frames that were not packets: cut short by a closing peer, badly escaped, too long, empty.
    pub frame_errors: AtomicU64,
}

/// Binds the listening socket: dual-stack by default, IPv4 where there is no IPv6.
pub fn bind(at: SocketAddr) -> std::io::Result<TcpListener> {
    let v4_any = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), at.port());
    match bind_at(at) {
        Err(e) if at.ip() == IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED) => {
            tracing::debug!("dual-stack bind failed ({e}), using IPv4 only");
            bind_at(v4_any)
        }
        r => r,
    }
}

fn bind_at(at: SocketAddr) -> std::io::Result<TcpListener> {
    let domain = if at.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    if at.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    // A reload rebinds the port while the old connections linger in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&at.into())?;
    socket.listen(128)?;
    // Accepted only when `poll` says one waits; a client gone by then must not block us.
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// What is done with each packet, and who sent it.
pub type Handler = Box<dyn Fn(&[u8], SocketAddr) + Send + Sync>;

/// What the receive thread needs.
pub struct Receiver {
    pub listener: TcpListener,
    pub framing: Framing,
    pub max_clients: usize,
    /// Who may connect (empty: anyone).
    pub allow: Vec<Cidr>,
    pub handler: Handler,
    /// `refused` counts connections the allow list refused.
    pub counters: Arc<Counters>,
    pub tcp: Arc<TcpCounters>,
    pub stop: Arc<AtomicBool>,
}

impl Receiver {
    /// The receive thread's body: accepts until `stop` is set, each connection read by a
    /// thread of its own (at most `max_clients` of them), then waits for those to end.
    pub fn run(self) {
        let shared = Arc::new(Shared {
            framing: self.framing,
            handler: self.handler,
            counters: self.counters,
            tcp: self.tcp,
            stop: self.stop,
        });
        let mut readers: Vec<JoinHandle<()>> = Vec::new();
        let mut log = RateLimit::new(Duration::from_secs(1));
        while !shared.stop.load(Relaxed) {
            if !readable(&self.listener, READ_TIMEOUT) {
                continue;
            }
            let (stream, peer) = match self.listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    if log.allow_key("accept").is_some() {
                        tracing::warn!("oscin tcp accept: {e}");
                    }
                    std::thread::sleep(READ_TIMEOUT);
                    continue;
                }
            };
            readers.retain(|r| !r.is_finished());
            if !self.allow.is_empty() && !allowed(&self.allow, peer.ip()) {
                shared.counters.refused.fetch_add(1, Relaxed);
                continue;
            }
            if readers.len() >= self.max_clients {
                shared.tcp.clients_refused.fetch_add(1, Relaxed);
                continue;
            }
            shared.tcp.clients.fetch_add(1, Relaxed);
            shared.tcp.connections.fetch_add(1, Relaxed);
            tracing::debug!(peer = %peer, "oscin tcp client connected");
            let s = shared.clone();
            let spawned = std::thread::Builder::new()
                .name("oscin-tcp".into())
                .stack_size(READER_STACK)
                .spawn(move || s.read(stream, peer));
            match spawned {
                Ok(r) => readers.push(r),
                Err(e) => {
                    shared.tcp.clients.fetch_sub(1, Relaxed);
                    shared.tcp.clients_refused.fetch_add(1, Relaxed);
                    if log.allow_key("spawn").is_some() {
                        tracing::warn!("oscin tcp: cannot start a reader: {e}");
                    }
                }
            }
        }
        for r in readers {
            // Each looks at the stop flag at least every READ_TIMEOUT.
            let _ = r.join();
        }
    }
}

/// A reader needs little stack: one frame of its own, the deframer and the decoder.
const READER_STACK: usize = 256 * 1024;

/// Waits up to `timeout` for a connection to accept.
fn readable(listener: &TcpListener, timeout: Duration) -> bool {
    use std::os::fd::AsRawFd;
    let mut fd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one valid pollfd we own, for a bounded time.
    let n = unsafe { libc::poll(&mut fd, 1, timeout.as_millis() as libc::c_int) };
    n > 0
}

/// What every connection's reader shares.
struct Shared {
    framing: Framing,
    handler: Handler,
    counters: Arc<Counters>,
    tcp: Arc<TcpCounters>,
    stop: Arc<AtomicBool>,
}

impl Shared {
    fn read(&self, mut stream: TcpStream, peer: SocketAddr) {
        let set = stream
            .set_nonblocking(false)
            .and_then(|()| stream.set_read_timeout(Some(READ_TIMEOUT)));
        let why = match set {
            Ok(()) => self.serve(&mut stream, peer),
            Err(_) => "reset",
        };
        tracing::debug!(peer = %peer, why, "oscin tcp client gone");
        self.tcp.clients.fetch_sub(1, Relaxed);
    }

    /// Reads until the peer closes, the stream breaks or the operator stops; says which.
    fn serve(&self, stream: &mut TcpStream, peer: SocketAddr) -> &'static str {
        let mut deframer = Deframer::new(self.framing, MAX_DATAGRAM);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if self.stop.load(Relaxed) {
                return "stopped";
            }
            let n = match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if crate::osc::is_retry(&e) => continue,
                Err(_) => break,
            };
            let fed = deframer.feed(&buf[..n], |frame| match frame {
                Ok(packet) => (self.handler)(packet, peer),
                Err(FrameError::Oversize | FrameError::BadEscape | FrameError::Empty) => {
                    self.tcp.frame_errors.fetch_add(1, Relaxed);
                }
            });
            if let Err(Fatal::Oversize(size)) = fed {
                self.tcp.frame_errors.fetch_add(1, Relaxed);
                tracing::debug!(peer = %peer, size, "oscin tcp: size prefix over the limit, closing");
                return "oversize";
            }
        }
        if deframer.is_mid_frame() {
            self.tcp.frame_errors.fetch_add(1, Relaxed);
        }
        "closed"
    }
}

/// The Info CHOP's view of the TCP side.
pub fn extras(c: &TcpCounters, out: &mut Vec<(&'static str, f64)>) {
    let f = |a: &AtomicU64| a.load(Relaxed) as f64;
    out.extend([
        ("clients", f(&c.clients)),
        ("connections", f(&c.connections)),
        ("clients_refused", f(&c.clients_refused)),
        ("frame_errors", f(&c.frame_errors)),
    ]);
}

/// What was logged of the TCP counters, so each problem is logged once per new count.
pub struct TcpLog {
    frame_errors: u64,
    clients_refused: u64,
    limit: RateLimit,
}

impl Default for TcpLog {
    fn default() -> TcpLog {
        TcpLog::new()
    }
}

impl TcpLog {
    pub fn new() -> TcpLog {
        TcpLog {
            frame_errors: 0,
            clients_refused: 0,
            limit: RateLimit::new(Duration::from_secs(1)),
        }
    }

    /// Warns (at most once a second) about frame errors and refused clients since the last line.
    pub fn log(&mut self, c: &TcpCounters, max_clients: usize) {
        let (fe, cr) = (
            c.frame_errors.load(Relaxed),
            c.clients_refused.load(Relaxed),
        );
        if (fe, cr) == (self.frame_errors, self.clients_refused)
            || self.limit.allow_key("tcp").is_none()
        {
            return;
        }
        tracing::warn!(
            frame_errors = fe - self.frame_errors,
            clients_refused = cr - self.clients_refused,
            max_clients,
            "oscin tcp: {} frames were not packets (cut short, badly escaped or over 64 KiB), {} connections refused over max_clients",
            fe - self.frame_errors,
            cr - self.clients_refused,
        );
        self.frame_errors = fe;
        self.clients_refused = cr;
    }
}
