//! Logging set-up: `tracing` to stderr, level from `CHOPD_LOG` (default `info`), colours only on
//! a terminal, no timestamps under the journal (it stamps lines itself); and [`RateLimit`], which
//! every repeated log line goes through.
//!
//! A line is the message, then its fields as ` key=value`. A value is written bare when it is one
//! plain token (`addr=127.0.0.1:9000`, `errors=2`) and quoted with Rust string escapes otherwise
//! (`changed="built oscin \"in2\""`), whichever way the call site recorded it (`%`, `?` or a
//! literal). So a reader — the tests, a log shipper — can take facts from the fields without
//! parsing the message.

use std::fmt::{self, Write as _};
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_env("CHOPD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .fmt_fields(Fields);
    // The format puts the fields of the spans an event is in before its message, on its one
    // line: `ERROR op{kind=script name=bad}: …` says which operator without the message having
    // to.
    // A second init (tests) is harmless: keep the first subscriber.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        let _ = builder.without_time().try_init();
    } else {
        let _ = builder.try_init();
    }
}

/// The field format described above.
pub struct Fields;

impl<'w> FormatFields<'w> for Fields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let ansi = writer.has_ansi_escapes();
        let mut v = Visitor {
            writer: &mut writer,
            ansi,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

struct Visitor<'a, 'w> {
    writer: &'a mut Writer<'w>,
    ansi: bool,
    first: bool,
    result: fmt::Result,
}

impl Visitor<'_, '_> {
    fn write(&mut self, field: &Field, text: &str) {
        if self.result.is_err() {
            return;
        }
        let pad = if self.first { "" } else { " " };
        self.first = false;
        self.result = if field.name() == "message" {
            write!(self.writer, "{pad}{text}")
        } else {
            let value = value(text);
            if self.ansi {
                // As tracing's own format: the key in italics, `=` dimmed.
                write!(
                    self.writer,
                    "{pad}\x1b[3m{}\x1b[0m\x1b[2m=\x1b[0m{value}",
                    field.name()
                )
            } else {
                write!(self.writer, "{pad}{}={value}", field.name())
            }
        };
    }
}

impl Visit for Visitor<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.write(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        // `?` on a string already quoted it: take the text inside, so `?s` and `%s` agree.
        let text = match unquote(&text) {
            Some(inner) if field.name() != "message" => inner.to_string(),
            _ => text,
        };
        self.write(field, &text);
    }
}

/// A value as written: bare when it is one plain token, else quoted.
fn value(text: &str) -> String {
    let plain = !text.is_empty()
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\\' | '='));
    if plain {
        text.to_string()
    } else {
        format!("{text:?}")
    }
}

/// The text of a Debug-quoted string that needed no escapes (the common case); None otherwise.
fn unquote(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains(['"', '\\'])).then_some(inner)
}

/// How many distinct messages a [`RateLimit`] remembers. Its callers sit on input paths a
/// hostile sender controls: the table must not grow with what they send.
const SLOTS: usize = 16;

/// Keeps a log line source quiet without hiding news: each distinct message gets through at least
/// once (up to `per_key` lines per key per interval), repeats within the interval are counted and
/// the count goes out on that message's next line. A message is known by its text with the
/// numbers taken out (frame counts, addresses and ports change from one line to the next
/// without making it a new message) or by a key the caller gives.
///
/// At most `SLOTS × per_key` lines go out per interval in all, so a sender that makes every
/// message distinct cannot flood the log either: what is held back then is counted as "other"
/// and reported on the next line that goes out. Counts of keys that leave the table before they
/// could be reported are carried the same way, so no count is lost.
#[derive(Debug)]
pub struct RateLimit {
    interval: Duration,
    per_key: u32,
    slots: Vec<Slot>,
    /// Lines held back whose key has no slot to report them on.
    other: u64,
    window: Option<Instant>,
    sent_in_window: u32,
    hasher: RandomState,
}

#[derive(Debug)]
struct Slot {
    key: u64,
    window: Instant,
    sent: u32,
    held: u64,
}

/// What was held back before a line that may go out now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Held {
    /// Repeats of this line's message since its last line.
    pub similar: u64,
    /// Lines of other messages that had no other place to be reported.
    pub other: u64,
}

