//! The running operator graph: operators in topological order, their node states, the cook
//! decision of every frame, exports, and the in-place rebuild of a reload (unchanged operators
//! keep their state, sockets and channels). Opens no sockets itself: operators and exporters do.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::chop::info::InfoOp;
use crate::chop::oscin::{OscInOp, OwnOutput};
use crate::chop::{
    ChopData, CookCtx, CookError, DaemonStats, Frame, NodeState, Operator, ParValue,
};
use crate::config::{Config, Kind, OperatorConfig};
use crate::export::{Destinations, Exporter, ParWrites};

/// A graph that could not be built: the errors, and the old graph handed back untouched.
pub struct Rejected {
    pub old: Option<Graph>,
    pub errors: Vec<String>,
}

/// What a reload takes over from the old graph for an unchanged operator.
type Kept = (Box<dyn Operator>, NodeState, ChopData, Option<Exporter>);

pub struct Graph {
    configs: Vec<OperatorConfig>,
    ops: Vec<Box<dyn Operator>>,
    nodes: Vec<NodeState>,
    names: HashMap<String, usize>,
    order: Vec<usize>,
    /// Output of each node after its previous cook, to see whether a cook changed anything.
    prev: Vec<ChopData>,
    exporters: Vec<Option<Exporter>>,
    dests: Destinations,
    own_output: OwnOutput,
    pub daemon: DaemonStats,
    rate: f64,
    max_slice: Duration,
    error_log: HashMap<usize, (Instant, u64)>,
    /// Parameters driven by an export to `op:`: (operator, parameter) → the exporting operator.
    driven: HashMap<(String, String), String>,
    /// Sum of every node's `export_sernum` when `driven` was last rebuilt.
    driven_sernum: Option<u64>,
}

/// Builds one operator from its config.
fn build_operator(
    cfg: &OperatorConfig,
    rate: f64,
    own: &OwnOutput,
) -> Result<Box<dyn Operator>, String> {
    Ok(match &cfg.kind {
        Kind::OscIn(c) => Box::new(OscInOp::new(cfg, c, own.clone())?),
        Kind::Info(c) => Box::new(InfoOp::new(&c.op)),
        Kind::MidiIn(c) => Box::new(crate::chop::midiin::MidiInOp::new(cfg, c, rate)?),
        Kind::Script(c) => Box::new(crate::chop::script::ScriptOp::new(cfg, c, rate)?),
    })
}

