//! The port lister of the `jack` build, on libjack directly (midir hides its JACK client).
//!
//! Two things midir cannot tell and hot-plug needs: a port's identity (a port that vanishes and
//! comes back under the same name between two scans is a new port, with a new UUID, and our
//! connection to the old one is gone), and the JACK server shutting down (every client, ours
//! included, is dead then and must be reopened when the server is back).
//!
//! It also makes the connections: under JACK, MIDI In owns one virtual input port for its whole
//! life and the lister connects each source to it (`jack_connect` works between any two ports).
//! A reconnect is then one new connection, not a new client: closing a client and opening
//! another a moment later (what midir's `connect` needs) sometimes left the new client never
//! woken by jackd on this machine under load ("client … was not finished, state = Triggered"
//! every period), deaf for good.
//!
//! And it hears JACK's port registration and connection events, because a port's UUID cannot
//! tell a replug: JACK2 gives a port registered in the slot another one just left that port's
//! UUID again (it is derived from the slot), so a device unplugged and plugged back between two
//! scans looks unchanged but for our connection to it, which JACK removed with the old port —
//! exactly what a connection removed from outside looks like. Only the unregistration says
//! which it was; see [`JackLister::unregistered`] and [`JackLister::settle`].
//!
//! Only the scanner thread uses a [`JackLister`]. It registers no ports and has no process
//! callback, so activating it (JACK only delivers events to an active client) does not put it in
//! the server's realtime graph: it costs nothing per period.
//!
//! # libjack's threads
//! libjack runs our callbacks on threads of its own and, when a client is deactivated or closed,
//! stops those threads with `pthread_cancel` in *asynchronous* mode: the thread dies at whatever
//! instruction it is at. Code of ours cut off half way can leave a lock taken or a channel slot
//! claimed but never filled (the cook thread's `try_recv` then waits for that slot for ever), or
//! malloc's arena lock held (every later allocation in it hangs). So every callback of ours runs
//! [`uncancellable`]: a cancel that arrives meanwhile takes effect when the callback is done.
//! The MIDI input is a client of ours too ([`JackInput`], not midir's, whose callback allocates
//! on libjack's realtime thread), and clients are closed on threads of their own ([`Closer`]):
//! closing one joins libjack's threads and talks to the server, and after a server crash that
//! can take long or never end; the scanner does not wait for it.

use std::collections::VecDeque;
use std::ffi::{c_int, c_void, CStr, CString};
use std::mem::ManuallyDrop;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Mutex, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use jack_sys as j;

use super::cancel::uncancellable;

/// JACK's type name for MIDI ports.
pub(crate) const MIDI_TYPE: &CStr = c"8 bit raw midi";

/// Events between two scans. A scan interval sees a handful (a replug is two or three); a
/// patchbay session rewiring everything at once may see hundreds. Beyond this they are lost and
/// the lister says so ([`Heard::Lost`]).
const NOTES: usize = 4096;

/// An event from JACK's notification thread, in the order the server sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Note {
    /// The port in this slot was unregistered.
    Unregistered(j::jack_port_id_t),
    /// A connection from the first port to the second was made.
    Connected(j::jack_port_id_t, j::jack_port_id_t),
}

/// What JACK's callbacks touch: boxed so its address stays put for them, and only atomics and a
/// bounded queue that never blocks the sender (the callbacks run on JACK's thread).
struct Events {
    notes: SyncSender<Note>,
    lost: AtomicBool,
}

impl Events {
    fn push(&self, note: Note) {
        match self.notes.try_send(note) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => self.lost.store(true, Ordering::Relaxed),
        }
    }
}

/// Whether the port we are connected to was unregistered since we connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heard {
    No,
    Unregistered,
    /// Events were lost (or none can be heard, the client could not be activated): nothing can
    /// be said, and the scanner falls back on the UUID and the connection.
    Lost,
}

pub struct JackLister {
    /// First: closed before `events` is freed.
    client: Client,
    events: Box<Events>,
    notes: Receiver<Note>,
    /// Events taken from the queue and not yet judged (those after a connection's own event).
    heard: VecDeque<Note>,
    /// Activated, so that events are delivered; false only for `chopd midi-ports`'s lister or
    /// when the server refused.
    listening: bool,
}

