//! The one MIDI sender, shared by the `midiout` kind and `[destinations.NAME] type = "midi"`:
//! a bounded lock-free queue from the cook thread to the device, and a thread of its own that
//! finds the device (the `device` pattern, matched as MIDI In matches it), connects, notices a
//! vanished or replugged port and reconnects (hot-plug).
//!
//! Under JACK the sender owns one output port for its life (`chopd-NAME-PID-N:out`) whose
//! process callback writes the queue (`jack.rs`); the thread only scans and connects. Under
//! ALSA the thread also writes: the cook thread wakes it after queuing a frame's messages.
//! The cook thread never waits for either: a full queue drops the message and counts it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[cfg(not(feature = "jack"))]
use super::state::Clock;
use super::state::{OutState, BPM};
use crate::chop::midiin::ports::{DeviceMatcher, ScanLog, Unavailable, BACKEND};
use crate::chop::midiin::ring::{ring, Consumer, Producer};
use crate::pattern::Pattern;

/// Bytes queued towards the device. A frame of a full control surface (a few hundred
/// controller and LED messages, 3 bytes + 2 each) fits many times over; SysEx up to half of it.
pub const QUEUE_BYTES: usize = 64 * 1024;

/// After a new JACK connection, how long the thread waits before telling the cook thread (which
/// then sends the device its state): JACK takes a few periods to route a new connection, and
/// what is written before that is lost.
#[cfg(feature = "jack")]
const ROUTE: Duration = Duration::from_millis(50);

/// The cook thread's end of a sender.
pub struct MidiSender {
    label: String,
    tx: Producer,
    pub shared: Arc<OutState>,
    stop: Arc<AtomicBool>,
    thread: std::thread::Thread,
    /// `connects` when the cook thread last sent the device its state.
    seen_connects: u64,
    logged_drop: bool,
}

impl MidiSender {
    /// Starts the sender thread; `label` names the owner in log lines (`midiout "leds"`).
    pub fn new(label: &str, device: &Pattern, scan: Duration) -> Result<MidiSender, String> {
        let (tx, rx) = ring(QUEUE_BYTES);
        let shared = Arc::new(OutState::default());
        shared.bpm.store(120f32.to_bits(), Relaxed);
        let stop = Arc::new(AtomicBool::new(false));
        let mut out = Out::new(label, device, Arc::new(Mutex::new(rx)), shared.clone());
        let stop2 = stop.clone();
        let handle = std::thread::Builder::new()
            .name(format!("midiout-{label}"))
            .spawn(move || out.run(scan, &stop2))
            .map_err(|e| format!("{label}: cannot start the MIDI sender: {e}"))?;
        let thread = handle.thread().clone();
        crate::chop::midiin::register_thread(handle);
        Ok(MidiSender {
            label: label.to_string(),
            tx,
            shared,
            stop,
            thread,
            seen_connects: 0,
            logged_drop: false,
        })
    }

    /// Queues one message; false (counted, logged once) when the queue is full or the message
    /// is longer than it can take.
    pub fn send(&mut self, m: &[u8]) -> bool {
        if self.tx.push(m) {
            return true;
        }
        let (what, counter) = if m.len() > self.tx.max_message() {
            ("is longer than the queue", &self.shared.too_long)
        } else {
            ("found the queue full", &self.shared.dropped)
        };
        counter.fetch_add(1, Relaxed);
        if !self.logged_drop {
            self.logged_drop = true;
            tracing::warn!(
                "{}: a MIDI message ({} bytes) {what}: dropped (counted in `dropped`/`too_long`; logged once)",
                self.label,
                m.len()
            );
        }
        false
    }

    /// Wakes the sender thread after a frame's messages (the ALSA writer sends them then).
    pub fn flush(&self) {
        if !cfg!(feature = "jack") {
            self.thread.unpark();
        }
    }

    /// True once after every new connection: the device must be sent its state.
    pub fn take_connected(&mut self) -> bool {
        let c = self.shared.connects.load(Relaxed);
        let new = c != self.seen_connects;
        self.seen_connects = c;
        new
    }

    pub fn set_clock(&self, on: bool, bpm: f64) {
        self.shared
            .bpm
            .store((bpm.clamp(BPM.0, BPM.1) as f32).to_bits(), Relaxed);
        self.shared.clock_on.store(on, Relaxed);
        self.thread.unpark();
    }

    /// The Info CHOP's extras of a MIDI Out.
    pub fn extras(&self, out: &mut Vec<(&'static str, f64)>) {
        let s = &*self.shared;
        let f = |a: &AtomicU64| a.load(Relaxed) as f64;
        let b = |a: &AtomicBool| f64::from(u8::from(a.load(Relaxed)));
        out.extend([
            ("connected", b(&s.connected)),
            ("midi_available", b(&s.available)),
            ("messages_out", f(&s.messages)),
            ("dropped", f(&s.dropped)),
            ("too_long", f(&s.too_long)),
            ("sysex_out", f(&s.sysex_out)),
            ("clock_ticks", f(&s.clock_ticks)),
            ("connects", f(&s.connects)),
            ("reconnects", f(&s.reconnects)),
            ("matches", f(&s.matches)),
        ]);
    }
}

impl Drop for MidiSender {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        self.thread.unpark();
    }
}