impl Graph {
    /// Builds the graph of `config`. With `old`, operators whose config is unchanged (export
    /// settings aside) are taken over with their state; the rest are built anew. On any error
    /// nothing of `old` is lost: it is handed back with the errors.
    pub fn build(
        config: &Config,
        old: Option<Graph>,
    ) -> Result<(Graph, Vec<String>), Box<Rejected>> {
        let mut old = old;
        let reject = |old, errors| Box::new(Rejected { old, errors });
        let mut errors = Vec::new();
        let dests =
            match Destinations::new(&config.destinations.values().cloned().collect::<Vec<_>>()) {
                Ok(d) => d,
                Err(e) => return Err(reject(old, vec![e])),
            };
        // Shared with every OSC In, kept across reloads: the port our exports leave from.
        let own_output = old
            .as_ref()
            .map_or_else(OwnOutput::default, |g| g.own_output.clone());
        // First pass: build what is new or changed. `old` is touched only to free a port that a
        // rebuilt operator takes over; on failure those old operators are bound again.
        let mut fresh: Vec<Option<Box<dyn Operator>>> = Vec::new();
        let mut kept = Vec::new();
        let mut released = Vec::new();
        for cfg in &config.operators {
            let reusable = old.as_ref().and_then(|g| {
                let &i = g.names.get(&cfg.name)?;
                g.configs[i].same_but_export(cfg).then_some(i)
            });
            match reusable {
                Some(i) => {
                    fresh.push(None);
                    kept.push(Some(i));
                }
                None => {
                    kept.push(None);
                    // An operator that holds a port must release it before its replacement
                    // binds the same port: drop the old one first when the port is shared.
                    if let Some(g) = old.as_mut() {
                        released.extend(g.release_conflicting(cfg));
                    }
                    match build_operator(cfg, config.rate, &own_output) {
                        Ok(op) => fresh.push(Some(op)),
                        Err(e) => {
                            errors.push(e);
                            fresh.push(None);
                        }
                    }
                }
            }
        }
        if !errors.is_empty() {
            // The new operators let go of their ports first, then the old ones take them back.
            drop(fresh);
            if let Some(g) = old.as_mut() {
                errors.extend(g.restore(&released));
            }
            return Err(reject(old, errors));
        }

        // Second pass: assemble, moving kept operators and their state out of `old`.
        let mut old_parts: HashMap<usize, Kept> = HashMap::new();
        let mut replaced = Vec::new();
        if let Some(g) = old.take() {
            let keep: HashSet<usize> = kept.iter().flatten().copied().collect();
            for (i, (((op, node), prev), exp)) in g
                .ops
                .into_iter()
                .zip(g.nodes)
                .zip(g.prev)
                .zip(g.exporters)
                .enumerate()
            {
                if keep.contains(&i) {
                    old_parts.insert(i, (op, node, prev, exp));
                } else {
                    replaced.push(node.name);
                }
            }
        }
        let mut names = HashMap::new();
        for (i, cfg) in config.operators.iter().enumerate() {
            names.insert(cfg.name.clone(), i);
        }
        let mut ops = Vec::new();
        let mut nodes = Vec::new();
        let mut prev = Vec::new();
        let mut exporters = Vec::new();
        let mut notes = Vec::new();
        for (i, cfg) in config.operators.iter().enumerate() {
            let inputs: Vec<usize> = cfg.inputs.iter().map(|n| names[n]).collect();
            let (op, mut node, p, exp) = match kept[i].and_then(|k| old_parts.remove(&k)) {
                Some(parts) => parts,
                None => {
                    notes.push(format!("built {} \"{}\"", cfg.kind_name(), cfg.name));
                    let op = fresh[i].take().expect("built in the first pass");
                    let mut node = NodeState::new(&cfg.name, cfg.kind_name(), config.rate);
                    node.timeslice = cfg.timeslice;
                    (op, node, ChopData::new(config.rate), None)
                }
            };
            node.inputs = inputs;
            let exp = match (&cfg.export, exp) {
                (Some(e), Some(mut old)) => {
                    old.reconfigure(e.clone());
                    Some(old)
                }
                (Some(e), None) => Some(Exporter::new(e.clone())),
                (None, _) => None,
            };
            ops.push(op);
            nodes.push(node);
            prev.push(p);
            exporters.push(exp);
        }
        for r in replaced {
            if !names.contains_key(&r) {
                notes.push(format!("removed \"{r}\""));
            }
        }
        let order = topological_order(config);
        own_output.set(dests.local_port());
        Ok((
            Graph {
                configs: config.operators.clone(),
                ops,
                nodes,
                names,
                order,
                prev,
                exporters,
                dests,
                own_output,
                daemon: DaemonStats::default(),
                rate: config.rate,
                max_slice: config.max_slice,
                error_log: HashMap::new(),
                driven: HashMap::new(),
                driven_sernum: None,
            },
            notes,
        ))
    }

    /// Drops an operator of this graph whose port `cfg` wants, so the new one can bind it.
    /// Returns the indices released.
    fn release_conflicting(&mut self, cfg: &OperatorConfig) -> Vec<usize> {
        let Kind::OscIn(new) = &cfg.kind else {
            return Vec::new();
        };
        let mut released = Vec::new();
        for (i, c) in self.configs.iter().enumerate() {
            if let Kind::OscIn(o) = &c.kind {
                if o.bind.port() == new.bind.port() && new.bind.port() != 0 {
                    // An inert stand-in until the new graph replaces it, or `restore` rebinds.
                    self.ops[i] = Box::new(InfoOp::new("/"));
                    released.push(i);
                }
            }
        }
        released
    }

    /// Rebuilds operators `release_conflicting` took down, from their own (old) config, after a
    /// failed rebuild: the old graph goes on with its inputs. Their channels stay in the node
    /// output; they fill again as traffic comes. Returns what could not be rebound.
    fn restore(&mut self, released: &[usize]) -> Vec<String> {
        let mut errors = Vec::new();
        for &i in released {
            match build_operator(&self.configs[i], self.rate, &self.own_output) {
                Ok(op) => self.ops[i] = op,
                Err(e) => errors.push(format!(
                    "the running operator \"{}\" could not take its port back: {e}",
                    self.configs[i].name
                )),
            }
        }
        errors
    }

