//! The running operator graph: operators in topological order, their node states, the cook
//! decision of every frame, exports, and the in-place rebuild of a reload (unchanged operators
//! keep their state, sockets and channels). Opens no sockets itself: operators and exporters do.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tracing::Span;

use crate::chop::info::InfoOp;
use crate::config::{Config, Identity, OperatorConfig};
use crate::cook::{
    newest_input, BuildCtx, ChopData, CookCtx, CookError, DaemonStats, Frame, KeptPar, KeptPars,
    NodeState, Operator, OwnPort, ParValue,
};
use crate::export::{Destinations, DestinationsDiff, Exporter, MidiSink, ParWrites, Resolved};
use crate::logging::RateLimit;
use crate::python::mirror::Mirror;
use crate::wake::Wake;

/// The same cook error of one operator is logged at most once per this interval.
const COOK_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(5);

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
    /// Shared with every operator that must recognise our own exports; kept across reloads.
    own_port: OwnPort,
    /// Rung by receive threads when input arrives; kept across reloads.
    wake: Wake,
    /// Scratch of a reaction pass, one per node: it cooked in this pass.
    cooked_now: Vec<bool>,
    pub daemon: DaemonStats,
    rate: f64,
    max_slice: Duration,
    /// Entered around everything a node does in a frame, so its log lines say which operator
    /// they come from. Made once per node: a span made per cook would format its fields anew
    /// each time, thousands of times a second; entering a made one is cheap (and does nothing
    /// when logging is off).
    spans: Vec<Span>,
    /// Cook errors logged per node (the same error every frame is logged once in a while).
    error_log: Vec<RateLimit>,
    /// Parameters driven by an export to `op:`: (operator, parameter) → the exporting operator.
    driven: HashMap<(String, String), String>,
    /// Sum of every node's `export_sernum` when `driven` was last rebuilt.
    driven_sernum: Option<u64>,
    /// Python's view of the parameters of operators without Python state of their own.
    mirrors: Vec<Option<Mirror>>,
    /// `registry::par_writes` when the mirrors were last looked at.
    par_writes_seen: u64,
}

/// One operator of the running graph, taken apart to be moved into the next one.
struct Part {
    op: Box<dyn Operator>,
    node: NodeState,
    prev: ChopData,
    exporter: Option<Exporter>,
}

/// What a reload does with the operators of the new config: each is kept from the running graph
/// (same config apart from its export) or built anew; `released` are running operators stopped
/// early so that a rebuilt one can bind their port. And what it does with the destinations,
/// which every export's cached targets (destination index, address) follow.
struct ReloadDiff {
    /// One per operator of the new config, in its order.
    fates: Vec<Fate>,
    released: Vec<usize>,
    destinations: DestinationsDiff,
    resolved: Resolved,
}

enum Fate {
    /// The running operator at this index carries on.
    Kept(usize),
    Built(Box<dyn Operator>),
}

