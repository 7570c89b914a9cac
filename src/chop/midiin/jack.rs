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
//! Only the scanner thread uses a [`JackLister`]; it registers no ports and is never activated,
//! so it costs the server nothing per period.

use std::ffi::{c_void, CStr, CString};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

use jack_sys as j;

/// JACK's type name for MIDI ports.
const MIDI_TYPE: &CStr = c"8 bit raw midi";

pub struct JackLister {
    client: *mut j::jack_client_t,
    /// Set by JACK's shutdown callback; boxed so its address stays put for the callback.
    dead: Box<AtomicBool>,
}

// SAFETY: the client pointer is used from one thread at a time (the scanner owns the lister);
// libjack's client calls may be made from any thread.
unsafe impl Send for JackLister {}

unsafe extern "C" fn on_shutdown(arg: *mut c_void) {
    // SAFETY: `arg` is the `AtomicBool` boxed in the lister, which outlives the client (the
    // client is closed before the box is freed, see `Drop`).
    let dead = unsafe { &*(arg as *const AtomicBool) };
    dead.store(true, Ordering::Relaxed);
}

impl JackLister {
    /// Opens a client named `name`; `None` when no server is running (never starts one).
    pub fn open(name: &str) -> Option<JackLister> {
        let c_name = CString::new(name).ok()?;
        let mut status: j::jack_status_t = 0;
        // SAFETY: a valid C string and a status out-parameter; NoStartServer keeps libjack from
        // spawning jackd.
        let client =
            unsafe { j::jack_client_open(c_name.as_ptr(), j::JackNoStartServer, &mut status) };
        if client.is_null() {
            return None;
        }
        let dead = Box::new(AtomicBool::new(false));
        // SAFETY: the callback and its argument stay valid until `jack_client_close` (Drop).
        unsafe {
            j::jack_on_shutdown(
                client,
                Some(on_shutdown),
                &*dead as *const AtomicBool as *mut c_void,
            );
        }
        Some(JackLister { client, dead })
    }

    /// False once the server has shut down: the client is dead and must be reopened.
    pub fn alive(&self) -> bool {
        !self.dead.load(Ordering::Relaxed)
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
    /// Connects `source` to `dest` (full port names). An existing connection is fine.
    pub fn connect(&self, source: &str, dest: &str) -> Result<(), String> {
        let (src, dst) = cstrings(source, dest)?;
        // SAFETY: `client` is open; both are valid C strings.
        let rc = unsafe { j::jack_connect(self.client, src.as_ptr(), dst.as_ptr()) };
        // EEXIST: already connected.
        if rc == 0 || rc == libc::EEXIST {
            Ok(())
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
