//! The control port: OSC over UDP, loopback and an allow-list by default, and the same requests
//! over the local administration socket ([`super::local`]). Owns the address space, request
//! parsing, the limits on what one sender may ask and get back, and replies (the status they
//! carry is [`super::status`]); it never touches the graph itself — the graph-touching requests
//! of one packet, status included, run as one closure on the cook thread (`Command::With`): a
//! packet waits at most one frame however many requests it holds. A reload goes to the control
//! plane like SIGHUP does.
//!
//! The status is taken in that hop rather than from a copy the cook thread keeps: a copy
//! published after a frame can be older than the exports of that frame a sender has already
//! seen, and a status must show what its sender could have observed.
//!
//! Address space (docs/service.md is the user's version of this table):
//!
//! | request                               | reply                                             |
//! |---------------------------------------|---------------------------------------------------|
//! | `/chopd/ping`                         | `/chopd/reply "/chopd/ping" VERSION`              |
//! | `/chopd/status [NAME]`                | `/chopd/status/…` messages, then `/chopd/reply "/chopd/status" N` |
//! | `/chopd/status/json [NAME]`           | `/chopd/reply "/chopd/status/json" JSON`          |
//! | `/chopd/reload`                       | `/chopd/reply "/chopd/reload" WHAT_CHANGED`       |
//! | `/chopd/op/NAME/reset`                | `/chopd/reply ADDRESS`                            |
//! | `/chopd/op/NAME/setuppars`            | `/chopd/reply ADDRESS`                            |
//! | `/chopd/op/NAME/pulse/PAR`            | `/chopd/reply ADDRESS`                            |
//! | `/chopd/op/NAME/par/PAR VALUE`        | `/chopd/reply ADDRESS`                            |
//! | `/chopd/debug/stall SECONDS`          | only with `CHOPD_DEBUG_CONTROL=1`                 |
//! | `/chopd/debug/panic`                  | only with `CHOPD_DEBUG_CONTROL=1`                 |
//!
//! Any failure: `/chopd/error ADDRESS REASON`. Actions given a single argument 0 do nothing
//! (a button's release), so press-and-release controllers work. Packets from senders outside
//! the allow-list get no reply; undecodable packets neither. Both are counted and logged
//! rate-limited, never raised.
//!
//! With a `token`, the mutating requests (reload, reset, setuppars, pulse, par, debug) are
//! served over UDP only when written `/chopd/auth/TOKEN/…` (`/chopd/auth/TOKEN/op/x/reset`);
//! the reply names the address without the token. The token is one address segment so that any
//! OSC controller can send it, bundles or not.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rosc::{OscMessage, OscType};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

use super::status::{int, ControlStatus, Status, OSC_STRING_MAX};
use super::{Command, Event};
use crate::chop::oscin::OscInConfig;
use crate::config::{Cidr, Config, ControlConfig, Diagnostic, Severity};
use crate::cook::ParValue;
use crate::graph::Graph;
use crate::logging::RateLimit;
use crate::osc;

/// Every address starts with this.
pub const PREFIX: &str = "/chopd";

/// Mutating requests carry the token as the segment after this.
pub const AUTH: &str = "/chopd/auth/";

/// Requests served from one UDP packet; the rest are counted (`excess`) and refused with one
/// error. 32 covers a controller page sent as one bundle; 2,728 in one 64 kB bundle once kept
/// the port busy for 45 s.
pub const MAX_REQUESTS_PER_PACKET: usize = 32;

/// Requests served from one packet of the local socket, which only the socket's owners reach.
pub const MAX_REQUESTS_LOCAL: usize = 1024;

/// A sender outside `full_replies` that did not send the token gets at most this many times
/// the bytes of its packet back: the port cannot be used to amplify a spoofed source's traffic.
pub const REPLY_FACTOR: usize = 4;

/// Per source address: requests per second, and the burst above that.
pub const RATE_PER_SEC: f64 = 100.0;
pub const RATE_BURST: f64 = 200.0;

/// Source addresses whose rate is tracked; past that, the one heard from least recently goes.
pub const MAX_SENDERS: usize = 1024;

/// How long a request waits for the cook thread, which answers once per frame when healthy.
const COOK_REPLY: Duration = Duration::from_secs(2);

/// How long `/chopd/reload` waits for the reload (a script's set-up can take a while).
const RELOAD_REPLY: Duration = Duration::from_secs(30);

/// Reply bundles stay within one Ethernet frame, as exports do (`DEFAULT_MAX_PACKET`).
const MAX_REPLY_PACKET: usize = crate::config::DEFAULT_MAX_PACKET;

/// Longest `/chopd/debug/stall`.
const MAX_STALL: Duration = Duration::from_secs(600);

/// What a sender outside `full_replies` without the token gets instead of a large reply.
const TOO_LARGE: &str = "too big: use token or local socket";

