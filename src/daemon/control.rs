//! The control port: OSC over UDP, loopback and an allow-list by default. Owns the address
//! space, request parsing and replies (the status they carry is [`super::status`]); it never
//! touches the graph itself — every action runs as a closure on the cook thread
//! (`Command::With`), and a reload goes to the control plane like SIGHUP does.
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

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rosc::{OscMessage, OscType};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

use super::status::{int, ControlStatus, Status};
use super::{Command, Event};
use crate::config::{Cidr, ControlConfig};
use crate::cook::ParValue;
use crate::graph::Graph;
use crate::logging::RateLimit;
use crate::osc;

/// Every address starts with this.
pub const PREFIX: &str = "/chopd";

/// How long a request waits for the cook thread, which answers once per frame when healthy.
const COOK_REPLY: Duration = Duration::from_secs(2);

/// How long `/chopd/reload` waits for the reload (a script's set-up can take a while).
const RELOAD_REPLY: Duration = Duration::from_secs(30);

/// Reply bundles stay within one Ethernet frame, as exports do (`DEFAULT_MAX_PACKET`).
const MAX_REPLY_PACKET: usize = crate::config::DEFAULT_MAX_PACKET;

/// Longest `/chopd/debug/stall`.
const MAX_STALL: Duration = Duration::from_secs(600);

/// Counters of the control port, reported by `/chopd/status`.
#[derive(Default, Debug)]
pub struct ControlCounters {
    pub packets: AtomicU64,
    pub requests: AtomicU64,
    pub malformed: AtomicU64,
    pub refused: AtomicU64,
    pub failed: AtomicU64,
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

impl ControlCounters {
    fn status(&self) -> ControlStatus {
        ControlStatus {
            packets: self.packets.load(Relaxed),
            requests: self.requests.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
            refused: self.refused.load(Relaxed),
            failed: self.failed.load(Relaxed),
        }
    }
}

/// Packs replies into bundles of at most `MAX_REPLY_PACKET` bytes (a message larger than that
/// goes alone).
fn pack(msgs: Vec<OscMessage>) -> Vec<Vec<u8>> {
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

/// How often the same kind of bad request is logged.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Warns through `limit`. `key` leaves the sender out: one sender or many, it is the same news.
fn warn_limited(limit: &mut RateLimit, key: &str, text: impl FnOnce() -> String) {
    if let Some(held) = limit.allow(key) {
        tracing::warn!("control: {}{held}", text());
    }
}

/// Serves the control port until `close` fires (or its sender is dropped). A request being
/// handled is answered first: a reload that moves the port still replies through the old one.
pub async fn serve(
    sock: UdpSocket,
    allow: watch::Receiver<Vec<Cidr>>,
    ctx: Ctx,
    mut close: oneshot::Receiver<()>,
) {
    let mut buf = vec![0u8; 65_536];
    // One limiter each: a flood of one kind cannot use up the lines of another.
    let [mut refused, mut malformed, mut failed] = [(); 3].map(|_| RateLimit::new(LOG_EVERY));
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
        if !allow.borrow().iter().any(|a| a.contains(from.ip())) {
            c.refused.fetch_add(1, Relaxed);
            warn_limited(&mut refused, "refused", || {
                format!("refused a packet from {from} (not in [control] allow)")
            });
            continue;
        }
        let packet = match osc::decode(&buf[..n]) {
            Ok(p) => p,
            Err(e) => {
                c.malformed.fetch_add(1, Relaxed);
                warn_limited(&mut malformed, &e.to_string(), || {
                    format!("malformed packet from {from}: {e}")
                });
                continue;
            }
        };
        for m in osc::messages(packet) {
            c.requests.fetch_add(1, Relaxed);
            let replies = match handle(&m, from, &ctx).await {
                Ok(r) => r,
                Err(reason) => {
                    c.failed.fetch_add(1, Relaxed);
                    warn_limited(&mut failed, &format!("{} {reason}", m.addr), || {
                        format!("{} from {from}: {reason}", m.addr)
                    });
                    vec![msg(
                        format!("{PREFIX}/error"),
                        vec![OscType::String(m.addr.clone()), OscType::String(reason)],
                    )]
                }
            };
            for bytes in pack(replies) {
                if let Err(e) = sock.send_to(&bytes, from).await {
                    tracing::debug!("control reply to {from}: {e}");
                }
            }
        }
    }
}

fn ok(addr: &str, extra: Vec<OscType>) -> Vec<OscMessage> {
    let mut args = vec![OscType::String(addr.to_string())];
    args.extend(extra);
    vec![msg(format!("{PREFIX}/reply"), args)]
}

async fn handle(m: &OscMessage, from: SocketAddr, ctx: &Ctx) -> Result<Vec<OscMessage>, String> {
    let req = parse(m)?;
    let addr = m.addr.as_str();
    let uptime = ctx.started.elapsed();
    match req {
        Request::Release => Ok(ok(addr, vec![])),
        Request::Ping => Ok(ok(
            addr,
            vec![OscType::String(env!("CARGO_PKG_VERSION").into())],
        )),
        Request::Status { op, json } => {
            let control = ctx.counters.status();
            let status = on_cook(&ctx.cook, move |g| {
                Status::of(g, op.as_deref(), control, uptime)
            })
            .await??;
            if json {
                let text = status.json().to_string();
                // One datagram carries the document: 65 507 bytes is the UDP payload limit.
                if text.len() > 60_000 {
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
        Request::Reload => {
            let (tx, rx) = oneshot::channel();
            ctx.events
                .send(Event::Reload {
                    cause: format!("control port, from {from}"),
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
        Request::Reset(op) => {
            let name = op.clone();
            on_cook(&ctx.cook, move |g| match g.operator_mut(&name) {
                Some(o) => {
                    o.reset();
                    Ok(())
                }
                None => Err(format!("no operator \"{name}\"")),
            })
            .await??;
            tracing::info!("control: reset \"{op}\" (from {from})");
            Ok(ok(addr, vec![]))
        }
        Request::SetupPars(op) => {
            let name = op.clone();
            on_cook(&ctx.cook, move |g| match g.operator_mut(&name) {
                Some(o) => o.setup_pars(),
                None => Err(format!("no operator \"{name}\"")),
            })
            .await??;
            tracing::info!("control: setup parameters of \"{op}\" (from {from})");
            Ok(ok(addr, vec![]))
        }
        Request::Pulse(op, par) => {
            on_cook(&ctx.cook, move |g| match g.operator_mut(&op) {
                Some(o) => o.pulse_par(&par),
                None => Err(format!("no operator \"{op}\"")),
            })
            .await??;
            Ok(ok(addr, vec![]))
        }
        Request::Set(op, par, value) => {
            on_cook(&ctx.cook, move |g| g.set_par_by_hand(&op, &par, value)).await??;
            Ok(ok(addr, vec![]))
        }
        Request::Stall(_) | Request::Panic if !ctx.debug => {
            Err("debug requests are off (start chopd with CHOPD_DEBUG_CONTROL=1)".into())
        }
        Request::Panic => {
            tracing::warn!("control: panicking the cook thread on request (from {from})");
            ctx.cook
                .try_send(Command::With(Box::new(|_| {
                    panic!("panic requested over the control port (debug)")
                })))
                .map_err(|_| "the cook thread is busy or stopped".to_string())?;
            Ok(ok(addr, vec![]))
        }
        Request::Stall(d) => {
            tracing::warn!(
                "control: stalling the cook thread for {:.1} s on request (from {from})",
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
    }
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
