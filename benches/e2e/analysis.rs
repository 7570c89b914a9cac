//! Matching sends with receipts: latency, delivery, loss.
//!
//! chopd's `oscin` is latest-wins: two messages for one channel folded in the same frame
//! legitimately leave only the later one in the output. So a message whose own value never
//! arrived is **superseded** (not lost) when a later value of the same channel arrived in the
//! export frame that message belonged to: the first export frame that arrived after it was sent,
//! or the one after (a message sent just before a frame's fold shows in that frame, one sent
//! just after it in the next). Anything else that never arrived is **lost**. From outside the
//! daemon a message dropped inside such a window is indistinguishable from a superseded one;
//! chopd's own counters (`queue_drops`, `kernel_drops`, `messages`) are the cross-check.

use crate::traffic::{RecvLog, SendLog};

/// Nearest-rank percentile of sorted values.
pub fn pick<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

#[derive(Debug, Default)]
pub struct Delivery {
    /// Messages in the measured window.
    pub sent: usize,
    pub delivered: usize,
    pub superseded: usize,
    pub lost: usize,
    /// Measured values that arrived more than once (re-sends after a mapping change).
    pub duplicates: usize,
    /// A measured value that arrived after a later value of the same channel.
    pub reordered: usize,
    /// End-to-end latency of delivered messages, sorted (ns).
    pub latency: Vec<u64>,
}

/// `measured`: the message indices whose statistics count (the warm-up is before it).
/// `frame_ns`: the frame period, for the time-based window used when no frame markers arrived.
pub fn deliveries(
    sent: &SendLog,
    recv: &RecvLog,
    channels: usize,
    measured: std::ops::Range<usize>,
    frame_ns: u64,
) -> Delivery {
    let total = sent.times.len();
    // First arrival of each message: (time, frame).
    let mut first: Vec<Option<(u64, u32)>> = vec![None; total];
    let mut d = Delivery::default();
    let mut newest: Vec<Option<usize>> = vec![None; channels];
    for rx in &recv.bench {
        let c = rx.index % channels;
        let counts = measured.contains(&rx.index);
        if newest[c].is_some_and(|n| n > rx.index) && counts {
            d.reordered += 1;
        }
        newest[c] = newest[c].max(Some(rx.index));
        match first[rx.index] {
            Some(_) if counts => d.duplicates += 1,
            Some(_) => {}
            None => first[rx.index] = Some((rx.t, rx.frame)),
        }
    }
    let frame_times: Vec<u64> = recv.frames.iter().map(|f| f.1).collect();
    let markers = !frame_times.is_empty();
    // Per channel, the index of the next arrived message after i (filled backwards).
    let mut next_arrived: Vec<Option<usize>> = vec![None; channels];
    let mut superseded_by: Vec<Option<usize>> = vec![None; total];
    for i in (0..total).rev() {
        let c = i % channels;
        superseded_by[i] = next_arrived[c];
        if first[i].is_some() {
            next_arrived[c] = Some(i);
        }
    }
    for i in measured {
        d.sent += 1;
        let t_send = sent.times[i];
        if let Some((t, _)) = first[i] {
            d.delivered += 1;
            d.latency.push(t.saturating_sub(t_send));
            continue;
        }
        let in_window = superseded_by[i].is_some_and(|j| {
            let (t_later, frame_later) = first[j].expect("arrived");
            if markers {
                // Index of the first export frame that arrived after the send.
                let f = frame_times.partition_point(|&ft| ft <= t_send) as u32;
                frame_later != u32::MAX && frame_later <= f + 1
            } else {
                t_later <= t_send + 2 * frame_ns + 1_000_000
            }
        });
        if in_window {
            d.superseded += 1;
        } else {
            d.lost += 1;
        }
    }
    d.latency.sort_unstable();
    d
}

/// p50, p99 and max of sorted values.
pub fn summary(sorted: &[u64]) -> Option<(u64, u64, u64)> {
    Some((pick(sorted, 0.5)?, pick(sorted, 0.99)?, *sorted.last()?))
}

pub fn median(values: &mut [f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Checks of this module's logic (`--self-test`: a harness-less bench runs no #[test]s).
pub mod checks {
    use super::*;
    use crate::traffic::Rx;

    fn sent(times: &[u64]) -> SendLog {
        SendLog {
            times: times.to_vec(),
            errors: 0,
            lag_max_ns: 0,
            lag_p99_ns: 0,
        }
    }

    pub fn percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(summary(&v), Some((50, 99, 100)));
        assert_eq!(pick(&[7u64], 0.99), Some(7));
        assert_eq!(median(&mut [3.0, 1.0, 2.0, f64::NAN]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0]), Some(2.5));
    }

    pub fn superseded_within_the_frame_lost_otherwise() {
        // One channel; frames arrive at 1000, 2000, 3000, 4000 ns.
        let mut recv = RecvLog {
            frames: vec![(1, 1000), (2, 2000), (3, 3000), (4, 4000)],
            ..Default::default()
        };
        // Messages 0 and 1 sent in frame 1's window; only 1 arrives, in frame 1 → 0 superseded.
        // Message 2 sent at 1500 arrives at 2000 (frame index 1). Message 3 sent at 1600 never
        // arrives and message 4 (sent 3500) arrives in frame 3: 3 was lost.
        let s = sent(&[100, 200, 1500, 1600, 3500]);
        recv.bench = vec![
            Rx {
                index: 1,
                t: 1010,
                frame: 0,
            },
            Rx {
                index: 2,
                t: 2010,
                frame: 1,
            },
            Rx {
                index: 4,
                t: 4010,
                frame: 3,
            },
            Rx {
                index: 4,
                t: 4020,
                frame: 3,
            },
        ];
        let d = deliveries(&s, &recv, 1, 0..5, 1000);
        assert_eq!((d.sent, d.delivered, d.superseded, d.lost), (5, 3, 1, 1));
        assert_eq!(d.duplicates, 1);
        assert_eq!(d.latency, vec![510, 510, 810]);
    }
}
