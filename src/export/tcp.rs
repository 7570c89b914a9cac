//! A TCP destination's connection: a sender thread per destination owns the socket; the cook
//! thread hands it each frame's framed packets through a bounded queue and never waits on the
//! network (a full queue drops the frame's packets and counts them).
//!
//! The thread connects, sends the destination's keep-alive messages first (a subscription is
//! renewed on every connection), then writes what is queued. A lost connection is logged once
//! per outage (WARN when it goes, INFO when it is back) and retried with a backoff from 100 ms
//! doubling to 5 s. A receiver that stops reading fills the kernel's buffer, then this queue:
//! the thread keeps trying to write the rest of its packet, the cook thread drops and counts.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

/// Bytes queued for the thread at most: at 60 fps, over a second of 1000 channels sent every
/// frame (about 16 bytes a message framed in bundles).
pub const MAX_QUEUED_BYTES: usize = 4 << 20;
/// Batches queued at most (one a frame, keep-alives included): a few seconds at 60 fps.
const MAX_BATCHES: usize = 256;
/// How often a blocked write or an idle wait looks at the stop flag.
const POLL: Duration = Duration::from_millis(50);
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the cook thread and the status see of a link.
#[derive(Default, Debug)]
pub struct LinkState {
    pub connected: AtomicBool,
    /// Connections lost (or never made) since the link started: outages.
    pub outages: AtomicU64,
    /// Messages dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Connections made.
    connects: AtomicU64,
    queued_bytes: AtomicUsize,
}

impl LinkState {
    pub fn connects(&self) -> u64 {
        self.connects.load(Relaxed)
    }
}

pub struct TcpLink {
    tx: Option<SyncSender<(Vec<u8>, usize)>>,
    pub state: Arc<LinkState>,
    stop: Arc<AtomicBool>,
}

impl TcpLink {
    /// Starts the sender thread for `name` at `addr`; `hello` (framed keep-alives) is sent on
    /// every connection before anything else.
    pub fn start(name: &str, addr: SocketAddr, hello: Vec<u8>) -> std::io::Result<TcpLink> {
        let (tx, rx) = mpsc::sync_channel(MAX_BATCHES);
        let state = Arc::new(LinkState::default());
        let stop = Arc::new(AtomicBool::new(false));
        let sender = Sender {
            name: name.to_string(),
            addr,
            hello,
            rx,
            state: state.clone(),
            stop: stop.clone(),
        };
        std::thread::Builder::new()
            .name(format!("dest-{name}"))
            .spawn(move || sender.run())?;
        Ok(TcpLink {
            tx: Some(tx),
            state,
            stop,
        })
    }

    /// Queues framed packets holding `messages` messages; false (and counted) when they do not
    /// fit.
    pub fn send(&self, bytes: Vec<u8>, messages: usize) -> bool {
        let s = &self.state;
        let n = bytes.len();
        let fits = s.connected.load(Relaxed)
            && s.queued_bytes.load(Relaxed) + n <= MAX_QUEUED_BYTES
            && self
                .tx
                .as_ref()
                .is_some_and(|tx| match tx.try_send((bytes, messages)) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
                });
        if fits {
            s.queued_bytes.fetch_add(n, Relaxed);
        } else {
            s.dropped.fetch_add(messages as u64, Relaxed);
        }
        fits
    }
}

impl Drop for TcpLink {
    /// Tells the thread to end and lets it go without waiting: it may be inside a connect
    /// attempt (up to `CONNECT_TIMEOUT`), and a reload on the cook thread must not wait for
    /// it. It ends by itself within that time, holding nothing but its own socket.
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        self.tx.take();
    }
}

struct Sender {
    name: String,
    addr: SocketAddr,
    hello: Vec<u8>,
    rx: Receiver<(Vec<u8>, usize)>,
    state: Arc<LinkState>,
    stop: Arc<AtomicBool>,
}

impl Sender {
    fn run(self) {
        let mut backoff = BACKOFF_FIRST;
        let mut down_since_logged = false;
        while !self.stop.load(Relaxed) {
            let mut stream = match self.connect() {
                Ok(s) => s,
                Err(e) => {
                    if !down_since_logged {
                        down_since_logged = true;
                        self.state.outages.fetch_add(1, Relaxed);
                        tracing::warn!(
                            destination = %self.name, addr = %self.addr, error = %e,
                            "destination unreachable; retrying with backoff"
                        );
                    }
                    self.sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            backoff = BACKOFF_FIRST;
            tracing::info!(destination = %self.name, addr = %self.addr, "destination connected");
            down_since_logged = false;
            let why = self.serve(&mut stream);
            self.state.connected.store(false, Relaxed);
            // What was queued for this connection is gone with it.
            while let Ok((b, n)) = self.rx.try_recv() {
                self.state.queued_bytes.fetch_sub(b.len(), Relaxed);
                self.state.dropped.fetch_add(n as u64, Relaxed);
            }
            if let Some(e) = why {
                down_since_logged = true;
                self.state.outages.fetch_add(1, Relaxed);
                tracing::warn!(
                    destination = %self.name, addr = %self.addr, error = %e,
                    "destination disconnected; reconnecting with backoff"
                );
                self.sleep(backoff);
            }
        }
    }

    fn connect(&self) -> std::io::Result<TcpStream> {
        let s = TcpStream::connect_timeout(&self.addr, CONNECT_TIMEOUT)?;
        s.set_nodelay(true)?;
        s.set_write_timeout(Some(POLL))?;
        Ok(s)
    }

    /// Writes until the connection fails (its error) or the link stops (`None`).
    fn serve(&self, stream: &mut TcpStream) -> Option<std::io::Error> {
        if let Err(e) = self.write(stream, &self.hello) {
            return e;
        }
        self.state.connected.store(true, Relaxed);
        self.state.connects.fetch_add(1, Relaxed);
        loop {
            if self.stop.load(Relaxed) {
                return None;
            }
            let (bytes, _) = match self.rx.recv_timeout(POLL) {
                Ok(b) => b,
                Err(RecvTimeoutError::Timeout) => {
                    // A peer that closed is only noticed on a write or a read.
                    if peer_closed(stream) {
                        return Some(std::io::ErrorKind::ConnectionReset.into());
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return None,
            };
            self.state.queued_bytes.fetch_sub(bytes.len(), Relaxed);
            if let Err(e) = self.write(stream, &bytes) {
                return e;
            }
        }
    }

    /// Writes all of `bytes`, waiting out a receiver that reads slowly (or not at all) until
    /// the link stops: a packet cut short would break the framing of all that follow.
    fn write(
        &self,
        stream: &mut TcpStream,
        mut bytes: &[u8],
    ) -> Result<(), Option<std::io::Error>> {
        while !bytes.is_empty() {
            match stream.write(bytes) {
                Ok(0) => return Err(Some(std::io::ErrorKind::WriteZero.into())),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if crate::osc::is_retry(&e) => {
                    if self.stop.load(Relaxed) {
                        return Err(None);
                    }
                }
                Err(e) => return Err(Some(e)),
            }
        }
        Ok(())
    }

    fn sleep(&self, d: Duration) {
        let mut left = d;
        while !left.is_zero() && !self.stop.load(Relaxed) {
            let step = left.min(POLL);
            std::thread::sleep(step);
            left -= step;
        }
    }
}

/// True when the peer has closed its end (a read would return 0 bytes now). Anything it sent
/// is left unread: a destination reads nothing from its receiver.
fn peer_closed(stream: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let closed = matches!(stream.peek(&mut b), Ok(0));
    let _ = stream.set_nonblocking(false);
    closed
}
