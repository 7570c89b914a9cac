//! Config watching by polling: the config and the files it names (export tables) are looked at
//! every `POLL`, and a change is acted on only once the files are complete and stable.
//!
//! Polling the *path* — not an inotify watch on an inode — follows editors that write a new file
//! and rename it over the old one: the path then names another inode, which counts as a change
//! even when size and mtime happen to match. A file that disappears counts as a change too.
//!
//! Nothing tells a reader that a writer is done with a file, so "complete" is inferred from
//! how the file changed. A file renamed over the old one (another inode at the path) was written
//! elsewhere and appeared whole: it is acted on after `QUIET`. A file written in place (the same
//! inode: `>`, `cp`, scp, an editor that overwrites) may be half-written while the writer pauses
//! (a slow link, a full disk): it is acted on only after `SETTLE` without any change. Either
//! way the version acted on is the one seen twice, that far apart, with the same inode, size,
//! modification and change times *and* content hash (the times are coarse: two writes of the
//! same length within one clock tick look alike to `stat`). A writer that pauses longer than
//! `SETTLE` still gets its partial file read; renaming over is the safe way to edit.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often the files are looked at: a few `stat` calls, cheap enough to be responsive.
pub const POLL: Duration = Duration::from_millis(100);

/// How long a replaced file must stay the same before a reload (an editor's rename and the
/// steps around it are done well within this).
pub const QUIET: Duration = Duration::from_millis(200);

/// How long a file written in place must stay the same before a reload: longer than the
/// pauses of an editor, a copy over the network or a writer that flushes in pieces, short
/// enough that a save shows on stage within a few seconds.
pub const SETTLE: Duration = Duration::from_secs(2);

/// What identifies one version of a file at a path.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn stamp(path: &PathBuf) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

pub struct Watcher {
    files: Vec<PathBuf>,
    /// The versions last acted on.
    seen: Vec<Option<Stamp>>,
    /// A change not yet acted on: the versions first seen, their content, and when.
    pending: Option<Pending>,
}

struct Pending {
    stamps: Vec<Option<Stamp>>,
    hashes: Vec<Option<u64>>,
    since: Instant,
}

/// The content of a file, hashed (configs and export tables are small).
fn content(path: &PathBuf) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}

impl Watcher {
    pub fn new(files: Vec<PathBuf>) -> Watcher {
        let seen = files.iter().map(stamp).collect();
        Watcher {
            files,
            seen,
            pending: None,
        }
    }

    /// Looks at the files; true once a change is complete and stable (then it counts as seen).
    pub fn poll(&mut self, now: Instant) -> bool {
        let stamps: Vec<Option<Stamp>> = self.files.iter().map(stamp).collect();
        if stamps == self.seen {
            // Changed and changed back (or a vanished file is back as it was).
            self.pending = None;
            return false;
        }
        let Some(p) = self.pending.as_ref().filter(|p| p.stamps == stamps) else {
            self.pending = Some(Pending {
                hashes: self.files.iter().map(content).collect(),
                stamps,
                since: now,
            });
            return false;
        };
        let wait = if self.written_in_place(&stamps) {
            SETTLE
        } else {
            QUIET
        };
        if now.saturating_duration_since(p.since) < wait {
            return false;
        }
        let hashes: Vec<Option<u64>> = self.files.iter().map(content).collect();
        if hashes != p.hashes {
            self.pending = Some(Pending {
                stamps,
                hashes,
                since: now,
            });
            return false;
        }
        self.seen = stamps;
        self.pending = None;
        true
    }

    /// True when a file changed under the same inode: a writer may not be done with it.
    fn written_in_place(&self, stamps: &[Option<Stamp>]) -> bool {
        self.seen
            .iter()
            .zip(stamps)
            .any(|(old, new)| match (old, new) {
                (Some(o), Some(n)) => o != n && (o.dev, o.ino) == (n.dev, n.ino),
                _ => false,
            })
    }

    /// The watched files as they are now, taken before a reload reads them.
    pub fn look(&self) -> Seen {
        Seen(self.files.iter().map(|f| (f.clone(), stamp(f))).collect())
    }