/// Counters of the control port, reported by `/chopd/status`.
#[derive(Default, Debug)]
pub struct ControlCounters {
    pub packets: AtomicU64,
    pub requests: AtomicU64,
    pub malformed: AtomicU64,
    pub refused: AtomicU64,
    pub failed: AtomicU64,
    pub excess: AtomicU64,
    pub limited: AtomicU64,
    pub denied: AtomicU64,
    pub clipped: AtomicU64,
}

/// What the control port needs to act.
#[derive(Clone)]
pub struct Ctx {
    pub cook: SyncSender<Command>,
    pub events: mpsc::Sender<Event>,
    pub counters: Arc<ControlCounters>,
    /// `/chopd/debug/*` allowed (`CHOPD_DEBUG_CONTROL=1`).
    pub debug: bool,
    pub started: Instant,
}

/// Who may reach the UDP port and what they get; changeable on reload.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub allow: Vec<Cidr>,
    pub full_replies: Vec<Cidr>,
    pub token: Option<String>,
}

impl Policy {
    pub fn of(cfg: &ControlConfig) -> Policy {
        Policy {
            allow: cfg.allow.clone(),
            full_replies: cfg.full_replies.clone(),
            token: cfg.token.clone(),
        }
    }
}

/// Where a packet came from: the local socket (its file permissions decided), or a UDP sender.
#[derive(Clone, Copy, Debug)]
pub enum Peer {
    Local,
    Udp(SocketAddr),
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Peer::Local => f.write_str("the local socket"),
            Peer::Udp(a) => write!(f, "{a}"),
        }
    }
}

/// One request, parsed.
#[derive(Debug, PartialEq)]
pub enum Request {
    Ping,
    Status {
        op: Option<String>,
        json: bool,
    },
    Reload,
    Reset(String),
    SetupPars(String),
    Pulse(String, String),
    Set(String, String, ParValue),
    Stall(Duration),
    Panic,
    /// An action released (argument 0): nothing to do.
    Release,
}

impl Request {
    /// Whether it changes the show (and so needs the token, when there is one).
    pub fn mutates(&self) -> bool {
        !matches!(self, Request::Ping | Request::Status { .. })
    }
}

/// How a request presented the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// No `/chopd/auth/…` prefix.
    None,
    /// The configured token (or any, when none is configured).
    Good,
    Bad,
}

/// One message of a packet: its address without the token, and what it asks.
#[derive(Debug)]
pub struct Parsed {
    pub addr: String,
    pub auth: Auth,
    pub request: Result<Request, String>,
}

/// The requests of one packet, at most the bound; the count past it.
#[derive(Debug)]
pub struct Packet {
    pub requests: Vec<Parsed>,
    pub excess: usize,
    /// The address of the first request past the bound (the one error names it).
    pub first_excess: Option<String>,
}

/// Decodes one packet and parses at most `max` of its requests: what both the UDP port and the
/// local socket serve, and what the fuzz target drives.
pub fn parse_packet(
    bytes: &[u8],
    token: Option<&str>,
    max: usize,
) -> Result<Packet, osc::DecodeError> {
    let msgs = osc::messages(osc::decode(bytes)?);
    let excess = msgs.len().saturating_sub(max);
    let first_excess = msgs.get(max).map(|m| strip_auth(&m.addr, token).0);
    let requests = msgs
        .into_iter()
        .take(max)
        .map(|mut m| {
            let (addr, auth) = strip_auth(&m.addr, token);
            m.addr = addr;
            let request = parse(&m);
            Parsed {
                addr: m.addr,
                auth,
                request,
            }
        })
        .collect();
    Ok(Packet {
        requests,
        excess,
        first_excess,
    })
}

/// `/chopd/auth/TOKEN/rest` → (`/chopd/rest`, whether TOKEN is the token). A repeated prefix
/// is stripped too (every one must hold the token), so that no address handed on, echoed in a
/// reply or logged, starts with a token.
fn strip_auth(addr: &str, token: Option<&str>) -> (String, Auth) {
    let mut addr = addr.to_string();
    let mut auth = Auth::None;
    while let Some(rest) = addr.strip_prefix(AUTH) {
        let (given, rest) = rest.split_once('/').unwrap_or((rest, ""));
        let good = token.is_none_or(|t| same(t.as_bytes(), given.as_bytes()));
        auth = match (auth, good) {
            (Auth::Bad, _) | (_, false) => Auth::Bad,
            _ => Auth::Good,
        };
        addr = format!("{PREFIX}/{rest}");
    }
    (addr, auth)
}

/// Compares without stopping at the first difference, so timing does not tell how much of a
/// guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Binds the control socket (port 0 picks a free port) and logs where.
pub fn bind(cfg: &ControlConfig) -> anyhow::Result<UdpSocket> {
    let std = std::net::UdpSocket::bind(cfg.addr)
        .map_err(|e| anyhow::anyhow!("bind control on {}: {e}", cfg.addr))?;
    std.set_nonblocking(true)?;
    let sock = UdpSocket::from_std(std)?;
    tracing::info!("bound control on {}", sock.local_addr()?);
    Ok(sock)
}

