//! The OSCQuery server (`[oscquery]`): the graph's operators, channels, parameters and
//! statistics as an OSCQuery namespace over HTTP, LISTEN/IGNORE and writes over a websocket on
//! the same port, OSC writes over UDP, an mDNS/DNS-SD announcement and a live web page
//! (docs/oscquery.md is the user's version).
//!
//! It runs on a thread of its own with its own runtime, so neither the control plane nor the
//! cook thread ever waits on a client. The cook thread swaps a [`snapshot::Snap`] into a
//! one-slot `watch` after every frame; the hub here turns a new structure into a namespace
//! ([`namespace::Index`]) and its PATH_ADDED/REMOVED/CHANGED, and every client reads the
//! newest view when it is ready (a slow one skips frames; a stalled one is dropped after
//! [`SEND_BOUND`]). Writes go through the control port's `answer`: the same requests, the
//! same authorization (`[control]` allow-list and token), the same counters and log.

pub mod mdns;
pub mod namespace;
pub mod snapshot;
pub mod writes;
pub mod ws;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, oneshot, watch};

use super::control::{self, Ctx, Limited, Policy};
use super::Command;
use crate::config::{ControlConfig, OscQueryConfig};
use namespace::Index;
use snapshot::Snap;

/// How long one send to a websocket client may take before the client is dropped.
pub const SEND_BOUND: Duration = Duration::from_secs(2);

/// Largest websocket message accepted from a client (a LISTEN, a bundle of writes).
pub const MAX_WS_MESSAGE: usize = 64 * 1024;

/// Paths one client may LISTEN to; more are ignored and counted.
pub const MAX_LISTEN: usize = 10_000;

/// Websocket clients at once; more are refused (503) and counted.
pub const MAX_CLIENTS: usize = 64;

/// Recent errors and warnings the page shows.
const LOG_TAIL: usize = 100;

/// What the server counts; served under `/_chopd/counters` and logged when it stops.
#[derive(Default, Debug)]
pub struct Counters {
    pub http: AtomicU64,
    pub http_refused: AtomicU64,
    pub clients: AtomicU64,
    pub clients_refused: AtomicU64,
    pub dropped_slow: AtomicU64,
    pub malformed: AtomicU64,
    pub listen_ignored: AtomicU64,
    pub writes: AtomicU64,
    pub writes_refused: AtomicU64,
}

impl Counters {
    fn json(&self) -> Value {
        json!({
            "http": self.http.load(Relaxed),
            "http_refused": self.http_refused.load(Relaxed),
            "clients": self.clients.load(Relaxed),
            "clients_refused": self.clients_refused.load(Relaxed),
            "dropped_slow": self.dropped_slow.load(Relaxed),
            "malformed": self.malformed.load(Relaxed),
            "listen_ignored": self.listen_ignored.load(Relaxed),
            "writes": self.writes.load(Relaxed),
            "writes_refused": self.writes_refused.load(Relaxed),
        })
    }
}

/// The namespace of the newest structure and the newest frame.
pub struct View {
    pub index: Arc<Index>,
    pub snap: Arc<Snap>,
}

/// A change of the namespace, as the websocket announces it.
#[derive(Clone, Debug)]
pub enum PathEvent {
    Added(String),
    Removed(String),
    Changed(String),
}

impl PathEvent {
    fn json(&self) -> String {
        let (c, p) = match self {
            PathEvent::Added(p) => ("PATH_ADDED", p),
            PathEvent::Removed(p) => ("PATH_REMOVED", p),
            PathEvent::Changed(p) => ("PATH_CHANGED", p),
        };
        json!({ "COMMAND": c, "DATA": p }).to_string()
    }
}

/// Everything the handlers share.
pub(crate) struct Shared {
    view: watch::Receiver<Arc<View>>,
    events: broadcast::Sender<PathEvent>,
    name: String,
    osc_port: u16,
    ws_port: u16,
    /// `None`: no `[control]`, so read-only.
    policy: watch::Receiver<Option<Policy>>,
    ctx: Ctx,
    counters: Counters,
    log: Mutex<VecDeque<Value>>,
    failed: Mutex<Limited>,
}