impl Graph {
    /// Builds the graph of `config` from scratch.
    pub fn build(config: &Config) -> Result<(Graph, Vec<String>), Vec<String>> {
        let mut dests =
            Destinations::new(&config.destinations.values().cloned().collect::<Vec<_>>())
                .map_err(|e| vec![e])?;
        let mut midi = crate::chop::midiout::MidiDestinations::default();
        midi.reconcile(&config.midi_destinations)
            .map_err(|e| vec![e])?;
        dests.midi = Some(Box::new(midi));
        let own_port = OwnPort::default();
        let wake = Wake::new();
        let cx = build_ctx(config, &own_port, &wake);
        let mut parts = Vec::new();
        let mut errors = Vec::new();
        for cfg in &config.operators {
            match op_span(cfg).in_scope(|| cfg.settings.build(cfg, &cx)) {
                Ok(op) => parts.push(Some(Part::new(op, cfg, config.rate))),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let notes = config
            .operators
            .iter()
            .map(|c| format!("built {} \"{}\"", c.kind, c.name))
            .collect();
        let mut g = Graph {
            configs: Vec::new(),
            ops: Vec::new(),
            nodes: Vec::new(),
            names: HashMap::new(),
            order: Vec::new(),
            prev: Vec::new(),
            exporters: Vec::new(),
            dests,
            own_port,
            wake,
            cooked_now: Vec::new(),
            daemon: DaemonStats::default(),
            rate: config.rate,
            max_slice: config.max_slice,
            spans: Vec::new(),
            error_log: Vec::new(),
            driven: HashMap::new(),
            driven_sernum: None,
            mirrors: Vec::new(),
            par_writes_seen: 0,
        };
        g.install(config, parts, None);
        Ok((g, notes))
    }

    /// Applies `config` in place: operators whose config is unchanged (export settings aside)
    /// carry on with their state, sockets and channels; the rest are built anew. Returns what
    /// changed. On any error the running graph goes on as it was, and the errors are returned.
    pub fn reload(&mut self, config: &Config) -> Result<Vec<String>, Vec<String>> {
        let diff = self.diff(config)?;
        // The MIDI destinations change only once nothing else can fail: the kept exports know
        // them by their place in the list.
        let midi = self
            .dests
            .midi
            .as_mut()
            .expect("the graph hands in its MIDI destinations");
        let midi_changed = match midi.reconcile(&config.midi_destinations) {
            Ok(changed) => changed,
            Err(e) => {
                let mut errors = vec![e];
                errors.extend(self.undo(diff));
                return Err(errors);
            }
        };
        let mut notes = Vec::new();
        let mut old: Vec<Option<Part>> = self.take_parts().into_iter().map(Some).collect();
        let mut parts = Vec::new();
        for (cfg, fate) in config.operators.iter().zip(diff.fates) {
            parts.push(Some(match fate {
                Fate::Kept(i) => old[i].take().expect("each running operator is kept once"),
                Fate::Built(mut op) => {
                    notes.push(format!("built {} \"{}\"", cfg.kind, cfg.name));
                    // Export-driven values are carried too: an export sends again only when
                    // its channel changes, and until then the last value it sent is the right one.
                    let same = self
                        .names
                        .get(&cfg.name)
                        .copied()
                        .filter(|&i| self.configs[i].identity() == cfg.identity());
                    if let Some(old) = same.and_then(|i| old[i].as_ref()) {
                        op.restore_pars(&old.op.runtime_pars());
                    }
                    Part::new(op, cfg, config.rate)
                }
            }));
        }
        for part in old.into_iter().flatten() {
            if !config.operators.iter().any(|c| c.name == part.node.name) {
                notes.push(format!("removed \"{}\"", part.node.name));
            }
        }
        notes.extend(diff.destinations.notes());
        // Unchanged destinations leave every cached target right: nothing to resolve again.
        let remap = (!diff.destinations.is_unchanged()).then_some(diff.destinations.remap);
        self.dests.replace(diff.resolved);
        self.install(config, parts, remap.as_deref());
        if midi_changed {
            notes.push("MIDI destinations changed".into());
            for e in self.exporters.iter_mut().flatten() {
                e.invalidate();
            }
        }
        Ok(notes)
    }

    /// Builds what is new or changed in `config`. Running operators are touched only to free a
    /// port that a rebuilt operator takes over; on failure those are bound again and the errors
    /// returned.
    fn diff(&mut self, config: &Config) -> Result<ReloadDiff, Vec<String>> {
        let resolved =
            Destinations::resolve(&config.destinations.values().cloned().collect::<Vec<_>>())
                .map_err(|e| vec![e])?;
        let cx = build_ctx(config, &self.own_port, &self.wake);
        let mut diff = ReloadDiff {
            fates: Vec::new(),
            released: Vec::new(),
            destinations: self.dests.diff(&resolved),
            resolved,
        };
        let mut errors = Vec::new();
        for cfg in &config.operators {
            let same = self
                .names
                .get(&cfg.name)
                .copied()
                .filter(|&i| self.configs[i].same_but_export(cfg));
            if let Some(i) = same {
                diff.fates.push(Fate::Kept(i));
                continue;
            }
            // An operator that holds a port must release it before its replacement binds the
            // same port: drop the old one first when the port is shared.
            diff.released.extend(self.release_conflicting(cfg));
            match op_span(cfg).in_scope(|| cfg.settings.build(cfg, &cx)) {
                Ok(op) => diff.fates.push(Fate::Built(op)),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            return Ok(diff);
        }
        errors.extend(self.undo(diff));
        Err(errors)
    }

    /// Undoes a [`Graph::diff`] that will not be installed: the new operators let go of their
    /// ports first, then the old ones take them back. Returns what could not be bound again.
    fn undo(&mut self, mut diff: ReloadDiff) -> Vec<String> {
        let released = std::mem::take(&mut diff.released);
        drop(diff);
        self.restore(&released)
    }

    /// Takes every operator out of this graph, leaving it empty.
    fn take_parts(&mut self) -> Vec<Part> {
        let ops = std::mem::take(&mut self.ops);
        let nodes = std::mem::take(&mut self.nodes);
        let prev = std::mem::take(&mut self.prev);
        let exporters = std::mem::take(&mut self.exporters);
        ops.into_iter()
            .zip(nodes)
            .zip(prev)
            .zip(exporters)
            .map(|(((op, node), prev), exporter)| Part {
                op,
                node,
                prev,
                exporter,
            })
            .collect()
    }

    /// Makes this graph the one of `config`, from its operators' parts (one per operator, in
    /// config order); the destinations, the own port and the daemon's counters stay. `remap`:
    /// the destinations changed, and kept exporters resolve their targets again.
    fn install(
        &mut self,
        config: &Config,
        parts: Vec<Option<Part>>,
        remap: Option<&[Option<usize>]>,
    ) {
        self.names = config
            .operators
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        self.configs = config.operators.clone();
        self.order = config.order.clone();
        self.rate = config.rate;
        self.max_slice = config.max_slice;
        self.error_log.clear();
        self.spans.clear();
        self.driven.clear();
        self.driven_sernum = None;
        self.ops.clear();
        self.nodes.clear();
        self.prev.clear();
        self.exporters.clear();
        self.mirrors.clear();
        for (cfg, part) in config.operators.iter().zip(parts) {
            let mut part = part.expect("one part per operator");
            part.node.inputs = cfg.inputs.iter().map(|n| self.names[n]).collect();
            let exporter = match (&cfg.export, part.exporter) {
                (Some(e), Some(mut old)) => {
                    if let Some(remap) = remap {
                        old.retarget(remap);
                    }
                    old.reconfigure(e.clone());
                    Some(old)
                }
                (Some(e), None) => Some(Exporter::new(e.clone())),
                (None, _) => None,
            };
            self.ops.push(part.op);
            self.nodes.push(part.node);
            self.prev.push(part.prev);
            self.exporters.push(exporter);
            self.spans.push(op_span(cfg));
            self.error_log.push(RateLimit::new(COOK_ERROR_LOG_INTERVAL));
        }
        self.mirrors = self
            .ops
            .iter()
            .zip(&self.configs)
            .map(|(op, cfg)| Mirror::new(&cfg.name, op.par_defs(), config.rate))
            .collect();
        self.own_port.set(self.dests.local_port());
    }

    /// Drops an operator of this graph whose port `cfg` wants, so the new one can bind it.
    /// Returns the indices released.
    fn release_conflicting(&mut self, cfg: &OperatorConfig) -> Vec<usize> {
        let Some(port) = cfg.settings.udp_port().filter(|&p| p != 0) else {
            return Vec::new();
        };
        let mut released = Vec::new();
        for (i, c) in self.configs.iter().enumerate() {
            if c.settings.udp_port() == Some(port) {
                // An inert stand-in until the new graph replaces it, or `restore` rebinds.
                self.ops[i] = Box::new(InfoOp::new("/"));
                released.push(i);
            }
        }
        released
    }

    /// Rebuilds operators `release_conflicting` took down, from their own (old) config, after a
    /// failed rebuild: the old graph goes on with its inputs. Their channels stay in the node
    /// output; they fill again as traffic comes. Returns what could not be rebound.
    fn restore(&mut self, released: &[usize]) -> Vec<String> {
        let mut errors = Vec::new();
        let cx = BuildCtx {
            rate: self.rate,
            max_slice: self.max_slice,
            own_port: self.own_port.clone(),
            wake: self.wake.clone(),
        };
        for &i in released {
            let cfg = &self.configs[i];
            match op_span(cfg).in_scope(|| cfg.settings.build(cfg, &cx)) {
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
        let r = self.ops[i].set_par(par, value);
        self.refresh_mirror(i);
        r
    }

    /// Pulses a parameter from outside the graph (control port).
    pub fn pulse_par_by_hand(&mut self, op: &str, par: &str) -> Result<(), String> {
        let &i = self
            .names
            .get(op)
            .ok_or_else(|| format!("no operator \"{op}\""))?;
        let r = self.ops[i].pulse_par(par);
        self.refresh_mirror(i);
        r
    }

    /// Shows operator `i`'s parameters to Python as they are now.
    fn refresh_mirror(&mut self, i: usize) {
        if let Some(m) = self.mirrors.get_mut(i).and_then(Option::as_mut) {
            m.refresh(self.ops[i].par_defs());
        }
    }

    /// Hands the parameter writes scripts made to mirrored operators; a write the operator
    /// refuses is logged and the mirror shows the operator's value again.
    fn apply_mirrored_writes(&mut self) {
        for i in 0..self.mirrors.len() {
            let Some(m) = self.mirrors[i].as_mut() else {
                continue;
            };
            let op = &self.ops[i];
            let w = m.take_writes(|| op.par_defs());
            if w.set.is_empty() && w.pulses.is_empty() && w.midi.is_empty() {
                continue;
            }
            let span = self.spans[i].clone();
            let _in = span.enter();
            for msg in &w.midi {
                if let Err(e) = self.ops[i].send_midi(msg) {
                    tracing::warn!("a script sent MIDI: {e}");
                }
            }
            for (name, value) in w.set {
                if let Err(e) = self.ops[i].set_par(&name, value) {
                    tracing::warn!("a script set parameter \"{name}\": {e}");
                }
            }
            for name in w.pulses {
                if let Err(e) = self.ops[i].pulse_par(&name) {
                    tracing::warn!("a script pulsed parameter \"{name}\": {e}");
                }
            }
            self.refresh_mirror(i);
        }
    }

    /// The runtime-set parameters of every operator that has some, by name with its identity,
    /// leaving out those an export drives (the export sets them again).
    pub fn kept_pars(&self) -> Vec<(&str, Identity, KeptPars)> {
        self.configs
            .iter()
            .zip(&self.ops)
            .filter_map(|(cfg, op)| {
                let mut pars = op.runtime_pars();
                pars.retain(|(p, _)| self.driven_by(&cfg.name, p).is_none());
                (!pars.is_empty()).then(|| (cfg.name.as_str(), cfg.identity(), pars))
            })
            .collect()
    }

    /// Brings back runtime-set parameters of operator `name` when it is still the operator of
    /// `identity`; returns whether it was.
    pub fn restore_pars(
        &mut self,
        name: &str,
        identity: &Identity,
        pars: &[(String, KeptPar)],
    ) -> bool {
        match self.names.get(name) {
            Some(&i) if self.configs[i].identity() == *identity => {
                self.ops[i].restore_pars(pars);
                true
            }
            _ => false,
        }
    }

    /// Each operator's name and identity, in config order.
    pub fn identities(&self) -> Vec<(&str, Identity)> {
        self.configs
            .iter()
            .map(|c| (c.name.as_str(), c.identity()))
            .collect()
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
            let wants = {
                let _in = self.spans[i].enter();
                self.ops[i].wants_cook(&frame, &self.nodes)
            };
            // An input changed since its last cook (in this frame, or in a reaction it did not
            // cook in: it depends on time).
            let seen = newest_input(&self.nodes, i);
            let input_changed = seen > self.nodes[i].inputs_seen;
            // Every operator cooks on its first frame (a kept one keeps its count).
            let first = self.nodes[i].stats.total_cooks == 0;
            if wants || input_changed || first {
                self.cook(i, &frame, seen);
                let writes = crate::python::registry::par_writes();
                if writes != self.par_writes_seen {
                    self.par_writes_seen = writes;
                    self.apply_mirrored_writes();
                }
            }
        }
        self.export(&frame, None);
        for ((op, node), span) in self.ops.iter_mut().zip(&mut self.nodes).zip(&self.spans) {
            let _in = span.enter();
            node.extras.clear();
            op.extras(&mut node.extras);
            op.housekeeping();
        }
        self.daemon.packets_in = self.ops.iter().map(|op| op.packets_in()).sum();
    }

    /// Whether any operator's frames must start on time ([`Operator::keeps_time`]): the clock
    /// spins before each frame for them.
    pub fn keeps_time(&self) -> bool {
        (0..self.ops.len()).any(|i| self.nodes[i].timeslice || self.ops[i].keeps_time())
    }

    /// Whether operator `i` depends on time: it is time-sliced, or says so.
    fn on_clock_only(&self, i: usize) -> bool {
        self.nodes[i].timeslice || self.ops[i].time_dependent()
    }

    /// A reaction pass between frames (`react = true`): input arrived after `last`, the frame
    /// that ran last. Folds queued input and cooks, in order, every operator that does not
    /// depend on time and wants to cook or has an input that changed since its last cook, then
    /// exports what cooked and flushes. Operators see `last` with a step of 0 (no time passed,
    /// no frame counter moves); the time-dependent operators below a change have not seen it
    /// and cook at the next frame. Returns how many operators cooked.
    pub fn react(&mut self, last: &Frame) -> usize {
        let frame = Frame {
            step: 0,
            started: Instant::now(),
            ..*last
        };
        let n = self.nodes.len();
        self.cooked_now.clear();
        self.cooked_now.resize(n, false);
        let mut cooked = 0;
        for k in 0..self.order.len() {
            let i = self.order[k];
            // A node waits for the clock when it depends on time, or has not cooked on a
            // frame yet (its first cook is a frame's).
            if self.nodes[i].stats.total_cooks == 0 || self.on_clock_only(i) {
                continue;
            }
            let wants = {
                let _in = self.spans[i].enter();
                self.ops[i].wants_cook(&frame, &self.nodes)
            };
            let seen = newest_input(&self.nodes, i);
            let input_changed = seen > self.nodes[i].inputs_seen;
            if wants || input_changed {
                self.cook(i, &frame, seen);
                self.cooked_now[i] = true;
                cooked += 1;
                let writes = crate::python::registry::par_writes();
                if writes != self.par_writes_seen {
                    self.par_writes_seen = writes;
                    self.apply_mirrored_writes();
                }
            }
        }
        if cooked > 0 {
            let only = std::mem::take(&mut self.cooked_now);
            self.export(&frame, Some(&only));
            self.cooked_now = only;
            self.daemon.react_passes += 1;
        }
        cooked
    }

    /// The doorbell receive threads ring when they queued input.
    pub fn wake(&self) -> &Wake {
        &self.wake
    }

    /// Cooks node `i`, whose inputs' newest version is `seen` ([`newest_input`]).
    fn cook(&mut self, i: usize, frame: &Frame, seen: u64) {
        let _in = self.spans[i].enter();
        let started = Instant::now();
        self.nodes[i].inputs_seen = seen;
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
                    self.nodes[i].mark_changed();
                }
            }
            Err(e) => {
                let node = &mut self.nodes[i];
                node.stats.errors += 1;
                let text = e.to_string();
                if matches!(e, CookError::Logged(_)) {
                    // The operator logged it, rate-limited, with more detail than we have.
                } else if let Some(held) = self.error_log[i].allow(&text) {
                    let more = held.suffix("errors");
                    tracing::error!("{text}{more}");
                }
                node.stats.last_error = Some(text);
                // The last good output stays.
                out.copy_from(&self.prev[i]);
            }
        }
        let node = &mut self.nodes[i];
        node.output = out;
        let s = &mut node.stats;
        s.total_cooks += 1;
        s.react_cooks += u64::from(frame.is_reaction());
        s.cook_time_ms = ended.duration_since(started).as_secs_f64() * 1e3;
        s.cook_frame = frame.frame;
        s.cook_abs_frame = frame.frame;
        s.cook_start_ms = frame.ms_since_start(started);
        s.cook_end_ms = frame.ms_since_start(ended);
        s.cooked_this_frame = true;
    }

    /// Exports every node with an export (`only`: just those marked), then flushes.
    fn export(&mut self, frame: &Frame, only: Option<&[bool]>) {
        let mut writes: ParWrites = Vec::new();
        let names = &self.names;
        let op_exists = |n: &str| names.contains_key(n);
        for (i, exp) in self.exporters.iter_mut().enumerate() {
            if only.is_some_and(|o| !o[i]) {
                continue;
            }
            if let Some(exp) = exp {
                let _in = self.spans[i].enter();
                let nodes = &self.nodes;
                let warned =
                    exp.follow_dat(|d| names.get(d).and_then(|&j| nodes[j].dat.as_deref()));
                self.nodes[i].stats.warnings += warned;
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
        let dests = &mut self.dests;
        for op in &mut self.ops {
            op.osc_out(&mut |name, item| dests.send_out(name, item));
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
        let links = self.dests.link_totals();
        self.daemon.dests_down = links.down;
        self.daemon.dest_outages = links.outages;
        self.daemon.dest_drops = links.dropped;
        for (op, par, v) in writes {
            if let Some(&i) = self.names.get(&op) {
                if let Err(e) = self.ops[i].set_par(&par, ParValue::Float(v as f64)) {
                    self.nodes[i].stats.warnings += 1;
                    tracing::debug!("export to \"{op}\": {e}");
                }
                self.refresh_mirror(i);
            }
        }
    }
}

/// The span of one operator: its kind and name on every line logged on its behalf. At the error
/// level, so that it is on whenever any of its lines can be: its lines no longer name the
/// operator themselves. It costs nothing per cook at any level (it is made once per node).
fn op_span(cfg: &OperatorConfig) -> Span {
    tracing::error_span!("op", kind = %cfg.kind, name = %cfg.name)
}

fn build_ctx(config: &Config, own_port: &OwnPort, wake: &Wake) -> BuildCtx {
    BuildCtx {
        rate: config.rate,
        max_slice: config.max_slice,
        own_port: own_port.clone(),
        wake: wake.clone(),
    }
}

impl Part {
    /// A newly built operator with a fresh node.
    fn new(op: Box<dyn Operator>, cfg: &OperatorConfig, rate: f64) -> Part {
        let mut node = NodeState::new(&cfg.name, cfg.kind, rate);
        node.timeslice = cfg.timeslice;
        node.dat = op.initial_dat().map(Box::new);
        Part {
            op,
            node,
            prev: ChopData::new(rate),
            exporter: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::Path;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn frame(n: i64, at: Instant) -> Frame {
        Frame {
            frame: n,
            step: 1,
            rate: 100.0,
            due: at,
            started: at,
        }
    }

    /// A reaction cooks what does not depend on time below a change, stamps the change for the
    /// next frame and moves no frame counter; the time-dependent operator below it cooks at
    /// that frame.
    #[test]
    fn a_reaction_cooks_the_timeless_and_leaves_the_rest_to_the_next_frame() {
        let src = "rate = 100\n\n\
            [[operator]]\nname = \"c\"\ntype = \"constant\"\npars = { name0 = \"a\", value0 = 1 }\n\n\
            [[operator]]\nname = \"m\"\ntype = \"math\"\ninputs = [\"c\"]\npars = { gain = 2 }\n\n\
            [[operator]]\nname = \"l\"\ntype = \"lag\"\ninputs = [\"c\"]\n";
        let config =
            crate::config::check_str(Path::new("t.toml"), src, crate::chop::KINDS).unwrap();
        let (mut g, _) = Graph::build(&config).unwrap();
        let now = Instant::now();
        g.frame(&frame(1, now));
        let cooks = |g: &Graph, n: &str| {
            let s = &g.node(n).unwrap().stats;
            (s.total_cooks, s.react_cooks, s.cook_frame)
        };
        let lag_before = cooks(&g, "l").0;
        // Nothing new: a reaction cooks nothing.
        assert_eq!(g.react(&frame(1, now)), 0);
        g.set_par_by_hand("c", "value0", ParValue::Float(3.0))
            .unwrap();
        assert_eq!(g.react(&frame(1, now)), 2);
        assert_eq!(g.node("m").unwrap().output.chan(0), [6.0]);
        assert_eq!(cooks(&g, "m"), (2, 1, 1));
        assert_eq!(cooks(&g, "l").0, lag_before, "a lag depends on time");
        assert_eq!(g.daemon.react_passes, 1);
        // The next frame: the lag sees the change, even after dropped frames.
        let mut f = frame(4, now);
        f.step = 3;
        g.frame(&f);
        assert_eq!(cooks(&g, "l"), (lag_before + 1, 0, 4));
        // The math reacted to that change already: the frame does not cook it again.
        assert_eq!(cooks(&g, "m"), (2, 1, 1));
    }

    #[test]
    fn a_line_logged_in_a_cook_carries_the_operator_span_once() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scripts/chopd.toml");
        let src = "rate = 100\n\n[[operator]]\nname = \"bad\"\ntype = \"script\"\ncallbacks = \"raise_always.py\"\n";
        let config = crate::config::check_str(&path, src, crate::chop::KINDS).unwrap();
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer({
                let out = out.clone();
                move || out.clone()
            })
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let (mut g, _) = Graph::build(&config).unwrap();
            let now = Instant::now();
            for frame in 1..=2 {
                g.frame(&Frame {
                    frame,
                    step: 1,
                    rate: 100.0,
                    due: now,
                    started: now,
                });
            }
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let line = text
            .lines()
            .find(|l| l.contains("onCook failed"))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(
            line.starts_with("ERROR op{kind=script name=bad}: script \"bad\" onCook failed: "),
            "{line}"
        );
        assert!(!line.contains("op=bad"), "{line}");
    }
}
