//! OSC In DAT (docs/osc.md): OSC messages with all their arguments, strings included, as a
//! table DAT: one row per OSC address holding the last message that arrived there (address,
//! optionally its type tags, then one cell per argument), at most `max_lines` rows. Its
//! callbacks file's `onReceiveOSC(dat, rowIndex, message, byteData, timeStamp, address, args,
//! peer)` runs for every message, on the cook thread, after the row is written.
//!
//! The network side is OSC In's: the same keys and checks, the same socket set-up, its TCP
//! receiver; a receive thread decodes whole messages and hands them over through a bounded
//! queue. The cook thread never blocks; what does not fit is counted.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use rosc::{OscMessage, OscType};
use serde::Deserialize;
use toml::Spanned;

use super::oscin::tcp::{self, TcpCounters, TcpLog};
use super::oscin::config::{OscIn, Protocol as InProtocol};
use super::oscin::{self, Counters, OscInConfig};
use crate::chop::native::Pars;
use crate::config::refs::OpRefs;
use crate::config::{Bounds, Checker, Kind, OperatorConfig, OscFraming, OscProtocol, Settings};
use crate::cook::dat::{DatBody, DatContent, Table};
use crate::cook::par::ParDef;
use crate::cook::{BuildCtx, ChopData, CookCtx, CookError, Frame, NodeState, Operator};
use crate::logging::RateLimit;
use crate::osc;
use crate::python::kindcb::{Arity, Calls, KindCallbacks, Me, Spec};

pub struct OscInDat;

/// `max_lines`: TouchDesigner's Max Lines, as rows (addresses) kept.
pub const MAX_LINES: Bounds = Bounds::new(1, 100_000);
pub const DEFAULT_MAX_LINES: usize = 1000;
/// Messages waiting for the cook thread, and the bytes they may hold: a second of a 10k msg/s
/// burst; beyond either they are dropped and counted as queue drops.
const QUEUE: usize = 16_384;
const QUEUE_BYTES: usize = 8 << 20;
/// Messages taken per frame: each may run a Python callback, so a flood spreads over frames
/// (and beyond the queue is dropped) instead of holding one.
const PER_FRAME: usize = 4096;
/// The callbacks file: `onReceiveOSC` with the DAT as `me`, always given all eight arguments.
static CB: Spec = Spec {
    kind: "oscindat",
    me: Me::Dat,
    names: &["onReceiveOSC"],
    arity: Arity::All,
};

/// The keys of an `oscindat` operator.
#[derive(Deserialize, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    /// UDP (or with protocol = "tcp", TCP) port (0 = any free port)
    #[schemars(with = "u16")]
    pub port: Spanned<u16>,
    /// Address to listen on (default: all, IPv4 and IPv6)
    #[schemars(with = "Option<String>")]
    pub local_address: Option<Spanned<String>>,
    /// "udp" (default) or "tcp"
    pub protocol: Option<OscProtocol>,
    /// With protocol = "tcp": "slip" (OSC 1.1, default) or "size" (OSC 1.0)
    #[schemars(with = "Option<OscFraming>")]
    pub framing: Option<Spanned<OscFraming>>,
    /// With protocol = "tcp": most clients connected at once (default 64)
    #[schemars(with = "Option<i64>", range(min = oscin::config::MAX_CLIENTS.min, max = oscin::config::MAX_CLIENTS.max))]
    pub max_clients: Option<Spanned<i64>>,
    /// Source networks allowed to send (CIDR); others are dropped
    #[schemars(with = "Option<Vec<String>>")]
    pub allow: Option<Vec<Spanned<String>>>,
    /// Pattern on the OSC address: which messages to keep
    #[schemars(with = "Option<String>")]
    pub address_scope: Option<Spanned<String>>,
    /// Most rows (addresses) kept, TouchDesigner's Max Lines; a new address beyond it drops the oldest row (default 1000)
    #[schemars(with = "Option<i64>", range(min = MAX_LINES.min, max = MAX_LINES.max))]
    pub max_lines: Option<Spanned<i64>>,
    /// A column of type tags (",fs") after the address
    pub typetag: Option<bool>,
    /// Python callbacks file: onReceiveOSC(dat, rowIndex, message, byteData, timeStamp, address, args, peer)
    #[schemars(with = "Option<String>")]
    pub callbacks: Option<Spanned<String>>,
}

