//! MIDI Out's own JACK client (the `jack` build): one MIDI output port that the scanner connects
//! to the device, and a process callback that writes what the cook thread queued, and the MIDI
//! clock when chopd is the clock master. It runs as MIDI In's does (see `midiin/jack.rs`):
//! uncancellable, and it neither allocates, locks (a `try_lock` at most) nor blocks.

use std::ffi::{c_int, c_void, CStr, CString};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use jack_sys as j;

use super::state::{Clock, OutState};
use crate::chop::midiin::cancel::uncancellable;
use crate::chop::midiin::jack::{quiet, Client, Unopened, MIDI_TYPE};
use crate::chop::midiin::ring::Consumer;

/// Room left in the period's buffer for the clock's messages when the queue fills it.
const CLOCK_ROOM: usize = 64;

/// What the process callback owns: boxed so its address stays put for it.
struct Output {
    port: *mut j::jack_port_t,
    queue: Arc<Mutex<Consumer>>,
    shared: Arc<OutState>,
    clock: Clock,
    rate: f64,
}

/// JACK's realtime thread, once per period.
unsafe extern "C" fn process(nframes: j::jack_nframes_t, arg: *mut c_void) -> c_int {
    uncancellable(|| {
        // SAFETY: `arg` is the `Output` of `JackOutput::open`, freed only after the client is
        // closed; only this thread touches it while the client is active.
        let out = unsafe { &mut *(arg as *mut Output) };
        // SAFETY: our port; the buffer is valid for this period.
        let buf = unsafe { j::jack_port_get_buffer(out.port, nframes) };
        if buf.is_null() {
            return;
        }
        // SAFETY: a MIDI output port's buffer, cleared before anything is written to it.
        unsafe { j::jack_midi_clear_buffer(buf) };
        let write = |time: u32, bytes: &[u8]| -> bool {
            // SAFETY: the buffer of this period; `bytes` is valid for the call.
            unsafe { j::jack_midi_event_write(buf, time, bytes.as_ptr(), bytes.len()) == 0 }
        };
        // SAFETY: as above.
        let capacity = unsafe { j::jack_midi_max_event_size(buf) };
        let shared = &*out.shared;
        // Events go in time order: start/stop and the queue at the period's start, clock ticks
        // after them at their own times.
        let mut ticks = [0u32; 32];
        let (edge, n) = out.clock.period(shared, out.rate, nframes, &mut ticks);
        if let Some(b) = edge {
            write(0, &[b]);
        }
        let reserve = if n > 0 || out.clock.running() { CLOCK_ROOM } else { 0 };
        if let Ok(mut q) = out.queue.try_lock() {
            loop {
                let popped = q.pop_with(|m| {
                    if m.len() > capacity {
                        // Larger than a whole period's buffer: it can never be sent.
                        shared.too_long.fetch_add(1, Relaxed);
                        return true;
                    }
                    // SAFETY: as above.
                    let room = unsafe { j::jack_midi_max_event_size(buf) };
                    if m.len() + reserve > room || !write(0, m) {
                        return false;
                    }
                    shared.count_sent(m);
                    true
                });
                if popped != Some(true) {
                    break;
                }
            }
        }
        for &t in &ticks[..n] {
            if write(t, &[0xF8]) {
                shared.clock_ticks.fetch_add(1, Relaxed);
            }
        }
    });
    0
}

/// The client and its output port.
pub struct JackOutput {
    /// First: closed (when dropped) before `_output` is freed.
    _client: Client,
    name: String,
    _output: Box<SendOutput>,
}

struct SendOutput(Output);
// SAFETY: the port pointer is only used by the process callback, on JACK's thread.
unsafe impl Send for SendOutput {}
// SAFETY: as for `JackInput`: one owner at a time; libjack's calls work from any thread.
unsafe impl Send for JackOutput {}

impl JackOutput {
    pub fn open(
        client: &str,
        queue: Arc<Mutex<Consumer>>,
        shared: Arc<OutState>,
    ) -> Result<JackOutput, String> {
        quiet();
        let client = Client::open(client).map_err(|e| match e {
            Unopened::NoServer => "no JACK server is running".to_string(),
            Unopened::Closing => {
                "the clients of a stopped JACK server are still being closed".to_string()
            }
        })?;
        let port_name = CString::new("out").expect("no NUL");
        // SAFETY: `client` is open; valid C strings.
        let p = unsafe {
            j::jack_port_register(
                client.ptr,
                port_name.as_ptr(),
                MIDI_TYPE.as_ptr(),
                j::JackPortIsOutput as ::libc::c_ulong,
                0,
            )
        };
        if p.is_null() {
            return Err("cannot register the JACK output port".into());
        }
        // SAFETY: `client` is open.
        let rate = f64::from(unsafe { j::jack_get_sample_rate(client.ptr) });
        let mut output = Box::new(SendOutput(Output {
            port: p,
            queue,
            shared,
            clock: Clock::default(),
            rate,
        }));
        let arg = &mut output.0 as *mut Output as *mut c_void;
        // SAFETY: the argument lives until after `jack_client_close` (field order); the
        // callback is set before activation, as JACK requires.
        let started = unsafe {
            j::jack_set_process_callback(client.ptr, Some(process), arg) == 0
                && j::jack_activate(client.ptr) == 0
        };
        if !started {
            return Err("JACK refused to start the output client".into());
        }
        // SAFETY: a registered port's name is a C string owned by JACK.
        let name = unsafe { CStr::from_ptr(j::jack_port_name(p)) }
            .to_string_lossy()
            .into_owned();
        Ok(JackOutput {
            _client: client,
            name,
            _output: output,
        })
    }

    pub fn port_name(&self) -> &str {
        &self.name
    }

    /// False once the JACK server shut down.
    pub fn alive(&self) -> bool {
        self._client.alive()
    }
}