impl Held {
    /// `" (N similar {noun} not logged)"`, naming the other ones too; empty when nothing was held.
    pub fn suffix(&self, noun: &str) -> String {
        match (self.similar, self.other) {
            (0, 0) => String::new(),
            (s, 0) => format!(" ({s} similar {noun} not logged)"),
            (0, o) => format!(" ({o} other {noun} not logged)"),
            (s, o) => format!(" ({s} similar and {o} other {noun} not logged)"),
        }
    }
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.suffix("messages"))
    }
}

impl RateLimit {
    /// One line per distinct message per `interval`.
    pub fn new(interval: Duration) -> RateLimit {
        RateLimit::per_key(interval, 1)
    }

    /// Up to `lines` lines per key per `interval` (a volume limit with a caller-given key).
    pub fn per_key(interval: Duration, lines: u32) -> RateLimit {
        RateLimit {
            interval,
            per_key: lines.max(1),
            slots: Vec::new(),
            other: 0,
            window: None,
            sent_in_window: 0,
            hasher: RandomState::new(),
        }
    }

    /// `Some` when a line with this text may be logged now; its key is the text without digits.
    pub fn allow(&mut self, text: &str) -> Option<Held> {
        self.allow_at(text, Instant::now())
    }

    /// [`RateLimit::allow`] at a given time.
    pub fn allow_at(&mut self, text: &str, now: Instant) -> Option<Held> {
        let mut h = self.hasher.build_hasher();
        let mut in_number = false;
        for b in text.bytes() {
            let digit = b.is_ascii_digit();
            if !digit {
                h.write_u8(b);
            } else if !in_number {
                // "frame 2" and "frame 10" are the same message, "a1b" and "ab" are not.
                h.write_u8(0xff);
            }
            in_number = digit;
        }
        let key = h.finish();
        self.check(key, now)
    }

    /// `Some` when a line of kind `key` may be logged now.
    pub fn allow_key<K: Hash + ?Sized>(&mut self, key: &K) -> Option<Held> {
        self.allow_key_at(key, Instant::now())
    }

    /// [`RateLimit::allow_key`] at a given time.
    pub fn allow_key_at<K: Hash + ?Sized>(&mut self, key: &K, now: Instant) -> Option<Held> {
        let key = self.hasher.hash_one(key);
        self.check(key, now)
    }

    fn check(&mut self, key: u64, now: Instant) -> Option<Held> {
        let elapsed = |t: Instant| now.saturating_duration_since(t);
        if self.window.is_none_or(|w| elapsed(w) >= self.interval) {
            self.window = Some(now);
            self.sent_in_window = 0;
        }
        let budget = SLOTS as u32 * self.per_key;
        let Some(i) = self.slots.iter().position(|s| s.key == key) else {
            if self.sent_in_window >= budget {
                self.other += 1;
                return None;
            }
            if self.slots.len() == SLOTS {
                // The slot whose window started first goes; its count waits for the next line.
                let oldest = (0..SLOTS)
                    .min_by_key(|&i| self.slots[i].window)
                    .unwrap_or(0);
                self.other += self.slots.swap_remove(oldest).held;
            }
            self.slots.push(Slot {
                key,
                window: now,
                sent: 0,
                held: 0,
            });
            return Some(self.send(self.slots.len() - 1));
        };
        let slot = &mut self.slots[i];
        if elapsed(slot.window) >= self.interval {
            slot.window = now;
            slot.sent = 0;
        }
        if slot.sent >= self.per_key || self.sent_in_window >= budget {
            slot.held += 1;
            return None;
        }
        Some(self.send(i))
    }

