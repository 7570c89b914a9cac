//! MIDI clock, MIDI Time Code and SysEx in, end to end through a real JACK server: a source of
//! the test's own (a libjack client) writes each message at a chosen JACK frame, so clocks
//! carry their tempo in their frame times and no assertion depends on how fast anything runs.
//! Needs the `jack` feature and a running JACK server (scripts/with-jack).

#[cfg(feature = "jack")]
mod with_jack {
    use std::collections::VecDeque;
    use std::ffi::{c_int, c_void, CStr, CString};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use jack_sys as j;

    use crate::midi::with_jack::{serial, unique};
    use crate::util::*;

    /// What the process callback sees: the port and the messages to write, each at its JACK
    /// frame time.
    struct Shared {
        port: *mut j::jack_port_t,
        client: *mut j::jack_client_t,
        queue: Mutex<VecDeque<(u64, Vec<u8>)>>,
        /// JACK's frame time at the start of the last period (64 bits).
        now: Mutex<u64>,
    }

    unsafe extern "C" fn process(n: j::jack_nframes_t, arg: *mut c_void) -> c_int {
        // SAFETY: `arg` is the boxed `Shared`, alive until the client is closed.
        let s = unsafe { &*(arg as *const Shared) };
        // SAFETY: our client and port; the buffer is valid for this period.
        unsafe {
            let start = u64::from(j::jack_last_frame_time(s.client));
            let buf = j::jack_port_get_buffer(s.port, n);
            j::jack_midi_clear_buffer(buf);
            if let Ok(mut now) = s.now.lock() {
                *now = start;
            }
            let Ok(mut q) = s.queue.lock() else { return 0 };
            while let Some((at, _)) = q.front() {
                if *at >= start + u64::from(n) {
                    break;
                }
                let (at, msg) = q.pop_front().unwrap();
                let offset = at.saturating_sub(start) as u32;
                if j::jack_midi_event_write(buf, offset, msg.as_ptr(), msg.len()) != 0 {
                    // The period's buffer is full: the rest waits for the next one.
                    q.push_front((start + u64::from(n), msg));
                    break;
                }
            }
        }
        0
    }

    /// A MIDI source (`NAME:out`) that writes messages at exact JACK frame times.
    pub struct TimedSource {
        pub client_name: String,
        client: *mut j::jack_client_t,
        shared: Box<Shared>,
        pub rate: u64,
    }

    impl TimedSource {
        pub fn new(name: &str) -> TimedSource {
            let c_name = CString::new(name).unwrap();
            let mut status: j::jack_status_t = 0;
            // SAFETY: a valid name and status; libjack does not start a server.
            let client =
                unsafe { j::jack_client_open(c_name.as_ptr(), j::JackNoStartServer, &mut status) };
            assert!(
                !client.is_null(),
                "is a JACK server running? (scripts/with-jack)"
            );
            // SAFETY: `client` is open; valid C strings.
            let port = unsafe {
                j::jack_port_register(
                    client,
                    c"out".as_ptr(),
                    c"8 bit raw midi".as_ptr(),
                    j::JackPortIsOutput as ::libc::c_ulong,
                    0,
                )
            };
            assert!(!port.is_null());
            let shared = Box::new(Shared {
                port,
                client,
                queue: Mutex::new(VecDeque::new()),
                now: Mutex::new(0),
            });
            // SAFETY: the callback's argument outlives the client (closed in Drop first).
            let rate = unsafe {
                let arg = &*shared as *const Shared as *mut c_void;
                assert_eq!(j::jack_set_process_callback(client, Some(process), arg), 0);
                assert_eq!(j::jack_activate(client), 0);
                j::jack_get_sample_rate(client) as u64
            };
            // SAFETY: our registered port's name.
            let full = unsafe { CStr::from_ptr(j::jack_port_name(port)) };
            let client_name = full.to_string_lossy().trim_end_matches(":out").to_string();
            TimedSource {
                client_name,
                client,
                shared,
                rate,
            }
        }

        /// JACK's frame time now (the start of the last period).
        pub fn now(&self) -> u64 {
            let deadline = Instant::now() + TIMEOUT;
            loop {
                let now = *self.shared.now.lock().unwrap();
                if now > 0 {
                    return now;
                }
                assert!(Instant::now() < deadline, "the source never ran");
                std::thread::sleep(Duration::from_millis(5));
            }
        }

