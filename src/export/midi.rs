//! MIDI destinations (`[destinations.NAME] type = "midi"`): an export whose root is one sends
//! the exported channels, named the TouchDesigner way (`ch1c7`, `ch1n60`; with Channel Name is
//! Path:Parameter, the parameter part), through a [`MidiPort`], the sender the `midiout` kind
//! uses: on change, with hot-plug and the state sent again on every connection.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::chop::midiin::names::Addr;
use crate::chop::midiout::{MidiOutConfig, MidiPort};
use crate::config::Settings;

struct MidiDest {
    name: String,
    cfg: MidiOutConfig,
    port: MidiPort,
}

/// The running MIDI destinations, by name.
#[derive(Default)]
pub struct MidiDestinations {
    list: Vec<MidiDest>,
}

impl MidiDestinations {
    /// Takes the MIDI destinations of a (new) config: one with the same name and settings keeps
    /// its sender (its connection and state), the others are started. Nothing changes when one
    /// cannot start. Returns whether anything changed (cached export targets must then be
    /// resolved again).
    pub fn reconcile(&mut self, new: &BTreeMap<String, Arc<dyn Settings>>) -> Result<bool, String> {
        let mut old: Vec<Option<MidiDest>> = std::mem::take(&mut self.list)
            .into_iter()
            .map(Some)
            .collect();
        let mut list = Vec::new();
        let mut changed = false;
        for (name, settings) in new {
            let Some(cfg) = (**settings).as_any().downcast_ref::<MidiOutConfig>() else {
                continue;
            };
            let kept = old
                .iter_mut()
                .find(|d| d.as_ref().is_some_and(|d| d.name == *name && d.cfg == *cfg))
                .and_then(Option::take);
            match kept {
                Some(d) => list.push(d),
                None => {
                    changed = true;
                    match MidiPort::new(&format!("destination \"{name}\""), cfg) {
                        Ok(port) => list.push(MidiDest {
                            name: name.clone(),
                            cfg: cfg.clone(),
                            port,
                        }),
                        Err(e) => {
                            // Back as it was; the new senders stop as they are dropped.
                            self.list = old.into_iter().flatten().collect();
                            return Err(e);
                        }
                    }
                }
            }
        }
        changed |= old.iter().any(Option::is_some);
        self.list = list;
        Ok(changed)
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.list.iter().position(|d| d.name == name)
    }

    /// The slot channel `chan` stands for at destination `dest` (its names), if any.
    pub fn addr(&self, dest: usize, chan: &str) -> Option<Addr> {
        self.list[dest].port.enc.addr(chan)
    }

    pub fn set(&mut self, dest: usize, a: Addr, value: f32) {
        self.list[dest].port.set(a, value);
    }

    /// End of a frame: wakes the senders, and sends a newly connected device its state.
    pub fn flush(&mut self) {
        for d in &mut self.list {
            if !d.port.poll() {
                d.port.sender.flush();
            }
        }
    }

    /// Each destination's counters (what a MIDI Out's Info CHOP shows), for the status.
    pub fn stats(&self) -> Vec<(&str, Vec<(&'static str, f64)>)> {
        self.list
            .iter()
            .map(|d| {
                let mut v = Vec::new();
                d.port.sender.extras(&mut v);
                (d.name.as_str(), v)
            })
            .collect()
    }
}
