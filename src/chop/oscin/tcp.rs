//! OSC In over TCP (`protocol = "tcp"`): one receive thread runs a small single-threaded tokio
//! runtime that accepts up to `max_clients` connections and reads them all; every packet a
//! connection's [`Deframer`] completes goes to the receiver's handler as a UDP datagram would
//! (OSC In: the same [`super::Decoder`] and bounded queue, so the cook side cannot tell the two
//! apart; the OSC In DAT: its message queue).
//!
//! Bounded per connection: one read buffer and one frame of at most [`MAX_DATAGRAM`] bytes. A
//! frame problem (truncated, badly escaped, oversized) is counted; a size prefix beyond the
//! limit closes its connection, as nothing after it can be framed. Nothing here writes to a
//! client, so one that never reads costs nothing.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::AsyncReadExt;

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
    /// The receive thread's body: accepts and reads until `stop` is set.
    pub fn run(self) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!("oscin tcp: cannot start its runtime: {e}");
                return;
            }
        };
        rt.block_on(self.serve());
        // Dropping the runtime drops every connection's task, and with it its socket.
    }

    async fn serve(self) {
        let listener = match tokio::net::TcpListener::from_std(self.listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("oscin tcp: {e}");
                return;
            }
        };
        let shared = Arc::new(Shared {
            framing: self.framing,
            handler: self.handler,
            counters: self.counters,
            tcp: self.tcp,
        });
        let mut tick = tokio::time::interval(READ_TIMEOUT);
        let mut log = RateLimit::new(Duration::from_secs(1));
        while !self.stop.load(Relaxed) {
            tokio::select! {
                r = listener.accept() => {
                    let (stream, peer) = match r {
                        Ok(c) => c,
                        Err(e) => {
                            if log.allow_key("accept").is_some() {
                                tracing::warn!("oscin tcp accept: {e}");
                            }
                            tokio::time::sleep(READ_TIMEOUT).await;
                            continue;
                        }
                    };
                    if !self.allow.is_empty() && !allowed(&self.allow, peer.ip()) {
                        shared.counters.refused.fetch_add(1, Relaxed);
                        continue;
                    }
                    if shared.tcp.clients.load(Relaxed) >= self.max_clients as u64 {
                        shared.tcp.clients_refused.fetch_add(1, Relaxed);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    shared.tcp.clients.fetch_add(1, Relaxed);
                    shared.tcp.connections.fetch_add(1, Relaxed);
                    tracing::debug!(peer = %peer, "oscin tcp client connected");
                    tokio::spawn(shared.clone().read(stream, peer));
                }
                _ = tick.tick() => {}
            }
        }
    }
}

/// What every connection's task shares.
struct Shared {
    framing: Framing,
    handler: Handler,
    counters: Arc<Counters>,
    tcp: Arc<TcpCounters>,
}

impl Shared {
    async fn read(self: Arc<Self>, mut stream: tokio::net::TcpStream, peer: SocketAddr) {
        let mut deframer = Deframer::new(self.framing, MAX_DATAGRAM);
        let mut buf = vec![0u8; 64 * 1024];
        let why = loop {
            let n = match stream.read(&mut buf).await {
                Ok(0) => break "closed",
                Ok(n) => n,
                Err(_) => break "reset",
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
                break "oversize";
            }
        };
        if why != "oversize" && deframer.is_mid_frame() {
            self.tcp.frame_errors.fetch_add(1, Relaxed);
        }
        tracing::debug!(peer = %peer, why, "oscin tcp client gone");
        self.tcp.clients.fetch_sub(1, Relaxed);
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