    /// After a reload (whatever its cause and result): watch `files`, taking the versions in
    /// `seen` as handled. A file edited while the reload ran differs from `seen` and is picked up
    /// by the next polls; files new to the list are taken as they are now.
    pub fn reset(&mut self, files: Vec<PathBuf>, seen: Seen) {
        self.seen = files
            .iter()
            .map(|f| match seen.0.get(f) {
                Some(s) => s.clone(),
                None => stamp(f),
            })
            .collect();
        self.files = files;
        self.pending = None;
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

/// Versions of files at one moment (see [`Watcher::look`]).
pub struct Seen(HashMap<PathBuf, Option<Stamp>>);

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("chopd-watch-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn settle(w: &mut Watcher, t: Instant) -> bool {
        // First poll sees the change, a poll after the longest wait acts on it.
        let a = w.poll(t);
        let b = w.poll(t + SETTLE);
        a || b
    }

    #[test]
    fn rename_over_the_file_is_a_change() {
        let d = tmp("rename");
        let f = d.join("chopd.toml");
        std::fs::write(&f, "rate = 60\n").unwrap();
        let mut w = Watcher::new(vec![f.clone()]);
        let t = Instant::now();
        assert!(!settle(&mut w, t));
        // Same length, and the old mtime put back: only the inode tells.
        let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
        let new = d.join(".chopd.toml.swp");
        std::fs::write(&new, "rate = 61\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&new)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        std::fs::rename(&new, &f).unwrap();
        // A file renamed over the old one is whole: the short wait is enough.
        assert!(!w.poll(t));
        assert!(w.poll(t + QUIET));
        // Acted on once.
        assert!(!settle(&mut w, t + QUIET * 2));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn an_in_place_write_waits_until_it_settles() {
        let d = tmp("settle");
        let f = d.join("map.csv");
        std::fs::write(&f, "a").unwrap();
        let mut w = Watcher::new(vec![f.clone()]);
        let t = Instant::now();
        std::fs::write(&f, "ab").unwrap();
        assert!(!w.poll(t));
        // Long enough for a replaced file, not for one written in place.
        assert!(!w.poll(t + QUIET));
        std::fs::write(&f, "abc").unwrap();
        // Still changing: the wait starts again.
        assert!(!w.poll(t + SETTLE));
        assert!(!w.poll(t + SETTLE + SETTLE / 2));
        assert!(w.poll(t + SETTLE * 2));
        // Vanishing is a change too, and nobody is writing a file that is not there.
        std::fs::remove_file(&f).unwrap();
        assert!(!w.poll(t + SETTLE * 3));
        assert!(w.poll(t + SETTLE * 3 + QUIET));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_rewrite_of_the_same_length_is_not_taken_for_the_first() {
        let d = tmp("same-length");
        let f = d.join("chopd.toml");
        std::fs::write(&f, "rate = 60\n").unwrap();
        let mut w = Watcher::new(vec![f.clone()]);
        let t = Instant::now();
        std::fs::write(&f, "rate = 61\n").unwrap();
        assert!(!w.poll(t));
        // Within one clock tick `stat` may see no difference; the content does.
        std::fs::write(&f, "rate = 62\n").unwrap();
        assert!(!w.poll(t + SETTLE));
        assert!(w.poll(t + SETTLE * 2));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn an_edit_during_a_reload_is_not_missed() {
        let d = tmp("list");
        let (a, b) = (d.join("a"), d.join("b"));
        std::fs::write(&a, "1").unwrap();
        std::fs::write(&b, "1").unwrap();
        let mut w = Watcher::new(vec![a.clone()]);
        let t = Instant::now();
        // SIGHUP: the reload reads the files as they are; nothing left to do afterwards.
        std::fs::write(&a, "22").unwrap();
        let seen = w.look();
        w.reset(vec![a.clone(), b.clone()], seen);
        assert!(!settle(&mut w, t));
        // An edit of `a` lands while a reload runs: the new list must still see it.
        let seen = w.look();
        std::fs::write(&a, "333").unwrap();
        w.reset(vec![a.clone(), b.clone()], seen);
        assert!(settle(&mut w, t));
        let _ = std::fs::remove_dir_all(&d);
    }
}
