//! What the table and text DAT kinds share: reading their file at check time (errors as
//! `file:line`), and the running operator, which puts its content into its node and follows
//! its file. A changed file is read off the cook thread; a file that no longer reads or parses
//! leaves the old content in place and is reported as the operator's error.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use crate::cook::dat::{self, DatBody, DatContent, Table, TableFormat};
use crate::cook::{ChopData, CookCtx, CookError, Frame, NodeState, Operator};

/// How often the file is looked at.
const POLL: Duration = Duration::from_millis(200);
/// A change younger than this waits for the next look (editors write in several steps).
const SETTLE: Duration = Duration::from_millis(100);

/// How a DAT's file is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileForm {
    Table(TableFormat),
    Text,
}

/// Reads and parses a DAT file; an error reads `path:line: what` when a line is known.
pub fn load(path: &Path, form: FileForm) -> Result<DatBody, String> {
    let at = |e: String| match e
        .strip_prefix("line ")
        .and_then(|r| r.split_once(": "))
        .filter(|(n, _)| n.parse::<u64>().is_ok())
    {
        Some((n, rest)) => format!("{}:{n}: {rest}", path.display()),
        None => format!("{}: {e}", path.display()),
    };
    let text = dat::read_file(path).map_err(at)?;
    match form {
        FileForm::Text => Ok(DatBody::Text(text)),
        FileForm::Table(f) => Table::parse(&text, f).map(DatBody::Table).map_err(at),
    }
}

/// What identifies one version of the file (a file renamed over the old one is another inode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    len: u64,
    mtime: Option<SystemTime>,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        ino: m.ino(),
        len: m.len(),
        mtime: m.modified().ok(),
    })
}

/// A running table or text DAT.
pub struct DatOp {
    /// What the settings hold (shared with them, not copied).
    initial: Arc<DatBody>,
    file: Option<(PathBuf, FileForm)>,
    /// The file version last read (or tried).
    seen: Option<Stamp>,
    last_poll: Instant,
    /// A read under way on its own thread.
    reading: Option<mpsc::Receiver<Result<DatBody, String>>>,
    /// A finished read, installed by the next cook.
    read: Option<Result<DatBody, String>>,
    /// Has cooked since it was built.
    cooked: bool,
    reloads: u64,
}

impl DatOp {
    pub fn new(initial: Arc<DatBody>, file: Option<(PathBuf, FileForm)>) -> DatOp {
        let seen = file.as_ref().and_then(|(p, _)| stamp(p));
        DatOp {
            initial,
            file,
            seen,
            last_poll: Instant::now(),
            reading: None,
            read: None,
            cooked: false,
            reloads: 0,
        }
    }
}

impl Operator for DatOp {
    fn wants_cook(&mut self, _frame: &Frame, _nodes: &[NodeState]) -> bool {
        if let Some(rx) = &self.reading {
            match rx.try_recv() {
                Ok(r) => {
                    self.read = Some(r);
                    self.reading = None;
                }
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => self.reading = None,
            }
        }
        self.read.is_some()
    }

    fn cook(&mut self, ctx: &mut CookCtx, _out: &mut ChopData) -> Result<(), CookError> {
        let node = ctx.state();
        if !std::mem::replace(&mut self.cooked, true) {
            // New content (a first start, or a reload that built this DAT anew): whatever read
            // the DAT it replaces cooks again.
            if node.dat.is_none() {
                node.dat = Some(Box::new(DatContent::new((*self.initial).clone())));
            }
            node.mark_changed();
        }
        match self.read.take() {
            None => Ok(()),
            Some(Ok(body)) => {
                if let Some(d) = node.dat.as_mut() {
                    d.replace(body);
                }
                node.mark_changed();
                self.reloads += 1;
                let file = self.file.as_ref().map(|(p, _)| p.display().to_string());
                tracing::info!(file = file.unwrap_or_default(), "dat file read");
                Ok(())
            }
            Some(Err(e)) => {
                tracing::error!(error = %e, "dat file not read, the old content is kept");
                Err(CookError::Logged(e))
            }
        }
    }

    fn extras(&self, out: &mut Vec<(&'static str, f64)>) {
        out.push(("dat_reloads", self.reloads as f64));
    }

    fn initial_dat(&self) -> Option<DatContent> {
        Some(DatContent::new((*self.initial).clone()))
    }

    fn reset(&mut self) {
        // Back to the file (or the config's content): a script's edits are dropped.
        match &self.file {
            Some((path, form)) => self.read = Some(load(path, *form)),
            None => self.read = Some(Ok((*self.initial).clone())),
        }
    }

    fn housekeeping(&mut self) {
        let Some((path, form)) = &self.file else {
            return;
        };
        if self.reading.is_some() || self.last_poll.elapsed() < POLL {
            return;
        }
        self.last_poll = Instant::now();
        let now = stamp(path);
        if now.is_none() || now == self.seen {
            return;
        }
        let young = now
            .and_then(|s| s.mtime)
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|age| age < SETTLE);
        if young {
            return;
        }
        self.seen = now;
        let (tx, rx) = mpsc::channel();
        let (path, form) = (path.clone(), *form);
        let spawned = std::thread::Builder::new()
            .name("dat-read".into())
            .spawn(move || {
                let _ = tx.send(load(&path, form));
            });
        match spawned {
            Ok(_) => self.reading = Some(rx),
            Err(e) => self.read = Some(Err(format!("cannot start reading the file: {e}"))),
        }
    }
}
