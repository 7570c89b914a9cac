//! MIDI ports: which port a `device` pattern means ([`select`], pure and unit-tested), the
//! backend (ALSA by default, JACK with the `jack` feature), the port list for `chopd midi-ports`,
//! and the scanner thread that connects, notices a vanished port and reconnects (hot-plug).
//!
//! Everything here that touches the MIDI system runs on the scanner thread (or once at
//! construction): the cook thread only sees atomics and the event queue.
//!
//! # Hot-plug
//! midir reports no disconnects, so the scanner polls the port list every `scan_ms`. Under ALSA
//! a connection is a midir connection (one sequencer client each) and is dropped when its port
//! leaves the list. Under JACK the operator owns one virtual input port for its life and the
//! scanner connects the matched source to it. A port replaced under the same name between two
//! scans can come back with the same UUID (JACK2 reuses the slot), so the scanner goes by JACK's
//! port events: a port unregistered since we connected to it was replugged, whatever the list
//! says now; a connection gone while its port stayed was removed from outside and is made
//! again. A JACK server that shuts down (all our clients die with it) is reopened when it is
//! back (see `jack.rs`).
//!
//! # Matching a device
//! Port names contain spaces (`Launch Control XL:Launch Control XL MIDI 1 20:0` under ALSA,
//! `client:port` under JACK), while patterns are space-separated term lists. The `device` string
//! is therefore tried in three ways, and the first way that matches any port wins:
//! 1. **exact**: the whole string equals the port name, or the name without ALSA's trailing
//!    `client:port` numbers (they change when a device is plugged into another socket);
//! 2. **pattern**: the string as a pattern (README, "Patterns") matches the whole name (or the name without
//!    the numbers); a wildcard term may contain the name's spaces (`Launch Control*`);
//! 3. **partial**: a string without wildcards appears inside the name, ignoring case.
//!
//! When several ports match at the winning level the choice is ambiguous: the first in name order
//! is used and the ambiguity is logged with every candidate (and counted in `matches`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[cfg(not(feature = "jack"))]
use midir::{MidiInput, MidiInputConnection};

use super::parse::{Event, Msg, StreamParser, Sys};
use super::ring;
use crate::pattern::Pattern;
use crate::wake::Wake;

/// How well a port matched the `device` string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Exact,
    Pattern,
    Partial,
}

/// The outcome of matching a `device` string against the port list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    /// The port to use: the first candidate in name order.
    pub port: String,
    pub level: Level,
    /// Every port that matched at `level`, in name order (more than one: ambiguous).
    pub candidates: Vec<String>,
}

impl Selection {
    pub fn ambiguous(&self) -> bool {
        self.candidates.len() > 1
    }
}

/// What a port scan has told the log, so each state is told once: that no port matches (until
/// a connection), that several do (until the set of them changes). MIDI In and MIDI Out say it
/// the same way. `who` names the owner in the line (`midiin "keys"`); `op`, when it is an
/// operator, also goes in the line's `op` field.
#[derive(Debug, Default)]
pub struct ScanLog {
    missing: bool,
    ambiguous: Vec<String>,
}

impl ScanLog {
    /// The scan found no port for `device` among `ports` (`what`: the kind of port looked for).
    pub fn missing(
        &mut self,
        (who, op): (&str, Option<&str>),
        what: &str,
        device: &DeviceMatcher,
        ports: &[String],
    ) {
        if !self.missing {
            tracing::warn!(
                op,
                "{who}: no MIDI {what}port matches device \"{}\" ({} ports: {}); will connect when it appears",
                device.as_str(),
                ports.len(),
                quoted_list(ports),
            );
            self.missing = true;
        }
    }

    /// The scan chose `sel` for `device`.
    pub fn selected(
        &mut self,
        (who, op): (&str, Option<&str>),
        device: &DeviceMatcher,
        sel: &Selection,
    ) {
        if sel.ambiguous() && sel.candidates != self.ambiguous {
            tracing::warn!(
                op,
                "{who}: device \"{}\" is ambiguous, {} ports match ({:?} match): {}; using \"{}\"",
                device.as_str(),
                sel.candidates.len(),
                sel.level,
                quoted_list(&sel.candidates),
                sel.port,
            );
            self.ambiguous = sel.candidates.clone();
        }
    }

