//! One websocket client: LISTEN/IGNORE (text JSON commands), the values of the paths it
//! listens to streamed as binary OSC bundles (only what changed, once per frame it keeps up
//! with), the namespace's PATH_ADDED/REMOVED/CHANGED, and writes as binary OSC frames.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rosc::{OscMessage, OscType};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use super::namespace::{Index, Leaf, Val};
use super::snapshot::Snap;
use super::{writes, Shared, MAX_CLIENTS, MAX_LISTEN, MAX_WS_MESSAGE, SEND_BOUND};
use crate::osc;

pub(crate) fn upgrade(
    ws: WebSocketUpgrade,
    shared: Arc<Shared>,
    peer: SocketAddr,
    token: Option<&str>,
) -> Response {
    let c = &shared.counters;
    if c.clients.fetch_add(1, Relaxed) >= MAX_CLIENTS as u64 {
        c.clients.fetch_sub(1, Relaxed);
        c.clients_refused.fetch_add(1, Relaxed);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many websocket clients\n",
        )
            .into_response();
    }
    let token = token.map(str::to_string);
    // Clients send short commands and writes: a small read buffer (it is cleared on every read).
    ws.read_buffer_size(4096)
        .max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE)
        .on_upgrade(move |socket| async move {
            session(socket, &shared, peer, token).await;
            shared.counters.clients.fetch_sub(1, Relaxed);
        })
}

/// A LISTEN or IGNORE, as the proposal writes them.
#[derive(Debug, PartialEq)]
pub enum WsCommand {
    Listen(String),
    Ignore(String),
}

/// Parses a text frame: `{"COMMAND": "LISTEN", "DATA": "/path"}`.
pub fn parse_command(text: &str) -> Result<WsCommand, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let path = v
        .get("DATA")
        .and_then(Value::as_str)
        .filter(|p| p.starts_with('/'))
        .ok_or("DATA must be a path")?
        .trim_end_matches('/')
        .to_string();
    match v.get("COMMAND").and_then(Value::as_str) {
        Some("LISTEN") => Ok(WsCommand::Listen(path)),
        Some("IGNORE") => Ok(WsCommand::Ignore(path)),
        _ => Err("COMMAND must be LISTEN or IGNORE".into()),
    }
}

/// One leaf a client listens to: its address encoded once, and what it was last sent.
struct Entry {
    path: String,
    address: osc::Address,
    /// `None` while the path does not exist (it may come: PATH_ADDED).
    leaf: Option<Leaf>,
    last: Option<Val>,
}

/// The paths one client listens to.
#[derive(Default)]
struct Listening {
    /// What was listened to (a container stands for every leaf below it).
    asked: HashSet<String>,
    entries: Vec<Entry>,
    /// Where each path is in `entries`.
    at: HashMap<String, usize>,
}

impl Listening {
    fn entry(&mut self, path: String, leaf: Option<Leaf>, last: Option<Val>) {
        if self.at.contains_key(&path) {
            return;
        }
        self.at.insert(path.clone(), self.entries.len());
        self.entries.push(Entry {
            address: osc::Address::new(&path),
            path,
            leaf,
            last,
        });
    }

    /// Adds one LISTEN: only its own leaves are looked up (a flood of LISTENs stays linear).
    fn add(&mut self, ix: &Index, path: String) {
        for (p, l) in ix.leaves_under(&path) {
            self.entry(p, Some(l), None);
        }
        if !ix.exists(&path) {
            // Kept: the path may come (PATH_ADDED) and is then streamed.
            self.entry(path.clone(), None, None);
        }
        self.asked.insert(path);
    }

    /// Looks every LISTEN up again (a new structure, an IGNORE); what was sent is kept.
    fn resolve(&mut self, ix: &Index) {
        let mut old = std::mem::take(self);
        let mut last = |p: &str| old.at.get(p).and_then(|&i| old.entries[i].last.take());
        for a in &old.asked {
            for (p, l) in ix.leaves_under(a) {
                let v = last(&p);
                self.entry(p, Some(l), v);
            }
            if !ix.exists(a) {
                self.entry(a.clone(), None, None);
            }
        }
        self.asked = old.asked;
    }

