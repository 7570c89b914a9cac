//! Operator kinds (CHOPs), one module each, and [`KINDS`], the list a config may use. The
//! contract they implement is in `cook` (the operator) and `config::kind` (its config).
//!
//! Operators run on the cook thread only. They never block: input kinds fold what their receive
//! threads queued, script kinds run Python, info kinds read other nodes' statistics.
//!
//! To add a kind, write its module (its raw keys, checks, settings, build and operator; see
//! docs/operators.md) and name it in the `kinds!` list below.

/// Declares each kind's module and lists its kind type in [`KINDS`], in the order error
/// messages name them.
macro_rules! kinds {
    ($($module:ident :: $kind:ident),* $(,)?) => {
        $(pub mod $module;)*

        /// Every operator kind, as `config::load` takes them.
        pub static KINDS: &crate::config::Kinds = &[$(&$module::$kind),*];
    };
}

pub mod native;
pub mod shaping;
#[cfg(test)]
pub mod testing;

kinds! {
    oscin::OscIn,
    oscindat::OscInDat,
    oscout::OscOut,
    midiin::MidiIn,
    midiindat::MidiInDat,
    midiout::MidiOut,
    script::Script,
    info::Info,
    base::Base,
    table::TableDat,
    text::TextDat,
    math::Math,
    lag::Lag,
    limit::Limit,
    filter::Filter,
    logic::Logic,
    trigger::Trigger,
    speed::Speed,
    slope::Slope,
    count::Count,
    hold::Hold,
    delay::Delay,
    trail::Trail,
    constant::Constant,
    lfo::Lfo,
    noise::Noise,
    timer::Timer,
    select::Select,
    rename::Rename,
    merge::Merge,
    switch::Switch,
    pattern::PatternKind,
}

pub mod datfile;
