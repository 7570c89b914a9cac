//! Writes: an OSC message to a namespace path (over UDP to `OSC_PORT`, or as a binary
//! websocket frame) becomes the control port's request for the same thing — `set` for a
//! parameter, `pulse` for a pulse, `reload` for `/chopd/reload` — and is answered by the
//! control port's `answer`, with its authorization, counters and log. Parsing is pure (the fuzz
//! target drives [`parse_writes`]).

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use rosc::{OscMessage, OscType};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::namespace::{Index, Leaf};
use super::Shared;
use crate::cook::par::ParStyle;
use crate::cook::ParValue;
use crate::daemon::control::{self, Peer};
use crate::daemon::request::{self, Auth, Parsed, Request, MAX_REQUESTS_PER_PACKET};
use crate::osc;

/// One parsed write: the path written, how it presented the token, what it asks or why not.
pub type Write = (String, Auth, Result<Request, String>);

/// Parses a packet of writes against the namespace: for each message (at most
/// `MAX_REQUESTS_PER_PACKET`), the path written and the request or why not. `/chopd/auth/TOKEN`
/// before a path presents the token (UDP has no other way); the second value says whether it
/// was right. The count of messages past the bound comes last.
pub fn parse_writes(
    ix: &Index,
    bytes: &[u8],
    token: Option<&str>,
) -> Result<(Vec<Write>, usize), osc::DecodeError> {
    let msgs = osc::messages(osc::decode(bytes)?);
    let excess = msgs.len().saturating_sub(MAX_REQUESTS_PER_PACKET);
    let out = msgs
        .into_iter()
        .take(MAX_REQUESTS_PER_PACKET)
        .map(|m| {
            let (path, auth) = if m.addr.starts_with(request::AUTH) {
                let (rest, auth) = request::strip_auth(&m.addr, token);
                let rest = rest
                    .strip_prefix(request::PREFIX)
                    .unwrap_or(&rest)
                    .to_string();
                (rest, auth)
            } else {
                (m.addr.clone(), Auth::None)
            };
            let r = write(ix, &path, &m.args);
            // A token anywhere else in the address (a misspelt prefix) is never echoed back.
            let path = match token {
                Some(t) if path.contains(t) => path.replace(t, "TOKEN"),
                _ => path,
            };
            (path, auth, r)
        })
        .collect();
    Ok((out, excess))
}

/// One write: what writing `args` to `path` asks.
pub fn write(ix: &Index, path: &str, args: &[OscType]) -> Result<Request, String> {
    let Some(&leaf) = ix.leaves.get(path) else {
        return Err(if ix.exists(path) {
            "a container: write to one of its parameters".into()
        } else {
            "no such path".into()
        });
    };
    // A single 0 or false is a button's release: nothing to do.
    let released = matches!(args, [OscType::Int(0)] | [OscType::Bool(false)])
        || matches!(args, [OscType::Float(f)] if *f == 0.0);
    match leaf {
        Leaf::Reload if released => Ok(Request::Release),
        Leaf::Reload => Ok(Request::Reload),
        Leaf::Par(o, p) => {
            let op = &ix.tree.ops[o];
            let par = &op.pars[p];
            let d = &par.def;
            if d.read_only {
                return Err(format!("parameter \"{}\" is read-only", d.name));
            }
            if d.style == ParStyle::Pulse {
                return Ok(if released {
                    Request::Release
                } else {
                    Request::Pulse(op.name.clone(), d.name.clone())
                });
            }
            let value = match args {
                [OscType::String(s)] => ParValue::Str(s.clone()),
                [OscType::Bool(b)] => ParValue::Float(f64::from(u8::from(*b))),
                [OscType::Int(i)] => ParValue::Float(*i as f64),
                [OscType::Long(i)] => ParValue::Float(*i as f64),
                [OscType::Float(f)] => ParValue::Float(*f as f64),
                [OscType::Double(f)] => ParValue::Float(*f),
                [a] => {
                    return Err(format!(
                        "cannot set parameter \"{}\" to {}",
                        d.name,
                        osc::type_name(a)
                    ))
                }
                _ => return Err("takes exactly one value".into()),
            };
            if let ParValue::Float(f) = value {
                if !f.is_finite() {
                    return Err("the value is not finite".into());
                }
            }
            // The type is checked here so that a wrong one is refused with its reason before
            // it travels; the operator converts and clamps the value as for any `set`.
            d.coerce(&value).map_err(clip)?;
            Ok(Request::Set(op.name.clone(), d.name.clone(), value))
        }
        _ => Err("read-only".into()),
    }
}

