//! Whole-config checks: operator names unique, inputs and other references naming operators,
//! no cycle, no two operators on one port, export roots that exist. They also give the cook
//! order (every operator after what it depends on), derived here once from the same edges the
//! cycle check walks; the running graph takes it from the config.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;

use super::diag::{self, suggestion, Diagnostics};
use super::model::{Config, ExportRoot};

/// Where one operator wrote the things the whole-config checks look at.
#[derive(Debug)]
pub struct OpRefs {
    pub(super) name: Range<usize>,
    pub(super) inputs: Vec<Range<usize>>,
    pub(super) export_root: Option<Range<usize>>,
    /// The table operator an export table names (`dat = "NAME"`), and where.
    pub(super) export_dat: Option<(String, Range<usize>)>,
    reads: Vec<Read>,
    port: Option<Range<usize>>,
    /// Destinations the operator sends to (an OSC Out DAT's), and where they are named.
    destinations: Vec<(String, Range<usize>)>,
}

/// A reference to another operator besides `inputs`.
#[derive(Debug)]
struct Read {
    name: String,
    span: Range<usize>,
    key: &'static str,
    hint: &'static str,
    itself: &'static str,
}

impl OpRefs {
    pub(super) fn new(name: Range<usize>, inputs: Vec<Range<usize>>) -> OpRefs {
        OpRefs {
            name,
            inputs,
            export_root: None,
            export_dat: None,
            reads: Vec::new(),
            port: None,
            destinations: Vec::new(),
        }
    }

    /// The operator reads operator `name`, written as `key` at `span`: it must exist and cooks
    /// first. `hint` follows the error when it names none; `itself` is the error when it names
    /// the operator itself.
    pub fn reads(
        &mut self,
        key: &'static str,
        name: &str,
        span: Range<usize>,
        hint: &'static str,
        itself: &'static str,
    ) {
        self.reads.push(Read {
            name: name.to_string(),
            span,
            key,
            hint,
            itself,
        });
    }

    /// The operator binds the UDP port its settings name (`Settings::udp_port`), written at
    /// `span`.
    pub fn binds_port(&mut self, span: Range<usize>) {
        self.port = Some(span);
    }

    /// The operator sends to destination `name`, written at `span`: it must be defined.
    pub fn sends_to(&mut self, name: &str, span: Range<usize>) {
        self.destinations.push((name.to_string(), span));
    }

    pub(super) fn read_names(&self) -> Vec<String> {
        self.reads.iter().map(|r| r.name.clone()).collect()
    }
}

/// Places operators in their components: an operator named `show/gain` needs a component
/// (`type = "base"`) named `show`. An input is found as TouchDesigner wires are, in the
/// operator's own network (`inputs = ["faders"]` in `show/gain` is `show/faders`; `../x` and
/// `/project1/x` reach further); what other references name (`op` of an Info CHOP, an export's
/// `op:` root) starts at `/project1`. Rewrites each reference to the key it names.
pub(super) fn place(d: &mut Diagnostics, config: &mut Config, spans: &mut [OpRefs]) {
    use crate::path::{parent_key, resolve, Place};
    let kinds: HashMap<String, &'static str> = config
        .operators
        .iter()
        .map(|o| (o.name.clone(), o.kind))
        .collect();
    for (i, op) in config.operators.iter_mut().enumerate() {
        let comp = parent_key(&op.name);
        if !comp.is_empty() && kinds.get(comp) != Some(&"base") {
            let what = match kinds.get(comp) {
                Some(kind) => format!("is a \"{kind}\" operator, not a component"),
                None => "is not declared".to_string(),
            };
            d.error(
                spans[i].name.clone(),
                format!(
                    "operator \"{}\" sits inside \"{comp}\", which {what} (declare it with \
                     type = \"base\")",
                    op.name
                ),
            );
        }
        let net = Place::Key(comp.to_string());
        for input in &mut op.inputs {
            if let Some(Place::Key(k)) = resolve(&net, input) {
                if kinds.contains_key(&k) {
                    *input = k;
                }
            }
        }
        for r in &mut spans[i].reads {
            if let Some(k) = crate::path::key_of(&r.name).filter(|k| kinds.contains_key(k)) {
                r.name = k;
            }
        }
        op.reads = spans[i].read_names();
    }
}

