//! OSC In (README, "Operators and their keys"): a receive thread owns the UDP socket, decodes packets and hands decoded
//! values to the cook thread through a bounded lock-free queue; the cook side folds them into
//! channels. The receive thread never touches channel data and the cook thread never blocks.
//! With `react = true` the cook thread takes the socket over while it listens for input
//! between frames (src/wake.rs): it then wakes on the datagram itself and reads it without
//! waiting (`Direct`), one thread wake-up instead of two; the receive thread parks meanwhile
//! and takes the socket back when a flood spends the reaction budget.
//!
//! Per-packet problems (malformed packets, refused senders, unusable arguments, non-finite
//! values) are counted, not raised; the log says so at most once a second.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::cook::slice::max_samples;
use crate::cook::{
    ChopData, CookCtx, CookError, Frame, NodeState, Operator, SliceQueue,
};
use crate::config::{Cidr, OperatorConfig};
use crate::cook::OwnPort;
use crate::logging::RateLimit;
use crate::wake::{Source, Wake};

pub mod config;
mod decode;
mod held;
pub mod recv;
pub mod tcp;
pub use decode::Decoder;
pub use config::{OscIn, OscInConfig};
use config::Protocol as InProtocol;

/// Decoded updates waiting for the cook thread. 64k updates is a second of a 50k msg/s flood at
/// 60 fps with room to spare; beyond it updates are dropped and counted.
const QUEUE: usize = 65_536;

/// Bytes the queued updates may hold (names and values): 64k typical updates take under 5 MiB,
/// while 64k of long names or many arguments would take gigabytes. Beyond it updates are dropped
/// and counted as queue drops.
const QUEUE_BYTES: usize = 8 << 20;

/// What an update holds on the heap and in its queue slot.
fn cost(u: &Update) -> usize {
    std::mem::size_of::<Update>() + u.name.len() + 4 * u.values.len()
}

/// Queues an update for the cook thread, or counts it as a queue drop: the one way onto the
/// queue, for the UDP and the TCP receive loops.
fn enqueue(tx: &SyncSender<Update>, counters: &Counters, u: Update) -> bool {
    let c = cost(&u);
    if counters.queued_bytes.load(Relaxed) + c > QUEUE_BYTES {
        counters.queue_drops.fetch_add(1, Relaxed);
        return false;
    }
    counters.queued_bytes.fetch_add(c, Relaxed);
    match tx.try_send(u) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => {
            counters.queued_bytes.fetch_sub(c, Relaxed);
            counters.queue_drops.fetch_add(1, Relaxed);
            false
        }
        Err(TrySendError::Disconnected(_)) => false,
    }
}

/// Largest UDP payload, and largest packet taken from a TCP stream.
pub(crate) const MAX_DATAGRAM: usize = 65_536;

/// True when `from` is our own export socket: a message exported by this daemon arriving back
/// at an input (a feedback loop) is recognised, counted and dropped instead of being re-exported
/// every frame.
fn is_own(own: &OwnPort, from: SocketAddr, local_ips: &[IpAddr]) -> bool {
    let port = own.get();
    port != 0 && from.port() == port && {
        let ip = canonical(from.ip());
        ip.is_loopback() || local_ips.contains(&ip)
    }
}

/// IPv4-mapped IPv6 addresses (dual-stack sockets) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// This host's interface addresses, link-local ones included (if-addrs leaves `fe80::` out
/// without its `link-local` feature): a loop through one is still our own export coming back.
fn local_ips() -> Vec<IpAddr> {
    if_addrs::get_if_addrs()
        .map(|ifs| ifs.iter().map(if_addrs::Interface::ip).collect())
        .unwrap_or_default()
}

/// One OSC message turned into a channel update.
#[derive(Debug)]
pub struct Update {
    pub name: String,
    pub values: Vec<f32>,
    /// With `bundle_window_ms`: when its bundle's time tag says it applies.
    pub due: Option<std::time::Instant>,
}

