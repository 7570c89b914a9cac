//! Show state kept across restarts: the parameter values set while running (not those an export
//! drives) and the `store()`d values that JSON holds, per operator with its identity, in one
//! JSON file in the state directory (`state_dir`, else systemd's `$STATE_DIRECTORY`; without
//! either nothing is kept). docs/reliability.md says what survives what.
//!
//! The cook thread takes a snapshot at most once per [`EVERY`] and hands it over only when it
//! changed; a writer thread writes it atomically (temporary file in the same directory, fsync,
//! rename, fsync of the directory), so a crash, a watchdog kill or an OOM kill leaves the
//! previous file or the new one, never half of one. A clean stop writes the last snapshot.
//! The file never exceeds [`MAX_BYTES`]: what does not fit is left out, with one warning.
//! A file that cannot be read or parsed is renamed aside and reported; the show starts without.

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::{Config, Identity};
use crate::cook::{KeptPar, KeptPars};
use crate::graph::Graph;

/// The version of the file's layout; another one is set aside, not guessed at.
pub const FORMAT: u32 = 1;
/// Largest state file written (and read), bytes.
pub const MAX_BYTES: usize = 1 << 20;
/// Longest a changed value waits to be written, and the shortest gap between two writes.
pub const EVERY: Duration = Duration::from_secs(1);
/// Distinct "not kept" notes logged per run at most (a script storing ever new keys).
const MAX_NOTES: usize = 64;
/// The storage of the project component `/project1` (`parent().store` from a top-level
/// script), which belongs to no operator of the config.
const TOP: &str = crate::path::PROJECT;

/// The state file's contents.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ShowState {
    pub format: u32,
    #[serde(default)]
    pub operators: BTreeMap<String, OpState>,
    /// `parent().store(…)` values.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub top: Map<String, Value>,
}

/// What is kept of one operator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpState {
    #[serde(flatten)]
    pub identity: Identity,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pars: BTreeMap<String, KeptPar>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub storage: Map<String, Value>,
}

/// Reads a state file's bytes.
pub fn parse(bytes: &[u8]) -> Result<ShowState, String> {
    if bytes.len() > MAX_BYTES {
        return Err(format!(
            "{} bytes, more than chopd writes ({MAX_BYTES})",
            bytes.len()
        ));
    }
    let s: ShowState = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if s.format != FORMAT {
        return Err(format!(
            "layout {} (this chopd reads {FORMAT}; written by another version?)",
            s.format
        ));
    }
    Ok(s)
}

/// The state file's bytes (one line of JSON).
pub fn serialize(s: &ShowState) -> Vec<u8> {
    let mut v = serde_json::to_vec(s).expect("the state is plain data");
    v.push(b'\n');
    v
}

/// What a snapshot left out, remembered so each thing is logged once per run.
#[derive(Default)]
struct Notes {
    too_large: bool,
    not_json: HashSet<(String, String)>,
}

impl Notes {
    fn too_large(&mut self, what: &str) {
        if !std::mem::replace(&mut self.too_large, true) {
            tracing::warn!(
                state = "too_large",
                max_bytes = MAX_BYTES,
                "the show state is larger than {MAX_BYTES} bytes: {what} and anything else \
                 beyond it is not kept across restarts"
            );
        }
    }

    fn not_json(&mut self, op: &str, key: &str, why: &str) {
        if self.not_json.len() < MAX_NOTES && self.not_json.insert((op.into(), key.into())) {
            tracing::info!(
                op = %op,
                "store({key:?}) of \"{op}\" is not kept across restarts: {why} (JSON holds \
                 None, bool, int, float, str and lists, tuples and str-keyed dicts of those)"
            );
        }
    }
}

