//! MIDI Out end to end: the real `chopd` binary sends MIDI through a real JACK server to a
//! virtual input port, which stands for a controller's LEDs and motor faders. Needs the `jack`
//! feature and a running JACK server (scripts/with-jack cargo test --features jack midiout).

#[cfg(feature = "jack")]
mod with_jack {
    use std::sync::mpsc::{self, Receiver};
    use std::time::{Duration, Instant};

    use midir::os::unix::VirtualInput;
    use midir::{Ignore, MidiInput, MidiInputConnection};
    use rosc::OscType;

    use crate::midi::with_jack::{serial, unique};
    use crate::util::*;

    /// A virtual MIDI input port, as a controller offers one: `NAME:in`; what arrives is kept.
    pub struct Sink {
        _conn: MidiInputConnection<()>,
        rx: Receiver<Vec<u8>>,
    }

    impl Sink {
        pub fn new(client: &str) -> Sink {
            let mut mi = MidiInput::new(client).expect("a JACK client: is a JACK server running?");
            mi.ignore(Ignore::None);
            let (tx, rx) = mpsc::channel();
            let conn = mi
                .create_virtual(
                    "in",
                    move |_, bytes, _| {
                        let _ = tx.send(bytes.to_vec());
                    },
                    (),
                )
                .expect("a virtual JACK MIDI input");
            Sink { _conn: conn, rx }
        }

        /// Waits for `want` (other messages are skipped); None after `within`.
        pub fn wait(&self, want: &[u8], within: Duration) -> Option<()> {
            let deadline = Instant::now() + within;
            loop {
                let left = deadline.checked_duration_since(Instant::now())?;
                match self.rx.recv_timeout(left) {
                    Ok(m) if m == want => return Some(()),
                    Ok(_) => {}
                    Err(_) => return None,
                }
            }
        }

        pub fn expect(&self, want: &[u8]) {
            self.wait(want, TIMEOUT)
                .unwrap_or_else(|| panic!("{want:02X?} never arrived"));
        }

        pub fn drain(&self) -> Vec<Vec<u8>> {
            self.rx.try_iter().collect()
        }
    }

    /// Sends `/addr value` to chopd until the MIDI `want` arrives. The dummy JACK server loses
    /// the MIDI of a period it cannot finish in time (see `Source::deliver` in midi.rs): then
    /// `other` is sent in between, so the value changes and is sent again.
    fn deliver(port: u16, sink: &Sink, addr: &str, value: f32, other: f32, want: &[u8]) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            send(port, addr, vec![OscType::Float(value)]);
            if sink.wait(want, Duration::from_millis(400)).is_some() {
                return;
            }
            assert!(Instant::now() < deadline, "{want:02X?} never arrived");
            eprintln!("sending {addr} again: JACK lost it");
            send(port, addr, vec![OscType::Float(other)]);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    const SCRIPT: &str = "\
def onCook(scriptOp):
    scriptOp.copy(scriptOp.inputs[0])
    sx = scriptOp.inputs[0]['sx']
    if sx is not None and sx[0] > 0:
        op('leds').sendExclusive(0x7D, 0x01, int(sx[0]))
        op('leds').sendControl(3, 20, 0.5)
";