    /// Connected: a device missing later is told again.
    pub fn connected(&mut self) {
        self.missing = false;
    }
}

/// `name` without ALSA's trailing ` client:port` numbers (midir appends them to ALSA names).
pub fn without_address(name: &str) -> &str {
    let Some((head, tail)) = name.rsplit_once(' ') else {
        return name;
    };
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match tail.split_once(':') {
        Some((c, p)) if numeric(c) && numeric(p) => head,
        _ => name,
    }
}

/// A compiled `device` string: see the module docs for the three ways it matches.
#[derive(Clone, Debug)]
pub struct DeviceMatcher {
    text: String,
    pattern: Pattern,
    /// The whole string as one term, its spaces matching the name's spaces (approximately: a
    /// space matches any one character), when it has spaces and wildcards.
    spaced: Option<Pattern>,
    literal: bool,
}

impl DeviceMatcher {
    pub fn new(device: &Pattern) -> DeviceMatcher {
        let text = device.as_str().trim().to_string();
        let literal = !text.contains(['*', '?', '[', '^']);
        let spaced = if !literal && text.contains(' ') && !text.contains('^') {
            Pattern::new(&text.replace(' ', "?")).ok()
        } else {
            None
        };
        DeviceMatcher {
            text,
            pattern: device.clone(),
            spaced,
            literal,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn level(&self, name: &str) -> Option<Level> {
        let short = without_address(name);
        if self.text == name || self.text == short {
            return Some(Level::Exact);
        }
        let glob =
            |n: &str| self.pattern.matches(n) || self.spaced.as_ref().is_some_and(|p| p.matches(n));
        if glob(name) || glob(short) {
            return Some(Level::Pattern);
        }
        if self.literal
            && !self.text.is_empty()
            && name.to_lowercase().contains(&self.text.to_lowercase())
        {
            return Some(Level::Partial);
        }
        None
    }

    /// The port `device` means among `ports`, or `None` when nothing matches.
    pub fn select(&self, ports: &[String]) -> Option<Selection> {
        let mut best: Option<Level> = None;
        let mut candidates: Vec<String> = Vec::new();
        for name in ports {
            let Some(level) = self.level(name) else {
                continue;
            };
            match best {
                Some(b) if level > b => continue,
                Some(b) if level == b => candidates.push(name.clone()),
                _ => {
                    best = Some(level);
                    candidates = vec![name.clone()];
                }
            }
        }
        candidates.sort();
        candidates.dedup();
        Some(Selection {
            port: candidates.first()?.clone(),
            level: best?,
            candidates,
        })
    }
}

/// Why MIDI cannot be used at all (as opposed to "the device is not there").
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("no ALSA sequencer on this machine ({0} does not exist: no sound modules loaded?)")]
    NoSequencer(&'static str),
    #[error("cannot open the ALSA sequencer: {0}")]
    Alsa(String),
    #[error("no JACK server is running (chopd was built with the `jack` MIDI backend)")]
    NoJack,
    /// The clients of a JACK server that shut down are still being closed: a new one can only
    /// be opened after that (see `jack.rs`). Not logged: it lasts a scan or two, and a close
    /// that never ends is logged by the closer.
    #[error("the clients of a stopped JACK server are still being closed")]
    JackClosing,
}

/// The MIDI backend this build uses, for messages.
pub const BACKEND: &str = if cfg!(feature = "jack") {
    "JACK"
} else {
    "ALSA"
};

/// The ALSA sequencer device; without it alsa-lib can only fail (and prints to stderr when it
/// does, so it is not even asked).
#[cfg(not(feature = "jack"))]
const ALSA_SEQ: &str = "/dev/snd/seq";

/// Opens an ALSA sequencer client named `client` (under JACK, `jack.rs` opens the clients).
#[cfg(not(feature = "jack"))]
pub fn open(client: &str) -> Result<MidiInput, Unavailable> {
    if !std::path::Path::new(ALSA_SEQ).exists() {
        return Err(Unavailable::NoSequencer(ALSA_SEQ));
    }
    match MidiInput::new(client) {
        Ok(mut mi) => {
            // SysEx, clock and timecode are used; active sensing (every 300 ms from many
            // devices) is not: don't even wake us for it.
            mi.ignore(midir::Ignore::ActiveSense);
            Ok(mi)
        }
        Err(e) => Err(Unavailable::Alsa(e.to_string())),
    }
}

/// A port a MIDI In can connect to: its name and, under JACK, its UUID (0 under ALSA, whose
/// names carry the port's address already).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    pub name: String,
    pub id: u64,
}

