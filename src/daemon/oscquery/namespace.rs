//! The OSCQuery namespace built from a [`Tree`]: every operator at its TouchDesigner path
//! (`/project1/` + its name), with `chan/`, `par/` and `info/` containers below it, and the
//! daemon's own nodes under `/chopd`. Renders nodes as the proposal's JSON and reads a leaf's
//! current value from a [`Snap`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::snapshot::{Snap, Tree};
use crate::cook::par::ParStyle;
use crate::cook::ParValue;

/// Where a leaf's value comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Leaf {
    /// Flat channel index in [`Snap::chans`].
    Chan(usize),
    /// Operator, parameter within it.
    Par(usize, usize),
    /// Operator, statistic.
    Stat(usize, Stat),
    Daemon(DStat),
    /// `/chopd/reload`: an impulse that reloads the config.
    Reload,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stat {
    TotalCooks,
    CookTime,
    Errors,
    Warnings,
    LastError,
}

pub const STATS: [(Stat, &str, &str); 5] = [
    (
        Stat::TotalCooks,
        "total_cooks",
        "cooks since the operator was built",
    ),
    (Stat::CookTime, "cook_time", "duration of the last cook, ms"),
    (Stat::Errors, "errors", "cook errors counted"),
    (Stat::Warnings, "warnings", "warnings counted"),
    (
        Stat::LastError,
        "last_error",
        "the last error, with its traceback",
    ),
];

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DStat {
    Rate,
    Frames,
    Dropped,
    LateP50,
    LateP99,
    LateMax,
    FrameTime,
    Rss,
}

pub const DSTATS: [(DStat, &str, &str); 8] = [
    (DStat::Rate, "rate", "frames per second"),
    (DStat::Frames, "frames", "frames run"),
    (DStat::Dropped, "dropped_frames", "frames the clock dropped"),
    (
        DStat::LateP50,
        "lateness_p50",
        "median lateness of frames, ms",
    ),
    (
        DStat::LateP99,
        "lateness_p99",
        "99th percentile lateness, ms",
    ),
    (DStat::LateMax, "lateness_max", "largest lateness, ms"),
    (
        DStat::FrameTime,
        "frame_time",
        "work time of the last frame, ms",
    ),
    (DStat::Rss, "rss_mb", "resident memory, MB"),
];

/// A leaf's current value.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    F(f32),
    I(i64),
    B(bool),
    S(Arc<str>),
    /// An impulse (pulse parameter, reload): nothing to show.
    None,
}

#[derive(Debug, Default)]
struct Node {
    children: BTreeMap<String, Node>,
    leaf: Option<Leaf>,
    desc: Option<String>,
}

/// The namespace of one structure.
#[derive(Debug, Default)]
pub struct Index {
    pub tree: Arc<Tree>,
    root: Node,
    /// Every path with a leaf, for LISTEN and writes.
    pub leaves: HashMap<String, Leaf>,
}

/// Root of the operators' paths, as in TouchDesigner.
pub const PROJECT: &str = "/project1";

/// The TouchDesigner path of a node name.
pub fn op_path(name: &str) -> String {
    format!("{PROJECT}/{name}")
}