/// The running server; dropping it stops it.
pub struct OscQuery {
    pub http: SocketAddr,
    pub osc: SocketAddr,
    policy: watch::Sender<Option<Policy>>,
    close: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OscQuery {
    /// Binds the ports, asks the cook thread for snapshots and starts the server's thread.
    pub fn start(
        cfg: &OscQueryConfig,
        control: Option<&ControlConfig>,
        ctx: Ctx,
        cook: &SyncSender<Command>,
    ) -> anyhow::Result<OscQuery> {
        let tcp = std::net::TcpListener::bind(cfg.addr)
            .map_err(|e| anyhow::anyhow!("bind oscquery on {}: {e}", cfg.addr))?;
        let http = tcp.local_addr()?;
        // OSC writes on the same port number when it is free for UDP, else on any.
        let udp = std::net::UdpSocket::bind(http)
            .or_else(|_| std::net::UdpSocket::bind(SocketAddr::new(http.ip(), 0)))
            .map_err(|e| anyhow::anyhow!("bind oscquery OSC on {}: {e}", http.ip()))?;
        let osc = udp.local_addr()?;
        tcp.set_nonblocking(true)?;
        udp.set_nonblocking(true)?;
        let (mut publisher, snaps) = snapshot::Publisher::new();
        cook.try_send(Command::Observe(Box::new(move |g| publisher.observe(g))))
            .map_err(|_| anyhow::anyhow!("the cook thread is busy or stopped"))?;
        let (policy_tx, policy_rx) = watch::channel(control.map(Policy::of));
        let (close_tx, close_rx) = oneshot::channel();
        // The first namespace is served before the start line says `ready`.
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let cfg = cfg.clone();
        let thread = std::thread::Builder::new()
            .name("oscquery".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => return tracing::error!("oscquery: start its runtime: {e}"),
                };
                rt.block_on(serve(
                    cfg, tcp, udp, snaps, policy_rx, ctx, close_rx, first_tx,
                ));
            })?;
        if first_rx.recv_timeout(Duration::from_secs(10)).is_err() {
            tracing::warn!("oscquery: no snapshot from the cook thread yet; serving anyway");
        }
        tracing::info!(kind = "oscquery", addr = %http, osc = %osc, "listening");
        Ok(OscQuery {
            http,
            osc,
            policy: policy_tx,
            close: Some(close_tx),
            thread: Some(thread),
        })
    }

    /// Follows a reloaded `[control]` (who may write).
    pub fn set_control(&self, control: Option<&ControlConfig>) {
        self.policy.send_replace(control.map(Policy::of));
    }
}