/// Checks that need the whole operator list (names, inputs, what operators read, cycles, ports,
/// export roots) and returns the cook order: every operator after what it depends on.
pub(super) fn check(d: &mut Diagnostics, config: &Config, spans: &[OpRefs]) -> Vec<usize> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, op) in config.operators.iter().enumerate() {
        if let Some(&first) = index.get(op.name.as_str()) {
            let (line, _) = diag::line_col(d.src(), spans[first].name.start);
            d.error(
                spans[i].name.clone(),
                format!(
                    "duplicate operator name \"{}\" (first defined on line {line})",
                    op.name
                ),
            );
        } else {
            index.insert(&op.name, i);
        }
    }
    let names: Vec<&str> = config.operators.iter().map(|o| o.name.as_str()).collect();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); config.operators.len()];
    for (i, op) in config.operators.iter().enumerate() {
        for (k, input) in op.inputs.iter().enumerate() {
            match index.get(input.as_str()) {
                Some(&j) => edges[i].push(j),
                None => d.error(
                    spans[i].inputs[k].clone(),
                    format!(
                        "input \"{input}\" is not an operator{}",
                        suggestion(input, names.iter().copied())
                    ),
                ),
            }
        }
        for r in &spans[i].reads {
            match index.get(r.name.as_str()) {
                Some(&j) if j == i => d.error(r.span.clone(), r.itself),
                Some(&j) => edges[i].push(j),
                None => d.error(
                    r.span.clone(),
                    format!(
                        "{} \"{}\" is not an operator{}{}",
                        r.key,
                        r.name,
                        r.hint,
                        suggestion(&r.name, names.iter().copied())
                    ),
                ),
            }
        }
        for (dest, at) in &spans[i].destinations {
            if !config.destinations.contains_key(dest) {
                let known: Vec<&str> = config.destinations.keys().map(String::as_str).collect();
                d.error(
                    at.clone(),
                    format!(
                        "destination \"{dest}\" is not defined (add [destinations.{dest}]){}",
                        suggestion(dest, known.iter().copied())
                    ),
                );
            }
        }
        if let Some((dat, at)) = &spans[i].export_dat {
            match index.get(dat.as_str()) {
                Some(&j) if config.operators[j].settings.is_table_dat() => {}
                Some(_) => d.error(
                    at.clone(),
                    format!("export \"dat\" names \"{dat}\", which is not a table operator"),
                ),
                None => d.error(
                    at.clone(),
                    format!(
                        "export \"dat\" \"{dat}\" is not an operator{}",
                        suggestion(dat, names.iter().copied())
                    ),
                ),
            }
        }
        if let (Some(export), Some(root_span)) = (&op.export, spans[i].export_root.clone()) {
            match &export.root {
                ExportRoot::Destination(dest)
                    if !config.destinations.contains_key(dest)
                        && !config.midi_destinations.contains_key(dest) =>
                {
                    let known: Vec<&str> = config.destinations.keys().map(String::as_str).collect();
                    d.error(
                        root_span,
                        format!(
                            "export root \"{dest}\" names no destination (define [destinations.{dest}], or use \"op:NAME\"){}",
                            suggestion(dest, known.iter().copied())
                        ),
                    );
                }
                ExportRoot::Op(name) if !name.is_empty() && !index.contains_key(name.as_str()) => {
                    d.error(
                        root_span,
                        format!(
                            "export root \"op:{name}\" names no operator{}",
                            suggestion(name, names.iter().copied())
                        ),
                    );
                }
                _ => {}
            }
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        let path: Vec<&str> = cycle.iter().map(|&i| names[i]).collect();
        d.error(
            spans[cycle[0]].name.clone(),
            format!(
                "operators form a cycle: {} -> {}",
                path.join(" -> "),
                path[0]
            ),
        );
    }
    // Two operators on one UDP port (and the control port) cannot both bind.
    let mut ports: HashMap<u16, usize> = HashMap::new();
    for (i, op) in config.operators.iter().enumerate() {
        let (Some(port), Some(at)) = (op.settings.udp_port(), spans[i].port.clone()) else {
            continue;
        };
        if port == 0 {
            continue;
        }
        if let Some(&j) = ports.get(&port) {
            d.error(
                at.clone(),
                format!("port {port} is already used by operator \"{}\"", names[j]),
            );
        } else {
            ports.insert(port, i);
        }
        if config
            .control
            .as_ref()
            .is_some_and(|c| c.addr.port() == port)
        {
            d.error(at.clone(), format!("port {port} is the control port"));
        }
        // Feedback guard: exporting into our own input makes a loop.
        for dest in config.destinations.values() {
            if dest.port == port && is_local_host(&dest.host) {
                d.warning(
                    at.clone(),
                    format!(
                        "destination \"{}\" sends to this operator's own port {port}: exports into it can loop",
                        dest.name
                    ),
                );
            }
        }
    }
    cook_order(&edges)
}

/// Every node after its dependencies (`edges[i]`), otherwise in file order. On a cycle (already
/// reported) the order is still complete, only not meaningful.
fn cook_order(edges: &[Vec<usize>]) -> Vec<usize> {
    fn visit(i: usize, edges: &[Vec<usize>], seen: &mut [bool], order: &mut Vec<usize>) {
        if seen[i] {
            return;
        }
        seen[i] = true;
        for &j in &edges[i] {
            visit(j, edges, seen, order);
        }
        order.push(i);
    }
    let mut seen = vec![false; edges.len()];
    let mut order = Vec::with_capacity(edges.len());
    for i in 0..edges.len() {
        visit(i, edges, &mut seen, &mut order);
    }
    order
}

fn is_local_host(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

/// Returns one cycle (as node indices in order) if the graph `edges[i] = dependencies of i` has
/// any.
fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        i: usize,
        edges: &[Vec<usize>],
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        marks[i] = Mark::Open;
        stack.push(i);
        for &j in &edges[i] {
            match marks[j] {
                Mark::Open => {
                    let at = stack.iter().position(|&s| s == j).unwrap_or(0);
                    let mut cycle: Vec<usize> = stack[at..].to_vec();
                    // Print in dataflow order (input first), starting at the operator written
                    // first in the file.
                    cycle.reverse();
                    let first = cycle
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, &n)| n)
                        .map_or(0, |(k, _)| k);
                    cycle.rotate_left(first);
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(j, edges, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks[i] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; edges.len()];
    let mut stack = Vec::new();
    (0..edges.len()).find_map(|i| {
        if marks[i] == Mark::New {
            visit(i, edges, &mut marks, &mut stack)
        } else {
            None
        }
    })
}