/// The checked settings of an OSC In DAT.
#[derive(Clone, Debug, PartialEq)]
pub struct OscInDatConfig {
    /// The network side, as an OSC In has it.
    pub net: OscInConfig,
    pub max_lines: usize,
    pub typetag: bool,
    pub callbacks: Option<PathBuf>,
}

impl Kind for OscInDat {
    const NAME: &'static str = "oscindat";
    const SUMMARY: &'static str = "OSC In DAT: the last OSC message of each address, all arguments, as a table";
    type Raw = Raw;
    type Settings = OscInDatConfig;

    fn check(cx: &mut Checker, r: Raw, refs: &mut OpRefs) -> Option<OscInDatConfig> {
        let max_lines =
            cx.ranged_or(&r.max_lines, "max_lines", MAX_LINES, DEFAULT_MAX_LINES as i64) as usize;
        let callbacks = r.callbacks.as_ref().map(|c| cx.callbacks_file(c));
        // The network keys are OSC In's, checked as OSC In checks them.
        let net = oscin::config::Raw {
            port: r.port,
            local_address: r.local_address,
            protocol: r.protocol,
            framing: r.framing,
            max_clients: r.max_clients,
            allow: r.allow,
            address_scope: r.address_scope,
            multicast: None,
            multicast_interface: None,
            strip_segments: None,
            queued: None,
            receive_buffer: None,
            max_channels: None,
            max_address_length: None,
            max_name_bytes: None,
            bundle_window_ms: None,
        };
        let net = <OscIn as Kind>::check(cx, net, refs)?;
        Some(OscInDatConfig {
            net,
            max_lines,
            typetag: r.typetag.unwrap_or(false),
            callbacks,
        })
    }
}

impl Settings for OscInDatConfig {
    fn build(&self, op: &OperatorConfig, cx: &BuildCtx) -> Result<Box<dyn Operator>, String> {
        Ok(Box::new(OscInDatOp::new(op, self, cx.rate)?))
    }

    fn udp_port(&self) -> Option<u16> {
        Some(self.net.bind.port())
    }

    fn uses_python(&self) -> bool {
        self.callbacks.is_some()
    }

    fn identity(&self) -> String {
        self.callbacks
            .as_ref()
            .map_or(String::new(), |p| p.display().to_string())
    }
}

/// One message as the receive thread hands it over.
struct Received {
    msg: OscMessage,
    peer: SocketAddr,
    /// Seconds since the Unix epoch when its packet arrived.
    at: f64,
    /// What it holds, roughly (the queue's byte bound).
    size: usize,
}

/// The receive side shared by the UDP loop and the TCP receiver: decodes a packet into its
/// messages and queues those in scope.
struct Intake {
    scope: crate::pattern::Pattern,
    max_address: usize,
    tx: SyncSender<Received>,
    counters: Arc<Counters>,
    queued_bytes: Arc<AtomicUsize>,
}

impl Intake {
    fn packet(&self, bytes: &[u8], peer: SocketAddr) {
        let c = &self.counters;
        c.packets.fetch_add(1, Relaxed);
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let r = osc::each_message(bytes, |msg| {
            c.messages.fetch_add(1, Relaxed);
            if msg.addr.len() > self.max_address {
                c.long_addresses.fetch_add(1, Relaxed);
                return;
            }
            if !self.scope.is_all() && !self.scope.matches(&msg.addr) {
                c.out_of_scope.fetch_add(1, Relaxed);
                return;
            }
            // Its encoded size bounds what it holds decoded, give or take the structs.
            let size = std::mem::size_of::<Received>() + bytes.len().min(MAX_MESSAGE_COST);
            if self.queued_bytes.load(Relaxed) + size > QUEUE_BYTES {
                c.queue_drops.fetch_add(1, Relaxed);
                return;
            }
            self.queued_bytes.fetch_add(size, Relaxed);
            if self.tx.try_send(Received { msg, peer, at, size }).is_err() {
                self.queued_bytes.fetch_sub(size, Relaxed);
                c.queue_drops.fetch_add(1, Relaxed);
            }
        });
        match r {
            Ok(bad) => c.malformed.fetch_add(bad as u64, Relaxed),
            Err(_) => c.malformed.fetch_add(1, Relaxed),
        };
    }
}

