//! MIDI In's config: its keys as written, their checks, and the build of the operator.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::MidiInOp;
use crate::config::refs::OpRefs;
use crate::config::{Bounds, Checker, Kind, OperatorConfig, Settings};
use crate::cook::{BuildCtx, Operator};
use crate::pattern::Pattern;

/// The MIDI In kind.
pub struct MidiIn;

/// Controllers that can be the MSB of a 14-bit pair (their LSB is controller + 32).
pub const HIGHRES: Bounds = Bounds::new(0, 31);
pub const SCAN_MS: Bounds = Bounds::new(50, 60_000);
pub const BEATS_PER_BAR: Bounds = Bounds::new(1, 32);

/// How 7- and 14-bit values become channel values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize, serde::Serialize, schemars::JsonSchema)]
pub enum MidiNorm {
    #[default]
    #[serde(rename = "0to1")]
    ZeroToOne,
    #[serde(rename = "-1to1")]
    MinusOneToOne,
    #[serde(rename = "off")]
    Off,
    #[serde(rename = "onoff")]
    OnOff,
}


/// The keys of a `midiin` operator.
#[derive(Deserialize, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    /// Pattern on the MIDI port name
    #[schemars(with = "String")]
    pub device: Spanned<String>,
    /// A missing device is an error at start (default: a warning)
    pub required: Option<bool>,
    /// MIDI channels, e.g. "1-7 12"
    #[schemars(with = "Option<String>")]
    pub channel: Option<Spanned<String>>,
    /// Value normalisation
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
    /// Controllers read as 14-bit MSB/LSB pairs (n with n+32)
    #[schemars(with = "Option<Vec<HighRes>>")]
    pub highres: Option<Vec<Spanned<i64>>>,
    /// A note on and off within one frame shows for one frame
    pub preserve_pulses: Option<bool>,
    /// With timeslice: every message becomes a sample
    pub queued: Option<bool>,
    /// How often ports are scanned for hot-plug (ms)
    #[schemars(with = "Option<i64>", range(min = SCAN_MS.min, max = SCAN_MS.max))]
    pub scan_ms: Option<Spanned<i64>>,
    /// Beats (quarter notes) of a bar, for the MIDI clock's `beat` and `bar` channels
    #[schemars(with = "Option<i64>", range(min = BEATS_PER_BAR.min, max = BEATS_PER_BAR.max))]
    pub beats_per_bar: Option<Spanned<i64>>,
}

/// A controller whose value is the MSB of a 14-bit pair.
#[allow(dead_code)]
#[derive(schemars::JsonSchema)]
#[schemars(transparent)]
pub struct HighRes(#[schemars(range(min = HIGHRES.min, max = HIGHRES.max))] pub i64);

/// The checked settings of a MIDI In.
#[derive(Clone, Debug, PartialEq)]
pub struct MidiInConfig {
    pub device: Pattern,
    pub required: bool,
    /// MIDI channels 1–16 accepted; index 0 is channel 1.
    pub channels: [bool; 16],
    pub norm: MidiNorm,
    pub prefix: String,
    pub notename: String,
    pub controlname: String,
    pub polyname: String,
    pub pressurename: String,
    pub pitchname: String,
    pub programname: String,
    /// Controllers (0–31) read as 14-bit MSB/LSB pairs with controller + 32.
    pub highres: Vec<u8>,
    pub preserve_pulses: bool,
    pub queued: bool,
    /// How often the port list is scanned for hot-plug.
    pub scan: Duration,
    /// Quarter notes a bar, for the clock's `beat` and `bar`.
    pub beats_per_bar: u32,
}

/// TouchDesigner's defaults: every channel, `ch` + `n`/`c`/`a`/`pr`/`pw`/`pc` names, 0–1.
impl Default for MidiInConfig {
    fn default() -> Self {
        MidiInConfig {
            device: Pattern::all(),
            required: false,
            channels: [true; 16],
            norm: MidiNorm::ZeroToOne,
            prefix: "ch".into(),
            notename: "n".into(),
            controlname: "c".into(),
            polyname: "a".into(),
            pressurename: "pr".into(),
            pitchname: "pw".into(),
            programname: "pc".into(),
            highres: Vec::new(),
            preserve_pulses: true,
            queued: false,
            scan: Duration::from_millis(500),
            beats_per_bar: 4,
        }
    }
}


impl MidiInConfig {
    /// The prefix and base names channels are named with.
    pub fn names(&self) -> super::names::Names {
        super::names::Names {
            prefix: self.prefix.clone(),
            base: [
                self.notename.clone(),
                self.controlname.clone(),
                self.polyname.clone(),
                self.pressurename.clone(),
                self.pitchname.clone(),
                self.programname.clone(),
            ],
        }
    }
}

impl Kind for MidiIn {
    const NAME: &'static str = "midiin";
    const SUMMARY: &'static str = "MIDI In: a MIDI port → channels";
    type Raw = Raw;
    type Settings = MidiInConfig;

    fn check(cx: &mut Checker, r: Raw, _refs: &mut OpRefs) -> Option<MidiInConfig> {
        let device = cx.pattern(&r.device).unwrap_or_else(Pattern::all);
        let channels = match &r.channel {
            Some(c) => crate::config::parse_midi_channels(c.get_ref()).unwrap_or_else(|e| {
                cx.d.error(c.span(), e);
                [true; 16]
            }),
            None => [true; 16],
        };
        let mut highres = Vec::new();
        for h in r.highres.iter().flatten() {
            if let Some(c) = cx.ranged(h.span(), "highres controller", *h.get_ref(), HIGHRES) {
                highres.push(c as u8);
            }
        }
        let scan =
            Duration::from_millis(cx.ranged_or(&r.scan_ms, "scan_ms", SCAN_MS, 500) as u64);
        let name = |s: &Option<Spanned<String>>, default: &str| {
            s.as_ref().map_or(default.to_string(), |s| {
                crate::cook::sanitize_name(s.get_ref())
            })
        };
        Some(MidiInConfig {
            device,
            required: r.required.unwrap_or(false),
            channels,
            norm: r.norm.unwrap_or_default(),
            prefix: name(&r.prefix, "ch"),
            notename: name(&r.notename, "n"),
            controlname: name(&r.controlname, "c"),
            polyname: name(&r.polyname, "a"),
            pressurename: name(&r.pressurename, "pr"),
            pitchname: name(&r.pitchname, "pw"),
            programname: name(&r.programname, "pc"),
            highres,
            preserve_pulses: r.preserve_pulses.unwrap_or(true),
            queued: r.queued.unwrap_or(false),
            scan,
            beats_per_bar: cx.ranged_or(&r.beats_per_bar, "beats_per_bar", BEATS_PER_BAR, 4)
                as u32,
        })
    }
}

impl Settings for MidiInConfig {
    fn build(&self, op: &OperatorConfig, cx: &BuildCtx) -> Result<Box<dyn Operator>, String> {
        // A time-sliced MIDI In folds on the clock only: its input need not wake anyone.
        let wake = (!op.timeslice).then(|| cx.wake.clone());
        Ok(Box::new(MidiInOp::new(op, self, cx.max_slice, wake)?))
    }
}