/// Parses one message of the address space.
pub fn parse(m: &OscMessage) -> Result<Request, String> {
    let Some(rest) = m.addr.strip_prefix(PREFIX) else {
        return Err(format!(
            "unknown address (every address starts with {PREFIX}/)"
        ));
    };
    let released = matches!(m.args.as_slice(), [a] if number(a) == Some(0.0));
    let action = |r: Request| if released { Request::Release } else { r };
    let name_arg = || -> Result<Option<String>, String> {
        match m.args.as_slice() {
            [] => Ok(None),
            [OscType::String(s)] => Ok(Some(s.clone())),
            _ => Err("takes no argument, or an operator name".into()),
        }
    };
    Ok(match rest {
        "/ping" => Request::Ping,
        "/status" => Request::Status {
            op: name_arg()?,
            json: false,
        },
        "/status/json" => Request::Status {
            op: name_arg()?,
            json: true,
        },
        "/reload" => action(Request::Reload),
        "/debug/panic" => Request::Panic,
        "/debug/stall" => match m.args.as_slice() {
            [a] => match number(a) {
                Some(s) if s > 0.0 && s.is_finite() => {
                    Request::Stall(Duration::from_secs_f64(s).min(MAX_STALL))
                }
                _ => return Err("takes the stall in seconds (> 0)".into()),
            },
            _ => return Err("takes the stall in seconds".into()),
        },
        _ => {
            let Some(op) = rest.strip_prefix("/op/") else {
                return Err("unknown address".into());
            };
            let parts: Vec<&str> = op.split('/').collect();
            match parts.as_slice() {
                [name, "reset"] if !name.is_empty() => action(Request::Reset(name.to_string())),
                [name, "setuppars"] if !name.is_empty() => {
                    action(Request::SetupPars(name.to_string()))
                }
                [name, "pulse", par] if !name.is_empty() && !par.is_empty() => {
                    action(Request::Pulse(name.to_string(), par.to_string()))
                }
                [name, "par", par] if !name.is_empty() && !par.is_empty() => {
                    let value = match m.args.as_slice() {
                        [OscType::String(s)] => ParValue::Str(s.clone()),
                        [a] => match number(a) {
                            Some(v) if v.is_finite() => ParValue::Float(v),
                            Some(_) => return Err("the value is not finite".into()),
                            None => {
                                return Err(format!(
                                    "cannot set a parameter to {}",
                                    osc::type_name(a)
                                ))
                            }
                        },
                        _ => return Err("takes exactly one value".into()),
                    };
                    Request::Set(name.to_string(), par.to_string(), value)
                }
                _ => {
                    return Err(
                        "unknown address (/chopd/op/NAME/reset, /setuppars, /pulse/PAR, /par/PAR)"
                            .into(),
                    )
                }
            }
        }
    })
}

fn number(a: &OscType) -> Option<f64> {
    Some(match a {
        OscType::Int(i) => *i as f64,
        OscType::Long(i) => *i as f64,
        OscType::Float(f) => *f as f64,
        OscType::Double(d) => *d,
        OscType::Bool(b) => f64::from(u8::from(*b)),
        _ => return None,
    })
}

/// Runs `f` against the graph on the cook thread and waits (bounded) for its result.
pub async fn on_cook<T: Send + 'static>(
    cook: &SyncSender<Command>,
    f: impl FnOnce(&mut Graph) -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = oneshot::channel();
    cook.try_send(Command::With(Box::new(move |g| {
        let _ = tx.send(f(g));
    })))
    .map_err(|e| match e {
        TrySendError::Full(_) => "the cook thread is busy (its command queue is full)".to_string(),
        TrySendError::Disconnected(_) => "the cook thread has stopped".to_string(),
    })?;
    match tokio::time::timeout(COOK_REPLY, rx).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err("the cook thread dropped the request".into()),
        Err(_) => Err(format!(
            "the cook thread did not answer within {} s (is the clock stuck? see the log)",
            COOK_REPLY.as_secs()
        )),
    }
}

fn msg(addr: impl Into<String>, args: Vec<OscType>) -> OscMessage {
    OscMessage {
        addr: addr.into(),
        args,
    }
}

fn error(addr: &str, reason: impl Into<String>) -> Vec<OscMessage> {
    vec![msg(
        format!("{PREFIX}/error"),
        vec![
            OscType::String(addr.to_string()),
            OscType::String(reason.into()),
        ],
    )]
}

impl ControlCounters {
    fn status(&self) -> ControlStatus {
        ControlStatus {
            packets: self.packets.load(Relaxed),
            requests: self.requests.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
            refused: self.refused.load(Relaxed),
            failed: self.failed.load(Relaxed),
            excess: self.excess.load(Relaxed),
            limited: self.limited.load(Relaxed),
            denied: self.denied.load(Relaxed),
            clipped: self.clipped.load(Relaxed),
        }
    }
}

/// Packs replies into bundles of at most `MAX_REPLY_PACKET` bytes (a message larger than that
/// goes alone).
pub(crate) fn pack(msgs: Vec<OscMessage>) -> Vec<Vec<u8>> {
    let mut packer = osc::Packer::new(MAX_REPLY_PACKET);
    for m in msgs {
        packer.push_message(m);
    }
    let mut out = Vec::new();
    packer.drain(osc::IMMEDIATELY, osc::Lone::Bundled, |p, _| {
        out.push(p.to_vec())
    });
    out
}