/// No message holds more than its datagram.
const MAX_MESSAGE_COST: usize = oscin::MAX_DATAGRAM;

pub struct OscInDatOp {
    name: String,
    cfg: OscInDatConfig,
    local: SocketAddr,
    queue: Receiver<Received>,
    counters: Arc<Counters>,
    queued_bytes: Arc<AtomicUsize>,
    tcp: Option<(Arc<TcpCounters>, TcpLog)>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// The table: one row per address, in order of first arrival.
    rows: Vec<Vec<String>>,
    index: HashMap<String, usize>,
    /// Rows dropped to make room for new addresses.
    rows_dropped: u64,
    changed: bool,
    /// This frame's messages, with the row each went to, for `onReceiveOSC`.
    events: Vec<(usize, Received)>,
    pars: Pars,
    cb: Option<KindCallbacks>,
    log: RateLimit,
    logged_drops: u64,
}

impl OscInDatOp {
    pub fn new(op: &OperatorConfig, cfg: &OscInDatConfig, rate: f64) -> Result<OscInDatOp, String> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let counters = Arc::new(Counters::default());
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let net = &cfg.net;
        let intake = Intake {
            scope: net.address_scope.clone(),
            max_address: net.max_address_length,
            tx,
            counters: counters.clone(),
            queued_bytes: queued_bytes.clone(),
        };
        let bind_error = |e| format!("bind oscindat \"{}\" on {}: {e}", op.name, net.bind);
        let thread = std::thread::Builder::new().name(format!("oscindat-{}", op.name));
        let spawn_error = |e| format!("oscindat \"{}\": cannot start receive thread: {e}", op.name);
        let (local, thread, tcp) = match net.protocol {
            InProtocol::Udp => {
                let socket = oscin::bind(net).map_err(bind_error)?;
                let local = socket.local_addr().map_err(bind_error)?;
                let (allow, stop) = (net.allow.clone(), stop.clone());
                let t = thread
                    .spawn(move || udp_loop(socket, allow, intake, stop))
                    .map_err(spawn_error)?;
                (local, t, None)
            }
            InProtocol::Tcp(framing) => {
                let listener = tcp::bind(net.bind).map_err(bind_error)?;
                let local = listener.local_addr().map_err(bind_error)?;
                let tcp_counters = Arc::new(TcpCounters::default());
                let receiver = tcp::Receiver {
                    listener,
                    framing,
                    max_clients: net.max_clients,
                    allow: net.allow.clone(),
                    handler: Box::new(move |p, peer| intake.packet(p, peer)),
                    counters: counters.clone(),
                    tcp: tcp_counters.clone(),
                    stop: stop.clone(),
                };
                let t = thread.spawn(move || receiver.run()).map_err(spawn_error)?;
                (local, t, Some((tcp_counters, TcpLog::new())))
            }
        };
        tracing::info!("bound oscindat \"{}\" on {}", op.name, local);
        let defs = vec![
            ParDef::int("port", "Connect", i64::from(local.port()))
                .label("Network Port")
                .read_only(),
            ParDef::int("maxlines", "Connect", cfg.max_lines as i64)
                .label("Max Lines")
                .read_only(),
            ParDef::toggle("typetag", "Connect", cfg.typetag)
                .label("Include Type Tag")
                .read_only(),
        ];
        let pars = Pars::new(op, rate, defs, &[]);
        let cb = match &cfg.callbacks {
            Some(path) => Some(KindCallbacks::load(&CB, &op.name, path, pars.shared())?),
            None => None,
        };
        Ok(OscInDatOp {
            name: op.name.clone(),
            cfg: cfg.clone(),
            local,
            queue: rx,
            counters,
            queued_bytes,
            tcp,
            stop,
            thread: Some(thread),
            rows: Vec::new(),
            index: HashMap::new(),
            rows_dropped: 0,
            changed: true,
            events: Vec::new(),
            pars,
            cb,
            log: RateLimit::new(Duration::from_secs(1)),
            logged_drops: 0,
        })
    }

    /// Writes `m` into its address's row (a new row at the end, the oldest dropped when the
    /// table is full); returns the row.
    fn fold(&mut self, m: &OscMessage) -> usize {
        let row = row_of(m, self.cfg.typetag);
        if let Some(&r) = self.index.get(&m.addr) {
            self.rows[r] = row;
            return r;
        }
        if self.rows.len() >= self.cfg.max_lines {
            let gone = self.rows.remove(0);
            self.index.remove(&gone[0]);
            for r in self.index.values_mut() {
                *r -= 1;
            }
            for (r, _) in &mut self.events {
                *r = r.saturating_sub(1);
            }
            self.rows_dropped += 1;
        }
        self.index.insert(m.addr.clone(), self.rows.len());
        self.rows.push(row);
        self.rows.len() - 1
    }
}