#[cfg(feature = "jack")]
type Lister = crate::chop::midiin::jack::JackLister;
#[cfg(not(feature = "jack"))]
type Lister = midir::MidiOutput;

/// The sender thread's state.
struct Out {
    label: String,
    device: DeviceMatcher,
    lister: Option<Lister>,
    /// The port we are connected to.
    conn: Option<String>,
    queue: Arc<Mutex<Consumer>>,
    shared: Arc<OutState>,
    #[cfg(feature = "jack")]
    output: Option<super::jack::JackOutput>,
    #[cfg(feature = "jack")]
    closer: crate::chop::midiin::jack::Closer,
    #[cfg(not(feature = "jack"))]
    link: Option<midir::MidiOutputConnection>,
    #[cfg(not(feature = "jack"))]
    clock: Clock,
    logged_unavailable: Option<Unavailable>,
    scan_log: ScanLog,
    logged_error: Option<String>,
}

impl Out {
    fn new(label: &str, device: &Pattern, queue: Arc<Mutex<Consumer>>, shared: Arc<OutState>) -> Out {
        Out {
            label: label.to_string(),
            device: DeviceMatcher::new(device),
            lister: None,
            conn: None,
            queue,
            shared,
            #[cfg(feature = "jack")]
            output: None,
            #[cfg(feature = "jack")]
            closer: Default::default(),
            #[cfg(not(feature = "jack"))]
            link: None,
            #[cfg(not(feature = "jack"))]
            clock: Clock::default(),
            logged_unavailable: None,
            scan_log: ScanLog::default(),
            logged_error: None,
        }
    }