impl Drop for OscQuery {
    fn drop(&mut self) {
        if let Some(c) = self.close.take() {
            let _ = c.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    cfg: OscQueryConfig,
    tcp: std::net::TcpListener,
    udp: std::net::UdpSocket,
    snaps: watch::Receiver<Arc<Snap>>,
    policy: watch::Receiver<Option<Policy>>,
    ctx: Ctx,
    close: oneshot::Receiver<()>,
    first: std::sync::mpsc::Sender<()>,
) {
    let (tcp, udp) = match (
        tokio::net::TcpListener::from_std(tcp),
        UdpSocket::from_std(udp),
    ) {
        (Ok(t), Ok(u)) => (t, u),
        (Err(e), _) | (_, Err(e)) => return tracing::error!("oscquery: {e}"),
    };
    let (http, osc) = (
        tcp.local_addr().map(|a| a.port()).unwrap_or(0),
        udp.local_addr().map(|a| a.port()).unwrap_or(0),
    );
    let (view_tx, view_rx) = watch::channel(Arc::new(View {
        index: Arc::new(Index::build(Arc::default())),
        snap: Arc::default(),
    }));
    let (events, _) = broadcast::channel(1024);
    let shared = Arc::new(Shared {
        view: view_rx,
        events,
        name: cfg.name.clone(),
        osc_port: osc,
        ws_port: http,
        policy,
        ctx,
        counters: Counters::default(),
        log: Mutex::new(VecDeque::new()),
        failed: Mutex::new(Limited::new()),
    });
    let announced = if cfg.announce {
        mdns::announce(&cfg, http, osc)
            .map_err(|e| tracing::warn!("oscquery: no mDNS announcement: {e:#}"))
            .ok()
    } else {
        None
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let hub = tokio::spawn(hub(snaps, view_tx, shared.clone(), stop_rx.clone(), first));
    let writes = tokio::spawn(writes::serve_udp(udp, shared.clone(), stop_rx.clone()));
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(shared.clone())
        .into_make_service_with_connect_info::<SocketAddr>();
    let mut stop_http = stop_rx.clone();
    let server = axum::serve(tcp, app).with_graceful_shutdown(async move {
        let _ = stop_http.wait_for(|s| *s).await;
    });
    let server = tokio::spawn(async move { server.await });
    let _ = close.await;
    let _ = stop_tx.send(true);
    // Open websockets do not end a graceful shutdown by themselves: bounded.
    let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
    hub.abort();
    writes.abort();
    if let Some(a) = announced {
        a.withdraw();
    }
    tracing::debug!(counters = %shared.counters.json(), "oscquery stopped");
}

/// Follows the snapshots: a new structure becomes a new namespace and its path events; errors
/// and warnings become the log tail.
async fn hub(
    mut snaps: watch::Receiver<Arc<Snap>>,
    view: watch::Sender<Arc<View>>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    first: std::sync::mpsc::Sender<()>,
) {
    let mut first = Some(first);
    let mut index = view.borrow().index.clone();
    let mut last: Option<Arc<Snap>> = None;
    loop {
        tokio::select! {
            r = snaps.changed() => if r.is_err() { return },
            _ = stop.changed() => return,
        }
        let snap = snaps.borrow_and_update().clone();
        if !Arc::ptr_eq(&index.tree, &snap.tree) {
            let new = Arc::new(Index::build(snap.tree.clone()));
            let (added, removed, changed) = index.diff(&new);
            index = new;
            let send = |e| {
                let _ = shared.events.send(e);
            };
            removed.into_iter().map(PathEvent::Removed).for_each(send);
            added.into_iter().map(PathEvent::Added).for_each(send);
            changed.into_iter().map(PathEvent::Changed).for_each(send);
        }
        if let Some(prev) = &last {
            tail(&shared, prev, &snap);
        }
        last = Some(snap.clone());
        view.send_replace(Arc::new(View {
            index: index.clone(),
            snap,
        }));
        if let Some(f) = first.take() {
            let _ = f.send(());
        }
    }
}

/// Appends the errors and warnings counted since `prev` to the log tail.
fn tail(shared: &Shared, prev: &Snap, now: &Snap) {
    let mut log = shared.log.lock().unwrap_or_else(|e| e.into_inner());
    let at = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    for (i, op) in now.tree.ops.iter().enumerate() {
        let Some(s) = now.stats.get(i) else { continue };
        let before = prev
            .tree
            .ops
            .iter()
            .position(|o| o.name == op.name)
            .and_then(|j| prev.stats.get(j));
        let (e0, w0) = before.map_or((0, 0), |b| (b.errors, b.warnings));
        let text = s.last_error.as_deref().unwrap_or("");
        if s.errors > e0 {
            log.push_back(
                json!({"t": at, "op": op.name, "level": "error", "n": s.errors - e0, "text": text}),
            );
        }
        if s.warnings > w0 {
            log.push_back(json!({"t": at, "op": op.name, "level": "warning", "n": s.warnings - w0, "text": ""}));
        }
    }
    while log.len() > LOG_TAIL {
        log.pop_front();
    }
}

/// Whether a client may write, and why not.
pub(crate) fn authorize(
    shared: &Shared,
    peer: SocketAddr,
    token: Option<&str>,
) -> Result<control::Policy, String> {
    let Some(policy) = shared.policy.borrow().clone() else {
        return Err("read-only: writes need a [control] section (its allow-list and token)".into());
    };
    if !policy.allow.iter().any(|a| a.contains(peer.ip())) {
        return Err(format!(
            "read-only: {} is not in [control] allow",
            peer.ip()
        ));
    }
    match (&policy.token, token) {
        (None, _) => Ok(policy),
        (Some(t), Some(given)) if super::request::same(t.as_bytes(), given.as_bytes()) => {
            Ok(policy)
        }
        (Some(_), Some(_)) => Err("wrong token".into()),
        (Some(_), None) => Err("read-only: give the [control] token".into()),
    }
}

/// The token a request presents: `Authorization: Bearer TOKEN` or `?token=TOKEN`.
fn token_of<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| query?.split('&').find_map(|kv| kv.strip_prefix("token=")))
}

const PAGE: &str = include_str!("page.html");

/// The attributes a query may ask for.
const ATTRIBUTES: [&str; 9] = [
    "FULL_PATH",
    "CONTENTS",
    "TYPE",
    "ACCESS",
    "VALUE",
    "RANGE",
    "DESCRIPTION",
    "CLIPMODE",
    "HOST_INFO",
];

async fn handle(
    State(s): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: axum::extract::Request,
) -> Response {
    let (mut parts, _body) = req.into_parts();
    let (method, uri, headers) = (
        parts.method.clone(),
        parts.uri.clone(),
        parts.headers.clone(),
    );
    s.counters.http.fetch_add(1, Relaxed);
    let refuse = |code: StatusCode, why: String| {
        s.counters.http_refused.fetch_add(1, Relaxed);
        (code, why).into_response()
    };
    if headers.contains_key(header::UPGRADE) {
        return match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(ws) => ws::upgrade(ws, s.clone(), peer, token_of(&headers, uri.query())),
            Err(rejection) => {
                s.counters.http_refused.fetch_add(1, Relaxed);
                rejection.into_response()
            }
        };
    }
    if method != Method::GET && method != Method::HEAD {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    let path = uri.path();
    let query = uri.query().unwrap_or("");
    let attr = query.split('&').next().unwrap_or("");
    match path {
        "/_chopd/log" => {
            let log: Vec<Value> = s
                .log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned()
                .collect();
            return axum::Json(Value::Array(log)).into_response();
        }
        "/_chopd/counters" => return axum::Json(s.counters.json()).into_response(),
        "/_chopd/session" => {
            let r = authorize(&s, peer, token_of(&headers, uri.query()));
            return axum::Json(json!({"writable": r.is_ok(), "why": r.err()})).into_response();
        }
        _ => {}
    }
    let wants_html = attr == "HTML"
        || (path == "/"
            && attr.is_empty()
            && headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("text/html")));
    if wants_html {
        return (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            PAGE,
        )
            .into_response();
    }
    if attr == "HOST_INFO" {
        return axum::Json(host_info(&s)).into_response();
    }
    if !attr.is_empty() && !ATTRIBUTES.contains(&attr) && !attr.starts_with("token=") {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("unknown attribute \"{attr}\"\n"),
        );
    }
    let view = s.view.borrow().clone();
    let path = path.trim_end_matches('/');
    let Some(node) = view.index.json(path, &view.snap) else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!("no node \"{}\"\n", uri.path()),
        );
    };
    if attr.is_empty() || attr.starts_with("token=") {
        return axum::Json(node).into_response();
    }
    match node.get(attr) {
        Some(v) => axum::Json(json!({ attr: v })).into_response(),
        // The node has no such attribute (the proposal's answer).
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

fn host_info(s: &Shared) -> Value {
    let on = [
        "ACCESS",
        "VALUE",
        "RANGE",
        "DESCRIPTION",
        "CLIPMODE",
        "LISTEN",
        "PATH_CHANGED",
        "PATH_ADDED",
        "PATH_REMOVED",
        "HTML",
    ];
    let off = [
        "TAGS",
        "EXTENDED_TYPE",
        "UNIT",
        "CRITICAL",
        "OVERLOADS",
        "PATH_RENAMED",
        "ECHO",
    ];
    let mut ext = serde_json::Map::new();
    for e in on {
        ext.insert(e.into(), json!(true));
    }
    for e in off {
        ext.insert(e.into(), json!(false));
    }
    json!({
        "NAME": s.name,
        "OSC_PORT": s.osc_port,
        "OSC_TRANSPORT": "UDP",
        "WS_PORT": s.ws_port,
        "EXTENSIONS": ext,
    })
}

#[cfg(test)]
mod tests;