        /// Writes each message at its frame time.
        pub fn at(&self, msgs: impl IntoIterator<Item = (u64, Vec<u8>)>) {
            let mut q = self.shared.queue.lock().unwrap();
            q.extend(msgs);
            q.make_contiguous().sort_by_key(|m| m.0);
        }

        /// Writes `msgs` one period apart from 50 ms from now on.
        pub fn send(&self, msgs: &[&[u8]]) {
            let t = self.now() + self.rate / 20;
            self.at(msgs
                .iter()
                .enumerate()
                .map(|(k, m)| (t + 64 * k as u64, m.to_vec())));
        }

        /// True once everything queued was written.
        pub fn idle(&self) -> bool {
            self.shared.queue.lock().unwrap().is_empty()
        }
    }

    impl Drop for TimedSource {
        fn drop(&mut self) {
            // SAFETY: opened by us, closed once; no callback runs after this.
            unsafe {
                j::jack_client_close(self.client);
            }
        }
    }

    /// Sends `msgs` (idempotent: sending them again changes nothing) until `want` has all
    /// arrived; the dummy JACK server sometimes loses a period's MIDI (see midi.rs). What
    /// arrived stays arrived: exports are sent on change, so a value that came just after one
    /// attempt's window, or before it ended, does not come again for the next.
    fn deliver(src: &TimedSource, rx: &OscRx, msgs: &[&[u8]], want: &[(&str, f32, f32)]) {
        let deadline = Instant::now() + TIMEOUT;
        let mut left: Vec<(&str, f32, f32)> = want.to_vec();
        loop {
            src.send(msgs);
            let _ = rx.try_until(Duration::from_millis(400), |m| {
                let v = float(&m.args[0]);
                left.retain(|(a, w, tol)| !(m.addr == *a && (v - w).abs() <= *tol));
                left.is_empty()
            });
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{left:?} never arrived for {msgs:02X?}"
            );
            eprintln!("sending again, {left:?} missing: JACK lost them");
        }
    }

    /// The value at `addr` once everything sent so far has arrived (exports are sent on
    /// change: a later value would be among what arrives within a few frames).
    fn settled(rx: &OscRx, addr: &str) -> f32 {
        rx.drain(Duration::from_millis(300));
        rx.wait_value(addr, |_| true)
    }

    fn daemon(src: &TimedSource, rx: &OscRx, files: &[(&str, &str)], extra: &str) -> Daemon {
        let cfg = Config::new()
            .dest("show", rx.port())
            .dest("info", rx.port())
            .op(
                "keys",
                "midiin",
                &format!(
                    "device = \"{}\"\nscan_ms = 50\nbeats_per_bar = 3\nexport = {{ root = \"show\" }}",
                    src.client_name
                ),
            )
            .info("keysinfo", "keys", r#"export = { root = "info" }"#)
            .raw(extra)
            .text();
        let d = Daemon::start(&cfg, files);
        rx.expect("/info/connected", 1.0);
        // Wait until the new connection carries MIDI (see `settle` in midi.rs).
        deliver(
            src,
            rx,
            &[&[0xB0, 119, 1]],
            &[("/show/ch1c119", 1.0 / 127.0, 1e-6)],
        );
        d
    }

    #[test]
    fn clock_in_gives_tempo_transport_and_position() {
        let _serial = serial();
        let src = TimedSource::new(&unique("clock"));
        let rx = OscRx::new();
        let mut d = daemon(&src, &rx, &[], "");
        // Start, then 150 bpm: a clock every rate·60/(150·24) frames, jittered by ±8 frames.
        let dt = src.rate * 60 / (150 * 24);
        let t0 = src.now() + src.rate / 10;
        let mut msgs = vec![(t0, vec![0xFA])];
        for k in 0..24 * 6 {
            let jitter = if k % 2 == 0 { 8 } else { 0 };
            msgs.push((t0 + 100 + k * dt + jitter, vec![0xF8]));
        }
        src.at(msgs);
        rx.expect("/show/running", 1.0);
        rx.wait_value("/show/bpm", |v| (v - 150.0).abs() < 0.5);
        rx.wait_value("/info/clock_ticks", |v| v >= 100.0);
        // All of the clocks are out before the transport messages below: one of those
        // arriving among them would be a clock early.
        while !src.idle() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let bpm = settled(&rx, "/show/bpm");
        assert!((bpm - 150.0).abs() < 0.5, "bpm {bpm} after the clocks");
        // Stop, a song position of 3 bars (3/4: 36 sixteenths), continue and a clock: the
        // position is exactly there, whatever clocks came before.
        deliver(
            &src,
            &rx,
            &[&[0xFC], &[0xF2, 36, 0], &[0xFB], &[0xF8]],
            &[
                ("/show/songposition", 36.0, 0.0),
                ("/show/bar", 4.0, 0.0),
                ("/show/beat", 1.0, 0.0),
            ],
        );
        // The pause before the continue (and before each resend of it) is no tempo interval.
        let bpm = settled(&rx, "/show/bpm");
        assert!((bpm - 150.0).abs() < 0.5, "bpm {bpm} after continue");
        deliver(&src, &rx, &[&[0xFC]], &[("/show/running", 0.0, 0.0)]);
        // A stopped clock keeps its tempo.
        let bpm = settled(&rx, "/show/bpm");
        assert!((bpm - 150.0).abs() < 0.5, "bpm {bpm} after stop");
        assert!(d.stop().success());
    }

    /// The eight quarter frames of `h:m:s:f` at 25 fps, forward.
    fn set(h: u8, m: u8, s: u8, f: u8) -> Vec<Vec<u8>> {
        let n = [
            f & 0xF,
            0x10 | f >> 4,
            0x20 | (s & 0xF),
            0x30 | s >> 4,
            0x40 | (m & 0xF),
            0x50 | m >> 4,
            0x60 | (h & 0xF),
            0x70 | (h >> 4) | 1 << 1,
        ];
        n.iter().map(|&d| vec![0xF1, d]).collect()
    }

    #[test]
    fn timecode_in_full_frame_then_quarter_frames_both_ways() {
        let _serial = serial();
        let src = TimedSource::new(&unique("mtc"));
        let rx = OscRx::new();
        let mut d = daemon(&src, &rx, &[], "");
        // A full frame: 01:02:03:04 at 25 fps (rate bits 01).
        deliver(
            &src,
            &rx,
            &[&[0xF0, 0x7F, 0x7F, 0x01, 0x01, 0x20 | 1, 2, 3, 4, 0xF7]],
            &[
                ("/show/hours", 1.0, 0.0),
                ("/show/minutes", 2.0, 0.0),
                ("/show/seconds", 3.0, 0.0),
                ("/show/frames", 4.0, 0.0),
                ("/show/fps", 25.0, 0.0),
            ],
        );
        // Quarter frames of 01:02:10:10: the set took 1.75 frames, so frame 11 and 3/4.
        let fwd = set(1, 2, 10, 10);
        let fwd: Vec<&[u8]> = fwd.iter().map(Vec::as_slice).collect();
        deliver(
            &src,
            &rx,
            &fwd,
            &[
                ("/show/seconds", 10.0, 0.0),
                ("/show/frames", 11.0, 0.0),
                ("/show/timecode", 3730.0 + 11.75 / 25.0, 1e-3),
            ],
        );
        // Backward: pieces 7 to 0 of 01:02:20:00 — 1.75 frames before it.
        let back = set(1, 2, 20, 0);
        let back: Vec<&[u8]> = back.iter().rev().map(Vec::as_slice).collect();
        deliver(
            &src,
            &rx,
            &back,
            &[
                ("/show/seconds", 19.0, 0.0),
                ("/show/frames", 23.0, 0.0),
                ("/show/timecode", 3740.0 - 1.75 / 25.0, 1e-3),
            ],
        );
        rx.wait_value("/info/mtc_quarter_frames", |v| v >= 16.0);
        assert!(d.stop().success());
    }

    const CALLBACKS: &str = "\
def onReceiveMIDI(dat, rowIndex, message, channel, index, value, input, bytes):
    if message == 'System Exclusive':
        op('seen').par.value4 = dat.numRows
        op('seen').par.value0 = len(bytes)
        op('seen').par.value1 = bytes[2]
        op('seen').par.value2 = 1 if dat[rowIndex, 'type'].val == 'sysex' else -1
        op('seen').par.value3 = 1 if input.endswith(':out') else -1
";

    fn sysex_daemon(src: &TimedSource, rx: &OscRx) -> Daemon {
        let extra = format!(
            "[[operator]]\nname = \"log\"\ntype = \"midiindat\"\ndevice = \"{}\"\nscan_ms = 50\n\
             callbacks = \"midi.py\"\npars = {{ maxlines = 5 }}\n\
             [[operator]]\nname = \"loginfo\"\ntype = \"info\"\nop = \"log\"\n\
             export = {{ root = \"log\" }}\n\
             [[operator]]\nname = \"seen\"\ntype = \"constant\"\n\
             pars = {{ name0 = \"len\", name1 = \"id\", name2 = \"row\", name3 = \"input\", name4 = \"rows\" }}\n\
             export = {{ root = \"seen\" }}\n\
             [destinations.log]\nhost = \"127.0.0.1\"\nport = {p}\nprefix = \"/log\"\n\
             [destinations.seen]\nhost = \"127.0.0.1\"\nport = {p}\nprefix = \"/seen\"\n",
            src.client_name,
            p = rx.port()
        );
        let d = daemon(src, rx, &[("midi.py", CALLBACKS)], &extra);
        rx.wait_value("/log/connected", |v| v == 1.0);
        d
    }

    #[test]
    fn sysex_in_reaches_the_callback_with_its_bytes() {
        let _serial = serial();
        let src = TimedSource::new(&unique("sysex"));
        let rx = OscRx::new();
        let mut d = sysex_daemon(&src, &rx);
        // Eight controllers: the table keeps the newest `maxlines` (5) under its header.
        let ccs: Vec<Vec<u8>> = (1..=8).map(|v| vec![0xB0, 20, v]).collect();
        let ccs: Vec<&[u8]> = ccs.iter().map(Vec::as_slice).collect();
        deliver(&src, &rx, &ccs, &[("/show/ch1c20", 8.0 / 127.0, 1e-6)]);
        let msg: Vec<u8> = [0xF0, 0x7D, 0x2A]
            .into_iter()
            .chain((0..100).map(|k| k as u8))
            .chain([0xF7])
            .collect();
        deliver(
            &src,
            &rx,
            &[&msg],
            &[
                ("/seen/len", 104.0, 0.0),
                ("/seen/id", 42.0, 0.0),
                ("/seen/row", 1.0, 0.0),
                ("/seen/input", 1.0, 0.0),
                ("/seen/rows", 6.0, 0.0),
            ],
        );
        rx.wait_value("/log/sysex_in", |v| v >= 1.0);
        rx.wait_value("/info/sysex_in", |v| v >= 1.0);
        assert!(d.stop().success());
    }

    #[test]
    fn an_unterminated_or_overlong_sysex_is_dropped_counted_and_logged_once() {
        let _serial = serial();
        let src = TimedSource::new(&unique("sxcut"));
        let rx = OscRx::new();
        let mut d = sysex_daemon(&src, &rx);
        // No F7: the note-on that follows ends it; the note itself arrives.
        deliver(
            &src,
            &rx,
            &[&[0xF0, 0x7D, 0x01, 0x02], &[0x90, 60, 127]],
            &[("/show/ch1n60", 1.0, 0.0)],
        );
        let before = rx.wait_value("/info/sysex_dropped", |v| v >= 1.0);
        // 40,960 bytes without an end, 128 a period (a 64-frame JACK buffer takes ~200).
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let t = src.now() + src.rate / 20;
            let mut msgs = vec![(t, vec![0xF0, 0x7D])];
            for k in 0..320u64 {
                msgs.push((t + 64 * (k + 1), vec![0x11; 128]));
            }
            msgs.push((t + 64 * 322, vec![0xF7]));
            src.at(msgs);
            let more = rx.try_until(Duration::from_secs(2), |m| {
                m.addr == "/info/sysex_dropped" && float(&m.args[0]) > before
            });
            if more.is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the overlong SysEx was never dropped"
            );
            eprintln!("sending the overlong SysEx again: JACK lost its start");
        }
        let deadline = Instant::now() + TIMEOUT;
        while !src.idle() {
            assert!(Instant::now() < deadline, "the source never wrote it all");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Nothing half-made came out, and a good SysEx after it is whole.
        let ok: &[u8] = &[0xF0, 0x7D, 0x07, 1, 2, 0xF7];
        deliver(
            &src,
            &rx,
            &[ok],
            &[("/seen/len", 6.0, 0.0), ("/seen/id", 7.0, 0.0)],
        );
        assert_eq!(d.count("a SysEx was dropped"), 2, "{}", d.log_text());
        assert!(d.stop().success());
    }
}
