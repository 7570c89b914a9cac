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
}