/// Lists ports for the scanner: midir's client under ALSA, a libjack client under JACK (see
/// `jack.rs` for why).
pub struct Lister {
    #[cfg(not(feature = "jack"))]
    mi: MidiInput,
    #[cfg(feature = "jack")]
    jack: super::jack::JackLister,
}

impl Lister {
    /// With `listen`, the JACK lister hears port events (the scanner); ALSA has none to hear.
    pub fn open(client: &str, listen: bool) -> Result<Lister, Unavailable> {
        #[cfg(not(feature = "jack"))]
        {
            let _ = listen;
            Ok(Lister { mi: open(client)? })
        }
        #[cfg(feature = "jack")]
        {
            super::jack::quiet();
            use super::jack::Unopened;
            super::jack::JackLister::open(client, listen)
                .map(|jack| Lister { jack })
                .map_err(|e| match e {
                    Unopened::NoServer => Unavailable::NoJack,
                    Unopened::Closing => Unavailable::JackClosing,
                })
        }
    }

    /// False once the MIDI system went away under us (JACK server shut down).
    pub fn alive(&self) -> bool {
        #[cfg(not(feature = "jack"))]
        return true;
        #[cfg(feature = "jack")]
        return self.jack.alive();
    }

    pub fn ports(&self) -> Vec<Port> {
        #[cfg(not(feature = "jack"))]
        return self
            .mi
            .ports()
            .iter()
            .filter_map(|p| self.mi.port_name(p).ok())
            .map(|name| Port { name, id: 0 })
            .collect();
        #[cfg(feature = "jack")]
        return self
            .jack
            .ports()
            .into_iter()
            .map(|(name, id)| Port { name, id })
            .collect();
    }
}

/// `chopd midi-ports`: every port a `device` pattern can match, in name order.
pub fn list_ports() -> Result<Vec<String>, Unavailable> {
    let lister = Lister::open("chopd-midi-ports", false)?;
    let mut names: Vec<String> = lister.ports().into_iter().map(|p| p.name).collect();
    names.sort();
    Ok(names)
}

/// What travels from MIDI threads to the cook thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    Midi(Event),
    /// A clock, transport or timecode message and when it arrived (µs on the MIDI system's
    /// clock: only differences mean anything).
    Sys(Sys, u64),
    /// A SysEx, whose bytes wait in the SysEx ring tagged with this number.
    Sysex(u32),
    /// The device went away: held notes can never receive their note-off.
    Disconnected,
}

/// State shared by the scanner thread, midir's callback and the cook thread.
#[derive(Debug, Default)]
pub struct PortState {
    pub connected: AtomicBool,
    /// The MIDI system (ALSA sequencer or JACK server) could be opened.
    pub available: AtomicBool,
    /// Channel voice messages received.
    pub messages: AtomicU64,
    /// System messages nothing is made of (active sensing, tune request, …) and stray bytes.
    pub ignored: AtomicU64,
    /// Messages lost because the cook thread's queue (or the SysEx ring) was full.
    pub dropped: AtomicU64,
    /// Complete SysEx messages received.
    pub sysex_in: AtomicU64,
    /// SysEx messages dropped: longer than the bound, cut short by another status byte, or
    /// cut off by the device going away.
    pub sysex_dropped: AtomicU64,
    /// Moves on at every disconnection: the MIDI callback then forgets any half message.
    pub epoch: AtomicU64,
    pub connects: AtomicU64,
    /// Connections after the first one.
    pub reconnects: AtomicU64,
    /// Ports that matched `device` at the best level at the last scan (> 1: ambiguous).
    pub matches: AtomicU64,
    /// The name of the port connected to ("" when none), for the MIDI In DAT's callbacks.
    pub port: Mutex<String>,
}

