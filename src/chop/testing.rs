//! A graph built from a config snippet and driven frame by frame, for the native kinds' unit
//! tests: the real checker, the real `Graph` (cook decisions, scope pass-through, parameters),
//! no sockets unless the snippet opens some.

use std::path::Path;
use std::time::Instant;

use crate::cook::{ChopData, Frame, ParValue};
use crate::graph::Graph;

pub struct Rig {
    pub graph: Graph,
    pub rate: f64,
}

/// The diagnostics of a snippet that must not check, one per line.
pub fn check_err(src: &str) -> String {
    match crate::config::check_str(Path::new("t.toml"), src, crate::chop::KINDS) {
        Ok(_) => panic!("expected check errors for:\n{src}"),
        Err(d) => d
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

impl Rig {
    /// The graph of `src` (at `rate = 60` unless it says otherwise).
    pub fn new(src: &str) -> Rig {
        let config = crate::config::check_str(Path::new("t.toml"), src, crate::chop::KINDS)
            .unwrap_or_else(|d| {
                panic!(
                    "{}",
                    d.iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            });
        let rate = config.rate;
        let (graph, _) = Graph::build(&config).unwrap_or_else(|e| panic!("{e:?}"));
        Rig { graph, rate }
    }

    /// Runs frame `n` (one frame after the previous).
    pub fn frame(&mut self, n: i64) {
        self.frame_step(n, 1);
    }

    /// Runs frame `n`, `step` frames after the previous one (`step - 1` dropped).
    pub fn frame_step(&mut self, n: i64, step: i64) {
        let now = Instant::now();
        self.graph.frame(&Frame {
            frame: n,
            step,
            rate: self.rate,
            due: now,
            started: now,
        });
    }

    /// A reaction pass after frame `last` (`react = true`).
    pub fn react(&mut self, last: i64) {
        let now = Instant::now();
        self.graph.react(&Frame {
            frame: last,
            step: 1,
            rate: self.rate,
            due: now,
            started: now,
        });
    }

    pub fn out(&self, op: &str) -> &ChopData {
        &self
            .graph
            .node(op)
            .unwrap_or_else(|| panic!("no {op}"))
            .output
    }

    /// The last sample of channel `chan` of `op`.
    pub fn val(&self, op: &str, chan: &str) -> f32 {
        let o = self.out(op);
        let i = o
            .index_of(chan)
            .unwrap_or_else(|| panic!("{op} has no {chan}: {:?}", o.names()));
        o.last(i)
    }

    pub fn set(&mut self, op: &str, par: &str, v: ParValue) {
        self.graph.set_par_by_hand(op, par, v).unwrap();
    }

    pub fn pulse(&mut self, op: &str, par: &str) {
        self.graph.operator_mut(op).unwrap().pulse_par(par).unwrap();
    }

    pub fn par(&self, op: &str, par: &str) -> ParValue {
        self.graph
            .operator(op)
            .unwrap()
            .par_defs()
            .into_iter()
            .find(|d| d.name == par)
            .unwrap_or_else(|| panic!("{op} has no parameter {par}"))
            .val
    }
}