    /// What listens where: `oscin "faders" on 0.0.0.0:9000`, one entry per bound operator.
    pub fn bound(&self) -> Vec<String> {
        self.ops
            .iter()
            .zip(&self.nodes)
            .filter_map(|(op, n)| {
                op.bound()
                    .map(|a| format!("{} \"{}\" on {a}", n.kind, n.name))
            })
            .collect()
    }

    pub fn nodes(&self) -> &[NodeState] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeState> {
        self.names.get(name).map(|&i| &self.nodes[i])
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    pub fn destinations(&self) -> &Destinations {
        &self.dests
    }

    /// One operator (control port status: its parameters).
    pub fn operator(&self, name: &str) -> Option<&(dyn Operator + 'static)> {
        let &i = self.names.get(name)?;
        Some(self.ops[i].as_ref())
    }

    /// The operator whose export drives parameter `par` of operator `op`, if one does.
    pub fn driven_by(&self, op: &str, par: &str) -> Option<&str> {
        self.driven
            .get(&(op.to_string(), par.to_string()))
            .map(String::as_str)
    }

    /// Every export-driven parameter of operator `op`, as (parameter, exporting operator),
    /// sorted by parameter.
    pub fn driven_pars(&self, op: &str) -> Vec<(&str, &str)> {
        let mut v: Vec<(&str, &str)> = self
            .driven
            .iter()
            .filter(|((o, _), _)| o == op)
            .map(|((_, p), by)| (p.as_str(), by.as_str()))
            .collect();
        v.sort();
        v
    }

    /// Sets a parameter from outside the graph (control port). A parameter an export drives is
    /// refused: the export would overwrite the value on its next change anyway.
    pub fn set_par_by_hand(&mut self, op: &str, par: &str, value: ParValue) -> Result<(), String> {
        if !self.names.contains_key(op) {
            return Err(format!("no operator \"{op}\""));
        }
        if let Some(by) = self.driven_by(op, par) {
            return Err(format!(
                "parameter \"{par}\" of \"{op}\" is driven by the export of \"{by}\"; \
                 change that export to set it by hand"
            ));
        }
        let i = self.names[op];
        self.ops[i].set_par(par, value)
    }

    /// Mutable access to one operator (control port: set, pulse, reset).
    pub fn operator_mut(&mut self, name: &str) -> Option<&mut (dyn Operator + 'static)> {
        let &i = self.names.get(name)?;
        Some(self.ops[i].as_mut())
    }

    /// Runs one frame: fold inputs, cook in topological order, export, flush.
    pub fn frame(&mut self, frame: &Frame) {
        let max_step = ((self.max_slice.as_secs_f64() * frame.rate).floor() as i64).max(1);
        let frame = Frame {
            step: frame.step.clamp(1, max_step),
            ..*frame
        };
        for n in &mut self.nodes {
            n.stats.cooked_this_frame = false;
        }
        for k in 0..self.order.len() {
            let i = self.order[k];
            let wants = self.ops[i].wants_cook(&frame, &self.nodes);
            let input_changed = self.nodes[i]
                .inputs
                .iter()
                .any(|&j| self.nodes[j].changed_frame == frame.frame);
            // Every operator cooks on its first frame (a kept one keeps its count).
            let first = self.nodes[i].stats.total_cooks == 0;
            if wants || input_changed || first {
                self.cook(i, &frame);
            }
        }
        self.export(&frame);
        for (op, node) in self.ops.iter_mut().zip(&mut self.nodes) {
            node.extras.clear();
            op.extras(&mut node.extras);
            op.housekeeping();
        }
        self.daemon.packets_in = self
            .nodes
            .iter()
            .flat_map(|n| n.extras.iter())
            .filter(|(k, _)| *k == "packets")
            .map(|(_, v)| *v as u64)
            .sum();
    }

    fn cook(&mut self, i: usize, frame: &Frame) {
        let started = Instant::now();
        let mut out = std::mem::take(&mut self.nodes[i].output);
        let result = {
            let mut ctx = CookCtx {
                frame,
                me: i,
                nodes: &mut self.nodes,
                names: &self.names,
                daemon: &self.daemon,
            };
            self.ops[i].cook(&mut ctx, &mut out)
        };
        let ended = Instant::now();
        let cfg = &self.configs[i];
        match result {
            Ok(()) => {
                if let (false, Some(&j)) = (cfg.scope.is_all(), self.nodes[i].inputs.first()) {
                    let input = std::mem::take(&mut self.nodes[j].output);
                    out.pass_through(&input, &cfg.scope);
                    self.nodes[j].output = input;
                }
                if out != self.prev[i] {
                    self.prev[i].copy_from(&out);
                    self.nodes[i].changed_frame = frame.frame;
                }
            }
            Err(e) => {
                let node = &mut self.nodes[i];
                node.stats.errors += 1;
                node.stats.last_error = Some(e.to_string());
                let (last, suppressed) = self
                    .error_log
                    .entry(i)
                    .or_insert((started - Duration::from_secs(60), 0));
                if matches!(e, CookError::Logged(_)) {
                    // The operator logged it, rate-limited, with more detail than we have.
                } else if started.duration_since(*last) >= Duration::from_secs(5) {
                    tracing::error!(op = %node.name, "{} \"{}\": {e}{}", node.kind, node.name,
                        if *suppressed > 0 { format!(" ({suppressed} more errors since the last report)") } else { String::new() });
                    *last = started;
                    *suppressed = 0;
                } else {
                    *suppressed += 1;
                }
                // The last good output stays.
                out.copy_from(&self.prev[i]);
            }
        }
        let node = &mut self.nodes[i];
        node.output = out;
        let s = &mut node.stats;
        s.total_cooks += 1;
        s.cook_time_ms = ended.duration_since(started).as_secs_f64() * 1e3;
        s.cook_frame = frame.frame;
        s.cook_abs_frame = frame.frame;
        s.cook_start_ms = frame.ms_since_start(started);
        s.cook_end_ms = frame.ms_since_start(ended);
        s.cooked_this_frame = true;
    }

    fn export(&mut self, frame: &Frame) {
        let mut writes: ParWrites = Vec::new();
        let names = &self.names;
        let op_exists = |n: &str| names.contains_key(n);
        for (i, exp) in self.exporters.iter_mut().enumerate() {
            if let Some(exp) = exp {
                let node = &mut self.nodes[i];
                exp.export(
                    &node.output,
                    &mut self.dests,
                    &op_exists,
                    &mut node.stats,
                    frame.started,
                    &mut writes,
                );
            }
        }
        self.dests.flush();
        // Export mappings change rarely (each change bumps a sernum): rebuild the table of
        // export-driven parameters only then.
        let sernum = self.nodes.iter().map(|n| n.stats.export_sernum).sum();
        if self.driven_sernum != Some(sernum) {
            self.driven_sernum = Some(sernum);
            self.driven.clear();
            for (i, exp) in self.exporters.iter().enumerate() {
                for (op, par) in exp.iter().flat_map(|e| e.par_targets()) {
                    self.driven
                        .entry((op.to_string(), par.to_string()))
                        .or_insert_with(|| self.nodes[i].name.clone());
                }
            }
        }
        self.daemon.packets_out = self.dests.packets_out;
        self.daemon.messages_out = self.dests.messages_out;
        for (op, par, v) in writes {
            if let Some(&i) = self.names.get(&op) {
                if let Err(e) = self.ops[i].set_par(&par, ParValue::Float(v as f64)) {
                    self.nodes[i].stats.warnings += 1;
                    tracing::debug!("export to \"{op}\": {e}");
                }
            }
        }
    }
}

/// Operators ordered so that every one comes after its inputs (and an Info CHOP after what it
/// inspects). The config was checked to have no cycle.
fn topological_order(config: &Config) -> Vec<usize> {
    let index: HashMap<&str, usize> = config
        .operators
        .iter()
        .enumerate()
        .map(|(i, o)| (o.name.as_str(), i))
        .collect();
    let deps = |o: &OperatorConfig| -> Vec<usize> {
        let mut d: Vec<usize> = o
            .inputs
            .iter()
            .filter_map(|n| index.get(n.as_str()).copied())
            .collect();
        if let Kind::Info(info) = &o.kind {
            d.extend(index.get(info.op.as_str()).copied());
        }
        d
    };
    let mut order = Vec::new();
    let mut state = vec![0u8; config.operators.len()];
    fn visit(
        i: usize,
        config: &Config,
        deps: &dyn Fn(&OperatorConfig) -> Vec<usize>,
        state: &mut [u8],
        order: &mut Vec<usize>,
    ) {
        if state[i] != 0 {
            return;
        }
        state[i] = 1;
        for j in deps(&config.operators[i]) {
            visit(j, config, deps, state, order);
        }
        state[i] = 2;
        order.push(i);
    }
    for i in 0..config.operators.len() {
        visit(i, config, &deps, &mut state, &mut order);
    }
    order
}