/// The sending end of the SysEx ring and the tag of the last SysEx sent. Shared by the
/// callbacks of successive connections (one at a time runs), each taking it with `try_lock`:
/// it is never waited for.
pub struct SysexTx {
    pub ring: ring::Producer,
    pub seq: u32,
}

/// What the MIDI callback owns: it runs on midir's thread (ALSA) or JACK's realtime thread, so
/// it only parses and pushes into the bounded queues — no allocation, no waiting, no log.
struct Callback {
    parser: StreamParser,
    tx: SyncSender<Wire>,
    shared: Arc<PortState>,
    sysex: Arc<Mutex<SysexTx>>,
    /// `shared.epoch` when this callback last ran.
    epoch: u64,
    /// Rung when something was queued (`react = true`): one atomic swap when a ring is already
    /// pending, one eventfd write otherwise, never a wait.
    wake: Option<Wake>,
}

impl Callback {
    fn new(scanner: &Scanner) -> Callback {
        Callback {
            parser: StreamParser::new(),
            tx: scanner.tx.clone(),
            shared: scanner.shared.clone(),
            sysex: scanner.sysex.clone(),
            epoch: scanner.shared.epoch.load(Relaxed),
            wake: scanner.wake.clone(),
        }
    }
}

fn on_midi(stamp: u64, bytes: &[u8], cb: &mut Callback) {
    let Callback {
        parser,
        tx,
        shared,
        sysex,
        epoch,
        wake,
    } = cb;
    let now = shared.epoch.load(Relaxed);
    if now != *epoch {
        // The device went away since the last bytes: what was in progress belongs to it.
        *epoch = now;
        if parser.reset() {
            shared.sysex_dropped.fetch_add(1, Relaxed);
        }
    }
    let mut queued = false;
    let mut send = |w: Wire| match tx.try_send(w) {
        Ok(()) => queued = true,
        Err(TrySendError::Disconnected(_)) => {}
        Err(TrySendError::Full(_)) => {
            shared.dropped.fetch_add(1, Relaxed);
        }
    };
    let ignored = parser.feed_all(bytes, |m| match m {
        Msg::Voice(e) => {
            shared.messages.fetch_add(1, Relaxed);
            send(Wire::Midi(e));
        }
        Msg::Sys(s) => send(Wire::Sys(s, stamp)),
        Msg::Sysex(bytes) => {
            shared.sysex_in.fetch_add(1, Relaxed);
            let queued = sysex.try_lock().ok().and_then(|mut q| {
                let seq = q.seq.wrapping_add(1);
                q.ring.push_parts(&[&seq.to_le_bytes(), bytes]).then(|| {
                    q.seq = seq;
                    seq
                })
            });
            match queued {
                Some(seq) => send(Wire::Sysex(seq)),
                None => {
                    shared.dropped.fetch_add(1, Relaxed);
                }
            }
        }
        Msg::SysexDropped => {
            shared.sysex_dropped.fetch_add(1, Relaxed);
        }
    });
    if ignored > 0 {
        shared.ignored.fetch_add(ignored as u64, Relaxed);
    }
    if queued {
        if let Some(w) = wake {
            w.notify();
        }
    }
}

/// The scanner: owns the port-list client and the connection. Runs [`Scanner::scan`] on its own
/// thread (and once at construction for a `required` device, so that it can fail the start).
pub struct Scanner {
    op: String,
    /// `midiin "name"`, for the scan's log lines.
    label: String,
    device: DeviceMatcher,
    /// Client used only to list ports; `None` while MIDI is unavailable.
    lister: Option<Lister>,
    /// The port we are connected to (name and identity) and the link to it.
    conn: Option<(Port, Link)>,
    /// JACK: our input port (and its client), created once; sources are connected to it.
    #[cfg(feature = "jack")]
    input: Option<super::jack::JackInput>,
    /// JACK: clients being closed off this thread.
    #[cfg(feature = "jack")]
    closer: super::jack::Closer,
    tx: SyncSender<Wire>,
    sysex: Arc<Mutex<SysexTx>>,
    pub shared: Arc<PortState>,
    wake: Option<Wake>,
    /// Log state, so that each change is logged once.
    logged_unavailable: Option<Unavailable>,
    scan_log: ScanLog,
    logged_connect_error: Option<String>,
}

