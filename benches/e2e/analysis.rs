//! Matching sends with receipts: latency, delivery, loss.
//!
//! chopd's `oscin` is latest-wins: messages for one channel folded in the same frame
//! legitimately leave only the last one in the output. A message whose own value never arrived
//! is **superseded** (not lost) when the next value of its channel that did arrive came in the
//! export of the frame that folded the message; otherwise it is **lost**.
//!
//! Which frame folded a message is not observable directly, but it is bounded from the outside:
//! the path is FIFO (one sending socket → loopback → one receive socket → one receive thread →
//! one queue, drained at the start of each frame), so every frame folds a prefix of the message
//! sequence. If message m arrived in frame g, frame g folded everything up to m; and since
//! only a channel's newest folded value is exported, frame g had not folded m's successor on
//! that channel (m + channels), nor anything that first arrived in a later frame. With 1000
//! interleaved channels the bounds are tight, so a message the receive thread was late to pick
//! up (a busy machine) is still judged against the frame that really folded it. The daemon's
//! own counters (`queue_drops`, `kernel_drops`, `messages`) are the cross-check.
//!
//! Frames are told apart by the Info CHOP's `frame` channel, the first message of each frame's
//! export (scenario.rs). Without it (`--no-info`) the window is time-based: a later value within
//! two frames + 1 ms of the send.

use crate::traffic::{pick, RecvLog, SendLog};

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
    /// The first few lost messages, explained (for `--explain-loss`).
    pub lost_examples: Vec<String>,
    /// Why delivered messages took longer than the latency limit (see `Tail`).
    pub tail: Tail,
}

/// Where the latency of delivered messages over the limit came from, judged against the ideal
/// frame grid (frame n's export due at `base + n × period`, `base` fitted as the earliest
/// arrival of any frame marker in the measured window).
#[derive(Debug, Default)]
pub struct Tail {
    /// Delivered messages over the limit.
    pub over: usize,
    /// Folded by the first frame due after they were sent, but that frame's export came late
    /// (a late wake-up or a slow frame: the clock and the cook thread).
    pub late_frame: usize,
    /// The frame that should have folded them was dropped (the clock was a whole frame or more
    /// behind): they went out with the next frame that ran.
    pub dropped_frame: usize,
    /// That frame ran but folded without them: the receive thread had not queued them yet.
    pub missed_fold: usize,
    /// Every delivered message that missed the fold of a frame that ran (over the limit or not).
    pub missed_fold_all: usize,
}

/// `measured`: the message indices whose statistics count (the warm-up is before it).
/// `frame_ns`: the frame period. `limit_ns`: the latency target, for the tail analysis.
///
/// `react`: chopd ran with `react = true`, so folds also happen between frames, unseen by the
/// receiver (each reaction pass folds a prefix of the sequence and exports what changed at once,
/// after the frame's marker; under a flood a pass may come frames after the send). The frame
/// windows then bound nothing, but the FIFO argument alone decides: every pass exports the
/// newest value of each channel it folded, so a message whose value never came while a later
/// value of its channel did was folded in the same pass as that one: superseded. Real losses
/// on the way in are chopd's own counters (`queue_drops`, `kernel_drops`, `not_decoded`), shown
/// beside.
pub fn deliveries(
    sent: &SendLog,
    recv: &RecvLog,
    channels: usize,
    measured: std::ops::Range<usize>,
    frame_ns: u64,
    limit_ns: u64,
    react: bool,
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
    let markers = !recv.frames.is_empty();
    let cut = FoldBounds::new(&first, recv.frames.len(), channels);
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
    let grid = Grid::fit(recv, &first, measured.clone(), frame_ns);
    for i in measured.clone() {
        d.sent += 1;
        let t_send = sent.times[i];
        if let Some((t, g)) = first[i] {
            d.delivered += 1;
            let latency = t.saturating_sub(t_send);
            d.latency.push(latency);
            if let Some(grid) = &grid {
                grid.judge(&mut d.tail, t_send, g, latency > limit_ns);
            }
            continue;
        }
        let in_window = superseded_by[i].is_some_and(|j| {
            let (t_later, frame_later) = first[j].expect("arrived");
            if react {
                true
            } else if markers {
                frame_later != u32::MAX && cut.frames_folding(i).contains(&(frame_later as usize))
            } else {
                t_later <= t_send + 2 * frame_ns + 1_000_000
            }
        });
        if in_window {
            d.superseded += 1;
        } else {
            d.lost += 1;
            if d.lost_examples.len() < 10 {
                d.lost_examples
                    .push(explain(i, t_send, superseded_by[i], &first, recv, channels));
            }
        }
    }
    d.latency.sort_unstable();
    d
}