impl Index {
    pub fn build(tree: Arc<Tree>) -> Index {
        let mut ix = Index {
            tree: tree.clone(),
            ..Index::default()
        };
        ix.container(PROJECT, "the operators");
        for (i, op) in tree.ops.iter().enumerate() {
            let base = op_path(&op.name);
            ix.container(&base, &format!("{} CHOP", op.kind));
            if !op.chans.is_empty() {
                ix.container(&format!("{base}/chan"), "channels (last sample)");
            }
            for (c, name) in op.chans.iter().enumerate() {
                let leaf = Leaf::Chan(tree.chan_at[i] + c);
                ix.leaf(&format!("{base}/chan/{name}"), leaf, None);
            }
            if !op.pars.is_empty() {
                ix.container(&format!("{base}/par"), "parameters");
            }
            for (p, par) in op.pars.iter().enumerate() {
                let desc = Some(par.def.label.clone());
                ix.leaf(
                    &format!("{base}/par/{}", par.def.name),
                    Leaf::Par(i, p),
                    desc,
                );
            }
            ix.container(&format!("{base}/info"), "cook statistics");
            for (s, name, desc) in STATS {
                ix.leaf(
                    &format!("{base}/info/{name}"),
                    Leaf::Stat(i, s),
                    Some(desc.into()),
                );
            }
        }
        ix.container("/chopd", "the daemon");
        for (s, name, desc) in DSTATS {
            ix.leaf(
                &format!("/chopd/{name}"),
                Leaf::Daemon(s),
                Some(desc.into()),
            );
        }
        ix.leaf(
            "/chopd/reload",
            Leaf::Reload,
            Some("reload the config".into()),
        );
        ix
    }