/// Counters shared by the receive thread and the Info CHOP.
#[derive(Default, Debug)]
pub struct Counters {
    pub packets: AtomicU64,
    pub messages: AtomicU64,
    pub malformed: AtomicU64,
    pub ignored_args: AtomicU64,
    pub nonfinite: AtomicU64,
    pub refused: AtomicU64,
    pub out_of_scope: AtomicU64,
    pub queue_drops: AtomicU64,
    pub kernel_drops: AtomicU64,
    /// Packets that were this daemon's own exports coming back (a feedback loop).
    pub feedback: AtomicU64,
    /// Messages whose address was longer than `max_address_length`.
    pub long_addresses: AtomicU64,
    /// Messages time-tagged further ahead than `bundle_window_ms`: applied on arrival.
    pub timetag_skew: AtomicU64,
    /// Bytes held by queued updates ([`QUEUE_BYTES`]); not a counter.
    queued_bytes: AtomicUsize,
}

pub struct OscInOp {
    cfg: OscInConfig,
    timeslice: bool,
    local: SocketAddr,
    queue: Receiver<Update>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// A UDP OSC In's socket (shared with its receive thread), for the kernel's drop count.
    udp: Option<Arc<UdpSocket>>,
    max_slice: Duration,
    /// With `queued` and `timeslice`: this frame's messages per channel.
    slices: SliceQueue,
    /// Current value of every channel.
    values: Vec<f32>,
    names: Vec<String>,
    index: HashMap<String, usize>,
    /// Bytes of `names` (`max_name_bytes`).
    name_bytes: usize,
    dirty: bool,
    reset_layout: bool,
    channel_limit_hits: u64,
    log: RateLimit,
    name_limit_hits: u64,
    /// Each limit is explained in the log the first time it is reached.
    told_long_address: bool,
    told_name_limit: bool,
    logged: LoggedCounts,
    last_drops_read: Option<Instant>,
    /// With `protocol = "tcp"`: its counters and what of them was logged.
    tcp: Option<(Arc<tcp::TcpCounters>, tcp::TcpLog)>,
    /// With `bundle_window_ms`: messages waiting for their time tag.
    held: held::Held,
    /// A UDP OSC In that may react: the cook thread's own reading of the socket.
    direct: Option<Direct>,
    /// Channels set since the last cook (at most [`TOUCHED_MAX`]; `touched_all` past that),
    /// and the layout id of the output they were last written to: while it stays, a cook
    /// writes only those, not every channel.
    touched: Vec<usize>,
    touched_all: bool,
    written: u64,
    /// Datagrams the cook thread read itself (`Direct`).
    cook_reads: u64,
}

/// Channels a cook writes one by one; past this many it writes them all.
const TOUCHED_MAX: usize = 64;

/// The cook thread reading the socket itself while it holds it ([`Source`]): without waiting,
/// at most [`DIRECT_MAX`] datagrams per look, so one look never holds the cook thread long;
/// what is left keeps the socket readable and is taken by the next reaction or frame.
struct Direct {
    socket: Arc<UdpSocket>,
    source: Arc<Source>,
    batch: recv::Batch,
    decoder: Decoder,
    filter: Filter,
}

/// Datagrams the cook thread takes per look at a socket it holds.
const DIRECT_MAX: usize = 8 * recv::BATCH;

#[derive(Default, Clone, Copy, PartialEq)]
struct LoggedCounts {
    malformed: u64,
    ignored: u64,
    refused: u64,
    queue_drops: u64,
    nonfinite: u64,
    limit: u64,
    feedback: u64,
}