/// The control port's warnings go through the log's [`RateLimit`], keyed without the sender:
/// one sender or many, it is the same news, and a different failure is never held back.
pub(super) struct Limited(RateLimit);

impl Limited {
    /// How often the same kind of bad request is logged.
    const EVERY: Duration = Duration::from_secs(5);

    pub(super) fn new() -> Limited {
        Limited(RateLimit::new(Self::EVERY))
    }

    fn log(&mut self, key: &str, text: impl FnOnce() -> String) {
        if let Some(held) = self.0.allow(key) {
            tracing::warn!("control: {}{held}", text());
        }
    }
}

/// A token bucket per source address, in a table of at most `MAX_SENDERS`.
struct Rates {
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl Rates {
    fn new() -> Rates {
        Rates {
            buckets: HashMap::new(),
        }
    }

    /// Takes up to `n` requests from `ip`'s bucket; returns how many it had.
    fn take(&mut self, ip: IpAddr, n: usize, now: Instant) -> usize {
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= MAX_SENDERS {
            // The stalest sender is the one least likely to be a controller in use.
            if let Some(old) = self
                .buckets
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| *k)
            {
                self.buckets.remove(&old);
            }
        }
        let (level, at) = self.buckets.entry(ip).or_insert((RATE_BURST, now));
        *level = (*level + now.duration_since(*at).as_secs_f64() * RATE_PER_SEC).min(RATE_BURST);
        *at = now;
        let granted = (level.floor() as usize).min(n);
        *level -= granted as f64;
        granted
    }
}

/// What one UDP sender may get back for one packet.
struct Budget {
    /// `None`: unbounded.
    left: Option<usize>,
}

/// Serves the control port until `close` fires (or its sender is dropped). A request being
/// handled is answered first: a reload that moves the port still replies through the old one.
pub async fn serve(
    sock: UdpSocket,
    policy: watch::Receiver<Policy>,
    ctx: Ctx,
    mut close: oneshot::Receiver<()>,
) {
    let sock = Arc::new(sock);
    let mut buf = vec![0u8; 65_536];
    let (mut refused, mut malformed) = (Limited::new(), Limited::new());
    let failed = Arc::new(Mutex::new(Limited::new()));
    let mut rates = Rates::new();
    loop {
        let received = tokio::select! {
            r = sock.recv_from(&mut buf) => r,
            _ = &mut close => return,
        };
        let (n, from) = match received {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors of earlier replies surface here on Linux; nothing to do.
                tracing::debug!("control receive: {e}");
                continue;
            }
        };
        let c = &ctx.counters;
        c.packets.fetch_add(1, Relaxed);
        let policy = policy.borrow().clone();
        if !policy.allow.iter().any(|a| a.contains(from.ip())) {
            c.refused.fetch_add(1, Relaxed);
            refused.log("refused", || {
                format!("refused a packet from {from} (not in [control] allow)")
            });
            continue;
        }
        let mut packet =
            match parse_packet(&buf[..n], policy.token.as_deref(), MAX_REQUESTS_PER_PACKET) {
                Ok(p) => p,
                Err(e) => {
                    c.malformed.fetch_add(1, Relaxed);
                    malformed.log(&e.to_string(), || {
                        format!("malformed packet from {from}: {e}")
                    });
                    continue;
                }
            };
        let mut extra = Vec::new();
        if let Some(first) = packet.first_excess.take() {
            c.excess.fetch_add(packet.excess as u64, Relaxed);
            failed.lock().unwrap_or_else(|e| e.into_inner()).log("excess", || {
                format!(
                    "{} requests past the first {MAX_REQUESTS_PER_PACKET} of a packet from {from} refused",
                    packet.excess
                )
            });
            extra.push(error(
                &first,
                format!(
                    "{} requests refused: at most {MAX_REQUESTS_PER_PACKET} per packet",
                    packet.excess
                ),
            ));
        }
        let granted = rates.take(from.ip(), packet.requests.len(), Instant::now());
        if granted < packet.requests.len() {
            let over = packet.requests.split_off(granted);
            c.limited.fetch_add(over.len() as u64, Relaxed);
            extra.insert(
                0,
                error(
                    &over[0].addr,
                    format!(
                        "{} requests refused: at most {RATE_PER_SEC} per second per sender",
                        over.len()
                    ),
                ),
            );
        }
        let authed = packet.requests.iter().any(|p| p.auth == Auth::Good) && policy.token.is_some();
        let full = authed || policy.full_replies.iter().any(|a| a.contains(from.ip()));
        let budget = Budget {
            left: (!full).then_some(n * REPLY_FACTOR),
        };
        let needs_token = policy.token.is_some();
        let reloads = packet
            .requests
            .iter()
            .any(|p| matches!(p.request, Ok(Request::Reload)));
        let job = {
            let (ctx, sock, failed) = (ctx.clone(), sock.clone(), failed.clone());
            async move {
                let mut groups =
                    answer(packet.requests, Peer::Udp(from), needs_token, &ctx, &failed).await;
                groups.extend(extra);
                send_within(&sock, from, groups, budget, &ctx.counters).await;
            }
        };
        // A reload may take seconds (a script's set-up): it must not hold the port meanwhile.
        if reloads {
            tokio::spawn(job);
        } else {
            job.await;
        }
    }
}