    fn node_mut(&mut self, path: &str) -> &mut Node {
        let mut n = &mut self.root;
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            n = n.children.entry(seg.to_string()).or_default();
        }
        n
    }

    fn container(&mut self, path: &str, desc: &str) {
        let n = self.node_mut(path);
        n.desc.get_or_insert_with(|| desc.to_string());
    }

    fn leaf(&mut self, path: &str, leaf: Leaf, desc: Option<String>) {
        // A name used twice (a channel "x" of two operators cannot be, a path can only clash
        // through a component's child called chan/par/info): the first one keeps the path.
        if self.leaves.contains_key(path) {
            return;
        }
        let n = self.node_mut(path);
        if n.leaf.is_some() || !n.children.is_empty() {
            return;
        }
        n.leaf = Some(leaf);
        n.desc = desc;
        self.leaves.insert(path.to_string(), leaf);
    }

    fn find(&self, path: &str) -> Option<&Node> {
        let mut n = &self.root;
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            n = n.children.get(seg)?;
        }
        Some(n)
    }

    pub fn exists(&self, path: &str) -> bool {
        self.find(path).is_some()
    }

    /// Every leaf at or below `path` (LISTEN on a container listens to all of them).
    pub fn leaves_under(&self, path: &str) -> Vec<(String, Leaf)> {
        let mut out = Vec::new();
        if let Some(n) = self.find(path) {
            collect(n, path.trim_end_matches('/'), &mut out);
        }
        out
    }

    /// The node at `path` as JSON (its whole subtree), with values from `snap`.
    pub fn json(&self, path: &str, snap: &Snap) -> Option<Value> {
        let n = self.find(path)?;
        let full = if path.is_empty() { "/" } else { path };
        Some(self.render(n, full, snap))
    }

    fn render(&self, n: &Node, path: &str, snap: &Snap) -> Value {
        let mut m = Map::new();
        m.insert("FULL_PATH".into(), json!(path));
        if let Some(d) = &n.desc {
            m.insert("DESCRIPTION".into(), json!(d));
        }
        match n.leaf {
            Some(leaf) => self.leaf_attrs(leaf, snap, &mut m),
            None => {
                m.insert("ACCESS".into(), json!(0));
                let contents: Map<String, Value> = n
                    .children
                    .iter()
                    .map(|(k, c)| {
                        let p = if path == "/" {
                            format!("/{k}")
                        } else {
                            format!("{path}/{k}")
                        };
                        (k.clone(), self.render(c, &p, snap))
                    })
                    .collect();
                m.insert("CONTENTS".into(), Value::Object(contents));
            }
        }
        Value::Object(m)
    }

    /// TYPE, ACCESS, VALUE, RANGE and CLIPMODE of a leaf.
    fn leaf_attrs(&self, leaf: Leaf, snap: &Snap, m: &mut Map<String, Value>) {
        let (ty, access) = self.type_access(leaf);
        m.insert("TYPE".into(), json!(ty));
        m.insert("ACCESS".into(), json!(access));
        if let Some(v) = value_json(&self.value(leaf, snap)) {
            m.insert("VALUE".into(), json!([v]));
        }
        if let Leaf::Par(o, p) = leaf {
            let d = &self.tree.ops[o].pars[p].def;
            if d.style == ParStyle::Menu || d.style == ParStyle::StrMenu {
                m.insert("RANGE".into(), json!([{ "VALS": d.menu_names }]));
            } else if d.style.is_float() || d.style == ParStyle::Int {
                let min = if d.clamp_min { d.min } else { d.norm_min };
                let max = if d.clamp_max { d.max } else { d.norm_max };
                m.insert("RANGE".into(), json!([{ "MIN": min, "MAX": max }]));
                let clip = match (d.clamp_min, d.clamp_max) {
                    (false, false) => "none",
                    (true, false) => "low",
                    (false, true) => "high",
                    (true, true) => "both",
                };
                m.insert("CLIPMODE".into(), json!([clip]));
            }
            if let Some(by) = &self.tree.ops[o].pars[p].driven_by {
                m.insert(
                    "DESCRIPTION".into(),
                    json!(format!("{} (driven by the export of {by})", d.label)),
                );
            }
        }
    }

    /// The OSC type tag and ACCESS (1 read, 2 write, 3 both) of a leaf.
    pub fn type_access(&self, leaf: Leaf) -> (&'static str, u8) {
        match leaf {
            Leaf::Chan(_) => ("f", 1),
            Leaf::Stat(_, Stat::LastError) => ("s", 1),
            Leaf::Stat(_, Stat::CookTime) => ("f", 1),
            Leaf::Stat(..) => ("i", 1),
            Leaf::Daemon(DStat::Frames | DStat::Dropped) => ("i", 1),
            Leaf::Daemon(_) => ("f", 1),
            Leaf::Reload => ("I", 2),
            Leaf::Par(o, p) => {
                let par = &self.tree.ops[o].pars[p];
                let d = &par.def;
                let ro = d.read_only || par.driven_by.is_some();
                let ty = match d.style {
                    ParStyle::Int => "i",
                    ParStyle::Pulse => "I",
                    s if s.is_switch() => "T",
                    s if s.is_float() => "f",
                    _ => "s",
                };
                let access = match (ro, d.style == ParStyle::Pulse) {
                    (true, _) => 1,
                    (false, true) => 2,
                    (false, false) => 3,
                };
                (ty, access)
            }
        }
    }

    /// The current value of a leaf.
    pub fn value(&self, leaf: Leaf, snap: &Snap) -> Val {
        // A snapshot of another structure (a reload in between) has nothing for this leaf.
        if !Arc::ptr_eq(&self.tree, &snap.tree) {
            return Val::None;
        }
        match leaf {
            Leaf::Chan(i) => snap.chans.get(i).map_or(Val::None, |v| Val::F(*v)),
            Leaf::Par(o, p) => {
                let d = &self.tree.ops[o].pars[p].def;
                match snap.pars.get(self.tree.par_at[o] + p) {
                    _ if d.style == ParStyle::Pulse => Val::None,
                    Some(ParValue::Float(f)) if d.style.is_switch() => Val::B(*f != 0.0),
                    Some(ParValue::Float(f)) if d.style == ParStyle::Int => Val::I(*f as i64),
                    Some(ParValue::Float(f)) => Val::F(*f as f32),
                    Some(ParValue::Str(s)) => Val::S(Arc::from(s.as_str())),
                    None => Val::None,
                }
            }
            Leaf::Stat(o, s) => match snap.stats.get(o) {
                None => Val::None,
                Some(st) => match s {
                    Stat::TotalCooks => Val::I(st.total_cooks as i64),
                    Stat::CookTime => Val::F(st.cook_time_ms as f32),
                    Stat::Errors => Val::I(st.errors as i64),
                    Stat::Warnings => Val::I(st.warnings as i64),
                    Stat::LastError => Val::S(st.last_error.clone().unwrap_or_else(|| "".into())),
                },
            },
            Leaf::Daemon(s) => {
                let d = &snap.daemon;
                match s {
                    DStat::Rate => Val::F(snap.rate as f32),
                    DStat::Frames => Val::I(d.frames as i64),
                    DStat::Dropped => Val::I(d.dropped_frames as i64),
                    DStat::LateP50 => Val::F(d.lateness_p50_ms as f32),
                    DStat::LateP99 => Val::F(d.lateness_p99_ms as f32),
                    DStat::LateMax => Val::F(d.lateness_max_ms as f32),
                    DStat::FrameTime => Val::F(d.frame_time_ms as f32),
                    DStat::Rss => Val::F(d.rss_mb as f32),
                }
            }
            Leaf::Reload => Val::None,
        }
    }

    /// Every path whose node (but for its value) differs between `self` and `new`: (added,
    /// removed, changed). Containers count as nodes too.
    pub fn diff(&self, new: &Index) -> (Vec<String>, Vec<String>, Vec<String>) {
        let (mut a, mut r, mut c) = (Vec::new(), Vec::new(), Vec::new());
        let empty = Snap::default();
        let old = self.shape(&empty);
        let now = new.shape(&empty);
        for (p, v) in &now {
            match old.get(p) {
                None => a.push(p.clone()),
                Some(o) if o != v => c.push(p.clone()),
                Some(_) => {}
            }
        }
        for p in old.keys() {
            if !now.contains_key(p) {
                r.push(p.clone());
            }
        }
        // The outermost path of a removed subtree is enough, as for an added one.
        let outer = |v: Vec<String>| -> Vec<String> {
            v.iter()
                .filter(|p| !v.iter().any(|q| q != *p && p.starts_with(&format!("{q}/"))))
                .cloned()
                .collect()
        };
        (outer(a), outer(r), c)
    }

    /// Each path's attributes without VALUE (and without CONTENTS).
    fn shape(&self, snap: &Snap) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        shape(&self.root, "", self, snap, &mut out);
        out
    }
}