impl OscInOp {
    /// Binds the socket and starts the receive thread.
    pub fn new(
        op: &OperatorConfig,
        cfg: &OscInConfig,
        own: OwnPort,
        max_slice: Duration,
        wake: Wake,
    ) -> Result<OscInOp, String> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let decoder = Decoder {
            address_scope: cfg.address_scope.clone(),
            strip_segments: cfg.strip_segments,
            max_address: cfg.max_address_length,
            bundle_window: cfg.bundle_window,
        };
        let filter = Filter {
            allow: cfg.allow.clone(),
            own,
            local_ips: local_ips(),
        };
        let spawn = |f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(format!("oscin-{}", op.name))
                .spawn(f)
                .map_err(|e| format!("oscin \"{}\": cannot start receive thread: {e}", op.name))
        };
        let bind_error = |e| format!("bind oscin \"{}\" on {}: {e}", op.name, cfg.bind);
        let mut direct = None;
        let (local, udp, thread, tcp) = match cfg.protocol {
            InProtocol::Udp => {
                let socket = Arc::new(bind(cfg).map_err(bind_error)?);
                let local = socket.local_addr().map_err(bind_error)?;
                // A time-sliced OSC In folds on the clock only: the cook thread never takes
                // its socket (it would wake for datagrams it does not read).
                if !op.timeslice {
                    direct = Some(Direct {
                        source: wake.source(socket.as_raw_fd()),
                        socket: socket.clone(),
                        batch: recv::Batch::new(MAX_DATAGRAM),
                        decoder: decoder.clone(),
                        filter: filter.clone(),
                    });
                }
                let source = direct.as_ref().map(|d| d.source.clone());
                let (counters, stop) = (counters.clone(), stop.clone());
                let receiver = UdpReceiver {
                    socket: socket.clone(),
                    decoder,
                    filter,
                    tx,
                    counters,
                    stop,
                    wake,
                    source,
                };
                let thread = spawn(Box::new(move || receiver.run()))?;
                (local, Some(socket), thread, None)
            }
            InProtocol::Tcp(framing) => {
                let listener = tcp::bind(cfg.bind).map_err(bind_error)?;
                let local = listener.local_addr().map_err(bind_error)?;
                let tcp_counters = Arc::new(tcp::TcpCounters::default());
                let handler: tcp::Handler = {
                    let counters = counters.clone();
                    Box::new(move |packet, _| {
                        let mut queued = false;
                        decoder.decode(packet, &counters, |u| queued |= enqueue(&tx, &counters, u));
                        if queued {
                            wake.notify();
                        }
                    })
                };
                let receiver = tcp::Receiver {
                    listener,
                    framing,
                    max_clients: cfg.max_clients,
                    allow: filter.allow,
                    handler,
                    counters: counters.clone(),
                    tcp: tcp_counters.clone(),
                    stop: stop.clone(),
                };
                let thread = spawn(Box::new(move || receiver.run()))?;
                (local, None, thread, Some((tcp_counters, tcp::TcpLog::new())))
            }
        };
        tracing::info!("bound oscin \"{}\" on {}", op.name, local);
        Ok(OscInOp {
            cfg: cfg.clone(),
            timeslice: op.timeslice,
            local,
            queue: rx,
            counters,
            stop,
            thread: Some(thread),
            udp,
            max_slice,
            slices: SliceQueue::default(),
            values: Vec::new(),
            names: Vec::new(),
            index: HashMap::new(),
            name_bytes: 0,
            dirty: false,
            reset_layout: false,
            channel_limit_hits: 0,
            log: RateLimit::new(Duration::from_secs(1)),
            name_limit_hits: 0,
            told_long_address: false,
            told_name_limit: false,
            logged: LoggedCounts::default(),
            last_drops_read: None,
            tcp,
            held: held::Held::default(),
            direct,
            touched: Vec::new(),
            touched_all: true,
            written: 0,
            cook_reads: 0,
        })
    }

    /// Folds what the receive thread queued: at most a full queue per look, so a sender as fast
    /// as this loop cannot hold it.
    fn drain_queue(&mut self, now: Instant) {
        for _ in 0..QUEUE {
            let Ok(u) = self.queue.try_recv() else { break };
            self.counters.queued_bytes.fetch_sub(cost(&u), Relaxed);
            if let Some(u) = self.held.hold(u, now) {
                self.fold(u);
            }
        }
    }

    /// Folds what waits on a socket the cook thread holds (see [`Direct`]).
    fn read_direct(&mut self, now: Instant) {
        let Some(mut d) = self.direct.take() else { return };
        // The sleep that just ended saw the socket empty (a frame after a quiet interval):
        // no receive call to hear so again.
        if d.source.take_quiet() || !d.source.begin_read() {
            self.direct = Some(d);
            return;
        }
        // The receive thread queued all it read before it handed the socket over, maybe after
        // the queue was last drained: fold that first, so nothing read here overtakes it.
        self.drain_queue(now);
        let counters = self.counters.clone();
        let mut taken = 0;
        while taken < DIRECT_MAX {
            let n = match d.batch.try_recv(&d.socket) {
                Ok(n) => n,
                Err(e) if crate::osc::is_retry(&e) => break,
                Err(e) => {
                    if self.log.allow_key("receive").is_some() {
                        tracing::warn!("oscin receive: {e}");
                    }
                    break;
                }
            };
            taken += n;
            self.cook_reads += n as u64;
            for k in 0..n {
                let (bytes, from) = d.batch.get(k);
                if !d.filter.admits(from, &counters) {
                    continue;
                }
                d.decoder.decode(bytes, &counters, |u| {
                    if let Some(u) = self.held.hold(u, now) {
                        self.fold(u);
                    }
                });
            }
            if n < recv::BATCH {
                // The socket is most likely empty: no second call to hear so. If more came
                // meanwhile, the socket is readable and the next look takes it.
                break;
            }
        }
        d.source.end_read(taken);
        self.direct = Some(d);
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Channel index for `name`, creating it unless the limit is reached.
    fn channel(&mut self, name: &str) -> Option<usize> {
        if let Some(&i) = self.index.get(name) {
            return Some(i);
        }
        if self.names.len() >= self.cfg.max_channels {
            self.channel_limit_hits += 1;
            return None;
        }
        if self.name_bytes + name.len() > self.cfg.max_name_bytes {
            self.name_limit_hits += 1;
            return None;
        }
        self.name_bytes += name.len();
        let i = self.names.len();
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), i);
        self.values.push(0.0);
        self.reset_layout = true;
        Some(i)
    }

    fn fold(&mut self, u: Update) {
        if u.values.len() == 1 {
            if let Some(i) = self.channel(&u.name) {
                self.set(i, u.values[0]);
            }
        } else {
            for (k, v) in u.values.iter().enumerate() {
                let name = format!("{}_{}", u.name, k + 1);
                if let Some(i) = self.channel(&name) {
                    self.set(i, *v);
                }
            }
        }
        self.dirty = true;
    }

    fn set(&mut self, i: usize, v: f32) {
        if self.cfg.queued && self.timeslice {
            self.slices.push(i, v);
        } else {
            self.values[i] = v;
            if self.touched.len() < TOUCHED_MAX {
                self.touched.push(i);
            } else {
                self.touched_all = true;
            }
        }
    }

    /// The first time a limit on names is reached, what it is and which key raises it.
    fn tell_limits(&mut self) {
        if !self.told_long_address && self.counters.long_addresses.load(Relaxed) > 0 {
            self.told_long_address = true;
            tracing::warn!(
                limit = self.cfg.max_address_length,
                "a message with an address longer than max_address_length ({} bytes) was dropped; such messages are counted in long_addresses",
                self.cfg.max_address_length
            );
        }
        if !self.told_name_limit && self.name_limit_hits > 0 {
            self.told_name_limit = true;
            tracing::warn!(
                limit = self.cfg.max_name_bytes,
                "channel names reached max_name_bytes ({} bytes); updates to further new channels are dropped and counted in name_limit",
                self.cfg.max_name_bytes
            );
        }
    }

    fn log_problems(&mut self) {
        let c = &self.counters;
        let snap = LoggedCounts {
            malformed: c.malformed.load(Relaxed),
            ignored: c.ignored_args.load(Relaxed),
            refused: c.refused.load(Relaxed),
            queue_drops: c.queue_drops.load(Relaxed),
            nonfinite: c.nonfinite.load(Relaxed),
            limit: self.channel_limit_hits,
            feedback: c.feedback.load(Relaxed),
        };
        // Each line reports the counts since its last one: what a held-back call would have said
        // goes out with the next, so the counts of held calls mean nothing here.
        if snap.feedback != self.logged.feedback && self.log.allow_key("feedback").is_some() {
            tracing::error!(
                "{} packets were this daemon's own exports coming back (a feedback loop: an export destination points at this input); they are dropped",
                snap.feedback - self.logged.feedback
            );
            self.logged.feedback = snap.feedback;
        }
        let warn_worthy = LoggedCounts {
            feedback: self.logged.feedback,
            ..snap
        };
        let old = self.logged;
        if warn_worthy != old && self.log.allow_key("problems").is_some() {
            self.logged = warn_worthy;
            let d = |a: u64, b: u64| a - b;
            tracing::warn!(
                "{} malformed packets, {} ignored arguments, {} non-finite values, {} refused senders, {} queue drops, {} updates over max_channels ({}) in the last interval",
                d(snap.malformed, old.malformed),
                d(snap.ignored, old.ignored),
                d(snap.nonfinite, old.nonfinite),
                d(snap.refused, old.refused),
                d(snap.queue_drops, old.queue_drops),
                d(snap.limit, old.limit),
                self.cfg.max_channels,
            );
        }
    }
}