// SAFETY: the client pointer is used from one thread at a time (the scanner owns the lister);
// libjack's client calls may be made from any thread.
unsafe impl Send for JackLister {}

/// The callbacks' argument: the lister's boxed `Events`, which outlives the client (the client
/// is closed before the box is freed, see `Drop`).
unsafe fn events<'a>(arg: *mut c_void) -> &'a Events {
    // SAFETY: see above.
    unsafe { &*(arg as *const Events) }
}

/// Every client of ours: its `dead` flag (boxed, see [`Client`]).
unsafe extern "C" fn on_shutdown(arg: *mut c_void) {
    uncancellable(|| {
        // SAFETY: `arg` is the client's boxed flag, freed only after `jack_client_close`.
        let dead = unsafe { &*(arg as *const AtomicBool) };
        if !dead.swap(true, Ordering::Relaxed) {
            DEAD.fetch_add(1, Ordering::Relaxed);
        }
    });
}

unsafe extern "C" fn on_registration(port: j::jack_port_id_t, register: c_int, arg: *mut c_void) {
    if register == 0 {
        // SAFETY: `arg` is the lister's `Events` (see `events`).
        uncancellable(|| unsafe { events(arg) }.push(Note::Unregistered(port)));
    }
}

unsafe extern "C" fn on_connect(
    a: j::jack_port_id_t,
    b: j::jack_port_id_t,
    connect: c_int,
    arg: *mut c_void,
) {
    if connect != 0 {
        // SAFETY: `arg` is the lister's `Events` (see `events`).
        uncancellable(|| unsafe { events(arg) }.push(Note::Connected(a, b)));
    }
}

/// libjack prints to stderr whenever a client cannot reach the server (every scan while jackd is
/// down): send those lines to the log at debug level instead. Its threads call this too (a
/// server that dies makes each of them say so), hence `uncancellable`: the log takes locks.
pub fn quiet() {
    use std::sync::Once;
    static ONCE: Once = Once::new();
    unsafe extern "C" fn to_log(msg: *const std::ffi::c_char) {
        if msg.is_null() {
            return;
        }
        uncancellable(|| {
            // SAFETY: libjack passes a NUL-terminated string valid for the duration of the call.
            let text = unsafe { CStr::from_ptr(msg) };
            tracing::debug!(target: "chopd::jack", "{}", text.to_string_lossy());
        })
    }
    ONCE.call_once(|| {
        // SAFETY: both functions only store the pointer of a function that lives for the whole
        // program; no JACK client is needed.
        unsafe {
            j::jack_set_error_function(Some(to_log));
            j::jack_set_info_function(Some(to_log));
        }
    });
}

/// Serialises opening and closing our JACK clients, process-wide. libjack's `jack_client_open`
/// after a server died closes and frees every client still open from that server (JACK2's
/// library cleanup); a close of ours racing it, or coming after it, would free a client twice.
/// So a client is opened only when no client of ours is dead and unclosed ([`DEAD`]) and no
/// close is under way: the scanner then tries again at its next scan, never waits.
static LIFECYCLE: Mutex<()> = Mutex::new(());

/// Clients of ours that the server shut down and that are not closed yet.
static DEAD: AtomicUsize = AtomicUsize::new(0);

/// Why a client could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unopened {
    NoServer,
    /// Clients of a server that shut down are still being closed (or their close got stuck:
    /// then for good, see [`Closer::reap`]).
    Closing,
}

/// One JACK client of ours. It is the first field of its owner, so that it is closed (on drop)
/// before the callbacks' arguments, the owner's later fields, are freed.
pub(crate) struct Client {
    pub(crate) ptr: *mut j::jack_client_t,
    /// Set by the shutdown callback: the server is gone, the client must be closed and opened
    /// anew.
    dead: Box<AtomicBool>,
}

