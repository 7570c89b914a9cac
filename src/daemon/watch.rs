//! Config watching by polling: the config and the files it names (export tables) are looked at
//! every `POLL`; a change is acted on once they have been quiet for `QUIET` (editors write in
//! several steps).
//!
//! Polling the *path* — not an inotify watch on an inode — follows editors that write a new file
//! and rename it over the old one: the path then names another inode, which counts as a change
//! even when size and mtime happen to match. A file that disappears counts as a change too.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often the files are looked at: a few `stat` calls, cheap enough to be responsive.
pub const POLL: Duration = Duration::from_millis(100);

/// How long the files must stay unchanged before a reload (vim, nano and VS Code finish a save
/// well within this).
pub const QUIET: Duration = Duration::from_millis(200);

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
    seen: Vec<Option<Stamp>>,
    /// When the last change not yet acted on was seen.
    changed_at: Option<Instant>,
}

impl Watcher {
    pub fn new(files: Vec<PathBuf>) -> Watcher {
        let seen = files.iter().map(stamp).collect();
        Watcher {
            files,
            seen,
            changed_at: None,
        }
    }

    /// Looks at the files; true once a change has settled (then the change counts as seen).
    pub fn poll(&mut self, now: Instant) -> bool {
        let stamps: Vec<Option<Stamp>> = self.files.iter().map(stamp).collect();
        if stamps != self.seen {
            self.seen = stamps;
            self.changed_at = Some(now);
            return false;
        }
        match self.changed_at {
            Some(t) if now.saturating_duration_since(t) >= QUIET => {
                self.changed_at = None;
                true
            }
            _ => false,
        }
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
        self.changed_at = None;
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
        // First poll sees the change, a poll after the quiet time acts on it.
        let a = w.poll(t);
        let b = w.poll(t + QUIET);
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
        assert!(settle(&mut w, t));
        // Acted on once.
        assert!(!settle(&mut w, t + QUIET * 2));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn waits_for_quiet() {
        let d = tmp("quiet");
        let f = d.join("map.csv");
        std::fs::write(&f, "a").unwrap();
        let mut w = Watcher::new(vec![f.clone()]);
        let t = Instant::now();
        std::fs::write(&f, "ab").unwrap();
        assert!(!w.poll(t));
        std::fs::write(&f, "abc").unwrap();
        // Still changing: not yet.
        assert!(!w.poll(t + QUIET));
        assert!(!w.poll(t + QUIET + QUIET / 2));
        assert!(w.poll(t + QUIET * 2));
        // Vanishing is a change too.
        std::fs::remove_file(&f).unwrap();
        assert!(settle(&mut w, t + QUIET * 3));
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
