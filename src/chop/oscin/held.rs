//! Messages held for their bundle's time tag (`bundle_window_ms`): the decoder has already
//! refused tags further ahead than the window, so nothing is held longer than it; and the held
//! messages are bounded in count and bytes, past which a message applies on arrival and is
//! counted (`held_overflow`), never held without end.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::{cost, Update};

/// Messages held at most, and the bytes they may hold: a second of a 50k msg/s sender
/// scheduling everything ahead.
const MAX_HELD: usize = 65_536;
const MAX_HELD_BYTES: usize = 8 << 20;

#[derive(Default)]
pub struct Held {
    heap: BinaryHeap<Entry>,
    /// Arrival order, so messages due at the same instant apply in the order they came.
    seq: u64,
    bytes: usize,
    pub overflow: u64,
}

struct Entry {
    due: Instant,
    seq: u64,
    update: Update,
}

impl Ord for Entry {
    /// The earliest first out of the max-heap.
    fn cmp(&self, o: &Entry) -> Ordering {
        (o.due, o.seq).cmp(&(self.due, self.seq))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Entry) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl PartialEq for Entry {
    fn eq(&self, o: &Entry) -> bool {
        (self.due, self.seq) == (o.due, o.seq)
    }
}

impl Eq for Entry {}

impl Held {
    /// Keeps `u` until it is due; gives it back to apply now when it is due already, has no
    /// time, or there is no room (counted).
    pub fn hold(&mut self, u: Update, now: Instant) -> Option<Update> {
        let Some(due) = u.due.filter(|&d| d > now) else {
            return Some(u);
        };
        let c = cost(&u);
        if self.heap.len() >= MAX_HELD || self.bytes + c > MAX_HELD_BYTES {
            self.overflow += 1;
            return Some(u);
        }
        self.bytes += c;
        self.seq += 1;
        self.heap.push(Entry {
            due,
            seq: self.seq,
            update: u,
        });
        None
    }

    /// The next held update due by `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Update> {
        if self.heap.peek()?.due > now {
            return None;
        }
        let e = self.heap.pop()?;
        self.bytes -= cost(&e.update);
        Some(e.update)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn clear(&mut self) {
        self.heap.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn u(name: &str, due: Option<Instant>) -> Update {
        Update {
            name: name.into(),
            values: vec![1.0],
            due,
        }
    }

    #[test]
    fn held_updates_come_out_in_time_then_arrival_order() {
        let t0 = Instant::now();
        let at = |ms| Some(t0 + Duration::from_millis(ms));
        let mut h = Held::default();
        assert!(h.hold(u("now", None), t0).is_some());
        assert!(h.hold(u("past", Some(t0)), t0).is_some());
        for (n, ms) in [("b", 20), ("a", 10), ("c", 20)] {
            assert!(h.hold(u(n, at(ms)), t0).is_none());
        }
        assert_eq!(h.len(), 3);
        assert!(h.pop_due(t0).is_none());
        let names: Vec<String> = std::iter::from_fn(|| h.pop_due(t0 + Duration::from_millis(20)))
            .map(|u| u.name)
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(h.bytes, 0);
    }

    #[test]
    fn a_full_hold_applies_at_once_and_counts() {
        let t0 = Instant::now();
        let later = Some(t0 + Duration::from_secs(1));
        let mut h = Held::default();
        for i in 0..MAX_HELD {
            assert!(h.hold(u(&i.to_string(), later), t0).is_none());
        }
        assert!(h.hold(u("one more", later), t0).is_some());
        assert_eq!(h.overflow, 1);
    }
}