/// Longest reason a refusal carries: one quoting a long string value is cut, so a reply stays
/// small whatever was sent.
const MAX_REASON: usize = 160;

fn clip(mut why: String) -> String {
    if why.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !why.is_char_boundary(end) {
            end -= 1;
        }
        why.truncate(end);
        why.push('…');
    }
    why
}

/// The control port's address of a request, for its reply and log.
fn control_addr(r: &Request) -> String {
    match r {
        Request::Set(o, p, _) => format!("/chopd/op/{o}/par/{p}"),
        Request::Pulse(o, p) => format!("/chopd/op/{o}/pulse/{p}"),
        Request::Reload => "/chopd/reload".into(),
        _ => "/chopd".into(),
    }
}

/// Applies one packet of writes from `peer`, authorized (`token` as presented by the
/// connection, for a websocket) or not; returns the error replies (OSC messages), empty when
/// every write was applied.
pub(crate) async fn apply(
    shared: &Shared,
    peer: SocketAddr,
    bytes: &[u8],
    conn_token: Option<&str>,
) -> Vec<OscMessage> {
    let c = &shared.counters;
    let ix = shared.view.borrow().index.clone();
    let Some(policy) = shared.policy.borrow().clone() else {
        return refusal("/", "read-only: writes need a [control] section".into(), c);
    };
    if !policy.allow.iter().any(|a| a.contains(peer.ip())) {
        let why = format!("read-only: {} is not in [control] allow", peer.ip());
        return refusal("/", why, c);
    }
    let token = policy.token.as_deref();
    let conn = match (conn_token, token) {
        (None, _) => Auth::None,
        (Some(given), Some(t)) if !request::same(t.as_bytes(), given.as_bytes()) => {
            return refusal("/", "wrong token".into(), c)
        }
        (Some(_), _) => Auth::Good,
    };
    let (writes, excess) = match parse_writes(&ix, bytes, token) {
        Ok(w) => w,
        Err(e) => {
            c.malformed.fetch_add(1, Relaxed);
            return refusal("/", format!("malformed OSC: {e}"), c);
        }
    };
    let mut out = Vec::new();
    if excess > 0 {
        let why = format!("{excess} writes refused: at most {MAX_REQUESTS_PER_PACKET} per packet");
        out.extend(refusal("/", why, c));
    }
    let mut parsed = Vec::new();
    let mut paths = Vec::new();
    for (path, auth, r) in writes {
        c.writes.fetch_add(1, Relaxed);
        match r {
            Err(why) => out.extend(refusal(&path, why, c)),
            Ok(req) => {
                paths.push(path);
                parsed.push(Parsed {
                    addr: control_addr(&req),
                    // A connection that gave the token is authorized for every message it sends.
                    auth: if conn == Auth::Good { conn } else { auth },
                    request: Ok(req),
                })
            }
        }
    }
    if parsed.is_empty() {
        return out;
    }
    let needs_token = token.is_some();
    let replies = control::answer(
        parsed,
        Peer::Udp(peer),
        needs_token,
        &shared.ctx,
        &shared.failed,
    )
    .await;
    for (mut group, path) in replies.into_iter().zip(paths) {
        if group.iter().any(|m| m.addr.ends_with("/error")) {
            c.writes_refused.fetch_add(1, Relaxed);
            // Named by the path the client wrote, not the control port's address.
            for m in &mut group {
                if let Some(a) = m.args.first_mut() {
                    *a = OscType::String(path.clone());
                }
            }
            out.extend(group);
        }
    }
    out
}

fn refusal(path: &str, why: String, c: &super::Counters) -> Vec<OscMessage> {
    c.writes_refused.fetch_add(1, Relaxed);
    vec![OscMessage {
        addr: format!("{}/error", request::PREFIX),
        args: vec![OscType::String(path.to_string()), OscType::String(why)],
    }]
}

/// Serves OSC writes over UDP until `stop`. Senders outside `[control] allow` get no reply.
pub(crate) async fn serve_udp(
    sock: UdpSocket,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(_) => continue,
            },
            _ = stop.changed() => return,
        };
        let allowed = shared
            .policy
            .borrow()
            .as_ref()
            .is_some_and(|p| p.allow.iter().any(|a| a.contains(from.ip())));
        if !allowed {
            shared.counters.writes_refused.fetch_add(1, Relaxed);
            continue;
        }
        let errors = apply(&shared, from, &buf[..n], None).await;
        for bytes in control::pack(errors) {
            let _ = sock.send_to(&bytes, from).await;
        }
    }
}
