//! OSC In's decoder: OSC packets → channel updates, with the per-message checks (address
//! length, scope, argument types, finite values) counted. Needs no socket: fuzzed and
//! unit-tested on bytes, shared by the UDP and TCP receive loops.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime};

use rosc::OscType;

use super::{Counters, Update};
use crate::cook::sanitize_name;
use crate::osc;
use crate::pattern::Pattern;

/// Turns OSC packets into updates; the part of the receive path that needs no socket (fuzzed
/// and unit-tested on bytes).
#[derive(Clone)]
pub struct Decoder {
    pub address_scope: Pattern,
    pub strip_segments: usize,
    /// Longest address taken, bytes (`max_address_length`); longer ones are counted and dropped
    /// before the scope sees them.
    pub max_address: usize,
    /// `bundle_window_ms`: a message whose bundle is time-tagged up to this far in the future
    /// is held until then; zero (the default) applies everything on arrival.
    pub bundle_window: Duration,
}

impl Decoder {
    /// Decodes one datagram, calling `emit` for every message that yields an update.
    pub fn decode(&self, bytes: &[u8], counters: &Counters, mut emit: impl FnMut(Update)) {
        counters.packets.fetch_add(1, Relaxed);
        let now = (!self.bundle_window.is_zero()).then(|| (SystemTime::now(), Instant::now()));
        let r = osc::each_timed_message(bytes, |m, tag| {
            let due = now.and_then(|now| self.due(tag, now, counters));
            self.message(m, due, counters, &mut emit)
        });
        match r {
            Ok(bad) => counters.malformed.fetch_add(bad as u64, Relaxed),
            Err(_) => counters.malformed.fetch_add(1, Relaxed),
        };
    }

    /// When a message time-tagged `tag` is due: `None` for now (no tag, a past one, or one
    /// further ahead than the window, which is clock skew or a mistake, not a schedule: held,
    /// it would hold memory for as long as the sender likes; counted in `timetag_skew`).
    fn due(&self, tag: u64, (wall, mono): (SystemTime, Instant), c: &Counters) -> Option<Instant> {
        let ahead = osc::tag_time(tag)?.duration_since(wall).ok()?;
        if ahead > self.bundle_window {
            c.timetag_skew.fetch_add(1, Relaxed);
            return None;
        }
        Some(mono + ahead)
    }

    fn message(
        &self,
        m: rosc::OscMessage,
        due: Option<Instant>,
        counters: &Counters,
        emit: &mut impl FnMut(Update),
    ) {
        counters.messages.fetch_add(1, Relaxed);
        if m.addr.len() > self.max_address {
            counters.long_addresses.fetch_add(1, Relaxed);
            return;
        }
        if !self.address_scope.is_all() && !self.address_scope.matches(&m.addr) {
            counters.out_of_scope.fetch_add(1, Relaxed);
            return;
        }
        let Some(name) = self.channel_name(&m.addr) else {
            counters
                .ignored_args
                .fetch_add(m.args.len() as u64, Relaxed);
            return;
        };
        let mut values = Vec::with_capacity(m.args.len());
        for arg in &m.args {
            let v = match *arg {
                OscType::Float(f) => f as f64,
                OscType::Double(d) => d,
                OscType::Int(i) => i as f64,
                OscType::Long(h) => h as f64,
                OscType::Bool(b) => f64::from(u8::from(b)),
                _ => {
                    counters.ignored_args.fetch_add(1, Relaxed);
                    continue;
                }
            };
            // Narrow first: a finite double such as 1e300 is infinite as f32.
            let v = v as f32;
            if !v.is_finite() {
                counters.nonfinite.fetch_add(1, Relaxed);
                continue;
            }
            values.push(v);
        }
        if !values.is_empty() {
            emit(Update { name, values, due });
        }
    }