/// What keeps a source connected: the midir connection under ALSA; under JACK nothing (the
/// connection lives in the server, between the source and our virtual input port).
#[cfg(not(feature = "jack"))]
type Link = MidiInputConnection<Callback>;
#[cfg(feature = "jack")]
type Link = ();

const REPLACED: &str = "was replaced by a new port of the same name";

/// How long a new JACK connection waits for the server's event of it, which orders it among the
/// port events (`JackLister::settle`). The event comes within a millisecond or so; only a server
/// that sends none (or is stalled) makes the scanner wait this long.
#[cfg(feature = "jack")]
const SETTLE: Duration = Duration::from_millis(500);

/// What became of the port we are connected to.
enum LinkState {
    Intact,
    /// JACK: the port is still there but our connection to it is not.
    #[cfg_attr(not(feature = "jack"), allow(dead_code))]
    Cut,
    /// A new port of the same name (our link to the old one died with it).
    Replaced,
    Gone,
}

/// What a scan found, for the constructor.
#[derive(Debug, PartialEq, Eq)]
pub enum ScanState {
    Connected,
    Missing,
    Unavailable(Unavailable),
    /// A port matched but connecting to it failed.
    Failed(String),
}

impl Scanner {
    pub fn new(
        op: &str,
        device: &Pattern,
        tx: SyncSender<Wire>,
        sysex: ring::Producer,
        wake: Option<Wake>,
    ) -> Scanner {
        Scanner {
            op: op.to_string(),
            label: format!("midiin \"{op}\""),
            device: DeviceMatcher::new(device),
            lister: None,
            conn: None,
            #[cfg(feature = "jack")]
            input: None,
            #[cfg(feature = "jack")]
            closer: Default::default(),
            tx,
            sysex: Arc::new(Mutex::new(SysexTx {
                ring: sysex,
                seq: 0,
            })),
            shared: Arc::new(PortState::default()),
            wake,
            logged_unavailable: None,
            scan_log: ScanLog::default(),
            logged_connect_error: None,
        }
    }

    fn client_name(&self, role: &str) -> String {
        // JACK limits client names (jack_client_name_size() is 64 with jackd2); operator names
        // are short identifiers, but cut to be safe. A duplicate (two daemons with the same
        // operator name) is renamed by JACK itself (`-01`).
        let mut name = format!("chopd-{}{}", self.op, role);
        name.truncate(60);
        name
    }