/// Sends each request's replies while they fit the sender's budget; a reply that does not
/// fit is replaced by a short error when that fits.
async fn send_within(
    sock: &UdpSocket,
    to: SocketAddr,
    groups: Vec<Vec<OscMessage>>,
    mut budget: Budget,
    counters: &ControlCounters,
) {
    for group in groups {
        let addr = reply_addr(&group);
        let mut packets = pack(group);
        if let Some(left) = budget.left.as_mut() {
            let size: usize = packets.iter().map(Vec::len).sum();
            if size > *left {
                counters.clipped.fetch_add(1, Relaxed);
                // Bare, not bundled: the 20 bytes of a bundle's framing would not fit the
                // budget of the smallest request.
                let e = rosc::OscPacket::Message(error(&addr, TOO_LARGE).remove(0));
                packets = rosc::encoder::encode(&e).into_iter().collect();
                let size: usize = packets.iter().map(Vec::len).sum();
                if size > *left {
                    continue;
                }
            }
            *left -= packets.iter().map(Vec::len).sum::<usize>();
        }
        for bytes in packets {
            if let Err(e) = sock.send_to(&bytes, to).await {
                tracing::debug!("control reply to {to}: {e}");
            }
        }
    }
}

/// The request address a reply group answers (the first argument of its last message).
fn reply_addr(group: &[OscMessage]) -> String {
    match group.last().and_then(|m| m.args.first()) {
        Some(OscType::String(a)) => a.clone(),
        _ => PREFIX.to_string(),
    }
}

/// A graph-touching request, run with the others of its packet in one cook-thread hop.
enum Action {
    Reset(String),
    SetupPars(String),
    Pulse(String, String),
    Set(String, String, ParValue),
}

impl Action {
    fn apply(self, g: &mut Graph) -> Result<(), String> {
        match self {
            Action::Reset(name) => match g.operator_mut(&name) {
                Some(o) => {
                    o.reset();
                    Ok(())
                }
                None => Err(format!("no operator \"{name}\"")),
            },
            Action::SetupPars(name) => match g.operator_mut(&name) {
                Some(o) => o.setup_pars(),
                None => Err(format!("no operator \"{name}\"")),
            },
            Action::Pulse(op, par) => match g.operator_mut(&op) {
                Some(o) => o.pulse_par(&par),
                None => Err(format!("no operator \"{op}\"")),
            },
            Action::Set(op, par, value) => g.set_par_by_hand(&op, &par, value),
        }
    }
}

