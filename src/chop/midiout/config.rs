//! MIDI Out's keys (the `midiout` kind and `[destinations.NAME] type = "midi"` share the MIDI
//! ones), their checks, and the build of the operator.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::MidiOutOp;
use crate::chop::midiin::config::{HighRes, HIGHRES, SCAN_MS};
use crate::chop::midiin::names::Names;
use crate::chop::midiin::MidiNorm;
use crate::config::refs::OpRefs;
use crate::config::{Checker, Kind, OperatorConfig, Settings};
use crate::cook::{BuildCtx, Operator};
use crate::pattern::Pattern;

/// The MIDI Out kind.
pub struct MidiOut;

/// The keys of a `midiout` operator.
#[derive(Deserialize, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    /// Pattern on the MIDI input port name of the device to send to
    #[schemars(with = "String")]
    pub device: Spanned<String>,
    /// How channel values become 7- and 14-bit values
    pub norm: Option<MidiNorm>,
    /// Channel name prefix (default ch)
    #[schemars(with = "Option<String>")]
    pub prefix: Option<Spanned<String>>,
    /// Base name of notes (default n)
    #[schemars(with = "Option<String>")]
    pub notename: Option<Spanned<String>>,
    /// Base name of controllers (default c)
    #[schemars(with = "Option<String>")]
    pub controlname: Option<Spanned<String>>,
    /// Base name of poly aftertouch (default a)
    #[schemars(with = "Option<String>")]
    pub polyname: Option<Spanned<String>>,
    /// Base name of channel pressure (default pr)
    #[schemars(with = "Option<String>")]
    pub pressurename: Option<Spanned<String>>,
    /// Base name of the pitch wheel (default pw)
    #[schemars(with = "Option<String>")]
    pub pitchname: Option<Spanned<String>>,
    /// Base name of program change (default pc)
    #[schemars(with = "Option<String>")]
    pub programname: Option<Spanned<String>>,
    /// Controllers sent as 14-bit MSB/LSB pairs (n with n+32)
    #[schemars(with = "Option<Vec<HighRes>>")]
    pub highres: Option<Vec<Spanned<i64>>>,
    /// How often ports are scanned for hot-plug (ms)
    #[schemars(with = "Option<i64>", range(min = SCAN_MS.min, max = SCAN_MS.max))]
    pub scan_ms: Option<Spanned<i64>>,
    /// Send MIDI clock (chopd is the clock master)
    pub clock: Option<bool>,
    /// Tempo of the MIDI clock sent
    #[schemars(with = "Option<f64>", range(min = 1, max = 999))]
    pub bpm: Option<Spanned<f64>>,
}

/// The checked MIDI keys of a MIDI Out, operator or destination.
#[derive(Clone, Debug, PartialEq)]
pub struct MidiOutConfig {
    pub device: Pattern,
    pub norm: MidiNorm,
    pub names: Names,
    pub highres: Vec<u8>,
    pub scan: Duration,
    pub clock: bool,
    pub bpm: f64,
}

/// The keys a MIDI Out operator and a MIDI destination share, as written.
pub struct Common<'r> {
    pub device: &'r Spanned<String>,
    pub norm: Option<MidiNorm>,
    pub names: [&'r Option<Spanned<String>>; 7],
    pub highres: &'r Option<Vec<Spanned<i64>>>,
    pub scan_ms: &'r Option<Spanned<i64>>,
}

/// Checks the shared keys.
pub fn check_common(cx: &mut Checker, r: Common) -> MidiOutConfig {
    let device = cx.pattern(r.device).unwrap_or_else(Pattern::all);
    let mut highres = Vec::new();
    for h in r.highres.iter().flatten() {
        if let Some(c) = cx.ranged(h.span(), "highres controller", *h.get_ref(), HIGHRES) {
            highres.push(c as u8);
        }
    }
    let scan = Duration::from_millis(cx.ranged_or(r.scan_ms, "scan_ms", SCAN_MS, 500) as u64);
    let mut names = Names::default();
    let [prefix, rest @ ..] = r.names;
    if let Some(p) = prefix {
        names.prefix = crate::cook::sanitize_name(p.get_ref());
    }
    for (slot, given) in names.base.iter_mut().zip(rest) {
        if let Some(b) = given {
            *slot = crate::cook::sanitize_name(b.get_ref());
        }
    }
    MidiOutConfig {
        device,
        norm: r.norm.unwrap_or_default(),
        names,
        highres,
        scan,
        clock: false,
        bpm: 120.0,
    }
}

impl Kind for MidiOut {
    const NAME: &'static str = "midiout";
    const SUMMARY: &'static str = "MIDI Out: input channels (ch1c7, ch1n60, …) → a MIDI port";
    type Raw = Raw;
    type Settings = MidiOutConfig;

    fn check(cx: &mut Checker, r: Raw, _refs: &mut OpRefs) -> Option<MidiOutConfig> {
        let mut c = check_common(
            cx,
            Common {
                device: &r.device,
                norm: r.norm,
                names: [
                    &r.prefix,
                    &r.notename,
                    &r.controlname,
                    &r.polyname,
                    &r.pressurename,
                    &r.pitchname,
                    &r.programname,
                ],
                highres: &r.highres,
                scan_ms: &r.scan_ms,
            },
        );
        c.clock = r.clock.unwrap_or(false);
        if let Some(b) = &r.bpm {
            let v = *b.get_ref();
            if (1.0..=999.0).contains(&v) {
                c.bpm = v;
            } else {
                cx.d.error(b.span(), format!("bpm = {v} is out of range (1 to 999)"));
            }
        }
        Some(c)
    }
}

impl Settings for MidiOutConfig {
    fn build(&self, op: &OperatorConfig, _cx: &BuildCtx) -> Result<Box<dyn Operator>, String> {
        Ok(Box::new(MidiOutOp::new(op, self)?))
    }
}