    /// One look at the port list: notice a vanished port, connect to a matching one.
    pub fn scan(&mut self) -> ScanState {
        if self.lister.as_ref().is_some_and(|l| !l.alive()) {
            // The JACK server went away: every client of ours is dead, the connection too. The
            // dead clients are closed off this thread (see `jack.rs`).
            let lister = self.lister.take();
            self.disconnect("is gone: the JACK server shut down");
            #[cfg(feature = "jack")]
            self.closer.retire((lister, self.input.take()));
            #[cfg(not(feature = "jack"))]
            drop(lister);
        }
        #[cfg(feature = "jack")]
        self.closer.reap(&self.op);
        if self.lister.is_none() {
            match Lister::open(&self.client_name("-scan"), true) {
                Ok(l) => {
                    if self.logged_unavailable.take().is_some() {
                        tracing::info!(op = %self.op, "midiin \"{}\": MIDI ({BACKEND}) is available now", self.op);
                    }
                    self.shared.available.store(true, Relaxed);
                    self.lister = Some(l);
                }
                Err(e) => {
                    self.shared.available.store(false, Relaxed);
                    if self.logged_unavailable.as_ref() != Some(&e) && e != Unavailable::JackClosing {
                        tracing::warn!(
                            op = %self.op,
                            "midiin \"{}\": MIDI is unavailable: {e}; the operator stays disconnected (every other operator runs) and retries every scan",
                            self.op
                        );
                        self.logged_unavailable = Some(e.clone());
                    }
                    return ScanState::Unavailable(e);
                }
            }
        }
        let ports = match &mut self.lister {
            Some(l) => {
                #[cfg(feature = "jack")]
                if self.conn.is_none() {
                    l.jack.discard();
                }
                l.ports()
            }
            None => return ScanState::Missing,
        };

        if let Some((port, _)) = &self.conn {
            let port = port.clone();
            let why = match self.link_state(&port, &ports) {
                LinkState::Intact => return ScanState::Connected,
                LinkState::Cut => {
                    // The same port, but our connection to it is gone: someone removed it
                    // (a patchbay), the port is being unregistered and goes next, or it was
                    // replugged so recently that its events were not heard yet. Connecting
                    // again tells the three apart.
                    match self.connect(&port.name) {
                        Ok((link, false)) => {
                            tracing::info!(op = %self.op, "midiin \"{}\": the connection from MIDI port \"{}\" was removed from outside; connected again", self.op, port.name);
                            self.conn = Some((port, link));
                            return ScanState::Connected;
                        }
                        Ok((link, true)) => {
                            self.disconnect(REPLACED);
                            self.connected(port, link);
                            return ScanState::Connected;
                        }
                        Err(_) => {
                            // Going: leave it to the next scan, which will no longer list it
                            // (trying to connect to it again now would only log a failure).
                            self.disconnect("disappeared");
                            return ScanState::Missing;
                        }
                    }
                }
                LinkState::Replaced => REPLACED,
                LinkState::Gone => "disappeared",
            };
            self.disconnect(why);
        }

        let names: Vec<String> = ports.iter().map(|p| p.name.clone()).collect();
        let Some(sel) = self.device.select(&names) else {
            self.shared.matches.store(0, Relaxed);
            self.scan_log
                .missing((&self.label, Some(&self.op)), "", &self.device, &names);
            return ScanState::Missing;
        };
        self.shared
            .matches
            .store(sel.candidates.len() as u64, Relaxed);
        self.scan_log
            .selected((&self.label, Some(&self.op)), &self.device, &sel);
        // The identity seen in this scan. A replug while we connect is sorted out by JACK's
        // events (before our connection: it is the port we connect to; after: the next scan
        // hears it and reconnects) or, failing those, by a new UUID at the next scan.
        let port = ports
            .iter()
            .find(|p| p.name == sel.port)
            .cloned()
            .unwrap_or(Port {
                name: sel.port.clone(),
                id: 0,
            });
        match self.connect(&sel.port) {
            // Whether the port was replugged before this connection no longer matters: we are
            // connected to the port there is now.
            Ok((link, _)) => {
                self.connected(port, link);
                ScanState::Connected
            }
            Err(e) => {
                if self.logged_connect_error.as_ref() != Some(&e) {
                    tracing::warn!(op = %self.op, "midiin \"{}\": cannot connect to MIDI port \"{}\": {e}; retrying every scan", self.op, sel.port);
                    self.logged_connect_error = Some(e.clone());
                }
                ScanState::Failed(e)
            }
        }
    }

    /// Records a new connection to `port`, counts it and logs it.
    fn connected(&mut self, port: Port, link: Link) {
        let name = port.name.clone();
        if let Ok(mut p) = self.shared.port.lock() {
            p.clone_from(&name);
        }
        self.conn = Some((port, link));
        self.shared.connected.store(true, Relaxed);
        let n = self.shared.connects.fetch_add(1, Relaxed);
        if n > 0 {
            self.shared.reconnects.fetch_add(1, Relaxed);
        }
        self.scan_log.connected();
        self.logged_connect_error = None;
        tracing::info!(
            op = %self.op,
            "midiin \"{}\": connected to MIDI port \"{name}\"{}",
            self.op,
            if n > 0 { " (reconnected)" } else { "" }
        );
    }