/// The ideal frame grid fitted to the frame markers, for the tail analysis.
struct Grid<'a> {
    frames: &'a [(i64, u64)],
    base: f64,
    period: f64,
}

/// A message sent this close before a frame's due time may miss its fold without anything being
/// wrong (UDP transit, decode and queueing take some tens of µs).
const FOLD_SLACK_NS: f64 = 50_000.0;

impl<'a> Grid<'a> {
    fn fit(
        recv: &'a RecvLog,
        first: &[Option<(u64, u32)>],
        measured: std::ops::Range<usize>,
        period_ns: u64,
    ) -> Option<Grid<'a>> {
        // The frames that exported measured messages.
        let lo = measured
            .clone()
            .filter_map(|i| first[i])
            .map(|f| f.1)
            .min()?;
        let hi = measured.filter_map(|i| first[i]).map(|f| f.1).max()?;
        let frames = recv.frames.get(lo as usize..=hi as usize)?;
        let period = period_ns as f64;
        let base = frames
            .iter()
            .map(|&(n, t)| t as f64 - n as f64 * period)
            .fold(f64::INFINITY, f64::min);
        base.is_finite().then_some(Grid {
            frames: &recv.frames,
            base,
            period,
        })
    }

    fn judge(&self, tail: &mut Tail, t_send: u64, frame: u32, over: bool) {
        let Some(&(n, _)) = self.frames.get(frame as usize) else {
            return;
        };
        // The first frame whose export is due after the send (with slack for the transit).
        let n0 = ((t_send as f64 + FOLD_SLACK_NS - self.base) / self.period).ceil() as i64;
        let dropped = n > n0 && {
            // Did every frame from n0 to n − 1 run? Frame numbers of the markers are sorted.
            let at = self.frames.partition_point(|f| f.0 < n0);
            let ran = self.frames[at..].iter().take_while(|f| f.0 < n).count() as i64;
            ran < n - n0
        };
        let missed = n > n0 && !dropped;
        if missed {
            tail.missed_fold_all += 1;
        }
        if !over {
            return;
        }
        tail.over += 1;
        if n <= n0 {
            tail.late_frame += 1;
        } else if dropped {
            tail.dropped_frame += 1;
        } else {
            tail.missed_fold += 1;
        }
    }
}

/// Bounds on the prefix of the message sequence each frame had folded (see the module doc).
struct FoldBounds {
    /// Per frame: every message up to this index was folded by then (None: nothing known).
    folded_up_to: Vec<Option<usize>>,
    /// Per frame: no message from this index on had been folded yet.
    not_before: Vec<usize>,
}

impl FoldBounds {
    fn new(first: &[Option<(u64, u32)>], frames: usize, channels: usize) -> FoldBounds {
        let mut max_in = vec![None::<usize>; frames];
        let mut below = vec![usize::MAX; frames];
        let mut min_in = vec![usize::MAX; frames];
        for (m, f) in first.iter().enumerate() {
            let Some((_, g)) = *f else { continue };
            let g = g as usize;
            if g >= frames {
                continue;
            }
            max_in[g] = max_in[g].max(Some(m));
            min_in[g] = min_in[g].min(m);
            // Exported as the channel's newest: its successor was not folded yet.
            below[g] = below[g].min(m + channels);
        }
        let mut folded_up_to = max_in;
        for g in 1..frames {
            folded_up_to[g] = folded_up_to[g].max(folded_up_to[g - 1]);
        }
        // What first arrived in a later frame was not folded yet.
        let mut later_min = usize::MAX;
        let mut not_before = vec![usize::MAX; frames];
        for g in (0..frames).rev() {
            not_before[g] = below[g].min(later_min);
            later_min = later_min.min(min_in[g]);
        }
        FoldBounds {
            folded_up_to,
            not_before,
        }
    }

