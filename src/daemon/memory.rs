//! The process's resident memory (RSS): sampled once a second by the cook thread for the Info
//! CHOP of `/` (`rss_mb`) and the status, with a warning when it passes a threshold. A script
//! that keeps data in a global (a list growing every cook) grows it without end and nothing
//! in-process can take that memory back; the warning says so early, and the unit's
//! `MemoryMax=` is the backstop (docs/script.md, "Faults and their limits").

use std::time::{Duration, Instant};

/// How often the RSS is read (`/proc/self/statm`: an open, a read and a close, ~10 µs).
pub const SAMPLE: Duration = Duration::from_secs(1);

/// Without `rss_warn_mb`, the first warning comes at twice the first sample, and never below
/// this (MB): a daemon that starts at 40 MB and briefly holds 80 MB of numpy arrays is fine.
pub const DEFAULT_WARN_FLOOR_MB: f64 = 256.0;

const MB: f64 = 1024.0 * 1024.0;

/// The resident set size of this process, in bytes (`None` where `/proc` is unreadable).
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf takes a plain integer and returns one.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// Samples the RSS at most once per [`SAMPLE`] and warns when it passes the threshold: the
/// configured `rss_warn_mb`, or twice the first sample (at least [`DEFAULT_WARN_FLOOR_MB`]).
/// After a warning the next one comes when the RSS has doubled again, so a leak is reported a
/// few times (log scale), never once a second.
#[derive(Debug)]
pub struct RssWatch {
    configured: Option<u64>,
    /// The first sample, MB.
    baseline: Option<f64>,
    /// The next warning comes at this RSS, MB.
    warn_at: Option<f64>,
    last: Option<Instant>,
}

impl RssWatch {
    pub fn new(rss_warn_mb: Option<u64>) -> RssWatch {
        RssWatch {
            configured: rss_warn_mb,
            baseline: None,
            warn_at: rss_warn_mb.map(|m| m as f64),
            last: None,
        }
    }

    /// A reloaded config's `rss_warn_mb`; a changed value starts the warnings over.
    pub fn configure(&mut self, rss_warn_mb: Option<u64>) {
        if rss_warn_mb == self.configured {
            return;
        }
        self.configured = rss_warn_mb;
        self.warn_at = match rss_warn_mb {
            Some(m) => Some(m as f64),
            None => self.baseline.map(default_threshold),
        };
    }

    /// Reads the RSS when [`SAMPLE`] has passed since the last reading (the first call reads at
    /// once); returns it in MB, and logs a warning when it passed the threshold.
    pub fn sample(&mut self, now: Instant) -> Option<f64> {
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < SAMPLE)
        {
            return None;
        }
        self.last = Some(now);
        let mb = rss_bytes()? as f64 / MB;
        if let Some(w) = self.check(mb) {
            tracing::warn!(
                rss_mb = w.rss_mb.round() as u64,
                warn_mb = w.warn_mb.round() as u64,
                start_mb = w.start_mb.round() as u64,
                "{w}"
            );
        }
        Some(mb)
    }

    /// The warning for a sample of `mb`, if one is due.
    fn check(&mut self, mb: f64) -> Option<Warning> {
        if self.baseline.is_none() {
            self.baseline = Some(mb);
        }
        let at = *self
            .warn_at
            .get_or_insert_with(|| default_threshold(self.baseline.unwrap_or(mb)));
        if mb < at {
            return None;
        }
        let next = (mb * 2.0).max(at * 2.0);
        self.warn_at = Some(next);
        let why = if self.configured.is_some() {
            "rss_warn_mb"
        } else {
            "twice the start-up size"
        };
        Some(Warning {
            rss_mb: mb,
            warn_mb: at,
            start_mb: self.baseline.unwrap_or(mb),
            why,
            next_mb: next,
        })
    }
}

/// A memory warning: the numbers go into the log line's fields as well as its text.
struct Warning {
    rss_mb: f64,
    /// The threshold passed.
    warn_mb: f64,
    start_mb: f64,
    why: &'static str,
    next_mb: f64,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Warning {
            rss_mb,
            warn_mb,
            start_mb,
            why,
            next_mb,
        } = self;
        write!(
            f,
            "chopd's resident memory is {rss_mb:.0} MB, past {warn_mb:.0} MB ({why}; it was \
             {start_mb:.0} MB at start): is a script keeping data in a global? Info CHOP \"/\" \
             rss_mb shows it; under systemd the unit's MemoryMax= restarts chopd when the limit is \
             reached. Next warning at {next_mb:.0} MB"
        )
    }
}

fn default_threshold(baseline_mb: f64) -> f64 {
    (baseline_mb * 2.0).max(DEFAULT_WARN_FLOOR_MB)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_readable_and_plausible() {
        let b = rss_bytes().expect("/proc/self/statm");
        assert!(b > 1 << 20 && b < 1 << 40, "{b}");
    }

    #[test]
    fn samples_at_most_once_a_second() {
        let mut w = RssWatch::new(None);
        let t0 = Instant::now();
        assert!(w.sample(t0).is_some());
        assert!(w.sample(t0 + Duration::from_millis(500)).is_none());
        assert!(w.sample(t0 + SAMPLE).is_some());
    }

    #[test]
    fn default_threshold_is_twice_the_start_at_least_the_floor() {
        let mut w = RssWatch::new(None);
        assert!(w.check(40.0).is_none());
        assert!(w.check(255.0).is_none());
        let msg = w.check(260.0).unwrap().to_string();
        assert!(msg.contains("260 MB, past 256 MB"), "{msg}");
        assert!(msg.contains("twice the start-up size"), "{msg}");
        // Then only when it doubles again.
        assert!(w.check(500.0).is_none());
        assert!(w
            .check(530.0)
            .unwrap()
            .to_string()
            .contains("Next warning at 1060 MB"));

        let mut w = RssWatch::new(None);
        assert!(w.check(300.0).is_none());
        assert!(w.check(590.0).is_none());
        assert!(w.check(600.0).is_some());
    }

    #[test]
    fn configured_threshold_and_reload() {
        let mut w = RssWatch::new(Some(100));
        assert!(w.check(50.0).is_none());
        let msg = w.check(120.0).unwrap().to_string();
        assert!(
            msg.contains("past 100 MB (rss_warn_mb; it was 50 MB at start)"),
            "{msg}"
        );
        assert!(w.check(200.0).is_none());
        // A new value starts over; the same value changes nothing.
        w.configure(Some(150));
        assert!(w.check(200.0).is_some());
        w.configure(Some(150));
        assert!(w.check(300.0).is_none());
        // Back to the default: twice the first sample, at least the floor.
        w.configure(None);
        assert!(w.check(255.0).is_none());
        assert!(w.check(256.0).is_some());
    }
}