impl Drop for OscInDatOp {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            // Both receive loops look at the flag at least every READ_TIMEOUT.
            let _ = t.join();
        }
    }
}

fn udp_loop(socket: UdpSocket, allow: Vec<crate::config::Cidr>, intake: Intake, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; oscin::MAX_DATAGRAM];
    while !stop.load(Relaxed) {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) if crate::osc::is_retry(&e) => continue,
            Err(e) => {
                tracing::warn!("oscindat receive: {e}");
                std::thread::sleep(oscin::READ_TIMEOUT);
                continue;
            }
        };
        if !allow.is_empty() && !oscin::allowed(&allow, from.ip()) {
            intake.counters.refused.fetch_add(1, Relaxed);
            continue;
        }
        intake.packet(&buf[..n], from);
    }
}

/// A message's row: its address, its type tags when asked, then its arguments as text.
fn row_of(m: &OscMessage, typetag: bool) -> Vec<String> {
    let mut row = Vec::with_capacity(m.args.len() + 2);
    row.push(m.addr.clone());
    if typetag {
        let mut tags = String::from(",");
        for a in &m.args {
            push_tag(a, &mut tags);
        }
        row.push(tags);
    }
    row.extend(m.args.iter().map(cell));
    row
}

fn push_tag(a: &OscType, out: &mut String) {
    match a {
        OscType::Int(_) => out.push('i'),
        OscType::Float(_) => out.push('f'),
        OscType::String(_) => out.push('s'),
        OscType::Blob(_) => out.push('b'),
        OscType::Time(_) => out.push('t'),
        OscType::Long(_) => out.push('h'),
        OscType::Double(_) => out.push('d'),
        OscType::Char(_) => out.push('c'),
        OscType::Color(_) => out.push('r'),
        OscType::Midi(_) => out.push('m'),
        OscType::Bool(true) => out.push('T'),
        OscType::Bool(false) => out.push('F'),
        OscType::Nil => out.push('N'),
        OscType::Inf => out.push('I'),
        OscType::Array(a) => {
            out.push('[');
            // `osc::check` bounded the nesting before decoding.
            for x in &a.content {
                push_tag(x, out);
            }
            out.push(']');
        }
    }
}