    fn send(&mut self, i: usize) -> Held {
        self.sent_in_window += 1;
        let slot = &mut self.slots[i];
        slot.sent += 1;
        Held {
            similar: std::mem::take(&mut slot.held),
            other: std::mem::take(&mut self.other),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn fields_are_bare_tokens_or_quoted_strings() {
        let buf = Buf::default();
        let out = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .with_target(false)
            .without_time()
            .with_level(false)
            .fmt_fields(Fields)
            .finish();
        let addr: std::net::SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let name = String::from("in");
        tracing::subscriber::with_default(sub, || {
            tracing::info!(op = %name, kind = "oscin", addr = %addr, "listening");
            tracing::info!(reload = "applied", changed = %"built oscin \"in2\"", "reloaded x");
            tracing::info!(reload = ?"rejected", errors = 2, path = %"a b/c.toml", "refused");
            tracing::info!(changed = "", "nothing");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        assert_eq!(
            lines,
            [
                "listening op=in kind=oscin addr=127.0.0.1:9000",
                r#"reloaded x reload=applied changed="built oscin \"in2\"""#,
                r#"refused reload=rejected errors=2 path="a b/c.toml""#,
                r#"nothing changed="""#,
            ]
        );
    }

    mod rate_limit {
        use super::*;

        const SEC: Duration = Duration::from_secs(1);

        #[test]
        fn the_same_message_twice_gives_one_line_and_the_count_goes_out_on_the_next() {
            let t0 = Instant::now();
            let mut r = RateLimit::new(2 * SEC);
            assert_eq!(r.allow_at("bad frame 2", t0), Some(Held::default()));
            assert_eq!(r.allow_at("bad frame 3", t0 + SEC / 10), None);
            assert_eq!(r.allow_at("bad frame 4", t0 + SEC), None);
            let next = r.allow_at("bad frame 400", t0 + 2 * SEC).unwrap();
            assert_eq!(
                next,
                Held {
                    similar: 2,
                    other: 0
                }
            );
            assert_eq!(next.to_string(), " (2 similar messages not logged)");
            assert_eq!(r.allow_at("bad frame 401", t0 + 2 * SEC), None);
        }

        #[test]
        fn a_different_message_right_after_the_first_is_logged() {
            let t0 = Instant::now();
            let mut r = RateLimit::new(5 * SEC);
            assert!(r.allow_at("harmless: 1 dropped", t0).is_some());
            assert!(r.allow_at("harmless: 2 dropped", t0).is_none());
            assert_eq!(
                r.allow_at("the disk is on fire", t0 + SEC / 100),
                Some(Held::default())
            );
            // Caller-given keys work the same way.
            assert!(r.allow_key_at("Rate", t0).is_some());
            assert!(r.allow_key_at("Rate", t0).is_none());
            assert!(r.allow_key_at("Other", t0).is_some());
        }

        #[test]
        fn numbers_are_ignored_but_not_the_letters_around_them() {
            let t0 = Instant::now();
            let mut r = RateLimit::new(SEC);
            assert!(r.allow_at("from 127.0.0.1:5000", t0).is_some());
            assert!(r.allow_at("from 10.1.2.3:61234", t0).is_none());
            assert!(r.allow_at("a1b", t0).is_some());
            assert!(r.allow_at("ab", t0).is_some());
        }

        #[test]
        fn ten_thousand_distinct_messages_keep_the_table_and_the_log_bounded() {
            let t0 = Instant::now();
            let mut r = RateLimit::new(SEC);
            let mut lines = 0;
            let mut reported = 0;
            for i in 0..10_000u32 {
                // Letters, not digits: each one is a new message.
                let text: String = i
                    .to_string()
                    .bytes()
                    .map(|b| (b - b'0' + b'a') as char)
                    .collect();
                if let Some(h) = r.allow_at(&text, t0) {
                    lines += 1;
                    reported += h.similar + h.other;
                }
                assert!(r.slots.len() <= SLOTS);
            }
            assert_eq!(lines, SLOTS);
            assert!(r.slots.capacity() <= 2 * SLOTS);
            // The rest are counted and reported once the interval is over.
            let h = r.allow_at("after the flood", t0 + SEC).unwrap();
            assert_eq!(reported + h.similar + h.other, 10_000 - SLOTS as u64);
            assert_eq!(h.suffix("lines"), " (9984 other lines not logged)");
        }

        #[test]
        fn an_evicted_key_hands_its_count_to_the_next_line() {
            let t0 = Instant::now();
            let mut r = RateLimit::new(10 * SEC);
            assert!(r.allow_key_at("first", t0).is_some());
            assert!(r.allow_key_at("first", t0).is_none());
            // A new window, then SLOTS new keys: "first" (the oldest) leaves the table.
            let t1 = t0 + 10 * SEC;
            for k in 0..SLOTS {
                let h = r.allow_key_at(&k, t1).unwrap();
                assert_eq!(h.other, if k == SLOTS - 1 { 1 } else { 0 }, "key {k}");
            }
        }

        #[test]
        fn per_key_lets_that_many_lines_through_per_interval() {
            let t0 = Instant::now();
            let mut r = RateLimit::per_key(SEC, 3);
            let through = (0..10)
                .filter(|_| r.allow_key_at("op", t0).is_some())
                .count();
            assert_eq!(through, 3);
            assert!(r.allow_key_at("other op", t0).is_some());
            assert_eq!(r.allow_key_at("op", t0 + SEC).unwrap().similar, 7);
        }
    }
}
