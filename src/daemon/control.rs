//! The control port: OSC over UDP, loopback and an allow-list by default, and the same requests
//! over the local administration socket ([`super::local`]). Owns the limits on what one sender
//! may ask and get back, the serving of requests (parsed by [`super::request`]) and replies (the
//! status they carry is [`super::status`]); it never touches the graph itself — the graph-touching requests
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

use super::request::{parse_packet, Auth, Parsed, Request, MAX_REQUESTS_PER_PACKET, PREFIX};
use super::status::{int, ControlStatus, Status, OSC_STRING_MAX};
use super::{Command, Event};
use crate::config::{Cidr, ControlConfig};
use crate::cook::ParValue;
use crate::graph::Graph;
use crate::logging::RateLimit;
use crate::osc;

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

/// Binds the control socket (port 0 picks a free port) and logs where.
pub fn bind(cfg: &ControlConfig) -> anyhow::Result<UdpSocket> {
    let std = std::net::UdpSocket::bind(cfg.addr)
        .map_err(|e| anyhow::anyhow!("bind control on {}: {e}", cfg.addr))?;
    std.set_nonblocking(true)?;
    let sock = UdpSocket::from_std(std)?;
    tracing::info!("bound control on {}", sock.local_addr()?);
    Ok(sock)
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
            Action::Pulse(op, par) => g.pulse_par_by_hand(&op, &par),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn m(addr: &str, args: Vec<OscType>) -> OscMessage {
        msg(addr, args)
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
