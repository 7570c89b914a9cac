//! The port lister of the `jack` build, on libjack directly (midir hides its JACK client).
//!
//! Two things midir cannot tell and hot-plug needs: a port's identity (a port that vanishes and
//! comes back under the same name between two scans is a new port, with a new UUID, and our
//! connection to the old one is gone), and the JACK server shutting down (every client, ours
//! included, is dead then and must be reopened when the server is back).
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
                let port = j::jack_port_by_name(self.client, p);
                let uuid = if port.is_null() {
                    0
                } else {
                    j::jack_port_uuid(port)
                };
                out.push((CStr::from_ptr(p).to_string_lossy().into_owned(), uuid));
                i += 1;
            }
            j::jack_free(list as *mut c_void);
        }
        out
    }
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