/// Adds the runtime-set parameters of `graph` to `s`, charging `budget`; what does not fit is
/// left out. Pure but for the log: the unit tests drive it.
fn add_pars(
    s: &mut ShowState,
    kept: Vec<(&str, Identity, KeptPars)>,
    budget: &mut usize,
    notes: &mut Notes,
) {
    for (name, identity, pars) in kept {
        // `"pars":{}` and its comma.
        *budget = budget.saturating_sub(10);
        let entry = s.operators.entry(name.to_string()).or_insert(OpState {
            identity,
            pars: BTreeMap::new(),
            storage: Map::new(),
        });
        for (par, k) in pars {
            // Name, quotes, colon, comma; the value as it is written.
            let cost = par.len() + 4 + serde_json::to_vec(&k).map_or(usize::MAX, |v| v.len());
            match budget.checked_sub(cost) {
                Some(left) => {
                    *budget = left;
                    entry.pars.insert(par, k);
                }
                None => notes.too_large(&format!("parameter {par} of \"{name}\"")),
            }
        }
    }
}

/// The state of `graph` now, within [`MAX_BYTES`].
fn snapshot(graph: &Graph, notes: &mut Notes) -> ShowState {
    let mut s = ShowState {
        format: FORMAT,
        ..ShowState::default()
    };
    // The envelope and every operator's identity, generously.
    let ids = graph.identities();
    let overhead = 64
        + ids
            .iter()
            .map(|(n, i)| n.len() + i.kind.len() + i.of.len() + 64)
            .sum::<usize>();
    let mut budget = MAX_BYTES.saturating_sub(overhead);
    add_pars(&mut s, graph.kept_pars(), &mut budget, notes);
    if !crate::python::running() {
        return s;
    }
    pyo3::Python::attach(|py| {
        let names = ids.iter().map(|(n, i)| (*n, Some(i))).chain([(TOP, None)]);
        for (name, identity) in names {
            let Some(st) = crate::python::stored::storage_json(py, name, &mut budget) else {
                continue;
            };
            for (key, why) in &st.not_json {
                notes.not_json(name, key, why);
            }
            if let Some(key) = st.too_large.first() {
                notes.too_large(&format!("store({key:?}) of \"{name}\""));
            }
            if st.values.is_empty() {
                continue;
            }
            match identity {
                None => s.top = st.values,
                Some(identity) => {
                    s.operators
                        .entry(name.to_string())
                        .or_insert_with(|| OpState {
                            identity: identity.clone(),
                            pars: BTreeMap::new(),
                            storage: Map::new(),
                        })
                        .storage = st.values;
                }
            }
        }
    });
    s
}

/// The stored values of `s` whose operator the config still has with the same identity, and
/// the top's.
fn restore_storage_of(config: &Config, s: &ShowState) {
    for (name, op) in &s.operators {
        let same = config
            .operators
            .iter()
            .any(|c| c.name == *name && c.identity() == op.identity);
        if same && !op.storage.is_empty() {
            restore_storage(name, &op.storage);
        }
    }
    if !s.top.is_empty() {
        restore_storage(TOP, &s.top);
    }
}

/// Puts the parameters of `s` back into `graph`, for the operators whose identity is
/// unchanged. Returns how many operators got their state back.
fn restore_pars(graph: &mut Graph, s: &ShowState) -> usize {
    let mut restored = 0;
    for (name, op) in &s.operators {
        let pars: KeptPars = op
            .pars
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if graph.restore_pars(name, &op.identity, &pars) {
            restored += 1;
        } else {
            tracing::info!(
                op = %name,
                "the kept state of \"{name}\" ({} {}) is not restored: the config has no such \
                 operator now",
                op.identity.kind,
                op.identity.of
            );
        }
    }
    restored
}

fn restore_storage(name: &str, values: &Map<String, Value>) {
    if !crate::python::running() {
        return;
    }
    pyo3::Python::attach(|py| {
        if let Err(e) = crate::python::stored::restore_storage(py, name, values) {
            tracing::warn!(op = %name, "restoring the stored values of \"{name}\": {e}");
        }
    });
}

/// The stored values of names that `new` gives to another operator (another kind or
/// callbacks file), taken out before the reload builds it: that operator starts clean, as a
/// restart would not bring them back to it either. Put back if the reload is refused.
pub struct Displaced(Vec<(String, pyo3::Py<pyo3::types::PyDict>)>);