    fn client_name(&self, role: &str) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        let mut base: String = self
            .label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        base.truncate(32);
        format!("chopd-{base}{role}-{}-{}", std::process::id(), N.fetch_add(1, Relaxed))
    }

    fn run(&mut self, scan: Duration, stop: &AtomicBool) {
        let mut next_scan = Instant::now();
        #[cfg(not(feature = "jack"))]
        let mut last = Instant::now();
        while !stop.load(Relaxed) {
            let now = Instant::now();
            if now >= next_scan {
                self.scan();
                next_scan = Instant::now() + scan;
            }
            #[allow(unused_mut)]
            let mut wait = next_scan.saturating_duration_since(Instant::now());
            #[cfg(not(feature = "jack"))]
            {
                let now = Instant::now();
                let us = now.duration_since(last).as_micros().min(u128::from(u32::MAX)) as u32;
                last = now;
                self.write_alsa(us);
                if self.clock.running() {
                    wait = wait.min(Duration::from_millis(1));
                }
            }
            std::thread::park_timeout(wait);
        }
        if self.conn.take().is_some() {
            self.shared.connected.store(false, Relaxed);
        }
        #[cfg(feature = "jack")]
        {
            self.closer.retire((self.lister.take(), self.output.take()));
            self.closer.finish(&self.label);
        }
    }

    /// ALSA: writes what is queued, and the clock ticks due in the last `us` microseconds.
    #[cfg(not(feature = "jack"))]
    fn write_alsa(&mut self, us: u32) {
        let mut ticks = [0u32; 64];
        let (edge, n) = self.clock.period(&self.shared, 1e6, us, &mut ticks);
        let Some(link) = self.link.as_mut() else {
            // Nothing to send to: what is queued is dropped, as a port with nothing connected
            // drops it under JACK. The state is sent again on connection.
            if let Ok(mut q) = self.queue.lock() {
                while q.pop_with(|_| true).is_some() {}
            }
            return;
        };
        if let Some(b) = edge {
            let _ = link.send(&[b]);
        }
        if let Ok(mut q) = self.queue.lock() {
            while q
                .pop_with(|m| {
                    if link.send(m).is_ok() {
                        self.shared.count_sent(m);
                    }
                    true
                })
                .is_some()
            {}
        }
        for _ in 0..n {
            if link.send(&[0xF8]).is_ok() {
                self.shared.clock_ticks.fetch_add(1, Relaxed);
            }
        }
    }

    fn open_lister(&mut self) -> Result<(), Unavailable> {
        if self.lister.is_some() {
            return Ok(());
        }
        #[cfg(feature = "jack")]
        {
            use crate::chop::midiin::jack::{quiet, JackLister, Unopened};
            quiet();
            let l = JackLister::open(&self.client_name("-scan"), false).map_err(|e| match e {
                Unopened::NoServer => Unavailable::NoJack,
                Unopened::Closing => Unavailable::JackClosing,
            })?;
            self.lister = Some(l);
        }
        #[cfg(not(feature = "jack"))]
        {
            if !std::path::Path::new("/dev/snd/seq").exists() {
                return Err(Unavailable::NoSequencer("/dev/snd/seq"));
            }
            let l = midir::MidiOutput::new(&self.client_name("-scan"))
                .map_err(|e| Unavailable::Alsa(e.to_string()))?;
            self.lister = Some(l);
        }
        Ok(())
    }

    fn ports(&self) -> Vec<String> {
        let Some(l) = &self.lister else {
            return Vec::new();
        };
        #[cfg(feature = "jack")]
        return l.input_ports().into_iter().map(|(n, _)| n).collect();
        #[cfg(not(feature = "jack"))]
        return l.ports().iter().filter_map(|p| l.port_name(p).ok()).collect();
    }

    /// Still connected to `port`, judged from this scan's port list.
    fn linked(&self, port: &str, ports: &[String]) -> bool {
        if !ports.iter().any(|p| p == port) {
            return false;
        }
        #[cfg(feature = "jack")]
        {
            let (Some(l), Some(o)) = (&self.lister, &self.output) else {
                return false;
            };
            l.linked(o.port_name(), port)
        }
        #[cfg(not(feature = "jack"))]
        self.link.is_some()
    }

    fn scan(&mut self) {
        #[cfg(feature = "jack")]
        if self.lister.as_ref().is_some_and(|l| !l.alive())
            || self.output.as_ref().is_some_and(|o| !o.alive())
        {
            let lister = self.lister.take();
            self.disconnect("is gone: the JACK server shut down");
            self.closer.retire((lister, self.output.take()));
        }
        #[cfg(feature = "jack")]
        self.closer.reap(&self.label);
        match self.open_lister() {
            Ok(()) => {
                if self.logged_unavailable.take().is_some() {
                    tracing::info!("{}: MIDI ({BACKEND}) is available now", self.label);
                }
                self.shared.available.store(true, Relaxed);
            }
            Err(e) => {
                self.shared.available.store(false, Relaxed);
                if self.logged_unavailable.as_ref() != Some(&e) && e != Unavailable::JackClosing {
                    tracing::warn!("{}: MIDI is unavailable: {e}; nothing is sent (every other operator runs) and it retries every scan", self.label);
                    self.logged_unavailable = Some(e);
                }
                return;
            }
        }
        let ports = self.ports();
        if let Some(port) = self.conn.clone() {
            if self.linked(&port, &ports) {
                return;
            }
            let why = if ports.contains(&port) {
                "lost its connection (replugged, or cut from outside)"
            } else {
                "disappeared"
            };
            self.disconnect(why);
        }
        let Some(sel) = self.device.select(&ports) else {
            self.shared.matches.store(0, Relaxed);
            self.scan_log
                .missing((&self.label, None), "input ", &self.device, &ports);
            return;
        };
        self.shared.matches.store(sel.candidates.len() as u64, Relaxed);
        self.scan_log
            .selected((&self.label, None), &self.device, &sel);
        match self.connect(&sel.port) {
            Ok(()) => {
                self.conn = Some(sel.port.clone());
                self.shared.connected.store(true, Relaxed);
                let n = self.shared.connects.fetch_add(1, Relaxed);
                if n > 0 {
                    self.shared.reconnects.fetch_add(1, Relaxed);
                }
                self.scan_log.connected();
                self.logged_error = None;
                tracing::info!(
                    "{}: connected to MIDI port \"{}\"{}",
                    self.label,
                    sel.port,
                    if n > 0 { " (reconnected)" } else { "" }
                );
            }
            Err(e) => {
                if self.logged_error.as_ref() != Some(&e) {
                    tracing::warn!("{}: cannot connect to MIDI port \"{}\": {e}; retrying every scan", self.label, sel.port);
                    self.logged_error = Some(e);
                }
            }
        }
    }

    fn disconnect(&mut self, why: &str) {
        let Some(port) = self.conn.take() else {
            return;
        };
        #[cfg(not(feature = "jack"))]
        {
            self.link = None;
        }
        self.shared.connected.store(false, Relaxed);
        tracing::warn!(
            "{}: MIDI port \"{port}\" {why}; disconnected, will reconnect when it is back",
            self.label
        );
    }

    #[cfg(feature = "jack")]
    fn connect(&mut self, port: &str) -> Result<(), String> {
        if self.output.is_none() {
            let name = self.client_name("");
            let o = super::jack::JackOutput::open(&name, self.queue.clone(), self.shared.clone())?;
            self.output = Some(o);
        }
        let (Some(l), Some(o)) = (&self.lister, &self.output) else {
            return Err("MIDI is unavailable".into());
        };
        l.connect(o.port_name(), port)?;
        std::thread::sleep(ROUTE);
        Ok(())
    }

    #[cfg(not(feature = "jack"))]
    fn connect(&mut self, port: &str) -> Result<(), String> {
        let mo = midir::MidiOutput::new(&self.client_name("")).map_err(|e| e.to_string())?;
        let p = mo
            .ports()
            .into_iter()
            .find(|p| mo.port_name(p).is_ok_and(|n| n == port))
            .ok_or_else(|| "the port vanished while connecting".to_string())?;
        let link = mo.connect(&p, "out").map_err(|e| e.to_string())?;
        self.link = Some(link);
        Ok(())
    }
}