    /// Queues every value that changed since it was last sent.
    fn changed(&mut self, ix: &Index, snap: &Snap, packer: &mut osc::Packer) {
        for e in &mut self.entries {
            let Some(leaf) = e.leaf else { continue };
            let now = ix.value(leaf, snap);
            if e.last.as_ref() == Some(&now) {
                continue;
            }
            match &now {
                Val::F(f) if !f.is_finite() => continue,
                Val::F(f) => packer.push_at(&e.address, osc::Arg::Float(*f)),
                Val::I(i) => packer.push_at(
                    &e.address,
                    osc::Arg::Int((*i).clamp(i32::MIN as i64, i32::MAX as i64) as i32),
                ),
                Val::B(b) => packer.push_message(OscMessage {
                    addr: e.path.clone(),
                    args: vec![OscType::Bool(*b)],
                }),
                Val::S(s) => packer.push_message(OscMessage {
                    addr: e.path.clone(),
                    args: vec![OscType::String(s.to_string())],
                }),
                Val::None => continue,
            }
            e.last = Some(now);
        }
    }
}

async fn session(mut socket: WebSocket, shared: &Shared, peer: SocketAddr, token: Option<String>) {
    let c = &shared.counters;
    let mut view = shared.view.clone();
    let mut events = shared.events.subscribe();
    let mut index = view.borrow().index.clone();
    let mut listening = Listening::default();
    let mut packer = osc::Packer::new(MAX_WS_MESSAGE);
    loop {
        let out: Vec<Message> = tokio::select! {
            m = socket.recv() => match m {
                Some(Ok(Message::Text(t))) => {
                    match parse_command(t.as_str()) {
                        Ok(WsCommand::Listen(p)) => {
                            if listening.asked.len() >= MAX_LISTEN {
                                c.listen_ignored.fetch_add(1, Relaxed);
                            } else if !listening.asked.contains(&p) {
                                listening.add(&index, p);
                            }
                        }
                        Ok(WsCommand::Ignore(p)) => {
                            listening.asked.remove(&p);
                            listening.resolve(&index);
                        }
                        Err(_) => {
                            c.malformed.fetch_add(1, Relaxed);
                        }
                    }
                    // The values of a new LISTEN go out with the next frame.
                    Vec::new()
                }
                Some(Ok(Message::Binary(b))) => {
                    let errors = writes::apply(shared, peer, &b, token.as_deref()).await;
                    super::control::pack(errors).into_iter().map(|p| Message::Binary(p.into())).collect()
                }
                Some(Ok(_)) => Vec::new(),
                // An oversized or broken frame ends the connection (tungstenite closes it).
                Some(Err(_)) => {
                    c.malformed.fetch_add(1, Relaxed);
                    return;
                }
                None => return,
            },
            e = events.recv() => match e {
                Ok(e) => vec![Message::Text(e.json().into())],
                // Missed path events: the client re-reads the namespace on PATH_CHANGED "/".
                Err(RecvError::Lagged(_)) => vec![Message::Text(
                    super::PathEvent::Changed("/".into()).json().into(),
                )],
                Err(RecvError::Closed) => return,
            },
            r = view.changed() => {
                if r.is_err() {
                    return;
                }
                let v = view.borrow_and_update().clone();
                if !Arc::ptr_eq(&v.index, &index) {
                    index = v.index.clone();
                    listening.resolve(&index);
                }
                listening.changed(&index, &v.snap, &mut packer);
                let mut frames = Vec::new();
                packer.drain(osc::IMMEDIATELY, osc::Lone::Bundled, |p, _| frames.push(Message::Binary(p.to_vec().into())));
                frames
            }
        };
        for m in out {
            match tokio::time::timeout(SEND_BOUND, socket.send(m)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    c.dropped_slow.fetch_add(1, Relaxed);
                    tracing::warn!(
                        peer = %peer,
                        "oscquery: dropped a websocket client that did not read for {} s",
                        SEND_BOUND.as_secs()
                    );
                    return;
                }
            }
        }
    }
}