/// Answers the requests of one packet: one reply group per request, in order. UDP senders
/// get string values clipped so that a status fits a datagram.
pub(super) async fn answer(
    requests: Vec<Parsed>,
    peer: Peer,
    needs_token: bool,
    ctx: &Ctx,
    failed: &Mutex<Limited>,
) -> Vec<Vec<OscMessage>> {
    let c = &ctx.counters;
    let bounded = matches!(peer, Peer::Udp(_));
    let n = requests.len();
    let mut out: Vec<Option<Result<Vec<OscMessage>, String>>> = (0..n).map(|_| None).collect();
    let mut actions: Vec<(usize, Action)> = Vec::new();
    let mut statuses: Vec<(usize, Option<String>, bool)> = Vec::new();
    let mut later: Vec<(usize, Request)> = Vec::new();
    let addrs: Vec<String> = requests.iter().map(|p| p.addr.clone()).collect();
    for (i, p) in requests.into_iter().enumerate() {
        c.requests.fetch_add(1, Relaxed);
        let req = match p.request {
            Ok(r) => r,
            Err(e) => {
                out[i] = Some(Err(e));
                continue;
            }
        };
        let udp = matches!(peer, Peer::Udp(_));
        if udp && req.mutates() && ((needs_token && p.auth != Auth::Good) || p.auth == Auth::Bad) {
            c.denied.fetch_add(1, Relaxed);
            let why = if p.auth == Auth::Bad {
                "wrong token"
            } else {
                "needs the token: send /chopd/auth/TOKEN/… or use the local socket"
            };
            out[i] = Some(Err(why.into()));
            continue;
        }
        match req {
            Request::Release => out[i] = Some(Ok(ok(&p.addr, vec![]))),
            Request::Ping => {
                out[i] = Some(Ok(ok(
                    &p.addr,
                    vec![OscType::String(env!("CARGO_PKG_VERSION").into())],
                )))
            }
            Request::Status { op, json } => statuses.push((i, op, json)),
            Request::Reset(o) => actions.push((i, Action::Reset(o))),
            Request::SetupPars(o) => actions.push((i, Action::SetupPars(o))),
            Request::Pulse(o, par) => actions.push((i, Action::Pulse(o, par))),
            Request::Set(o, par, v) => actions.push((i, Action::Set(o, par, v))),
            other => later.push((i, other)),
        }
    }
    // One hop for every action of the packet, then the status after them.
    if !actions.is_empty() || !statuses.is_empty() {
        let logged: Vec<(usize, Option<String>)> = actions
            .iter()
            .map(|(i, a)| {
                let what = match a {
                    Action::Reset(o) => Some(format!("reset \"{o}\"")),
                    Action::SetupPars(o) => Some(format!("setup parameters of \"{o}\"")),
                    _ => None,
                };
                (*i, what)
            })
            .collect();
        let want_status = !statuses.is_empty();
        let list: Vec<Action> = actions.into_iter().map(|(_, a)| a).collect();
        let uptime = ctx.started.elapsed();
        let results = on_cook(&ctx.cook, move |g| {
            let r: Vec<Result<(), String>> = list.into_iter().map(|a| a.apply(g)).collect();
            let status = want_status
                .then(|| Status::of(g, None, ControlStatus::default(), uptime).ok())
                .flatten();
            (r, status)
        })
        .await;
        match results {
            Ok((results, status)) => {
                for ((i, what), r) in logged.into_iter().zip(results) {
                    if let (Ok(()), Some(what)) = (&r, what) {
                        tracing::info!("control: {what} (from {peer})");
                    }
                    out[i] = Some(r.map(|()| ok(&addrs[i], vec![])));
                }
                for (i, op, json) in statuses {
                    out[i] = Some(match &status {
                        Some(s) => status_reply(&addrs[i], s, op, json, bounded, ctx),
                        None => Err("no status".into()),
                    });
                }
            }
            Err(e) => {
                for (i, _) in logged {
                    out[i] = Some(Err(e.clone()));
                }
                for (i, _, _) in statuses {
                    out[i] = Some(Err(e.clone()));
                }
            }
        }
    }
    for (i, req) in later {
        out[i] = Some(slow(&addrs[i], req, peer, ctx).await);
    }
    out.into_iter()
        .zip(addrs)
        .map(
            |(r, addr)| match r.unwrap_or_else(|| Err("not answered".into())) {
                Ok(m) => m,
                Err(reason) => {
                    c.failed.fetch_add(1, Relaxed);
                    failed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .log(&format!("{addr} {reason}"), || {
                            format!("{addr} from {peer}: {reason}")
                        });
                    error(&addr, reason)
                }
            },
        )
        .collect()
}

fn status_reply(
    addr: &str,
    snap: &Status,
    op: Option<String>,
    json: bool,
    bounded: bool,
    ctx: &Ctx,
) -> Result<Vec<OscMessage>, String> {
    if let Some(name) = &op {
        if !snap.operators.iter().any(|o| &o.name == name) {
            return Err(format!("no operator \"{name}\""));
        }
    }
    let mut status = Status {
        version: snap.version.clone(),
        uptime: snap.uptime,
        daemon: snap.daemon.clone(),
        control: ctx.counters.status(),
        operators: snap
            .operators
            .iter()
            .filter(|o| op.as_ref().is_none_or(|n| *n == o.name))
            .cloned()
            .collect(),
    };
    if bounded {
        status.clip_strings(OSC_STRING_MAX);
    }
    if json {
        let text = status.json().to_string();
        // One datagram carries the document: 65 507 bytes is the UDP payload limit.
        if bounded && text.len() > 60_000 {
            return Err(format!(
                "the status is {} bytes, too large for one datagram: ask for one operator",
                text.len()
            ));
        }
        Ok(ok(addr, vec![OscType::String(text)]))
    } else {
        let n = status.operators.len() as u64;
        let mut out = status.messages();
        out.extend(ok(addr, vec![int(n)]));
        Ok(out)
    }
}

fn ok(addr: &str, extra: Vec<OscType>) -> Vec<OscMessage> {
    let mut args = vec![OscType::String(addr.to_string())];
    args.extend(extra);
    vec![msg(format!("{PREFIX}/reply"), args)]
}