    /// The frames that may have folded message `m`: after every frame known not to have
    /// folded it, up to the first known to have.
    fn frames_folding(&self, m: usize) -> std::ops::RangeInclusive<usize> {
        let lo = self.not_before.partition_point(|&nb| nb <= m);
        let hi = self
            .folded_up_to
            .partition_point(|&f| f.is_none_or(|f| f < m));
        lo..=hi
    }
}

/// One lost message in words: when it was sent, the frames around it, what arrived next.
fn explain(
    i: usize,
    t_send: u64,
    next: Option<usize>,
    first: &[Option<(u64, u32)>],
    recv: &RecvLog,
    channels: usize,
) -> String {
    let ms = |t: u64| t as f64 / 1e6;
    let f = recv.frames.partition_point(|&(_, ft)| ft <= t_send);
    let around: Vec<String> = recv.frames[f.saturating_sub(1)..(f + 3).min(recv.frames.len())]
        .iter()
        .map(|(n, t)| format!("#{n}@{:.3}", ms(*t)))
        .collect();
    let next = match next {
        Some(j) => {
            let (t, fr) = first[j].expect("arrived");
            let fnum = recv.frames.get(fr as usize).map_or(-1, |x| x.0);
            format!(
                "next arrival: seq {} at {:.3} ms in frame #{fnum} (marker {} after the send's)",
                j / channels,
                ms(t),
                fr as i64 - f as i64
            )
        }
        None => "no later value of the channel arrived".into(),
    };
    format!(
        "channel {} seq {} sent at {:.3} ms; frame markers around: {}; {next}",
        i % channels,
        i / channels,
        ms(t_send),
        around.join(" ")
    )
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
            slipped_ns: 0,
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
        // Two channels: message i is channel i % 2, sequence i / 2. Three frames.
        let frames = vec![(1, 1000), (2, 2000), (3, 3000)];
        let rx = |index, frame| Rx {
            index,
            t: 1000 * (frame as u64 + 1) + 10,
            frame,
        };
        let s = sent(&[100, 110, 1100, 1110, 2100, 2110]);
        // Frame 1 folded 2 and 3 but exported only 3: message 2 is lost (channel 0's next
        // value, 4, came a frame later).
        let recv = RecvLog {
            frames: frames.clone(),
            bench: vec![rx(0, 0), rx(1, 0), rx(3, 1), rx(4, 2), rx(5, 2), rx(5, 2)],
            ..Default::default()
        };
        let d = deliveries(&s, &recv, 2, 0..6, 1000, 2000, false);
        assert_eq!((d.sent, d.delivered, d.superseded, d.lost), (6, 5, 0, 1));
        assert_eq!(d.duplicates, 1);
        assert_eq!(d.latency, vec![900, 900, 900, 910, 910]);
        // Frame 1 folded 2, 3 and 4 (the receive thread was late with 2 and 3): 4 replaced 2 in
        // the same fold, so 2 is superseded.
        let recv = RecvLog {
            frames,
            bench: vec![rx(0, 0), rx(1, 0), rx(3, 1), rx(4, 1), rx(5, 2)],
            ..Default::default()
        };
        let d = deliveries(&s, &recv, 2, 0..6, 1000, 2000, false);
        assert_eq!((d.sent, d.delivered, d.superseded, d.lost), (6, 5, 1, 0));
    }

    pub fn tail_causes() {
        let recv = RecvLog {
            frames: vec![(1, 1_000_000), (2, 2_000_000), (4, 4_000_000)],
            ..Default::default()
        };
        let grid = Grid {
            frames: &recv.frames,
            base: 0.0,
            period: 1e6,
        };
        let mut t = Tail::default();
        // Sent at 1.5 ms: frame 2 (index 1) is its first fold; slow anyway → a late frame.
        grid.judge(&mut t, 1_500_000, 1, true);
        // Same send, exported by frame 4 while frame 3 never ran → a dropped frame.
        grid.judge(&mut t, 1_600_000, 2, true);
        // Sent at 0.5 ms (due in frame 1, which ran) but exported by frame 2 → missed the fold.
        grid.judge(&mut t, 500_000, 1, true);
        // Missed the fold but still fast enough: counted only in missed_fold_all.
        grid.judge(&mut t, 500_000, 1, false);
        assert_eq!(
            (
                t.over,
                t.late_frame,
                t.dropped_frame,
                t.missed_fold,
                t.missed_fold_all
            ),
            (3, 1, 1, 1, 2)
        );
    }
}