    /// `/mixer/fader1` → `mixer/fader1`, minus `strip_segments` leading segments, illegal
    /// characters → `_`. `None` when nothing is left.
    pub fn channel_name(&self, addr: &str) -> Option<String> {
        let mut rest = addr.trim_start_matches('/');
        for _ in 0..self.strip_segments {
            rest = rest.split_once('/').map_or("", |(_, tail)| tail);
        }
        if rest.is_empty() {
            None
        } else {
            Some(sanitize_name(rest))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rosc::{encoder, OscBundle, OscMessage, OscPacket, OscTime};

    fn decoder(scope: &str, strip: usize) -> Decoder {
        Decoder {
            address_scope: Pattern::new(scope).unwrap(),
            strip_segments: strip,
            max_address: 1024,
            bundle_window: Duration::ZERO,
        }
    }

    fn msg(addr: &str, args: Vec<OscType>) -> OscPacket {
        OscPacket::Message(OscMessage {
            addr: addr.into(),
            args,
        })
    }

    fn run(d: &Decoder, p: &OscPacket) -> (Vec<Update>, Counters) {
        let c = Counters::default();
        let mut out = Vec::new();
        d.decode(&encoder::encode(p).unwrap(), &c, |u| out.push(u));
        (out, c)
    }

    /// A bundle time-tagged within the window is due then; beyond it (clock skew) it applies
    /// now and is counted; without a window tags are not read.
    #[test]
    fn bundle_time_tags_within_the_window() {
        let ahead = |ms: u64| {
            let t = osc::ntp_time(std::time::SystemTime::now() + Duration::from_millis(ms));
            OscPacket::Bundle(OscBundle {
                timetag: OscTime::from(((t >> 32) as u32, t as u32)),
                content: vec![msg("/x", vec![OscType::Float(1.0)])],
            })
        };
        let mut d = Decoder {
            address_scope: Pattern::all(),
            strip_segments: 0,
            max_address: 1024,
            bundle_window: Duration::ZERO,
        };
        let (u, _) = run(&d, &ahead(500));
        assert!(u[0].due.is_none());
        d.bundle_window = Duration::from_secs(2);
        let before = std::time::Instant::now();
        let (u, c) = run(&d, &ahead(500));
        let due = u[0].due.expect("held for its time");
        assert!(due > before + Duration::from_millis(400) && due < before + Duration::from_secs(2));
        assert_eq!(c.timetag_skew.load(Relaxed), 0);
        let (u, c) = run(&d, &ahead(3_600_000));
        assert!(u[0].due.is_none());
        assert_eq!(c.timetag_skew.load(Relaxed), 1);
        // Past and "immediately" tags apply now.
        let (u, _) = run(&d, &msg("/y", vec![OscType::Float(1.0)]));
        assert!(u[0].due.is_none());
    }

    #[test]
    fn address_to_channel_name() {
        let d = decoder("*", 0);
        assert_eq!(
            d.channel_name("/mixer/fader1").as_deref(),
            Some("mixer/fader1")
        );
        assert_eq!(d.channel_name("/a b/c#d").as_deref(), Some("a_b/c_d"));
        let d = decoder("*", 1);
        assert_eq!(d.channel_name("/1/fader1").as_deref(), Some("fader1"));
        assert_eq!(d.channel_name("/1").as_deref(), None);
    }

    #[test]
    fn argument_types() {
        let d = decoder("*", 0);
        let (u, c) = run(
            &d,
            &msg(
                "/x",
                vec![
                    OscType::Int(3),
                    OscType::Float(0.5),
                    OscType::Double(2.0),
                    OscType::Long(7),
                    OscType::Bool(true),
                    OscType::Bool(false),
                    OscType::String("no".into()),
                    OscType::Float(f32::NAN),
                ],
            ),
        );
        assert_eq!(u[0].values, vec![3.0, 0.5, 2.0, 7.0, 1.0, 0.0]);
        assert_eq!(c.ignored_args.load(Relaxed), 1);
        assert_eq!(c.nonfinite.load(Relaxed), 1);
    }

    #[test]
    fn nested_bundles_are_unpacked() {
        let d = decoder("*", 0);
        let inner = OscPacket::Bundle(OscBundle {
            timetag: OscTime::from((0, 1)),
            content: vec![msg("/b", vec![OscType::Float(2.0)])],
        });
        let outer = OscPacket::Bundle(OscBundle {
            timetag: OscTime::from((0, 1)),
            content: vec![msg("/a", vec![OscType::Float(1.0)]), inner],
        });
        let (u, c) = run(&d, &outer);
        let names: Vec<&str> = u.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(c.messages.load(Relaxed), 2);
    }

    /// Found by fuzzing (fuzz/artifacts/osc_packet): a finite double beyond f32's range became
    /// an infinite channel value.
    #[test]
    fn double_beyond_f32_range_is_not_a_value() {
        let d = decoder("*", 0);
        let (u, c) = run(
            &d,
            &msg("/x", vec![OscType::Double(1e300), OscType::Double(-2.5)]),
        );
        assert_eq!(u[0].values, vec![-2.5]);
        assert_eq!(c.nonfinite.load(Relaxed), 1);
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/fuzz/osc-double-overflows-f32.bin"
        ))
        .unwrap();
        d.decode(&bytes, &c, |u| {
            assert!(u.values.iter().all(|v| v.is_finite()))
        });
    }