    /// Drops the connection (if any), tells the cook thread and logs why.
    fn disconnect(&mut self, why: &str) {
        let Some((port, link)) = self.conn.take() else {
            return;
        };
        // ALSA: closing the connection also closes its client (midir owns one per connection).
        // JACK: the server removed the connection with the port; our input port stays.
        #[allow(clippy::drop_non_drop, dropping_copy_types)]
        drop(link);
        self.shared.connected.store(false, Relaxed);
        self.shared.epoch.fetch_add(1, Relaxed);
        if let Ok(mut p) = self.shared.port.lock() {
            p.clear();
        }
        // Blocking send: only waits when the cook thread has stopped folding (queue full), and
        // fails at once when the operator is gone.
        let _ = self.tx.send(Wire::Disconnected);
        tracing::warn!(
            op = %self.op,
            "midiin \"{}\": MIDI port \"{}\" {why}; disconnected, will reconnect when it is back",
            self.op,
            port.name
        );
    }

    /// What became of the port we are connected to, judged from this scan's port list: under
    /// ALSA by its identity alone (the connection lives and dies with midir's client); under
    /// JACK first by whether it was unregistered since we connected (its UUID may be back with
    /// a new port), then by whether the server still holds our connection to it.
    fn link_state(&mut self, port: &Port, ports: &[Port]) -> LinkState {
        let gone = || {
            if ports.iter().any(|p| p.name == port.name) {
                LinkState::Replaced
            } else {
                LinkState::Gone
            }
        };
        #[cfg(feature = "jack")]
        if let Some(l) = &mut self.lister {
            if l.jack.unregistered(port.id) == super::jack::Heard::Unregistered {
                return gone();
            }
        }
        if !ports.contains(port) {
            return gone();
        }
        #[cfg(feature = "jack")]
        {
            let (Some(l), Some(input)) = (&self.lister, &self.input) else {
                return LinkState::Gone;
            };
            if !l.jack.linked(input.port_name(), &port.name) {
                return LinkState::Cut;
            }
        }
        LinkState::Intact
    }

    /// JACK: connects `port` to our virtual input port, creating that port the first time.
    /// Also says whether JACK's events show that `port` was unregistered (replugged) before
    /// this connection was made, since the last look at them.
    #[cfg(feature = "jack")]
    fn connect(&mut self, port: &str) -> Result<(Link, bool), String> {
        if self.input.is_none() {
            // A name no other client has (JACK would rename a duplicate; the port's real name
            // is read back in any case): operator, process and a per-process counter.
            static N: AtomicU64 = AtomicU64::new(0);
            let mut client = format!("chopd-{}", self.op);
            client.truncate(40);
            let client = format!(
                "{client}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Relaxed)
            );
            let mut cb = Callback::new(self);
            let input =
                super::jack::JackInput::open(&client, "in", move |t, b| on_midi(t, b, &mut cb))?;
            self.input = Some(input);
        }
        let (Some(l), Some(input)) = (&mut self.lister, &self.input) else {
            return Err("MIDI is unavailable".into());
        };
        let ours = input.port_name();
        let made = l.jack.connect(port, ours)?;
        let replugged = made && l.jack.settle(port, ours, SETTLE) == super::jack::Heard::Unregistered;
        Ok(((), replugged))
    }

    #[cfg(not(feature = "jack"))]
    fn connect(&mut self, port: &str) -> Result<(Link, bool), String> {
        // midir consumes its client on connect, so every connection gets a client of its own.
        let mi = open(&self.client_name("")).map_err(|e| e.to_string())?;
        let p = mi
            .ports()
            .into_iter()
            .find(|p| mi.port_name(p).is_ok_and(|n| n == port))
            .ok_or_else(|| "the port vanished while connecting".to_string())?;
        let cb = Callback::new(self);
        mi.connect(&p, "in", on_midi, cb)
            .map(|link| (link, false))
            .map_err(|e| e.to_string())
    }

    /// Scans (at once when `scan_first`) and then every `interval` until `stop` fires or its
    /// sender is dropped, then closes the connection. Runs on the scanner thread.
    pub fn run(mut self, interval: Duration, scan_first: bool, stop: Receiver<()>) {
        if scan_first {
            self.scan();
        }
        // A stop message or the operator's end (sender dropped) ends the loop.
        while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(interval) {
            self.scan();
        }
        if self.conn.take().is_some() {
            self.shared.connected.store(false, Relaxed);
        }
        // Close our clients, waiting a bounded time (the daemon exits after this).
        #[cfg(feature = "jack")]
        {
            self.closer.retire((self.lister.take(), self.input.take()));
            self.closer.finish(&self.op);
        }
    }
}