/// The requests that do not run on the graph: a reload, and the debug ones.
async fn slow(addr: &str, req: Request, peer: Peer, ctx: &Ctx) -> Result<Vec<OscMessage>, String> {
    match req {
        Request::Reload => {
            let (tx, rx) = oneshot::channel();
            let cause = match peer {
                Peer::Local => "control socket".to_string(),
                Peer::Udp(from) => format!("control port, from {from}"),
            };
            ctx.events
                .send(Event::Reload {
                    cause,
                    reply: Some(tx),
                })
                .await
                .map_err(|_| "the daemon is stopping".to_string())?;
            match tokio::time::timeout(RELOAD_REPLY, rx).await {
                Ok(Ok(Ok(notes))) => Ok(ok(
                    addr,
                    vec![OscType::String(if notes.is_empty() {
                        "nothing changed".into()
                    } else {
                        notes.join(", ")
                    })],
                )),
                Ok(Ok(Err(errors))) => Err(format!(
                    "reload refused, the running config stays: {}",
                    errors.join("; ")
                )),
                Ok(Err(_)) => Err("the daemon is stopping".into()),
                Err(_) => Err(format!(
                    "no answer within {} s; see the log",
                    RELOAD_REPLY.as_secs()
                )),
            }
        }
        Request::Stall(_) | Request::Panic if !ctx.debug => {
            Err("debug requests are off (start chopd with CHOPD_DEBUG_CONTROL=1)".into())
        }
        Request::Panic => {
            tracing::warn!("control: panicking the cook thread on request (from {peer})");
            ctx.cook
                .try_send(Command::With(Box::new(|_| {
                    panic!("panic requested over the control port (debug)")
                })))
                .map_err(|_| "the cook thread is busy or stopped".to_string())?;
            Ok(ok(addr, vec![]))
        }
        Request::Stall(d) => {
            tracing::warn!(
                "control: stalling the cook thread for {:.1} s on request (from {peer})",
                d.as_secs_f64()
            );
            // The acknowledgement goes before the stall: the stall is what is being tested, and
            // like a stuck script it does not look at the stop flag.
            let (tx, rx) = oneshot::channel::<()>();
            ctx.cook
                .try_send(Command::With(Box::new(move |_| {
                    let _ = tx.send(());
                    std::thread::sleep(d);
                })))
                .map_err(|_| "the cook thread is busy or stopped".to_string())?;
            let _ = tokio::time::timeout(COOK_REPLY, rx).await;
            Ok(ok(addr, vec![]))
        }
        _ => Err("not answered".into()),
    }
}