/// An argument as readable text: numbers as numbers, strings as they are, several values
/// (blob bytes, a colour, a MIDI message, an array) as a quoted list.
fn cell(a: &OscType) -> String {
    let list = |v: Vec<String>| format!("\"{}\"", v.join(" "));
    match a {
        OscType::Int(i) => i.to_string(),
        OscType::Long(h) => h.to_string(),
        OscType::Float(f) => f.to_string(),
        OscType::Double(d) => d.to_string(),
        OscType::String(s) => s.clone(),
        OscType::Blob(b) => list(b.iter().map(u8::to_string).collect()),
        OscType::Time(t) => time_seconds(t).to_string(),
        OscType::Char(c) => c.to_string(),
        OscType::Color(c) => list([c.red, c.green, c.blue, c.alpha].map(|x| x.to_string()).to_vec()),
        OscType::Midi(m) => list([m.port, m.status, m.data1, m.data2].map(|x| x.to_string()).to_vec()),
        OscType::Bool(b) => u8::from(*b).to_string(),
        OscType::Nil => "nil".into(),
        OscType::Inf => "inf".into(),
        OscType::Array(a) => list(a.content.iter().map(cell).collect()),
    }
}

/// An OSC time tag as seconds since the Unix epoch.
fn time_seconds(t: &rosc::OscTime) -> f64 {
    const NTP_UNIX: f64 = 2_208_988_800.0;
    t.seconds as f64 - NTP_UNIX + t.fractional as f64 / 4_294_967_296.0
}

/// An argument as the Python value a callback gets.
fn py_value(py: Python<'_>, a: &OscType) -> PyResult<Py<PyAny>> {
    Ok(match a {
        OscType::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
        OscType::Long(h) => h.into_pyobject(py)?.into_any().unbind(),
        OscType::Float(f) => f.into_pyobject(py)?.into_any().unbind(),
        OscType::Double(d) => d.into_pyobject(py)?.into_any().unbind(),
        OscType::String(s) => s.into_pyobject(py)?.into_any().unbind(),
        OscType::Blob(b) => PyBytes::new(py, b).into_any().unbind(),
        OscType::Time(t) => time_seconds(t).into_pyobject(py)?.into_any().unbind(),
        OscType::Char(c) => c.to_string().into_pyobject(py)?.into_any().unbind(),
        OscType::Color(c) => PyTuple::new(py, [c.red, c.green, c.blue, c.alpha])?.into_any().unbind(),
        OscType::Midi(m) => PyTuple::new(py, [m.port, m.status, m.data1, m.data2])?.into_any().unbind(),
        OscType::Bool(b) => b.into_pyobject(py)?.to_owned().into_any().unbind(),
        OscType::Nil => py.None(),
        OscType::Inf => f64::INFINITY.into_pyobject(py)?.into_any().unbind(),
        OscType::Array(a) => {
            let items = a.content.iter().map(|x| py_value(py, x)).collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any().unbind()
        }
    })
}

impl Operator for OscInDatOp {
    fn wants_cook(&mut self, _frame: &Frame, _nodes: &[NodeState]) -> bool {
        let calls = self.cb.as_ref().is_some_and(|c| c.has(0));
        for _ in 0..PER_FRAME {
            let Ok(r) = self.queue.try_recv() else { break };
            self.queued_bytes.fetch_sub(r.size, Relaxed);
            let row = self.fold(&r.msg);
            self.changed = true;
            if calls {
                self.events.push((row, r));
            }
        }
        self.changed || self.cb.as_ref().is_some_and(|c| c.pending.is_some())
    }

