//! The parameters of an operator without Python state of its own (OSC In, Info, the native
//! kinds), made visible to Python under its key: `op('faders').par.port` reads them and
//! `op('lag1').par.lag1 = 0.5` writes them, like any Script CHOP's or component's. The graph
//! owns one mirror per such operator; it hands the writes scripts made to the operator
//! ([`Mirror::take_writes`]) and shows the operator's values again after any change
//! ([`Mirror::refresh`]).
//!
//! Part of the floor of `python/`: plain data over the registry, no Python objects.

use std::cell::RefCell;
use std::rc::Rc;

use crate::cook::par::{ParDef, ParSet, ParStyle};
use crate::cook::ParValue;

use super::registry::{self, ScriptShared, ScriptState};

pub struct Mirror {
    shared: ScriptState,
    /// The parameter version the operator's values were last shown at.
    seen: u64,
}

/// What scripts did to a mirrored operator's parameters since the last look.
#[derive(Debug, Default, PartialEq)]
pub struct Writes {
    pub set: Vec<(String, ParValue)>,
    pub pulses: Vec<String>,
    /// Messages sent through a MIDI Out's `send…` methods, in order.
    pub midi: Vec<crate::cook::ScriptMidi>,
}

impl Mirror {
    /// A mirror of `defs` under `key`; `None` when the operator has no parameters or Python
    /// state of its own under that key already.
    pub fn new(key: &str, defs: Vec<ParDef>, rate: f64) -> Option<Mirror> {
        if defs.is_empty() || registry::lookup(key).is_some() {
            return None;
        }
        let mut shared = ScriptShared::new(key, false, false, rate);
        shared.pars = ParSet::builtin(defs);
        let shared = Rc::new(RefCell::new(shared));
        registry::register(&shared);
        let seen = shared.borrow().pars.version;
        Some(Mirror { shared, seen })
    }

    /// The values and pulses scripts set since the last call, against the operator's `current`
    /// parameters (only values that differ; asked for only when something was written).
    pub fn take_writes(&mut self, current: impl FnOnce() -> Vec<ParDef>) -> Writes {
        let mut s = self.shared.borrow_mut();
        let pulses = std::mem::take(&mut s.pending_pulses);
        let midi = std::mem::take(&mut s.midi_sent);
        if s.pars.version == self.seen && pulses.is_empty() {
            return Writes {
                midi,
                ..Writes::default()
            };
        }
        let current = current();
        let set = s
            .pars
            .pars()
            .iter()
            .filter(|d| d.style != ParStyle::Pulse)
            .filter(|d| current.iter().any(|c| c.name == d.name && c.val != d.val))
            .map(|d| (d.name.clone(), d.val.clone()))
            .collect();
        self.seen = s.pars.version;
        Writes { set, pulses, midi }
    }

    /// Shows the operator's parameters as they are now; scripts that read them cook again
    /// when a value changed.
    pub fn refresh(&mut self, defs: Vec<ParDef>) {
        let mut s = self.shared.borrow_mut();
        let same = s.pars.pars().len() == defs.len()
            && s.pars
                .pars()
                .iter()
                .zip(&defs)
                .all(|(a, b)| a.name == b.name && a.val == b.val);
        if same {
            self.seen = s.pars.version;
            return;
        }
        let version = s.pars.version + 1;
        s.pars = ParSet::builtin(defs);
        s.pars.version = version;
        self.seen = version;
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        registry::unregister(&self.shared);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defs(port: f64) -> Vec<ParDef> {
        vec![
            ParDef::int("port", "Network", port as i64),
            ParDef::pulse("resetpulse", "Network"),
        ]
    }

    #[test]
    fn writes_come_out_once_and_refresh_shows_the_operator() {
        let mut m = Mirror::new("mirror_test_a", defs(9000.0), 60.0).unwrap();
        assert_eq!(m.take_writes(|| defs(9000.0)), Writes::default());
        let shared = registry::lookup("mirror_test_a").unwrap();
        shared
            .borrow_mut()
            .pars
            .set("port", &ParValue::Float(9001.0))
            .unwrap();
        shared.borrow_mut().pending_pulses.push("resetpulse".into());
        let w = m.take_writes(|| defs(9000.0));
        assert_eq!(w.set, vec![("port".to_string(), ParValue::Float(9001.0))]);
        assert_eq!(w.pulses, vec!["resetpulse".to_string()]);
        assert_eq!(m.take_writes(|| defs(9000.0)), Writes::default());
        let before = shared.borrow().pars.version;
        m.refresh(defs(9002.0));
        assert!(shared.borrow().pars.version > before);
        assert_eq!(shared.borrow().pars.num("port"), 9002.0);
        drop(m);
        assert!(registry::lookup("mirror_test_a").is_none());
    }

    #[test]
    fn an_operator_with_python_state_or_no_parameters_gets_no_mirror() {
        assert!(Mirror::new("mirror_test_b", Vec::new(), 60.0).is_none());
        let _m = Mirror::new("mirror_test_c", defs(1.0), 60.0).unwrap();
        assert!(Mirror::new("mirror_test_c", defs(1.0), 60.0).is_none());
    }
}
