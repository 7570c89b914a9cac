//! Export (README, "Export"): maps an operator's channels to targets — OSC addresses of a destination, or
//! parameters of this daemon's operators — and sends values that changed (or all of them).
//!
//! The mapping is rebuilt only when the channel list changes (that bumps `export_sernum`); the
//! per-frame work is one comparison per channel and an encode per value sent.

pub mod osc;
pub mod tcp;

use std::collections::HashSet;
use std::time::Instant;

use crate::config::{
    ChanRef, ExportConfig, ExportMethod, ExportRoot, ExportRow, SendMode, TableSource,
};
use crate::cook::dat::DatContent;
use crate::cook::data::same_bits;
use crate::cook::{ChopData, CookStats};
pub use osc::{Destinations, DestinationsDiff, LinkTotals, Outbox, Resolved};

/// Where one channel's value goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// Index into `Destinations` and the full OSC address.
    Osc { dest: usize, address: String },
    /// An operator of this daemon (by name) and its parameter.
    Par { op: String, par: String },
    /// Index into the MIDI destinations and the message slot the channel stands for there.
    Midi { dest: usize, slot: usize },
}

/// The `type = "midi"` destinations as export sees them. MIDI Out (`chop::midiout`), which
/// stands above export, implements it; the graph hands it to [`Destinations`].
pub trait MidiSink: Send {
    /// Takes the MIDI destinations of a (new) config; true when anything changed (cached
    /// export targets must then be resolved again). Nothing changes on an error.
    fn reconcile(
        &mut self,
        new: &std::collections::BTreeMap<String, std::sync::Arc<dyn crate::config::Settings>>,
    ) -> Result<bool, String>;
    fn index_of(&self, name: &str) -> Option<usize>;
    /// The message slot channel `chan` stands for at destination `dest` (by its MIDI name).
    fn slot(&mut self, dest: usize, chan: &str) -> Option<usize>;
    fn set(&mut self, dest: usize, slot: usize, value: f32);
    /// End of a frame.
    fn flush(&mut self);
}

/// Splits a channel name by "Channel Name is Path:Parameter": `/` and `:` both separate, the
/// last segment is the parameter. `geo1/transform1:tx` → (`geo1/transform1`, `tx`).
pub fn split_path_parameter(name: &str) -> (String, &str) {
    let name = name.trim_matches(|c| c == '/' || c == ':');
    match name.rfind(['/', ':']) {
        Some(at) => (
            name[..at]
                .split(['/', ':'])
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("/"),
            &name[at + 1..],
        ),
        None => (String::new(), name),
    }
}

/// Joins a prefix (`""` or `/show`), a path (`geo1/transform1` or `""`) and a parameter into an
/// OSC address.
pub fn osc_address(prefix: &str, path: &str, parameter: &str) -> String {
    let mut a = String::with_capacity(prefix.len() + path.len() + parameter.len() + 2);
    a.push_str(prefix);
    if !path.is_empty() {
        a.push('/');
        a.push_str(path);
    }
    a.push('/');
    a.push_str(parameter);
    a
}

/// Channels compared at a time before an export looks at them one by one.
const RUN: usize = 16;

/// The export of one operator.
pub struct Exporter {
    cfg: ExportConfig,
    /// Channel names the mapping was built for.
    names: Vec<String>,
    /// The layout id (`ChopData::layout_id`) last seen with those names: while it stays, the
    /// names need no comparing.
    layout: u64,
    /// Per channel: its target (None = not exported), and the last value sent.
    map: Vec<Option<Target>>,
    last: Vec<Option<f32>>,
    /// The values of the last export (one sample per channel), or empty: runs of channels equal
    /// to them are skipped without looking at `last` and `map`.
    seen: Vec<f32>,
    /// Paths reported as resolving nowhere (each reported once).
    reported: HashSet<String>,
    next_resend: Option<Instant>,
    built: bool,
    /// The rows of an export table kept in a table DAT, and the DAT content version they were
    /// read from (a version that did not read is remembered too, so it is reported once).
    dat_rows: Vec<ExportRow>,
    dat_version: Option<u64>,
    /// Each destination's connection count ([`Destinations::epoch`]) when values were last
    /// sent to it: a TCP destination that reconnected is sent everything again.
    epochs: Vec<u64>,
}