impl Drop for OscInOp {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(d) = &self.direct {
            d.source.unpark();
        }
        if let Some(t) = self.thread.take() {
            // The receive loop wakes at least every READ_TIMEOUT to see the flag.
            let _ = t.join();
        }
    }
}

impl Operator for OscInOp {
    fn wants_cook(&mut self, frame: &Frame, _nodes: &[NodeState]) -> bool {
        self.slices.set_cap(max_samples(self.max_slice, frame.rate));
        self.drain_queue(frame.started);
        self.read_direct(frame.started);
        while let Some(u) = self.held.pop_due(frame.started) {
            self.fold(u);
        }
        self.dirty || self.reset_layout
    }

    /// A time-sliced OSC In lays its samples on the frame's time slice: it folds at frames.
    fn time_dependent(&self) -> bool {
        self.timeslice
    }

    fn cook(&mut self, ctx: &mut CookCtx, out: &mut ChopData) -> Result<(), CookError> {
        let frame = ctx.frame;
        // The graph already clamps the step to `max_slice`.
        let step = frame.step.max(1) as usize;
        let sliced = self.cfg.queued && self.timeslice;
        let len = match (self.timeslice, sliced) {
            (false, _) => 1,
            (true, false) => step,
            (true, true) => self.slices.slice_len(step),
        };
        // The names change only where `reset_layout` is set (a new channel, a reset).
        if self.reset_layout || out.num_chans() != self.names.len() {
            out.clear();
            for n in &self.names {
                out.append_chan(n);
            }
        }
        out.rate = frame.rate;
        let same_len = out.num_samples() == len;
        out.set_num_samples(len);
        out.start = frame.frame - len as i64 + 1;
        // One sample per channel and the output as this op left it: only what was set.
        let few = !self.touched_all && len == 1 && same_len && out.layout_id() == self.written;
        if sliced {
            self.slices.lay(out, &mut self.values);
        } else if few {
            for &i in &self.touched {
                out.chan_mut(i)[0] = self.values[i];
            }
        } else {
            for (i, v) in self.values.iter().enumerate() {
                out.chan_mut(i).fill(*v);
            }
        }
        self.written = out.layout_id();
        self.touched.clear();
        self.touched_all = false;
        self.dirty = false;
        self.reset_layout = false;
        if let Some(d) = &self.direct {
            d.source.arm();
        }
        Ok(())
    }

