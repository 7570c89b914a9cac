//! MIDI destinations (`[destinations.NAME] type = "midi"`): an export whose root is one sends
//! the exported channels, named the TouchDesigner way (`ch1c7`, `ch1n60`; with Channel Name is
//! Path:Parameter, the parameter part), through a [`MidiPort`], the sender the `midiout` kind
//! uses: on change, with hot-plug and the state sent again on every connection. Export sees
//! them through [`MidiSink`]; the graph hands them in.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{MidiOutConfig, MidiPort};
use crate::chop::midiin::names::Addr;
use crate::config::Settings;
use crate::export::MidiSink;

struct MidiDest {
    name: String,
    cfg: MidiOutConfig,
    port: MidiPort,
    /// The message slots export has asked for ([`MidiSink::slot`] indexes them).
    slots: Vec<Addr>,
}

/// The running MIDI destinations, by name.
#[derive(Default)]
pub struct MidiDestinations {
    list: Vec<MidiDest>,
}

impl MidiSink for MidiDestinations {
    /// Takes the MIDI destinations of a (new) config: one with the same name and settings keeps
    /// its sender (its connection and state), the others are started. Nothing changes when one
    /// cannot start. Returns whether anything changed (cached export targets must then be
    /// resolved again).
    fn reconcile(&mut self, new: &BTreeMap<String, Arc<dyn Settings>>) -> Result<bool, String> {
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
                            slots: Vec::new(),
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

    fn index_of(&self, name: &str) -> Option<usize> {
        self.list.iter().position(|d| d.name == name)
    }

    fn slot(&mut self, dest: usize, chan: &str) -> Option<usize> {
        let d = &mut self.list[dest];
        let a = d.port.enc.addr(chan)?;
        Some(match d.slots.iter().position(|s| *s == a) {
            Some(k) => k,
            None => {
                d.slots.push(a);
                d.slots.len() - 1
            }
        })
    }

    fn set(&mut self, dest: usize, slot: usize, value: f32) {
        let d = &mut self.list[dest];
        d.port.set(d.slots[slot], value);
    }

    /// End of a frame: wakes the senders, and sends a newly connected device its state.
    fn flush(&mut self) {
        for d in &mut self.list {
            if !d.port.poll() {
                d.port.sender.flush();
            }
        }
    }
}
