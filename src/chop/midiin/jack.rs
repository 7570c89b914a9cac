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

use std::collections::VecDeque;
use std::ffi::{c_int, c_void, CStr, CString};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use jack_sys as j;

/// JACK's type name for MIDI ports.
const MIDI_TYPE: &CStr = c"8 bit raw midi";

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
    dead: AtomicBool,
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
    client: *mut j::jack_client_t,
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

unsafe extern "C" fn on_shutdown(arg: *mut c_void) {
    // SAFETY: `arg` is the lister's `Events` (see `events`).
    unsafe { events(arg) }.dead.store(true, Ordering::Relaxed);
}

unsafe extern "C" fn on_registration(port: j::jack_port_id_t, register: c_int, arg: *mut c_void) {
    if register == 0 {
        // SAFETY: `arg` is the lister's `Events` (see `events`).
        unsafe { events(arg) }.push(Note::Unregistered(port));
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
        unsafe { events(arg) }.push(Note::Connected(a, b));
    }
}

impl JackLister {
    /// Opens a client named `name`; `None` when no server is running (never starts one). With
    /// `listen`, the client hears port events (what the scanner needs; `chopd midi-ports` does
    /// not).
    pub fn open(name: &str, listen: bool) -> Option<JackLister> {
        let c_name = CString::new(name).ok()?;
        let mut status: j::jack_status_t = 0;
        // SAFETY: a valid C string and a status out-parameter; NoStartServer keeps libjack from
        // spawning jackd.
        let client =
            unsafe { j::jack_client_open(c_name.as_ptr(), j::JackNoStartServer, &mut status) };
        if client.is_null() {
            return None;
        }
        let (tx, notes) = mpsc::sync_channel(NOTES);
        let events = Box::new(Events {
            dead: AtomicBool::new(false),
            notes: tx,
            lost: AtomicBool::new(false),
        });
        let arg = &*events as *const Events as *mut c_void;
        // SAFETY: the callbacks and their argument stay valid until `jack_client_close` (Drop).
        // Callbacks must be set before activation; activating a client without a process
        // callback only subscribes it to events.
        let listening = unsafe {
            j::jack_on_shutdown(client, Some(on_shutdown), arg);
            listen
                && j::jack_set_port_registration_callback(client, Some(on_registration), arg) == 0
                && j::jack_set_port_connect_callback(client, Some(on_connect), arg) == 0
                && j::jack_activate(client) == 0
        };
        if listen && !listening {
            tracing::warn!(target: "chopd::jack", "JACK refused to send port events to \"{name}\": a port replaced faster than a scan is then told by its UUID alone");
        }
        Some(JackLister {
            client,
            events,
            notes,
            heard: VecDeque::new(),
            listening,
        })
    }

    /// False once the server has shut down: the client is dead and must be reopened.
    pub fn alive(&self) -> bool {
        !self.events.dead.load(Ordering::Relaxed)
    }

    /// The UUID of the port in slot `id` (JACK2 keeps it for the slot's next port too).
    fn uuid_of(&self, id: j::jack_port_id_t) -> Option<u64> {
        // SAFETY: `client` is open; the port pointer comes from JACK and is only read.
        unsafe {
            let port = j::jack_port_by_id(self.client, id);
            (!port.is_null()).then(|| j::jack_port_uuid(port))
        }
    }

    /// The UUID of the port named `name`, if it exists.
    fn uuid_by_name(&self, name: &str) -> Option<u64> {
        let name = CString::new(name).ok()?;
        // SAFETY: `client` is open; a valid C string; the port pointer is only read.
        unsafe {
            let port = j::jack_port_by_name(self.client, name.as_ptr());
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
        if !self.alive() {
            return Vec::new();
        }
        let mut out = Vec::new();
        // SAFETY: `client` is open; `jack_get_ports` returns NULL or a NULL-terminated array of
        // C strings that we free with `jack_free` after copying.
        unsafe {
            let list = j::jack_get_ports(
                self.client,
                ptr::null(),
                MIDI_TYPE.as_ptr(),
                j::JackPortIsOutput as ::libc::c_ulong,
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
                let port = j::jack_port_by_name(self.client, p);
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
        let rc = unsafe { j::jack_connect(self.client, src.as_ptr(), dst.as_ptr()) };
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
            let port = j::jack_port_by_name(self.client, dst.as_ptr());
            !port.is_null() && j::jack_port_connected_to(port, src.as_ptr()) != 0
        }
    }
}

fn cstrings(a: &str, b: &str) -> Result<(CString, CString), String> {
    let c = |s: &str| CString::new(s).map_err(|_| format!("port name \"{s}\" contains a NUL byte"));
    Ok((c(a)?, c(b)?))
}

impl Drop for JackLister {
    fn drop(&mut self) {
        // SAFETY: the client was opened by us and is closed once; after this the shutdown
        // callback can no longer run, so `dead` may be freed.
        unsafe {
            j::jack_client_close(self.client);
        }
    }
}