    fn packets_in(&self) -> u64 {
        self.counters.packets.load(Relaxed)
    }

    fn extras(&self, out: &mut Vec<(&'static str, f64)>) {
        let c = &self.counters;
        let f = |a: &AtomicU64| a.load(Relaxed) as f64;
        out.extend([
            ("port", self.local.port() as f64),
            ("packets", f(&c.packets)),
            ("messages", f(&c.messages)),
            ("malformed", f(&c.malformed)),
            ("ignored_args", f(&c.ignored_args)),
            ("nonfinite", f(&c.nonfinite)),
            ("refused", f(&c.refused)),
            ("out_of_scope", f(&c.out_of_scope)),
            ("queue_drops", f(&c.queue_drops)),
            ("feedback", f(&c.feedback)),
            ("kernel_drops", f(&c.kernel_drops)),
            ("channel_limit", self.channel_limit_hits as f64),
            ("long_addresses", f(&c.long_addresses)),
            ("name_limit", self.name_limit_hits as f64),
            ("slice_drops", self.slices.dropped as f64),
            ("cook_reads", self.cook_reads as f64),
        ]);
        if !self.cfg.bundle_window.is_zero() {
            out.extend([
                ("timetag_skew", f(&c.timetag_skew)),
                ("held", self.held.len() as f64),
                ("held_overflow", self.held.overflow as f64),
            ]);
        }
        if let Some((c, _)) = &self.tcp {
            tcp::extras(c, out);
        }
    }

    fn bound(&self) -> Option<SocketAddr> {
        Some(self.local)
    }

    /// The OSC In CHOP's network parameters, as TouchDesigner names them; the address is fixed
    /// by the config (a reload rebinds), so only the pulses act.
    fn par_defs(&self) -> Vec<crate::cook::par::ParDef> {
        use crate::cook::par::ParDef;
        vec![
            ParDef::int("port", "Network", i64::from(self.local.port()))
                .label("Network Port")
                .read_only(),
            ParDef::string("localaddress", "Network", &self.local.ip().to_string())
                .label("Local Address")
                .read_only(),
            ParDef::pulse("resetchannels", "Network").label("Reset Channels"),
            ParDef::pulse("resetvalues", "Network").label("Reset Values"),
        ]
    }

    fn pulse_par(&mut self, name: &str) -> Result<(), String> {
        match name {
            "reset_channels" | "resetchannels" => self.reset(),
            "reset_values" | "resetvalues" => {
                self.values.fill(0.0);
                self.touched_all = true;
                self.dirty = true;
            }
            other => {
                return Err(format!(
                    "oscin has no pulse \"{other}\" (reset_channels, reset_values)"
                ))
            }
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.names.clear();
        self.index.clear();
        self.name_bytes = 0;
        self.values.clear();
        self.slices.clear();
        self.slices.reset();
        self.held.clear();
        self.reset_layout = true;
    }

    fn housekeeping(&mut self) {
        self.log_problems();
        self.tell_limits();
        if let Some((c, log)) = &mut self.tcp {
            log.log(c, self.cfg.max_clients);
        }
        let now = Instant::now();
        if let Some(socket) = self
            .udp
            .as_ref()
            .filter(|_| self.last_drops_read.is_none_or(|t| now - t >= Duration::from_secs(1)))
        {
            self.last_drops_read = Some(now);
            if let Some(drops) = recv::kernel_drops(socket) {
                self.counters.kernel_drops.store(drops, Relaxed);
            }
        }
    }
}

pub(crate) fn bind(cfg: &OscInConfig) -> std::io::Result<UdpSocket> {
    let v4_any = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), cfg.bind.port());
    if cfg.multicast.is_some() && cfg.bind.ip().is_unspecified() {
        // IPv4 multicast groups are joined on an IPv4 socket.
        return bind_at(cfg, v4_any);
    }
    match bind_at(cfg, cfg.bind) {
        // No IPv6 on this host: the dual-stack default falls back to IPv4.
        Err(e) if cfg.bind.ip() == IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED) => {
            tracing::debug!("dual-stack bind failed ({e}), using IPv4 only");
            bind_at(cfg, v4_any)
        }
        r => r,
    }
}