/// Warnings for what a config opens beyond this host: a control port or an OSC In bound past
/// loopback with no allow-list, or one that allows every address, or a control port whose
/// mutating requests need no token. `chopd check`, the start and each reload print them.
pub fn exposure(config: &Config) -> Vec<Diagnostic> {
    let src = std::fs::read_to_string(&config.file).unwrap_or_default();
    let file = config.file.display().to_string();
    let at = |needle: &str, message: String| {
        let (line, col) = src
            .lines()
            .enumerate()
            .find_map(|(i, l)| l.find(needle).map(|c| (i + 1, c + 1)))
            .unwrap_or((1, 1));
        Diagnostic {
            file: file.clone(),
            line,
            col,
            severity: Severity::Warning,
            message,
        }
    };
    let everyone = |allow: &[Cidr]| allow.iter().find(|c| c.prefix == 0).copied();
    let mut out = Vec::new();
    if let Some(c) = &config.control {
        if !c.addr.ip().is_loopback() {
            if let Some(all) = everyone(&c.allow) {
                out.push(at(
                    "[control]",
                    format!(
                        "the control port listens on {} and allows {}/0: every host that \
                         reaches it may ask; list the networks that need it",
                        c.addr, all.addr
                    ),
                ));
            }
            let beyond = c.allow.iter().any(|n| !n.addr.is_loopback());
            if beyond && c.token.is_none() {
                out.push(at(
                    "[control]",
                    format!(
                        "the control port listens on {} without a token: any allowed host may \
                         set, reset, pulse and reload; set [control] token",
                        c.addr
                    ),
                ));
            }
        }
    }
    for op in &config.operators {
        let Some(o) = op.settings.as_any().downcast_ref::<OscInConfig>() else {
            continue;
        };
        if o.bind.ip().is_loopback() {
            continue;
        }
        let why = if o.allow.is_empty() {
            "without an allow-list".to_string()
        } else if let Some(all) = everyone(&o.allow) {
            format!("allowing {}/0", all.addr)
        } else {
            continue;
        };
        out.push(at(
            &format!("\"{}\"", op.name),
            format!(
                "oscin \"{}\" listens on {} {why}: any host that reaches it sets channels; \
                 set allow (or local_address = \"127.0.0.1\")",
                op.name, o.bind
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(addr: &str, args: Vec<OscType>) -> OscMessage {
        msg(addr, args)
    }

    #[test]
    fn address_space() {
        use Request::*;
        let p = |a: &str, args| parse(&m(a, args));
        assert_eq!(p("/chopd/ping", vec![]), Ok(Ping));
        assert_eq!(
            p("/chopd/status", vec![]),
            Ok(Status {
                op: None,
                json: false
            })
        );
        assert_eq!(
            p("/chopd/status/json", vec![OscType::String("in".into())]),
            Ok(Status {
                op: Some("in".into()),
                json: true
            })
        );
        assert_eq!(p("/chopd/reload", vec![]), Ok(Reload));
        assert_eq!(p("/chopd/reload", vec![OscType::Int(1)]), Ok(Reload));
        assert_eq!(p("/chopd/reload", vec![OscType::Float(0.0)]), Ok(Release));
        assert_eq!(p("/chopd/op/in/reset", vec![]), Ok(Reset("in".into())));
        assert_eq!(
            p("/chopd/op/s1/setuppars", vec![]),
            Ok(SetupPars("s1".into()))
        );
        assert_eq!(
            p("/chopd/op/s1/pulse/Go", vec![OscType::Bool(true)]),
            Ok(Pulse("s1".into(), "Go".into()))
        );
        assert_eq!(
            p("/chopd/op/s1/pulse/Go", vec![OscType::Int(0)]),
            Ok(Release)
        );
        assert_eq!(
            p("/chopd/op/s1/par/Gain", vec![OscType::Int(2)]),
            Ok(Set("s1".into(), "Gain".into(), ParValue::Float(2.0)))
        );
        assert_eq!(
            p(
                "/chopd/op/s1/par/Mode",
                vec![OscType::String("fast".into())]
            ),
            Ok(Set(
                "s1".into(),
                "Mode".into(),
                ParValue::Str("fast".into())
            ))
        );
        assert_eq!(
            p("/chopd/debug/stall", vec![OscType::Float(1.5)]),
            Ok(Stall(Duration::from_millis(1500)))
        );
    }

    #[test]
    fn bad_requests_say_why() {
        let p = |a: &str, args| parse(&m(a, args)).unwrap_err();
        assert!(p("/other", vec![]).contains("starts with /chopd/"));
        assert!(p("/chopd/nope", vec![]).contains("unknown address"));
        assert!(p("/chopd/op/x/explode", vec![]).contains("unknown address"));
        assert!(p("/chopd/op//reset", vec![]).contains("unknown address"));
        assert!(p("/chopd/op/x/par/Gain", vec![]).contains("exactly one value"));
        assert!(p("/chopd/op/x/par/Gain", vec![OscType::Nil]).contains("cannot set"));
        assert!(p("/chopd/op/x/par/Gain", vec![OscType::Float(f32::NAN)]).contains("finite"));
        assert!(p("/chopd/status", vec![OscType::Int(3)]).contains("operator name"));
        assert!(p("/chopd/debug/stall", vec![OscType::Int(-1)]).contains("seconds"));
    }

    #[test]
    fn the_token_is_one_address_segment_and_never_kept() {
        let t = Some("0123456789abcdef");
        assert_eq!(
            strip_auth("/chopd/auth/0123456789abcdef/op/x/reset", t),
            ("/chopd/op/x/reset".to_string(), Auth::Good)
        );
        assert_eq!(
            strip_auth("/chopd/auth/0123456789abcdeF/op/x/reset", t).1,
            Auth::Bad
        );
        assert_eq!(strip_auth("/chopd/auth/0123456789abcdef", t).1, Auth::Good);
        assert_eq!(strip_auth("/chopd/op/x/reset", t).1, Auth::None);
        let twice = "/chopd/auth/0123456789abcdef/auth/0123456789abcdef/ping";
        assert_eq!(
            strip_auth(twice, t),
            ("/chopd/ping".to_string(), Auth::Good)
        );
        let bad_inside = "/chopd/auth/0123456789abcdef/auth/guess/ping";
        assert_eq!(strip_auth(bad_inside, t).1, Auth::Bad);
        assert!(Request::Reset("x".into()).mutates());
        assert!(Request::Release.mutates());
        assert!(!Request::Ping.mutates());
    }

    #[test]
    fn a_packet_yields_at_most_its_bound() {
        let one = rosc::OscPacket::Message(m("/chopd/ping", vec![]));
        let bundle = rosc::OscPacket::Bundle(rosc::OscBundle {
            timetag: rosc::OscTime::from((0, 1)),
            content: vec![one; 40],
        });
        let bytes = rosc::encoder::encode(&bundle).unwrap();
        let p = parse_packet(&bytes, None, MAX_REQUESTS_PER_PACKET).unwrap();
        assert_eq!(p.requests.len(), MAX_REQUESTS_PER_PACKET);
        assert_eq!(p.excess, 40 - MAX_REQUESTS_PER_PACKET);
        assert_eq!(p.first_excess.as_deref(), Some("/chopd/ping"));
    }

    #[test]
    fn rates_refill_and_the_table_stays_bounded() {
        let mut r = Rates::new();
        let t0 = Instant::now();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(r.take(ip, 500, t0), RATE_BURST as usize);
        assert_eq!(r.take(ip, 10, t0), 0);
        assert_eq!(r.take(ip, 500, t0 + Duration::from_millis(100)), 10);
        for i in 0..(MAX_SENDERS as u32 + 10) {
            r.take(IpAddr::from(i.to_be_bytes()), 1, t0);
        }
        assert_eq!(r.buckets.len(), MAX_SENDERS);
    }

    #[test]
    fn replies_fit_in_packets() {
        let msgs: Vec<OscMessage> = (0..500)
            .map(|i| m(&format!("/chopd/status/op/op{i}/total_cooks"), vec![int(i)]))
            .collect();
        let packets = pack(msgs);
        assert!(packets.len() > 1);
        let mut n = 0;
        for p in &packets {
            assert!(p.len() <= MAX_REPLY_PACKET, "{}", p.len());
            n += osc::messages(osc::decode(p).unwrap()).len();
        }
        assert_eq!(n, 500);
    }
}