fn shape(n: &Node, path: &str, ix: &Index, snap: &Snap, out: &mut BTreeMap<String, Value>) {
    for (k, c) in &n.children {
        let p = format!("{path}/{k}");
        let mut m = Map::new();
        if let Some(d) = &c.desc {
            m.insert("DESCRIPTION".into(), json!(d));
        }
        if let Some(leaf) = c.leaf {
            ix.leaf_attrs(leaf, snap, &mut m);
            m.remove("VALUE");
            // A leaf that moves (another operator before it) is the same node.
            m.insert("LEAF".into(), json!(leaf_kind(leaf)));
        }
        out.insert(p.clone(), Value::Object(m));
        shape(c, &p, ix, snap, out);
    }
}

fn leaf_kind(l: Leaf) -> &'static str {
    match l {
        Leaf::Chan(_) => "chan",
        Leaf::Par(..) => "par",
        Leaf::Stat(..) => "stat",
        Leaf::Daemon(_) => "daemon",
        Leaf::Reload => "reload",
    }
}

fn collect(n: &Node, path: &str, out: &mut Vec<(String, Leaf)>) {
    if let Some(l) = n.leaf {
        out.push((path.to_string(), l));
    }
    for (k, c) in &n.children {
        collect(c, &format!("{path}/{k}"), out);
    }
}

/// A value as JSON; `None` for an impulse and for a number that is not finite (which never
/// leaves chopd).
pub fn value_json(v: &Val) -> Option<Value> {
    match v {
        Val::F(f) if f.is_finite() => Some(json!(f)),
        Val::F(_) | Val::None => None,
        Val::I(i) => Some(json!(i)),
        Val::B(b) => Some(json!(b)),
        Val::S(s) => Some(json!(&**s)),
    }
}