fn bind_at(cfg: &OscInConfig, at: SocketAddr) -> std::io::Result<UdpSocket> {
    let domain = if at.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if at.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    if cfg.multicast.is_some() {
        socket.set_reuse_address(true)?;
    }
    socket.set_recv_buffer_size(cfg.receive_buffer)?;
    // Linux reports twice the usable size it granted (it doubles the request for bookkeeping).
    let granted = socket.recv_buffer_size()? / 2;
    if granted < cfg.receive_buffer {
        tracing::warn!(
            "receive buffer: asked for {} bytes, the kernel granted {} (raise net.core.rmem_max to avoid losing bursts)",
            cfg.receive_buffer,
            granted
        );
    }
    socket.bind(&at.into())?;
    if let Some((group, iface)) = cfg.multicast {
        socket.join_multicast_v4(&group, &iface)?;
    }
    socket.set_read_timeout(Some(READ_TIMEOUT))?;
    Ok(socket.into())
}

/// How often a blocked receive wakes to check for a stop request.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_millis(50);

/// Who may send to an OSC In.
#[derive(Clone)]
struct Filter {
    allow: Vec<Cidr>,
    own: OwnPort,
    local_ips: Vec<IpAddr>,
}

impl Filter {
    /// Whether a datagram from `from` is taken; one that is not is counted (a feedback loop,
    /// a refused sender) and dropped.
    fn admits(&self, from: Option<SocketAddr>, counters: &Counters) -> bool {
        let Some(from) = from else { return false };
        if is_own(&self.own, from, &self.local_ips) {
            counters.feedback.fetch_add(1, Relaxed);
            return false;
        }
        if !self.allow.is_empty() && !allowed(&self.allow, from.ip()) {
            counters.refused.fetch_add(1, Relaxed);
            return false;
        }
        true
    }
}