impl Displaced {
    pub fn take(graph: &Graph, new: &Config) -> Displaced {
        if !crate::python::running() {
            return Displaced(Vec::new());
        }
        let taken = graph
            .identities()
            .into_iter()
            .filter(|(name, id)| {
                new.operators
                    .iter()
                    .any(|c| c.name == *name && c.identity() != *id)
            })
            .filter_map(|(name, _)| {
                crate::python::registry::take_storage(name).map(|d| (name.to_string(), d))
            })
            .collect();
        Displaced(taken)
    }

    pub fn put_back(self) {
        for (name, d) in self.0 {
            crate::python::registry::put_storage(&name, d);
        }
    }
}

/// Writes `bytes` to `path` so that a crash at any moment leaves the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Reads the state file at `path`: `None` when there is none, or when it cannot be used, in
/// which case it is renamed aside (`.bad-SECONDS`) and a warning says why.
pub fn load(path: &Path) -> Option<ShowState> {
    let why = match std::fs::read(path) {
        Ok(bytes) => match parse(&bytes) {
            Ok(s) => return Some(s),
            Err(e) => e,
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => e.to_string(),
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = path.with_extension(format!("json.bad-{stamp}"));
    match std::fs::rename(path, &aside) {
        Ok(()) => tracing::warn!(
            state = "set_aside",
            file = %path.display(),
            to = %aside.display(),
            "the show state file cannot be used ({why}): moved to {}; starting without it",
            aside.display()
        ),
        Err(e) => tracing::warn!(
            state = "unusable",
            file = %path.display(),
            "the show state file cannot be used ({why}) nor moved aside ({e}); starting \
             without it"
        ),
    }
    None
}

/// Where the state of `config` lives: `state_dir`, else `$STATE_DIRECTORY` (its first entry),
/// as `NAME.state.json` after the config file, so several shows can share a directory.
pub fn file_for(config: &Config, env: Option<&str>) -> Option<PathBuf> {
    let dir = config.state_dir.clone().or_else(|| {
        env.and_then(|v| v.split(':').next())
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
    })?;
    let stem = config
        .file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("chopd");
    Some(dir.join(format!("{stem}.state.json")))
}

/// The latest snapshot waiting for the writer, and whether the writer should end.
#[derive(Default)]
struct Slot {
    next: Option<ShowState>,
    closed: bool,
}

/// The cook thread's side: takes snapshots, restores, and feeds the writer thread.
pub struct Keeper {
    slot: Arc<(Mutex<Slot>, Condvar)>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// What the file held at start, until the graph is built.
    loaded: Option<ShowState>,
    path: PathBuf,
    last: Option<ShowState>,
    taken: Instant,
    notes: Notes,
}

impl Keeper {
    /// Finds the state file for `config`, puts its stored values back (before the graph is
    /// built, so `onSetupParameters` sees them, as TouchDesigner's storage is there when an
    /// operator loads) and starts the writer; [`Keeper::restore_pars`] follows once the graph
    /// is built. `None` (with one line saying so) when no directory is configured or usable.
    pub fn start(config: &Config) -> Option<Keeper> {
        let env = std::env::var("STATE_DIRECTORY").ok();
        let Some(path) = file_for(config, env.as_deref()) else {
            tracing::info!(
                state = "off",
                "show state is not kept across restarts (no state_dir in the config and no \
                 $STATE_DIRECTORY)"
            );
            return None;
        };
        if let Some(dir) = path.parent() {
            if let Err(e) = std::fs::create_dir_all(dir) {
                tracing::warn!(
                    state = "off",
                    dir = %dir.display(),
                    "show state is not kept across restarts: {}: {e}",
                    dir.display()
                );
                return None;
            }
        }
        let loaded = load(&path);
        if let Some(s) = &loaded {
            restore_storage_of(config, s);
        }
        let slot = Arc::new((Mutex::new(Slot::default()), Condvar::new()));
        let writer = {
            let slot = slot.clone();
            let path = path.clone();
            std::thread::Builder::new()
                .name("state".into())
                .spawn(move || write_loop(&path, &slot))
        };
        let writer = match writer {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(
                    state = "off",
                    "show state is not kept: no writer thread: {e}"
                );
                return None;
            }
        };
        Some(Keeper {
            slot,
            writer: Some(writer),
            loaded,
            path,
            last: None,
            taken: Instant::now(),
            notes: Notes::default(),
        })
    }

    /// Gives the operators of the freshly built `graph` their kept parameter values.
    pub fn restore_pars(&mut self, graph: &mut Graph) {
        let Some(s) = self.loaded.take() else { return };
        let n = restore_pars(graph, &s);
        tracing::info!(
            state = "restored",
            file = %self.path.display(),
            operators = n,
            "show state restored from {} ({n} operators)",
            self.path.display()
        );
    }

    /// Once per frame: a snapshot every [`EVERY`], handed to the writer when it changed.
    pub fn tick(&mut self, graph: &Graph, now: Instant) {
        if now.duration_since(self.taken) < EVERY {
            return;
        }
        self.taken = now;
        let s = snapshot(graph, &mut self.notes);
        self.offer(s);
    }

    fn offer(&mut self, s: ShowState) {
        if self.last.as_ref() == Some(&s) {
            return;
        }
        self.last = Some(s.clone());
        let (lock, cv) = &*self.slot;
        lock.lock().unwrap_or_else(|e| e.into_inner()).next = Some(s);
        cv.notify_one();
    }

    /// A clean stop: the state as it is now is written before the writer ends.
    pub fn finish(mut self, graph: &Graph) {
        let s = snapshot(graph, &mut self.notes);
        self.offer(s);
    }
}

impl Drop for Keeper {
    /// Ends the writer once what it was handed is written.
    fn drop(&mut self) {
        let (lock, cv) = &*self.slot;
        lock.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        cv.notify_one();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// The writer thread: writes each snapshot it is handed (the newest one when several waited).
/// A failed write is tried again every [`EVERY`] until it works or a newer snapshot replaces it,
/// and once more on stop; the failure is logged when it starts and when it ends, not each time.
fn write_loop(path: &Path, slot: &(Mutex<Slot>, Condvar)) {
    let (lock, cv) = slot;
    let mut failing: Option<String> = None;
    let mut retry: Option<ShowState> = None;
    let mut last_try = false;
    loop {
        let next = {
            let mut g = lock.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(s) = g.next.take() {
                    break Some(s);
                }
                if g.closed {
                    if last_try {
                        break None;
                    }
                    last_try = true;
                    break retry.take();
                }
                if retry.is_none() {
                    g = cv.wait(g).unwrap_or_else(|e| e.into_inner());
                    continue;
                }
                let (woken, t) = cv.wait_timeout(g, EVERY).unwrap_or_else(|e| e.into_inner());
                g = woken;
                if t.timed_out() && g.next.is_none() && !g.closed {
                    break retry.take();
                }
            }
        };
        let Some(s) = next else { return };
        match write_atomic(path, &serialize(&s)) {
            Ok(()) => {
                retry = None;
                if failing.take().is_some() {
                    tracing::info!(
                        state = "written",
                        file = %path.display(),
                        "show state written again"
                    );
                }
                tracing::debug!(state = "written", file = %path.display(), "show state written");
            }
            Err(e) => {
                let msg = e.to_string();
                if failing.as_deref() != Some(&msg) {
                    tracing::warn!(
                        state = "write_failed",
                        file = %path.display(),
                        "cannot write the show state {}: {msg}; trying again every {} s",
                        path.display(),
                        EVERY.as_secs()
                    );
                }
                failing = Some(msg);
                retry = Some(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cook::ParValue;

    fn id(of: &str) -> Identity {
        Identity {
            kind: "script".into(),
            of: of.into(),
        }
    }

    fn kept(v: f64) -> KeptPar {
        KeptPar {
            value: ParValue::Float(v),
            config: None,
        }
    }

    #[test]
    fn a_state_goes_to_bytes_and_back() {
        let mut s = ShowState {
            format: FORMAT,
            ..ShowState::default()
        };
        let mut budget = MAX_BYTES;
        add_pars(
            &mut s,
            vec![(
                "synth",
                id("/show/synth.py"),
                vec![
                    ("Gain".into(), kept(0.75)),
                    (
                        "Mode".into(),
                        KeptPar {
                            value: ParValue::Str("saw".into()),
                            config: Some(ParValue::Str("sine".into())),
                        },
                    ),
                ],
            )],
            &mut budget,
            &mut Notes::default(),
        );
        let pars_len = serde_json::to_vec(&s.operators["synth"].pars)
            .unwrap()
            .len();
        assert!(
            MAX_BYTES - budget >= pars_len,
            "charged at least what is written"
        );
        s.operators.get_mut("synth").unwrap().storage =
            serde_json::json!({"count": 3, "seen": [1, "a", null]})
                .as_object()
                .unwrap()
                .clone();
        s.top.insert("scene".into(), Value::from("intro"));
        let bytes = serialize(&s);
        assert_eq!(parse(&bytes).unwrap(), s);
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.contains(
                r#""synth":{"kind":"script","of":"/show/synth.py","pars":{"Gain":{"value":0.75"#
            ),
            "{text}"
        );
    }

    #[test]
    fn what_cannot_be_used_is_an_error_not_a_guess() {
        assert!(parse(b"").is_err());
        assert!(parse(b"{\"format\":1,\"operators\":{\"x\":").is_err());
        assert!(parse(b"{\"format\":2}").unwrap_err().contains("layout 2"));
        assert!(parse(b"[1,2]").is_err());
        assert!(parse(&vec![b' '; MAX_BYTES + 1]).is_err());
        assert_eq!(parse(b"{\"format\":1}").unwrap().operators.len(), 0);
    }

    #[test]
    fn parameters_beyond_the_budget_are_left_out() {
        let mut s = ShowState::default();
        let mut budget = 60;
        let pars = (0..10).map(|i| (format!("P{i}"), kept(i as f64))).collect();
        let mut notes = Notes::default();
        add_pars(&mut s, vec![("x", id(""), pars)], &mut budget, &mut notes);
        let n = s.operators["x"].pars.len();
        assert!(n > 0 && n < 10, "{n} fit");
        assert!(notes.too_large);
    }

    #[test]
    fn a_write_replaces_the_file_whole_and_a_bad_file_is_set_aside() {
        let dir = std::env::temp_dir().join(format!("chopd-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("show.state.json");
        assert_eq!(load(&path), None, "no file: nothing, nothing moved");
        let s = ShowState {
            format: FORMAT,
            ..ShowState::default()
        };
        write_atomic(&path, &serialize(&s)).unwrap();
        write_atomic(&path, &serialize(&s)).unwrap();
        assert_eq!(load(&path), Some(s));
        let names = |d: &Path| {
            let mut v: Vec<String> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(&dir), ["show.state.json"], "no temporary file left");
        std::fs::write(&path, "{\"format\":1,").unwrap();
        assert_eq!(load(&path), None);
        let after = names(&dir);
        assert_eq!(after.len(), 1);
        assert!(after[0].starts_with("show.state.json.bad-"), "{after:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_directory_is_state_dir_then_state_directory() {
        let mut c = crate::config::check_str(
            Path::new("/etc/chopd/stage.toml"),
            "rate = 10\n",
            crate::chop::KINDS,
        )
        .unwrap();
        assert_eq!(file_for(&c, None), None);
        assert_eq!(
            file_for(&c, Some("/var/lib/chopd/stage:/other")),
            Some(PathBuf::from("/var/lib/chopd/stage/stage.state.json"))
        );
        c.state_dir = Some(PathBuf::from("/srv/state"));
        assert_eq!(
            file_for(&c, Some("/var/lib/chopd")),
            Some(PathBuf::from("/srv/state/stage.state.json"))
        );
    }
}