impl Client {
    pub(crate) fn open(name: &str) -> Result<Client, Unopened> {
        let c_name = CString::new(name).map_err(|_| Unopened::NoServer)?;
        if DEAD.load(Ordering::Relaxed) > 0 {
            return Err(Unopened::Closing);
        }
        let _open = match LIFECYCLE.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return Err(Unopened::Closing),
        };
        let mut status: j::jack_status_t = 0;
        // SAFETY: a valid C string and a status out-parameter; NoStartServer keeps libjack from
        // spawning jackd.
        let ptr =
            unsafe { j::jack_client_open(c_name.as_ptr(), j::JackNoStartServer, &mut status) };
        if ptr.is_null() {
            return Err(Unopened::NoServer);
        }
        let dead = Box::new(AtomicBool::new(false));
        // SAFETY: the flag lives until after `jack_client_close` (Drop).
        unsafe {
            j::jack_on_shutdown(ptr, Some(on_shutdown), &*dead as *const AtomicBool as *mut _);
        }
        Ok(Client { ptr, dead })
    }

    pub(crate) fn alive(&self) -> bool {
        !self.dead.load(Ordering::Relaxed)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Blocks while another close runs. Dead clients and those of a stopped scanner are
        // dropped on a `Closer` thread; only a client that failed to start (or the lister of
        // `chopd midi-ports`) is closed where it was opened. Never on the cook thread.
        let _close = LIFECYCLE.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: opened by us and closed once; deactivates first, so no callback runs after.
        unsafe {
            j::jack_client_close(self.ptr);
        }
        if self.dead.load(Ordering::Relaxed) {
            DEAD.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl JackLister {
    /// Opens a client named `name` (never starts a server). With `listen`, the client hears
    /// port events (what the scanner needs; `chopd midi-ports` does not).
    pub fn open(name: &str, listen: bool) -> Result<JackLister, Unopened> {
        let client = Client::open(name)?;
        let (tx, notes) = mpsc::sync_channel(NOTES);
        let events = Box::new(Events {
            notes: tx,
            lost: AtomicBool::new(false),
        });
        let arg = &*events as *const Events as *mut c_void;
        let ptr = client.ptr;
        // SAFETY: the callbacks and their argument stay valid until `jack_client_close` (see
        // `Client`). Callbacks must be set before activation; activating a client without a
        // process callback only subscribes it to events.
        let listening = unsafe {
            listen
                && j::jack_set_port_registration_callback(ptr, Some(on_registration), arg) == 0
                && j::jack_set_port_connect_callback(ptr, Some(on_connect), arg) == 0
                && j::jack_activate(ptr) == 0
        };
        if listen && !listening {
            tracing::warn!(target: "chopd::jack", "JACK refused to send port events to \"{name}\": a port replaced faster than a scan is then told by its UUID alone");
        }
        Ok(JackLister {
            client,
            events,
            notes,
            heard: VecDeque::new(),
            listening,
        })
    }

    /// False once the server has shut down: the client is dead and must be reopened.
    pub fn alive(&self) -> bool {
        self.client.alive()
    }

    /// The UUID of the port in slot `id` (JACK2 keeps it for the slot's next port too).
    fn uuid_of(&self, id: j::jack_port_id_t) -> Option<u64> {
        // SAFETY: `client` is open; the port pointer comes from JACK and is only read.
        unsafe {
            let port = j::jack_port_by_id(self.client.ptr, id);
            (!port.is_null()).then(|| j::jack_port_uuid(port))
        }
    }

    /// The UUID of the port named `name`, if it exists.
    fn uuid_by_name(&self, name: &str) -> Option<u64> {
        let name = CString::new(name).ok()?;
        // SAFETY: `client` is open; a valid C string; the port pointer is only read.
        unsafe {
            let port = j::jack_port_by_name(self.client.ptr, name.as_ptr());
            (!port.is_null()).then(|| j::jack_port_uuid(port))
        }
    }

    /// Moves what the notification thread queued into `heard`; false when events were lost.
    fn take_notes(&mut self) -> bool {
        while let Ok(n) = self.notes.try_recv() {
            self.heard.push_back(n);
        }
        !self.events.lost.swap(false, Ordering::Relaxed)
    }

    /// Drops the events heard so far: while not connected none of them matters, and left in
    /// the queue they would fill it and crowd out the event of the next connection.
    pub fn discard(&mut self) {
        self.take_notes();
        self.heard.clear();
    }

    /// Was the port with UUID `uuid`, which we are connected to, unregistered since we
    /// connected (since [`settle`](Self::settle))? Consumes the events heard so far.
    pub fn unregistered(&mut self, uuid: u64) -> Heard {
        if !self.listening {
            return Heard::Lost;
        }
        let complete = self.take_notes();
        let mut heard = Heard::No;
        for n in std::mem::take(&mut self.heard) {
            if let Note::Unregistered(id) = n {
                if self.uuid_of(id) == Some(uuid) {
                    heard = Heard::Unregistered;
                }
            }
        }
        match heard {
            Heard::No if !complete => Heard::Lost,
            h => h,
        }
    }

    /// Called right after connecting `source` to our port `dest`: waits (at most `timeout`) for
    /// the event of that connection, and judges what came before it. The server sends events in
    /// order, so everything before our connection's event happened before the connection — a
    /// port of `source`'s UUID unregistered then is one we were connected to before, not the
    /// one we are connected to now. Returns whether such an unregistration was heard (the
    /// connection replaced a port that had been replugged); events after ours stay for the next
    /// [`unregistered`](Self::unregistered).
    pub fn settle(&mut self, source: &str, dest: &str, timeout: Duration) -> Heard {
        if !self.listening {
            return Heard::Lost;
        }
        let (Some(src), Some(dst)) = (self.uuid_by_name(source), self.uuid_by_name(dest)) else {
            return Heard::Lost;
        };
        let deadline = Instant::now() + timeout;
        let mut heard = Heard::No;
        let mut complete = true;
        loop {
            complete &= self.take_notes();
            while let Some(n) = self.heard.pop_front() {
                match n {
                    Note::Unregistered(id) if self.uuid_of(id) == Some(src) => {
                        heard = Heard::Unregistered;
                    }
                    Note::Connected(a, b)
                        if self.uuid_of(a) == Some(src) && self.uuid_of(b) == Some(dst) =>
                    {
                        return if complete { heard } else { Heard::Lost };
                    }
                    _ => {}
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.notes.recv_timeout(left) {
                Ok(n) => self.heard.push_back(n),
                // No event for our connection (it already existed, or the server is slow):
                // what was heard may be from before or after it.
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    return Heard::Lost
                }
            }
        }
    }

    /// MIDI output ports (what an input connects to), with their UUIDs.
    pub fn ports(&self) -> Vec<(String, u64)> {
        self.ports_of(j::JackPortIsOutput)
    }

    /// MIDI input ports (what a MIDI Out connects to), with their UUIDs.
    pub fn input_ports(&self) -> Vec<(String, u64)> {
        self.ports_of(j::JackPortIsInput)
    }

    fn ports_of(&self, flags: ::libc::c_uint) -> Vec<(String, u64)> {
        if !self.alive() {
            return Vec::new();
        }
        let mut out = Vec::new();
        // SAFETY: `client` is open; `jack_get_ports` returns NULL or a NULL-terminated array of
        // C strings that we free with `jack_free` after copying.
        unsafe {
            let list = j::jack_get_ports(
                self.client.ptr,
                ptr::null(),
                MIDI_TYPE.as_ptr(),
                flags as ::libc::c_ulong,
            );
            if list.is_null() {
                return out;
            }
            let mut i = 0;
            loop {
                let p = *list.add(i);
                if p.is_null() {
                    break;
                }
                i += 1;
                // Listed but not found by name: it is being unregistered as we look.
                let port = j::jack_port_by_name(self.client.ptr, p);
                if port.is_null() {
                    continue;
                }
                out.push((
                    CStr::from_ptr(p).to_string_lossy().into_owned(),
                    j::jack_port_uuid(port),
                ));
            }
            j::jack_free(list as *mut c_void);
        }
        out
    }
}

impl JackLister {
    /// Connects `source` to `dest` (full port names): `Ok(true)` when the connection was made
    /// now, `Ok(false)` when it existed already (no event follows then).
    pub fn connect(&self, source: &str, dest: &str) -> Result<bool, String> {
        let (src, dst) = cstrings(source, dest)?;
        // SAFETY: `client` is open; both are valid C strings.
        let rc = unsafe { j::jack_connect(self.client.ptr, src.as_ptr(), dst.as_ptr()) };
        if rc == 0 || rc == libc::EEXIST {
            Ok(rc == 0)
        } else {
            Err(format!(
                "jack_connect \"{source}\" → \"{dest}\" failed ({rc})"
            ))
        }
    }

    /// True when `source` is connected to our port `dest` (false when either is gone).
    pub fn linked(&self, dest: &str, source: &str) -> bool {
        let Ok((src, dst)) = cstrings(source, dest) else {
            return false;
        };
        if !self.alive() {
            return false;
        }
        // SAFETY: `client` is open; the port pointer comes from JACK and is only read.
        unsafe {
            let port = j::jack_port_by_name(self.client.ptr, dst.as_ptr());
            !port.is_null() && j::jack_port_connected_to(port, src.as_ptr()) != 0
        }
    }
}

fn cstrings(a: &str, b: &str) -> Result<(CString, CString), String> {
    let c = |s: &str| CString::new(s).map_err(|_| format!("port name \"{s}\" contains a NUL byte"));
    Ok((c(a)?, c(b)?))
}



/// What the input's process callback owns: boxed so its address stays put for it.
struct Input<F> {
    client: *mut j::jack_client_t,
    port: *mut j::jack_port_t,
    /// Frames per second, for event times in µs.
    rate: u64,
    /// JACK's frame time (32 bits, it wraps after a day at 48 kHz) made 64 bits: the frames
    /// counted up to the start of the last period seen, and that period's 32-bit frame time.
    frames: u64,
    last: Option<u32>,
    on_bytes: F,
}

/// JACK's realtime thread, once per period: hands each MIDI event of the period, with its
/// time (µs on JACK's frame clock, sample-accurate), to `on_bytes`. Nothing here allocates,
/// locks or blocks, and it cannot be cut off half way.
unsafe extern "C" fn process<F: FnMut(u64, &[u8])>(
    nframes: j::jack_nframes_t,
    arg: *mut c_void,
) -> c_int {
    uncancellable(|| {
        // SAFETY: `arg` is the `Input<F>` of `JackInput::open`, freed only after the client is
        // closed; only this thread touches it while the client is active.
        let input = unsafe { &mut *(arg as *mut Input<F>) };
        // SAFETY: the client is ours and open while its process callback runs.
        let now = unsafe { j::jack_last_frame_time(input.client) };
        if let Some(last) = input.last {
            input.frames += u64::from(now.wrapping_sub(last));
        }
        input.last = Some(now);
        // SAFETY: the port belongs to this client; the buffer is valid for this period.
        let buf = unsafe { j::jack_port_get_buffer(input.port, nframes) };
        if buf.is_null() {
            return;
        }
        // SAFETY: a MIDI port's buffer; each event's bytes are valid for this period.
        for i in 0..unsafe { j::jack_midi_get_event_count(buf) } {
            let mut ev = j::jack_midi_event_t::default();
            if unsafe { j::jack_midi_event_get(&mut ev, buf, i) } == 0 && !ev.buffer.is_null() {
                let at = input.frames + u64::from(ev.time);
                let us = (u128::from(at) * 1_000_000 / u128::from(input.rate)) as u64;
                (input.on_bytes)(us, unsafe { std::slice::from_raw_parts(ev.buffer, ev.size) });
            }
        }
    });
    0
}

/// MIDI In's own JACK client: one MIDI input port that the scanner connects sources to, and a
/// process callback that passes what arrives to a function of the caller's.
pub struct JackInput {
    /// First: closed (when dropped) before `_input` is freed.
    _client: Client,
    /// The port's full name (`client:port`), as JACK made it.
    name: String,
    _input: Box<dyn Send>,
}

// SAFETY: as for `JackLister`: one owner at a time, and libjack's calls work from any thread.
unsafe impl Send for JackInput {}

struct SendInput<F>(Input<F>);
// SAFETY: the client and port pointers are only used by the process callback, on JACK's thread.
unsafe impl<F: Send> Send for SendInput<F> {}

impl JackInput {
    /// Opens client `client` with the MIDI input `port` and starts it; `on_bytes` runs on JACK's
    /// realtime thread for every MIDI event, with its time in µs, and must neither block nor
    /// allocate.
    pub fn open<F>(client: &str, port: &str, on_bytes: F) -> Result<JackInput, String>
    where
        F: FnMut(u64, &[u8]) + Send + 'static,
    {
        quiet();
        let c_port = CString::new(port).map_err(|_| format!("port name \"{port}\" contains a NUL byte"))?;
        let client = Client::open(client).map_err(|e| match e {
            Unopened::NoServer => "no JACK server is running".to_string(),
            Unopened::Closing => "the clients of a stopped JACK server are still being closed".to_string(),
        })?;
        // SAFETY: `client` is open; the port name and type are valid C strings.
        let p = unsafe {
            j::jack_port_register(
                client.ptr,
                c_port.as_ptr(),
                MIDI_TYPE.as_ptr(),
                j::JackPortIsInput as ::libc::c_ulong,
                0,
            )
        };
        if p.is_null() {
            return Err(format!("cannot register the JACK input port \"{port}\""));
        }
        // SAFETY: `client` is open.
        let rate = unsafe { j::jack_get_sample_rate(client.ptr) }.max(1) as u64;
        let mut input = Box::new(SendInput(Input {
            client: client.ptr,
            port: p,
            rate,
            frames: 0,
            last: None,
            on_bytes,
        }));
        let arg = &mut input.0 as *mut Input<F> as *mut c_void;
        // SAFETY: the callback's argument lives until after `jack_client_close` (see `Client`);
        // the callback is set before activation, as JACK requires.
        let started = unsafe {
            j::jack_set_process_callback(client.ptr, Some(process::<F>), arg) == 0
                && j::jack_activate(client.ptr) == 0
        };
        if !started {
            return Err("JACK refused to start the input client".into());
        }
        // SAFETY: a registered port's name is a C string owned by JACK.
        let name = unsafe { CStr::from_ptr(j::jack_port_name(p)) }
            .to_string_lossy()
            .into_owned();
        Ok(JackInput {
            _client: client,
            name,
            _input: input,
        })
    }

    pub fn port_name(&self) -> &str {
        &self.name
    }
}

/// How long closing a client may take before it is abandoned. A close takes a few server round
/// trips (milliseconds), or returns at once when the server is gone; one that lasts seconds is
/// stuck in libjack and will not end.
pub const CLOSE_BOUND: Duration = Duration::from_secs(2);

/// Closes abandoned so far in this process (each is logged once).
static ABANDONED: AtomicU64 = AtomicU64::new(0);

/// JACK clients being closed, each on a thread of its own, so that whoever drops them (the
/// scanner) never waits for libjack.
#[derive(Default)]
pub struct Closer {
    pending: Vec<(Instant, JoinHandle<()>)>,
}

impl Closer {
    /// Closes `clients` (drops them) on a new thread and returns at once.
    pub fn retire<T: Send + 'static>(&mut self, clients: T) {
        // Should the thread not start, the closure is dropped unrun and the clients are left
        // open: better than waiting for them here.
        let clients = ManuallyDrop::new(clients);
        let spawned = std::thread::Builder::new()
            .name("jack-close".into())
            .spawn(move || drop(ManuallyDrop::into_inner(clients)));
        match spawned {
            Ok(t) => self.pending.push((Instant::now(), t)),
            Err(e) => {
                tracing::warn!(target: "chopd::jack", "cannot start a thread to close JACK clients ({e}); they are left open");
            }
        }
    }

    /// Forgets the closes that finished, and abandons (logs and counts, once each) those that
    /// have taken longer than [`CLOSE_BOUND`]: their thread is left to itself.
    pub fn reap(&mut self, op: &str) {
        self.pending.retain(|(since, t)| {
            if t.is_finished() {
                return false;
            }
            if since.elapsed() < CLOSE_BOUND {
                return true;
            }
            let n = ABANDONED.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(op = %op, "midiin \"{op}\": closing a JACK client has not finished after {CLOSE_BOUND:?} (stuck in libjack); abandoned ({n} so far). Every other operator runs; no JACK client can be opened while it is stuck, so MIDI stays unavailable until chopd restarts");
            false
        });
    }

    /// Waits for the pending closes, each at most until its bound, then reaps: for the end of
    /// the scanner thread, so that the daemon exits with its clients closed.
    pub fn finish(&mut self, op: &str) {
        for (since, t) in &self.pending {
            while !t.is_finished() && since.elapsed() < CLOSE_BOUND {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        self.reap(op);
    }
}