fn quoted_list(names: &[String]) -> String {
    if names.is_empty() {
        return "none".to_string();
    }
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(device: &str, ports: &[&str]) -> Option<Selection> {
        let ports: Vec<String> = ports.iter().map(|s| s.to_string()).collect();
        DeviceMatcher::new(&Pattern::new(device).unwrap()).select(&ports)
    }

    const ALSA: &[&str] = &[
        "Midi Through:Midi Through Port-0 14:0",
        "Launch Control XL:Launch Control XL MIDI 1 20:0",
        "nanoKONTROL2:nanoKONTROL2 MIDI 1 24:0",
        "Launchpad Mini:Launchpad Mini MIDI 1 28:0",
    ];

    #[test]
    fn address_is_stripped_only_when_numeric() {
        assert_eq!(without_address("a:b c 20:0"), "a:b c");
        assert_eq!(without_address("chopd-src:out"), "chopd-src:out");
        assert_eq!(without_address("x 20:y"), "x 20:y");
    }

    #[test]
    fn exact_match_with_or_without_alsa_address() {
        let s = sel("Launch Control XL:Launch Control XL MIDI 1", ALSA).unwrap();
        assert_eq!(s.port, ALSA[1]);
        assert_eq!(s.level, Level::Exact);
        let s = sel("nanoKONTROL2:nanoKONTROL2 MIDI 1 24:0", ALSA).unwrap();
        assert_eq!((s.port.as_str(), s.level), (ALSA[2], Level::Exact));
    }

    #[test]
    fn exact_beats_partial() {
        let ports = ["synth:out", "synth:out2", "bigsynth:out"];
        let s = sel("synth:out", &ports).unwrap();
        assert_eq!(s.port, "synth:out");
        assert_eq!(s.level, Level::Exact);
        assert!(!s.ambiguous());
    }

    #[test]
    fn partial_match_is_case_insensitive_and_reports_ambiguity() {
        let s = sel("nanokontrol", ALSA).unwrap();
        assert_eq!((s.port.as_str(), s.level), (ALSA[2], Level::Partial));
        let s = sel("Launch", ALSA).unwrap();
        assert!(s.ambiguous());
        assert_eq!(s.candidates, [ALSA[1], ALSA[3]]);
        // First in name order.
        assert_eq!(s.port, ALSA[1]);
        // A literal with spaces is one string, not three terms.
        let s = sel("Launch Control", ALSA).unwrap();
        assert_eq!((s.port.as_str(), s.candidates.len()), (ALSA[1], 1));
    }

    #[test]
    fn patterns_match_whole_names() {
        let s = sel("nano*", ALSA).unwrap();
        assert_eq!((s.port.as_str(), s.level), (ALSA[2], Level::Pattern));
        // Pattern beats partial: "Launch*" matches both Launch ports as a pattern.
        let s = sel("Launch*", ALSA).unwrap();
        assert_eq!((s.level, s.candidates.len()), (Level::Pattern, 2));
        // Spaces inside a wildcard term.
        let s = sel("Launch Control*", ALSA).unwrap();
        assert_eq!(
            (s.port.as_str(), s.level, s.candidates.len()),
            (ALSA[1], Level::Pattern, 1)
        );
        // Term lists with exclusions.
        let s = sel("* ^Midi* ^Launch*", ALSA).unwrap();
        assert_eq!((s.port.as_str(), s.candidates.len()), (ALSA[2], 1));
        // A wildcard pattern is never a substring match.
        assert_eq!(sel("Control*", ALSA), None);
    }

    #[test]
    fn nothing_matches() {
        assert_eq!(sel("Korg", ALSA), None);
        assert_eq!(sel("Korg", &[]), None);
    }

    #[test]
    fn jack_names() {
        let ports = [
            "chopd-test-src:out",
            "a2j:Launch Control XL [20] (capture): Launch Control XL MIDI 1",
        ];
        let s = sel("chopd-test-src", &ports).unwrap();
        assert_eq!((s.port.as_str(), s.level), (ports[0], Level::Partial));
        let s = sel("*Launch Control XL*", &ports).unwrap();
        assert_eq!(s.port, ports[1]);
    }
}