/// Parameter writes collected during export, applied by the graph to its operators.
pub type ParWrites = Vec<(String, String, f32)>;

impl Exporter {
    pub fn new(cfg: ExportConfig) -> Exporter {
        Exporter {
            cfg,
            names: Vec::new(),
            layout: 0,
            map: Vec::new(),
            last: Vec::new(),
            seen: Vec::new(),
            reported: HashSet::new(),
            next_resend: None,
            built: false,
            dat_rows: Vec::new(),
            dat_version: None,
            epochs: Vec::new(),
        }
    }

    /// The table DAT this export's table is kept in, if it is kept in one.
    pub fn dat_source(&self) -> Option<&str> {
        match &self.cfg.method {
            ExportMethod::DatIndex(t) | ExportMethod::DatName(t) => match &t.source {
                TableSource::Dat(name) => Some(name),
                TableSource::File(_) => None,
            },
            ExportMethod::AutoName => None,
        }
    }

    /// Follows the table DAT of [`Exporter::dat_source`] (`find` gives its content): when it
    /// changed, its rows are read again and the mapping is rebuilt on the next export. Rows
    /// that do not make an export table keep the previous mapping; returns the warnings to
    /// count (one per bad version).
    pub fn follow_dat<'a>(&mut self, find: impl FnOnce(&str) -> Option<&'a DatContent>) -> u64 {
        let Some(dat) = self.dat_source().map(find) else {
            return 0;
        };
        let version = dat.map_or(0, |d| d.version);
        if self.dat_version == Some(version) {
            return 0;
        }
        self.dat_version = Some(version);
        let by_index = matches!(self.cfg.method, ExportMethod::DatIndex(_));
        let read = match dat.and_then(DatContent::table) {
            Some(t) => crate::config::export_rows(t.rows(), by_index),
            None => Err("it is not a table".to_string()),
        };
        match read {
            Ok(rows) => {
                if rows != self.dat_rows {
                    self.dat_rows = rows;
                    self.built = false;
                }
                0
            }
            Err(e) => {
                let name = self.dat_source().unwrap_or_default();
                tracing::warn!("export table in \"{name}\": {e}; the previous mapping stays");
                1
            }
        }
    }

    pub fn config(&self) -> &ExportConfig {
        &self.cfg
    }

    /// Replaces the settings (reload); the mapping is rebuilt on the next export.
    pub fn reconfigure(&mut self, cfg: ExportConfig) {
        if cfg != self.cfg {
            self.cfg = cfg;
            self.built = false;
        }
    }

    /// Follows a reload's destinations: every cached target is resolved again on the next
    /// export (a new prefix gives new addresses). `remap` (see
    /// [`osc::DestinationsDiff::remap`]) carries each cached target over to its destination's
    /// new index, so a channel whose address comes out the same keeps its last value and sends
    /// nothing until it changes; one whose destination is gone or is another receiver forgets
    /// its last value and is sent again.
    pub fn retarget(&mut self, remap: &[Option<usize>]) {
        self.seen.clear();
        for (target, last) in self.map.iter_mut().zip(&mut self.last) {
            if let Some(Target::Osc { dest, .. }) = target {
                match remap.get(*dest).copied().flatten() {
                    Some(new) => *dest = new,
                    None => {
                        *target = None;
                        *last = None;
                    }
                }
            }
        }
        self.built = false;
    }

    /// The MIDI destinations changed (reload): the mapping is resolved again on the next
    /// export.
    pub fn invalidate(&mut self) {
        self.built = false;
    }

    /// Builds the channel → target mapping. `op_exists` resolves operator names for `op:` roots.
    fn build(
        &mut self,
        data: &ChopData,
        dests: &mut Destinations,
        op_exists: &dyn Fn(&str) -> bool,
        stats: &mut CookStats,
    ) {
        // What was sent before, by channel name and target, so a channel appearing does not
        // make every other channel send its unchanged value again.
        let sent: std::collections::HashMap<&str, (&Option<Target>, Option<f32>)> = self
            .names
            .iter()
            .zip(self.map.iter().zip(&self.last))
            .map(|(n, (t, v))| (n.as_str(), (t, *v)))
            .collect();
        let mut map = Vec::with_capacity(data.num_chans());
        let mut last = Vec::with_capacity(data.num_chans());
        for (i, name) in data.names().iter().enumerate() {
            let (path, parameter): (String, String) = match &self.cfg.method {
                ExportMethod::AutoName => {
                    let (p, par) = split_path_parameter(name);
                    (p, par.to_string())
                }
                ExportMethod::DatIndex(t) | ExportMethod::DatName(t) => {
                    let rows = match t.source {
                        TableSource::Dat(_) => &self.dat_rows,
                        TableSource::File(_) => &t.rows,
                    };
                    let row = rows.iter().find(|r| match &r.chan {
                        ChanRef::Index(k) => *k == i,
                        ChanRef::Name(n) => n == name,
                    });
                    match row {
                        Some(r) if r.enable => (r.path.clone(), r.parameter.clone()),
                        _ => {
                            map.push(None);
                            continue;
                        }
                    }
                }
            };
            let target = match &self.cfg.root {
                ExportRoot::Destination(d) => match dests.index_of(d) {
                    Some(dest) => Some(Target::Osc {
                        dest,
                        address: osc_address(dests.prefix(dest), &path, &parameter),
                    }),
                    // A MIDI destination: the parameter part is the MIDI name (`ch1c7`).
                    None => dests.midi.as_mut().and_then(|m| {
                        let dest = m.index_of(d)?;
                        let slot = m.slot(dest, &parameter)?;
                        Some(Target::Midi { dest, slot })
                    }),
                },
                ExportRoot::Op(root) => {
                    // Operators are one flat namespace: the last path segment names the
                    // operator, or the root operator itself when the path is empty.
                    let op = path
                        .rsplit('/')
                        .next()
                        .filter(|s| !s.is_empty())
                        .unwrap_or(root);
                    if op.is_empty() || !op_exists(op) {
                        None
                    } else {
                        Some(Target::Par {
                            op: op.to_string(),
                            par: parameter.clone(),
                        })
                    }
                }
            };
            if target.is_none() && parameter.is_empty() {
                map.push(None);
                continue;
            }
            if target.is_none() && self.reported.insert(name.clone()) {
                stats.warnings += 1;
                tracing::warn!(
                    "export: channel \"{name}\" resolves to no target under root {:?}",
                    self.cfg.root
                );
            }
            map.push(target);
        }
        for (name, target) in data.names().iter().zip(&map) {
            last.push(match sent.get(name.as_str()) {
                Some((t, v)) if *t == target => *v,
                _ => None,
            });
        }
        self.names = data.names().to_vec();
        self.map = map;
        self.last = last;
        self.seen.clear();
        stats.export_sernum += 1;
        self.built = true;
    }

    /// Sends this operator's values; returns parameter writes for `op:` roots.
    pub fn export(
        &mut self,
        data: &ChopData,
        dests: &mut Destinations,
        op_exists: &dyn Fn(&str) -> bool,
        stats: &mut CookStats,
        now: Instant,
        par_writes: &mut ParWrites,
    ) {
        let same = self.built
            && (data.layout_id() == self.layout || data.names() == self.names.as_slice());
        if !same {
            self.build(data, dests, op_exists, stats);
        }
        self.layout = data.layout_id();
        let resend_all = match self.cfg.resend {
            Some(every) => {
                let due = self.next_resend.is_none_or(|t| now >= t);
                if due {
                    self.next_resend = Some(now + every);
                }
                due
            }
            None => false,
        };
        let every = self.cfg.send == SendMode::EveryCook || resend_all;
        let n = dests.len();
        self.epochs.resize(n, 0);
        let reconnected = (0..n).any(|d| dests.epoch(d) != self.epochs[d]);
        // A cook that changed one channel of a thousand: the values are compared with the last
        // export's [`RUN`] at a time, and only a run that differs is looked at channel by channel.
        let n = self.map.len();
        let values = (data.num_samples() == 1).then(|| data.samples());
        let quick = !every && !reconnected && self.seen.len() == n;
        for start in (0..n).step_by(RUN) {
            let end = (start + RUN).min(n);
            if let (true, Some(vals)) = (quick, values) {
                if same_bits(&vals[start..end], &self.seen[start..end]) {
                    continue;
                }
            }
            for i in start..end {
                let v = data.last(i);
                // The values first (a few bytes a channel), the targets only for what changed.
                if !every && !reconnected && self.last[i] == Some(v) {
                    continue;
                }
                let Some(target) = &self.map[i] else { continue };
                let again = reconnected
                    && matches!(target, Target::Osc { dest, .. } if dests.epoch(*dest) != self.epochs[*dest]);
                if !every && !again && self.last[i] == Some(v) {
                    continue;
                }
                if !v.is_finite() {
                    // NaN/inf never leave the daemon; counted once per change.
                    if self.last[i].is_none_or(|l| l.is_finite()) {
                        stats.warnings += 1;
                    }
                    self.last[i] = Some(v);
                    continue;
                }
                self.last[i] = Some(v);
                match target {
                    Target::Osc { dest, address } => dests.push(*dest, address, v),
                    Target::Par { op, par } => par_writes.push((op.clone(), par.clone(), v)),
                    Target::Midi { dest, slot } => {
                        if let Some(m) = dests.midi.as_mut() {
                            m.set(*dest, *slot, v);
                        }
                    }
                }
            }
        }
        self.seen.clear();
        if let Some(vals) = values {
            self.seen.extend_from_slice(vals);
        }
        if reconnected {
            for (d, e) in self.epochs.iter_mut().enumerate() {
                *e = dests.epoch(d);
            }
        }
    }

    /// The operator parameters this export drives, as (operator, parameter): the `op:` targets of
    /// the current mapping (the graph refuses control-port sets on them).
    pub fn par_targets(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().flatten().filter_map(|t| match t {
            Target::Par { op, par } => Some((op.as_str(), par.as_str())),
            Target::Osc { .. } | Target::Midi { .. } => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Destination, ExportRow, ExportTable, NumFormat};

    #[test]
    fn path_and_parameter() {
        assert_eq!(
            split_path_parameter("geo1/transform1:tx"),
            ("geo1/transform1".into(), "tx")
        );
        assert_eq!(split_path_parameter("geo1:tx"), ("geo1".into(), "tx"));
        assert_eq!(split_path_parameter("a/b/c"), ("a/b".into(), "c"));
        assert_eq!(split_path_parameter("fader1"), ("".into(), "fader1"));
        assert_eq!(split_path_parameter("/a::b/"), ("a".into(), "b"));
    }

    #[test]
    fn addresses() {
        assert_eq!(
            osc_address("/show", "geo1/transform1", "tx"),
            "/show/geo1/transform1/tx"
        );
        assert_eq!(osc_address("", "", "fader1"), "/fader1");
    }

    fn dests() -> Destinations {
        let d = Destination {
            name: "console".into(),
            host: "127.0.0.1".into(),
            port: 9,
            prefix: "/show".into(),
            format: NumFormat::Float,
            max_packet: 1472,
            timetag: false,
            resend: None,
            transport: crate::config::Transport::Udp,
            keepalive: Vec::new(),
        };
        Destinations::new(std::slice::from_ref(&d)).unwrap()
    }

    fn data(names: &[&str]) -> ChopData {
        let mut d = ChopData::new(60.0);
        for (i, n) in names.iter().enumerate() {
            d.append_with(n, &[i as f32]);
        }
        d
    }

    #[test]
    fn autoname_mapping_and_sernum() {
        let mut e = Exporter::new(ExportConfig {
            method: ExportMethod::AutoName,
            root: ExportRoot::Destination("console".into()),
            send: SendMode::OnChange,
            resend: None,
        });
        let mut dests = dests();
        let mut stats = CookStats::default();
        let mut writes = Vec::new();
        let d = data(&["geo1/transform1:tx", "level"]);
        e.export(
            &d,
            &mut dests,
            &|_| false,
            &mut stats,
            Instant::now(),
            &mut writes,
        );
        assert_eq!(
            e.map,
            vec![
                Some(Target::Osc {
                    dest: 0,
                    address: "/show/geo1/transform1/tx".into()
                }),
                Some(Target::Osc {
                    dest: 0,
                    address: "/show/level".into()
                }),
            ]
        );
        assert_eq!(stats.export_sernum, 1);
        assert_eq!(dests.pending(0), 2);
        // Same values: nothing new is queued; the mapping is kept.
        e.export(
            &d,
            &mut dests,
            &|_| false,
            &mut stats,
            Instant::now(),
            &mut writes,
        );
        assert_eq!(dests.pending(0), 2);
        assert_eq!(stats.export_sernum, 1);
        // A new channel changes the mapping.
        let d2 = data(&["geo1/transform1:tx", "level", "x"]);
        e.export(
            &d2,
            &mut dests,
            &|_| false,
            &mut stats,
            Instant::now(),
            &mut writes,
        );
        assert_eq!(stats.export_sernum, 2);
        // Only the new channel is sent: the others kept their last-sent values.
        assert_eq!(dests.pending(0), 3);
    }

    #[test]
    fn retargeting_resends_only_what_moved_to_another_receiver() {
        let mut e = Exporter::new(ExportConfig {
            method: ExportMethod::AutoName,
            root: ExportRoot::Destination("console".into()),
            send: SendMode::OnChange,
            resend: None,
        });
        let mut dests = dests();
        let mut stats = CookStats::default();
        let d = data(&["level"]);
        let mut export = |e: &mut Exporter, dests: &mut Destinations| {
            e.export(
                &d,
                dests,
                &|_| false,
                &mut stats,
                Instant::now(),
                &mut Vec::new(),
            )
        };
        export(&mut e, &mut dests);
        assert_eq!(dests.pending(0), 1);
        // The same receiver under the same index: resolved again, nothing sent again.
        e.retarget(&[Some(0)]);
        export(&mut e, &mut dests);
        assert_eq!(dests.pending(0), 1);
        // Another receiver: the unchanged value goes to it.
        e.retarget(&[None]);
        export(&mut e, &mut dests);
        assert_eq!(dests.pending(0), 2);
    }

    #[test]
    fn destinations_diff_by_name() {
        let dest = |name: &str, port: u16, prefix: &str| Destination {
            name: name.into(),
            host: "127.0.0.1".into(),
            port,
            prefix: prefix.into(),
            format: NumFormat::Float,
            max_packet: 1472,
            timetag: false,
            resend: None,
            transport: crate::config::Transport::Udp,
            keepalive: Vec::new(),
        };
        let running = Destinations::new(&[dest("b", 9001, "/show"), dest("c", 9002, "")]).unwrap();
        let new = Destinations::resolve(&[
            dest("a", 9000, ""),
            dest("b", 9001, "/stage"),
            dest("d", 9003, ""),
        ])
        .unwrap();
        let diff = running.diff(&new);
        assert_eq!(
            diff.notes(),
            [
                "destination b: prefix /show → /stage",
                "added destination a",
                "added destination d",
                "removed destination c"
            ]
        );
        // b moved from 0 to 1 and is the same receiver; c is gone.
        assert_eq!(diff.remap, [Some(1), None]);
        assert!(diff.moved && !diff.is_unchanged());
        let same = Destinations::resolve(&[dest("b", 9001, "/show"), dest("c", 9002, "")]).unwrap();
        assert!(running.diff(&same).is_unchanged());
        let moved =
            Destinations::resolve(&[dest("b", 9005, "/show"), dest("c", 9002, "")]).unwrap();
        let diff = running.diff(&moved);
        assert_eq!(diff.notes(), ["destination b: port 9001 → 9005"]);
        assert_eq!(diff.remap, [None, Some(1)]);
    }

    #[test]
    fn table_by_name_and_by_index() {
        let rows = vec![
            ExportRow {
                chan: ChanRef::Name("b".into()),
                path: "dimmer".into(),
                parameter: "level".into(),
                enable: true,
            },
            ExportRow {
                chan: ChanRef::Name("a".into()),
                path: "".into(),
                parameter: "off".into(),
                enable: false,
            },
        ];
        let mut e = Exporter::new(ExportConfig {
            method: ExportMethod::DatName(ExportTable {
                source: TableSource::File("t.csv".into()),
                rows,
            }),
            root: ExportRoot::Destination("console".into()),
            send: SendMode::OnChange,
            resend: None,
        });
        let mut dests = dests();
        let mut stats = CookStats::default();
        e.export(
            &data(&["a", "b"]),
            &mut dests,
            &|_| false,
            &mut stats,
            Instant::now(),
            &mut Vec::new(),
        );
        assert_eq!(e.map[0], None);
        assert_eq!(
            e.map[1],
            Some(Target::Osc {
                dest: 0,
                address: "/show/dimmer/level".into()
            })
        );

        let rows = vec![ExportRow {
            chan: ChanRef::Index(1),
            path: "x".into(),
            parameter: "y".into(),
            enable: true,
        }];
        let mut e = Exporter::new(ExportConfig {
            method: ExportMethod::DatIndex(ExportTable {
                source: TableSource::File("t.csv".into()),
                rows,
            }),
            root: ExportRoot::Destination("console".into()),
            send: SendMode::OnChange,
            resend: None,
        });
        e.export(
            &data(&["a", "b"]),
            &mut dests,
            &|_| false,
            &mut stats,
            Instant::now(),
            &mut Vec::new(),
        );
        assert_eq!(e.map[0], None);
        assert_eq!(
            e.map[1],
            Some(Target::Osc {
                dest: 0,
                address: "/show/x/y".into()
            })
        );
    }

    #[test]
    fn a_table_dat_maps_and_a_bad_edit_keeps_the_last_mapping() {
        use crate::cook::dat::{DatBody, DatContent, Table};
        let table = |rows: &[&[&str]]| {
            DatBody::Table(Table::from_rows(
                rows.iter()
                    .map(|r| r.iter().map(|s| s.to_string()).collect())
                    .collect(),
            ))
        };
        let mut dat = DatContent::new(table(&[&["chan", "path", "parameter"], &["a", "p", "q"]]));
        let mut e = Exporter::new(ExportConfig {
            method: ExportMethod::DatName(ExportTable {
                source: TableSource::Dat("map".into()),
                rows: Vec::new(),
            }),
            root: ExportRoot::Destination("console".into()),
            send: SendMode::OnChange,
            resend: None,
        });
        assert_eq!(e.dat_source(), Some("map"));
        let mut dests = dests();
        let mut stats = CookStats::default();
        let mut run = |e: &mut Exporter, dat: &DatContent| {
            let warned = e.follow_dat(|n| (n == "map").then_some(dat));
            e.export(
                &data(&["a"]),
                &mut dests,
                &|_| false,
                &mut stats,
                Instant::now(),
                &mut Vec::new(),
            );
            warned
        };
        let osc = |a: &str| {
            Some(Target::Osc {
                dest: 0,
                address: a.into(),
            })
        };
        assert_eq!(run(&mut e, &dat), 0);
        assert_eq!(e.map[0], osc("/show/p/q"));
        dat.body = table(&[&["chan", "path", "parameter"], &["a", "p2", "q"]]);
        dat.touch();
        assert_eq!(run(&mut e, &dat), 0);
        assert_eq!(e.map[0], osc("/show/p2/q"));
        // An edit that makes no export table: one warning, the mapping stays.
        dat.body = table(&[&["chan", "path"], &["a", "p3"]]);
        dat.touch();
        assert_eq!(run(&mut e, &dat), 1);
        assert_eq!(run(&mut e, &dat), 0);
        assert_eq!(e.map[0], osc("/show/p2/q"));
    }

    #[test]
    fn op_root_targets_parameters() {
        let mut e = Exporter::new(ExportConfig {
            method: ExportMethod::AutoName,
            root: ExportRoot::Op(String::new()),
            send: SendMode::OnChange,
            resend: None,
        });
        let mut dests = dests();
        let mut stats = CookStats::default();
        let mut writes = Vec::new();
        e.export(
            &data(&["shaper:Gain", "nowhere:X"]),
            &mut dests,
            &|n| n == "shaper",
            &mut stats,
            Instant::now(),
            &mut writes,
        );
        assert_eq!(
            writes,
            vec![("shaper".to_string(), "Gain".to_string(), 0.0)]
        );
        assert_eq!(stats.warnings, 1);
    }
}
