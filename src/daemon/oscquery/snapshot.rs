//! What the cook thread hands the OSCQuery server after every frame: the graph's structure
//! (operators, channels, parameter definitions), shared by `Arc` and rebuilt only when it
//! changes, and the frame's values. The cook thread never waits: it swaps the newest snapshot
//! into a `watch` channel (one slot, so a server that falls behind skips frames, coalesced) and
//! returns.

use std::sync::Arc;

use tokio::sync::watch;

use crate::cook::par::ParDef;
use crate::cook::{DaemonStats, NodeState, ParValue};
use crate::graph::Graph;

/// The structure of the graph as the namespace shows it.
#[derive(Debug, Default)]
pub struct Tree {
    pub ops: Vec<OpTree>,
    /// Where each operator's channels start in [`Snap::chans`], and its parameters in
    /// [`Snap::pars`].
    pub chan_at: Vec<usize>,
    pub par_at: Vec<usize>,
}

#[derive(Debug)]
pub struct OpTree {
    /// The node's unique key (its path below /project1).
    pub name: String,
    pub kind: &'static str,
    pub chans: Vec<String>,
    pub pars: Vec<ParInfo>,
}

/// One parameter's definition (its value is in the snapshot) and the export that drives it.
#[derive(Debug, Clone)]
pub struct ParInfo {
    pub def: ParDef,
    pub driven_by: Option<String>,
}

impl ParInfo {
    /// Same definition, whatever the value.
    fn same(&self, def: &ParDef, driven_by: Option<&str>) -> bool {
        let a = &self.def;
        a.name == def.name
            && a.label == def.label
            && a.style == def.style
            && a.min == def.min
            && a.max == def.max
            && a.norm_min == def.norm_min
            && a.norm_max == def.norm_max
            && a.clamp_min == def.clamp_min
            && a.clamp_max == def.clamp_max
            && a.menu_names == def.menu_names
            && a.menu_labels == def.menu_labels
            && a.read_only == def.read_only
            && a.default == def.default
            && self.driven_by.as_deref() == driven_by
    }
}

/// An operator's cook statistics, per frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpStats {
    pub total_cooks: u64,
    pub cook_time_ms: f64,
    pub errors: u64,
    pub warnings: u64,
    pub last_error: Option<Arc<str>>,
}

/// One frame as the server sees it.
#[derive(Debug, Default)]
pub struct Snap {
    pub tree: Arc<Tree>,
    /// The last sample of every channel, operator by operator.
    pub chans: Vec<f32>,
    pub pars: Vec<ParValue>,
    pub stats: Vec<OpStats>,
    pub daemon: DaemonStats,
    pub rate: f64,
}

/// The cook thread's end: builds a [`Snap`] after each frame and swaps it in.
pub struct Publisher {
    tx: watch::Sender<Arc<Snap>>,
    tree: Arc<Tree>,
}

impl Publisher {
    pub fn new() -> (Publisher, watch::Receiver<Arc<Snap>>) {
        let (tx, rx) = watch::channel(Arc::new(Snap::default()));
        (
            Publisher {
                tx,
                tree: Arc::default(),
            },
            rx,
        )
    }

    /// Takes the frame's snapshot of `g`. Allocates the value vectors and each operator's
    /// parameter list; the structure only when it changed.
    pub fn observe(&mut self, g: &Graph) {
        let prev = self.tx.borrow().clone();
        let nodes = g.nodes();
        let mut defs: Vec<Vec<ParDef>> = Vec::with_capacity(nodes.len());
        for n in nodes {
            defs.push(
                g.operator(&n.name)
                    .map(|o| o.par_defs())
                    .unwrap_or_default(),
            );
        }
        if !self.same_structure(g, nodes, &defs) {
            self.tree = Arc::new(build_tree(g, nodes, &defs));
        }
        let mut chans = Vec::with_capacity(prev.chans.len());
        let mut pars = Vec::with_capacity(prev.pars.len());
        let mut stats = Vec::with_capacity(nodes.len());
        for (i, (n, d)) in nodes.iter().zip(defs).enumerate() {
            chans.extend((0..n.output.num_chans()).map(|c| n.output.last(c)));
            pars.extend(d.into_iter().map(|d| d.val));
            let s = &n.stats;
            // The same error text keeps its allocation from frame to frame.
            let last_error = match (
                prev.stats.get(i).and_then(|p| p.last_error.clone()),
                &s.last_error,
            ) {
                (Some(old), Some(new)) if *old == **new => Some(old),
                (_, new) => new.as_deref().map(Arc::from),
            };
            stats.push(OpStats {
                total_cooks: s.total_cooks,
                cook_time_ms: s.cook_time_ms,
                errors: s.errors,
                warnings: s.warnings,
                last_error,
            });
        }
        self.tx.send_replace(Arc::new(Snap {
            tree: self.tree.clone(),
            chans,
            pars,
            stats,
            daemon: g.daemon.clone(),
            rate: g.rate(),
        }));
    }

    fn same_structure(&self, g: &Graph, nodes: &[NodeState], defs: &[Vec<ParDef>]) -> bool {
        let t = &self.tree;
        t.ops.len() == nodes.len()
            && t.ops.iter().zip(nodes).zip(defs).all(|((o, n), d)| {
                o.name == n.name
                    && o.kind == n.kind
                    && o.chans.as_slice() == n.output.names()
                    && o.pars.len() == d.len()
                    && o.pars
                        .iter()
                        .zip(d)
                        .all(|(p, d)| p.same(d, g.driven_by(&n.name, &d.name)))
            })
    }
}

fn build_tree(g: &Graph, nodes: &[NodeState], defs: &[Vec<ParDef>]) -> Tree {
    let mut tree = Tree::default();
    let (mut c, mut p) = (0, 0);
    for (n, d) in nodes.iter().zip(defs) {
        tree.chan_at.push(c);
        tree.par_at.push(p);
        c += n.output.num_chans();
        p += d.len();
        tree.ops.push(OpTree {
            name: n.name.clone(),
            kind: n.kind,
            chans: n.output.names().to_vec(),
            pars: d
                .iter()
                .map(|d| ParInfo {
                    def: d.clone(),
                    driven_by: g.driven_by(&n.name, &d.name).map(str::to_string),
                })
                .collect(),
        });
    }
    tree
}