    fn cook(&mut self, ctx: &mut CookCtx, out: &mut ChopData) -> Result<(), CookError> {
        let node = ctx.state();
        if std::mem::take(&mut self.changed) {
            let body = DatBody::Table(Table::from_rows(self.rows.clone()));
            match node.dat.as_mut() {
                Some(d) => d.replace(body),
                None => node.dat = Some(Box::new(DatContent::new(body))),
            }
            node.mark_changed();
        }
        let events = std::mem::take(&mut self.events);
        let Some(cb) = &mut self.cb else {
            return Ok(());
        };
        let failures = if cb.has(0) && !events.is_empty() {
            cb.run(self.pars.shared(), ctx, out, |py, calls| receive(py, calls, events))
        } else {
            Vec::new()
        };
        let log = &mut self.log;
        cb.record(&mut ctx.state().stats, failures, "onReceiveOSC", |f| {
            log.allow_key(&f.summary).is_some()
        });
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
            ("refused", f(&c.refused)),
            ("out_of_scope", f(&c.out_of_scope)),
            ("queue_drops", f(&c.queue_drops)),
            ("long_addresses", f(&c.long_addresses)),
            ("rows_dropped", self.rows_dropped as f64),
        ]);
        if let Some((c, _)) = &self.tcp {
            tcp::extras(c, out);
        }
    }

    fn bound(&self) -> Option<SocketAddr> {
        Some(self.local)
    }

    fn initial_dat(&self) -> Option<DatContent> {
        Some(DatContent::new(DatBody::Table(Table::default())))
    }

    fn reset(&mut self) {
        self.rows.clear();
        self.index.clear();
        self.changed = true;
    }

    fn housekeeping(&mut self) {
        if let Some((c, log)) = &mut self.tcp {
            log.log(c, self.cfg.net.max_clients);
        }
        let drops = self.counters.queue_drops.load(Relaxed) + self.rows_dropped;
        if drops != self.logged_drops && self.log.allow_key("drops").is_some() {
            tracing::warn!(
                queue_drops = self.counters.queue_drops.load(Relaxed),
                rows_dropped = self.rows_dropped,
                "oscindat \"{}\": messages were dropped (queue full) or rows made room for new addresses (max_lines {})",
                self.name,
                self.cfg.max_lines
            );
            self.logged_drops = drops;
        }
    }

    crate::native_pars!();
}

/// Calls `onReceiveOSC` for each message of this frame, in arrival order.
fn receive(py: Python<'_>, calls: &mut Calls<'_>, events: Vec<(usize, Received)>) -> PyResult<()> {
    let dat = calls.me(py);
    let namespace = py.import("types")?.getattr("SimpleNamespace")?;
    for (row, r) in events {
        // The message's own text: a later one to the same address may have replaced its row
        // since.
        let text = row_of(&r.msg, false).join(" ");
        let bytes =
            rosc::encoder::encode(&rosc::OscPacket::Message(r.msg.clone())).unwrap_or_default();
        let args = r.msg.args.iter().map(|a| py_value(py, a)).collect::<PyResult<Vec<_>>>()?;
        let kw = pyo3::types::PyDict::new(py);
        kw.set_item("address", r.peer.ip().to_string())?;
        kw.set_item("port", r.peer.port())?;
        kw.set_item("owner", dat.clone_ref(py))?;
        let peer = namespace.call((), Some(&kw))?;
        let rest = vec![
            row.into_pyobject(py)?.into_any().unbind(),
            text.into_pyobject(py)?.into_any().unbind(),
            PyBytes::new(py, &bytes).into_any().unbind(),
            r.at.into_pyobject(py)?.into_any().unbind(),
            r.msg.addr.into_pyobject(py)?.into_any().unbind(),
            PyList::new(py, args)?.into_any().unbind(),
            peer.unbind(),
        ];
        calls.call(py, 0, rest);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rosc::{OscArray, OscColor, OscMidiMessage};

    #[test]
    fn rows_hold_every_argument_as_text() {
        let m = OscMessage {
            addr: "/ch/01/config/name".into(),
            args: vec![
                OscType::String("Vox 1".into()),
                OscType::Int(3),
                OscType::Float(0.5),
                OscType::Bool(true),
                OscType::Nil,
                OscType::Blob(vec![1, 2, 255]),
                OscType::Color(OscColor { red: 1, green: 2, blue: 3, alpha: 4 }),
                OscType::Midi(OscMidiMessage { port: 0, status: 144, data1: 60, data2: 127 }),
                OscType::Array(OscArray { content: vec![OscType::Int(1), OscType::String("a".into())] }),
            ],
        };
        assert_eq!(
            row_of(&m, true),
            [
                "/ch/01/config/name",
                ",sifTNbrm[is]",
                "Vox 1",
                "3",
                "0.5",
                "1",
                "nil",
                "\"1 2 255\"",
                "\"1 2 3 4\"",
                "\"0 144 60 127\"",
                "\"1 a\"",
            ]
        );
    }
}