/// The receive thread of a UDP OSC In.
struct UdpReceiver {
    socket: Arc<UdpSocket>,
    decoder: Decoder,
    filter: Filter,
    tx: SyncSender<Update>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    wake: Wake,
    /// The handover of the socket to the cook thread (`None`: it never takes it).
    source: Option<Arc<Source>>,
}

impl UdpReceiver {
    /// Receives datagrams in batches (`recvmmsg`), decodes them onto the queue and rings the
    /// doorbell once per batch that queued something. Between batches it hands the socket to
    /// the cook thread when that asks, and parks while the cook thread holds it.
    fn run(self) {
        let mut batch = recv::Batch::new(MAX_DATAGRAM);
        while !self.stop.load(Relaxed) {
            if let Some(s) = &self.source {
                if !s.thread_may_read() {
                    // As often as a blocked receive wakes anyway.
                    s.park(READ_TIMEOUT);
                    continue;
                }
            }
            let n = match batch.recv(&self.socket) {
                Ok(n) => n,
                Err(e) if crate::osc::is_retry(&e) => continue,
                Err(e) => {
                    tracing::warn!("oscin receive: {e}");
                    std::thread::sleep(READ_TIMEOUT);
                    continue;
                }
            };
            let mut queued = false;
            for k in 0..n {
                let (bytes, from) = batch.get(k);
                if self.filter.admits(from, &self.counters) {
                    self.decoder.decode(bytes, &self.counters, |u| {
                        queued |= enqueue(&self.tx, &self.counters, u)
                    });
                }
            }
            if queued {
                self.wake.notify();
            }
        }
    }
}

pub(crate) fn allowed(allow: &[Cidr], ip: IpAddr) -> bool {
    allow.iter().any(|c| c.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Channel names are held within `max_name_bytes`, whatever `max_channels` allows.
    #[test]
    fn channel_names_stay_within_max_name_bytes() {
        let config = crate::config::check_str(
            std::path::Path::new("t.toml"),
            "[[operator]]\nname = \"in\"\ntype = \"oscin\"\nport = 0\nlocal_address = \"127.0.0.1\"\nmax_name_bytes = 1024\n",
            crate::chop::KINDS,
        )
        .unwrap();
        let op = &config.operators[0];
        let c: &OscInConfig = op.settings().expect("an oscin");
        assert_eq!(c.max_name_bytes, 1024);
        let mut op = OscInOp::new(op, c, OwnPort::default(), Duration::from_millis(200), Wake::new())
            .unwrap();
        for i in 0..100 {
            op.fold(Update {
                name: format!("{i:0>100}"),
                values: vec![1.0],
                due: None,
            });
        }
        assert_eq!(op.names.len(), 10);
        assert_eq!(op.name_bytes, 1000);
        assert_eq!(op.name_limit_hits, 90);
        // Known channels still update; a reset frees the names.
        op.fold(Update {
            name: format!("{:0>100}", 3),
            values: vec![2.0],
            due: None,
        });
        assert_eq!(op.values[3], 2.0);
        op.reset();
        assert_eq!(op.name_bytes, 0);
    }

    #[test]
    fn allow_list() {
        let allow = vec![
            Cidr::parse("10.0.0.0/8").unwrap(),
            Cidr::parse("::1").unwrap(),
        ];
        assert!(allowed(&allow, "10.1.2.3".parse().unwrap()));
        assert!(!allowed(&allow, "127.0.0.1".parse().unwrap()));
        assert!(allowed(&allow, "::1".parse().unwrap()));
        // An IPv4 sender seen on a dual-stack socket.
        assert!(allowed(&allow, "::ffff:10.0.0.1".parse().unwrap()));
    }
}