    fn config(device: &str, info_port: u16) -> String {
        Config::new()
            .dest("info", info_port)
            .oscin("in", "")
            .op(
                "leds",
                "midiout",
                &format!("device = \"{device}\"\nscan_ms = 50\ninputs = [\"in\"]\nhighres = [1]"),
            )
            .script("s", "sx.py", "\"in\"", "")
            .info("ledsinfo", "leds", r#"export = { root = "info" }"#)
            .text()
    }

    #[test]
    fn channels_and_scripts_become_midi_sysex_included() {
        let _serial = serial();
        let client = unique("out");
        let sink = Sink::new(&client);
        let rx = OscRx::new();
        let mut d = Daemon::start(&config(&client, rx.port()), &[("sx.py", SCRIPT)]);
        rx.expect("/info/connected", 1.0);
        let port = d.port("in");
        deliver(port, &sink, "/ch1c7", 1.0, 0.0, &[0xB0, 7, 127]);
        deliver(port, &sink, "/ch2n60", 0.5, 0.0, &[0x91, 60, 64]);
        deliver(port, &sink, "/ch2n60", 0.0, 0.5, &[0x81, 60, 0]);
        deliver(port, &sink, "/ch1pw", 0.0, 1.0, &[0xE0, 0, 0x40]);
        // A 14-bit pair: MSB, then LSB on controller 33.
        deliver(port, &sink, "/ch1c1", 1.0, 0.0, &[0xB0, 33, 0x7F]);
        // Not a MIDI name: nothing, and nothing breaks.
        send(port, "/level", vec![OscType::Float(1.0)]);
        deliver(port, &sink, "/sx", 5.0, 0.0, &[0xF0, 0x7D, 0x01, 5, 0xF7]);
        sink.expect(&[0xB2, 20, 64]);
        rx.wait_value("/info/sysex_out", |v| v >= 1.0);
        // Every value seen on the way is remembered: the latest `dropped` is still 0.
        rx.drain(Duration::from_millis(100));
        assert_eq!(rx.wait_value("/info/dropped", |_| true), 0.0);
        assert!(d.stop().success());
    }

    /// A controller unplugged and plugged back (its client gone and back under the same name)
    /// gets the last state again: LEDs and motor faders resync, with nothing new to send.
    #[test]
    fn a_replugged_device_gets_the_last_state_again() {
        let _serial = serial();
        let client = unique("replug");
        let sink = Sink::new(&client);
        let rx = OscRx::new();
        let mut d = Daemon::start(&config(&client, rx.port()), &[("sx.py", SCRIPT)]);
        rx.expect("/info/connected", 1.0);
        let port = d.port("in");
        deliver(port, &sink, "/ch1c7", 1.0, 0.0, &[0xB0, 7, 127]);
        deliver(port, &sink, "/ch1n10", 1.0, 0.0, &[0x90, 10, 127]);
        drop(sink);
        rx.wait_value("/info/connected", |v| v == 0.0);
        d.wait_for("disappeared", TIMEOUT).unwrap();
        let sink = Sink::new(&client);
        rx.wait_value("/info/reconnects", |v| v >= 1.0);
        sink.expect(&[0xB0, 7, 127]);
        sink.expect(&[0x90, 10, 127]);
        assert!(
            sink.drain().iter().all(|m| m[0] != 0x80),
            "no note-off of a held note"
        );
        assert!(d.stop().success());
    }

    /// A MIDI destination: an export to `type = "midi"` sends the exported channels as MIDI.
    #[test]
    fn an_export_to_a_midi_destination_sends_midi() {
        let _serial = serial();
        let client = unique("dest");
        let sink = Sink::new(&client);
        let cfg = Config::new()
            .raw(&format!(
                "[destinations.surface]\ntype = \"midi\"\ndevice = \"{client}\"\nnorm = \"off\"\nscan_ms = 50\n"
            ))
            .oscin("in", r#"export = { root = "surface" }"#)
            .text();
        let mut d = Daemon::start(&cfg, &[]);
        d.wait_for("connected to MIDI port", TIMEOUT).unwrap();
        let port = d.port("in");
        deliver(port, &sink, "/ch5c9", 100.0, 1.0, &[0xB4, 9, 100]);
        deliver(port, &sink, "/ch1pc", 7.0, 1.0, &[0xC0, 7]);
        assert!(d.stop().success());
    }

    /// With `react = true` a MIDI Out cooks between frames: at one frame a second, what
    /// arrives is sent as MIDI by a reaction (the Info CHOP counts the MIDI Out's reaction
    /// cooks; without reacting they stay 0).
    #[test]
    fn with_react_midi_out_sends_between_frames() {
        let _serial = serial();
        let client = unique("react");
        let sink = Sink::new(&client);
        let rx = OscRx::new();
        let cfg = Config::new()
            .rate(1)
            .top("react = true")
            .dest("info", rx.port())
            .oscin("in", "")
            .op(
                "leds",
                "midiout",
                &format!("device = \"{client}\"\nscan_ms = 50\ninputs = [\"in\"]"),
            )
            .info("ledsinfo", "leds", r#"export = { root = "info" }"#)
            .text();
        let mut d = Daemon::start(&cfg, &[]);
        rx.expect("/info/connected", 1.0);
        deliver(d.port("in"), &sink, "/ch1c7", 1.0, 0.0, &[0xB0, 7, 127]);
        rx.wait_value("/info/react_cooks", |v| v >= 1.0);
        assert!(d.stop().success());
    }

    /// chopd as MIDI clock master: start, 24 ticks per beat at the `bpm` parameter, stop.
    #[test]
    fn clock_master_sends_start_ticks_and_stop() {
        let _serial = serial();
        let client = unique("clock");
        let sink = Sink::new(&client);
        let rx = OscRx::new();
        let cfg = Config::new()
            .dest("info", rx.port())
            .op(
                "clk",
                "midiout",
                &format!("device = \"{client}\"\nscan_ms = 50\nclock = true\nbpm = 300"),
            )
            .info("clkinfo", "clk", r#"export = { root = "info" }"#)
            .text();
        let mut d = Daemon::start(&cfg, &[]);
        rx.expect("/info/connected", 1.0);
        sink.wait(&[0xF8], TIMEOUT).expect("clock ticks");
        rx.wait_value("/info/clock_ticks", |v| v >= 120.0);
        assert!(d.stop().success());
    }
}
