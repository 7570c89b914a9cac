//! Time slices of queued input (OSC In and MIDI In with `queued` and `timeslice`): every message
//! of a frame becomes one sample, within bounds.
//!
//! A slice is never longer than `max_slice_ms` at the clock rate, queued or not, and each channel
//! keeps at most that many messages per frame: the newest, so the value a channel ends on is
//! always its latest. A burst on one channel lengthens the slice up to that bound and no
//! further; every other channel shares the length (one operator, one length) and holds its
//! previous value until its own messages, which come last, one a sample. Memory is then at most
//! channels × the bound, whatever arrives.

use std::time::Duration;

use super::ChopData;

/// Samples in a slice of `max_slice` at `rate`, at least one: the bound the graph clamps every
/// frame's step to.
pub fn max_samples(max_slice: Duration, rate: f64) -> usize {
    ((max_slice.as_secs_f64() * rate).floor() as usize).max(1)
}

/// One frame's messages per channel, at most `cap` each, kept in a ring per channel.
#[derive(Debug, Default)]
pub struct SliceQueue {
    cap: usize,
    /// `cap` slots per channel.
    ring: Vec<f32>,
    /// Messages pushed this frame, per channel (may exceed `cap`).
    count: Vec<usize>,
    /// The most samples any channel needs this frame.
    longest: usize,
    /// Messages that found no sample (the oldest of a burst), since the start.
    pub dropped: u64,
}

impl SliceQueue {
    /// Sets the most samples per channel. A change (the rate or `max_slice_ms` changed) loses
    /// what is queued, counted as dropped.
    pub fn set_cap(&mut self, cap: usize) {
        let cap = cap.max(1);
        if cap != self.cap {
            self.clear();
            self.cap = cap;
            self.ring.clear();
            self.ring.resize(self.count.len() * cap, 0.0);
        }
    }

    pub fn push(&mut self, chan: usize, value: f32) {
        if self.cap == 0 {
            self.set_cap(1);
        }
        if chan >= self.count.len() {
            self.count.resize(chan + 1, 0);
            self.ring.resize((chan + 1) * self.cap, 0.0);
        }
        let n = self.count[chan];
        self.ring[chan * self.cap + n % self.cap] = value;
        self.count[chan] = n + 1;
        self.longest = self.longest.max((n + 1).min(self.cap));
    }

    /// Samples this frame's slice needs: `step`, more for queued messages, never more than the cap.
    pub fn slice_len(&self, step: usize) -> usize {
        step.max(self.longest).min(self.cap.max(1)).max(1)
    }

    /// Lays every channel of `out` (already sized): `held[i]` until channel i's messages, then
    /// the newest of them, one a sample, the last at the end; `held[i]` becomes the newest. The
    /// queue is empty afterwards.
    pub fn lay(&mut self, out: &mut ChopData, held: &mut [f32]) {
        let len = out.num_samples();
        for (i, h) in held.iter_mut().enumerate() {
            let n = self.count.get_mut(i).map_or(0, std::mem::take);
            let k = n.min(len);
            self.dropped += (n - k) as u64;
            let dst = out.chan_mut(i);
            dst[..len - k].fill(*h);
            if n == 0 {
                continue;
            }
            let ring = &self.ring[i * self.cap..(i + 1) * self.cap];
            for (j, slot) in dst[len - k..].iter_mut().enumerate() {
                *slot = ring[(n - k + j) % self.cap];
            }
            *h = ring[(n - 1) % self.cap];
        }
        self.clear();
    }

    /// Forgets this frame's messages, counting them as dropped.
    pub fn clear(&mut self) {
        for c in &mut self.count {
            self.dropped += *c as u64;
            *c = 0;
        }
        self.longest = 0;
    }

    /// Forgets every channel (the operator dropped its channels).
    pub fn reset(&mut self) {
        self.count.clear();
        self.ring.clear();
        self.longest = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(chans: usize, len: usize) -> ChopData {
        let mut d = ChopData::new(60.0);
        for i in 0..chans {
            d.append_chan(&format!("c{i}"));
        }
        d.set_num_samples(len);
        d
    }

    #[test]
    fn max_samples_follows_the_graph_clamp() {
        assert_eq!(max_samples(Duration::from_millis(200), 60.0), 12);
        assert_eq!(max_samples(Duration::from_millis(200), 100.0), 20);
        assert_eq!(max_samples(Duration::from_millis(1), 60.0), 1);
    }

    #[test]
    fn a_burst_keeps_its_newest_and_others_hold() {
        let mut q = SliceQueue::default();
        q.set_cap(4);
        for v in 0..3000 {
            q.push(0, v as f32);
        }
        q.push(2, 7.0);
        let len = q.slice_len(1);
        assert_eq!(len, 4);
        let mut o = out(3, len);
        let mut held = vec![-1.0, 5.0, 6.0];
        q.lay(&mut o, &mut held);
        assert_eq!(o.chan(0), [2996.0, 2997.0, 2998.0, 2999.0]);
        assert_eq!(o.chan(1), [5.0; 4]);
        assert_eq!(o.chan(2), [6.0, 6.0, 6.0, 7.0]);
        assert_eq!(held, [2999.0, 5.0, 7.0]);
        assert_eq!(q.dropped, 2996);
        // Nothing queued: the step alone, and nothing changes.
        assert_eq!(q.slice_len(2), 2);
        // The ring holds channels × cap whatever the burst was.
        assert_eq!(q.ring.len(), 3 * 4);
    }

    #[test]
    fn a_slice_shorter_than_the_messages_counts_the_rest() {
        let mut q = SliceQueue::default();
        q.set_cap(8);
        for v in 0..5 {
            q.push(0, v as f32);
        }
        let mut o = out(1, 3);
        let mut held = vec![0.0];
        q.lay(&mut o, &mut held);
        assert_eq!(o.chan(0), [2.0, 3.0, 4.0]);
        assert_eq!(q.dropped, 2);
        q.push(0, 9.0);
        q.set_cap(2);
        assert_eq!(q.dropped, 3);
        assert_eq!(q.slice_len(1), 1);
    }
}