    #[test]
    fn address_scope_filters_on_the_raw_address() {
        let d = decoder("/mixer/*", 0);
        let (u, c) = run(&d, &msg("/fx/x", vec![OscType::Float(1.0)]));
        assert!(u.is_empty());
        assert_eq!(c.out_of_scope.load(Relaxed), 1);
        let (u, _) = run(&d, &msg("/mixer/x", vec![OscType::Float(1.0)]));
        assert_eq!(u.len(), 1);
    }

    #[test]
    fn garbage_is_counted_as_malformed() {
        let d = decoder("*", 0);
        let c = Counters::default();
        let mut n = 0;
        for bytes in [
            &b""[..],
            b"/x\0",
            b"#bundle\0",
            b"\xff\xfe\x00\x00,f\0\0",
            // An element size that overruns the packet.
            b"#bundle\0\0\0\0\0\0\0\0\x01\0\0\0\xff",
        ] {
            d.decode(bytes, &c, |_| n += 1);
        }
        assert_eq!(n, 0);
        assert_eq!(c.malformed.load(Relaxed), 5);
    }

    #[test]
    fn long_addresses_are_counted_and_dropped() {
        let d = decoder("*", 0);
        let long = format!("/{}", "a".repeat(1024));
        let (u, c) = run(&d, &msg(&long, vec![OscType::Float(1.0)]));
        assert!(u.is_empty());
        assert_eq!(c.long_addresses.load(Relaxed), 1);
        let (u, _) = run(&d, &msg(&long[..1024], vec![OscType::Float(1.0)]));
        assert_eq!(u[0].name.len(), 1023);
    }

    /// Every well-framed element of a bundle is decoded on its own.
    #[test]
    fn a_bad_bundle_element_is_counted_and_the_rest_arrive() {
        let d = decoder("*", 0);
        let c = Counters::default();
        let mut b = b"#bundle\0\0\0\0\0\0\0\0\x01".to_vec();
        let good = |a: &str| encoder::encode(&msg(a, vec![OscType::Float(1.0)])).unwrap();
        for e in [good("/g1"), b"garbage!".to_vec(), good("/g2"), b"\0\0\0\0".to_vec()] {
            b.extend_from_slice(&(e.len() as u32).to_be_bytes());
            b.extend_from_slice(&e);
        }
        let mut names = Vec::new();
        d.decode(&b, &c, |u| names.push(u.name));
        assert_eq!(names, ["g1", "g2"]);
        assert_eq!(c.malformed.load(Relaxed), 2);
        assert_eq!(c.messages.load(Relaxed), 2);
    }

    #[test]
    fn deep_bundle_nesting_is_refused() {
        let mut p = msg("/x", vec![OscType::Float(1.0)]);
        for _ in 0..osc::MAX_DEPTH + 1 {
            p = OscPacket::Bundle(OscBundle {
                timetag: OscTime::from((0, 1)),
                content: vec![p],
            });
        }
        let (u, c) = run(&decoder("*", 0), &p);
        assert!(u.is_empty());
        assert_eq!(c.malformed.load(Relaxed), 1);
    }
}
