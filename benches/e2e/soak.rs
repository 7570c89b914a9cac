//! Soak mode (`--soak-window S`): one long run cut into windows of S seconds.
//! During the run chopd's /proc figures are sampled at the end of every window (and a progress
//! line goes to stderr); after it, each window's messages (by send time) are judged like a whole
//! run (analysis.rs) and the clock figures are read from the `op = "/"` Info CHOP's series.
//! Prints one row per window, then RSS growth and how steady the p99 stayed.

use std::ops::Range;
use std::time::{Duration, Instant};

use crate::analysis::{self, median, summary};
use crate::chopd::{Chopd, ProcSample};
use crate::traffic::{RecvLog, SendLog};
use crate::Opts;

/// Goals of the soak: RSS growth under 5 %; p99 "steady", taken here as the worst
/// window's p99 at most 1.5 × the median window's.
pub const RSS_GROWTH_LIMIT_PCT: f64 = 5.0;
pub const P99_STEADY_RATIO: f64 = 1.5;

/// Waits until `t_end`; in soak mode samples chopd at the end of every window. Returns the
/// samples, `p0` (the start of the measurement) first; just `[p0]` without soak mode.
pub fn sample(
    o: &Opts,
    daemon: &Chopd,
    p0: &ProcSample,
    t_meas: Instant,
    t_end: Instant,
) -> Vec<ProcSample> {
    let mut out = vec![p0.clone()];
    let Some(w) = o.soak_window else {
        crate::sleep_until(t_end);
        return out;
    };
    let n = (o.seconds / w).ceil() as usize;
    for k in 1..=n {
        let t = (t_meas + Duration::from_secs_f64(w * k as f64)).min(t_end);
        crate::sleep_until(t);
        let p = daemon.sample();
        let prev = out.last().expect("p0");
        eprintln!(
            "soak: window {k}/{n} done ({:.0} s): chopd RSS {:.1} MB, CPU {:.1} %",
            t.duration_since(t_meas).as_secs_f64(),
            mb(p.rss_kb),
            p.cpu_pct_since(prev)
        );
        out.push(p);
    }
    out
}

/// kB (as /proc reports them) → MB (10^6 bytes, as the benchmark's `rss_mb`).
fn mb(kb: u64) -> f64 {
    kb as f64 * 1024.0 / 1e6
}

/// The per-window table and the soak's verdicts, on stdout.
#[allow(clippy::too_many_arguments)]
pub fn report(
    window_s: f64,
    sent: &SendLog,
    recv: &RecvLog,
    samples: &[ProcSample],
    channels: usize,
    measured: Range<usize>,
    (meas_ns, end_ns): (u64, u64),
    frame_ns: u64,
    limit_ns: u64,
) {
    let w_ns = (window_s * 1e9) as u64;
    let n = samples.len() - 1;
    let lateness = recv.series("lateness_p99");
    let ms = |v: u64| v as f64 / 1e6;
    println!(
        "\nsoak: {n} window(s) of {window_s} s (latency in ms; clock p99 = worst lateness p99 of \
         the window, chopd's last 4096 frames; dropped = frames the clock skipped)"
    );
    println!(
        "{:>5} {:>6} {:>9} {:>9} {:>6} {:>7} {:>7} {:>7} {:>8} {:>8} {:>6} {:>8} {:>7}",
        "win",
        "end_s",
        "sent",
        "recv",
        "lost",
        "supers",
        "p50",
        "p99",
        "max",
        "rss_MB",
        "cpu%",
        "clk_p99",
        "dropped"
    );
    let (mut sent_all, mut recv_all, mut lost_all, mut sup_all) = (0, 0, 0, 0);
    let mut p99s = Vec::new();
    let idx = |t: u64| {
        sent.times
            .partition_point(|&x| x < t)
            .clamp(measured.start, measured.end)
    };
    // Messages are a fixed count: when the sender slipped behind its schedule (a busy machine),
    // the last ones go out after the measured end. They get a row of their own ("after").
    let after = idx(end_ns)..measured.end;
    for k in 0..n + usize::from(!after.is_empty()) {
        let a = (meas_ns + w_ns * k as u64).min(end_ns);
        let b = if k < n {
            (a + w_ns).min(end_ns)
        } else {
            u64::MAX
        };
        let lo = if k == 0 { measured.start } else { idx(a) };
        let range = if k < n { lo..idx(b) } else { after.clone() };
        let d = analysis::deliveries(sent, recv, channels, range, frame_ns, limit_ns, false);
        sent_all += d.sent;
        recv_all += d.delivered;
        lost_all += d.lost;
        sup_all += d.superseded;
        let (p50, p99, max) = summary(&d.latency).unwrap_or((0, 0, 0));
        if k < n {
            p99s.push(ms(p99));
        }
        let clk = lateness
            .iter()
            .filter(|e| e.0 > a && e.0 <= b)
            .map(|e| e.1 as f64)
            .fold(f64::NAN, f64::max);
        let dropped = match (
            recv.value_at("dropped_frames", a),
            recv.value_at("dropped_frames", b),
        ) {
            (Some(x), Some(y)) => format!("{}", y - x),
            _ => "-".into(),
        };
        let (win, end_s, rss, cpu) = match samples.get(k + 1) {
            Some(p) if k < n => (
                (k + 1).to_string(),
                format!("{:.0}", (b - meas_ns) as f64 / 1e9),
                format!("{:.1}", mb(p.rss_kb)),
                format!("{:.1}", p.cpu_pct_since(&samples[k])),
            ),
            _ => ("after".into(), "-".into(), "-".into(), "-".into()),
        };
        println!(
            "{:>5} {:>6} {:>9} {:>9} {:>6} {:>7} {:>7.3} {:>7.3} {:>8.2} {:>8} {:>6} {:>8.3} {:>7}",
            win,
            end_s,
            d.sent,
            d.delivered,
            d.lost,
            d.superseded,
            ms(p50),
            ms(p99),
            ms(max),
            rss,
            cpu,
            clk,
            dropped
        );
    }
    if !after.is_empty() {
        println!(
            "(after: {} messages the sender still owed at the end, sent in the {:.1} s after it; \
             not in the windows' p99s)",
            after.len(),
            (sent.times[measured.end - 1].saturating_sub(end_ns)) as f64 / 1e9
        );
    }
    println!(
        "soak totals: sent {sent_all}, received {recv_all}, lost {lost_all}, superseded {sup_all}"
    );
    let (r0, r1) = (samples[0].rss_kb as f64, samples[n].rss_kb as f64);
    let growth = (r1 - r0) / r0.max(1.0) * 100.0;
    println!(
        "soak RSS: {:.1} MB at the start of the measurement, {:.1} MB at the end: {growth:+.2} % \
         (peak {:.1} MB) — {} (goal < {RSS_GROWTH_LIMIT_PCT} %)",
        mb(samples[0].rss_kb),
        mb(samples[n].rss_kb),
        mb(samples[n].hwm_kb),
        if growth < RSS_GROWTH_LIMIT_PCT {
            "met"
        } else {
            "MISSED"
        }
    );
    let worst = p99s.iter().copied().fold(0.0, f64::max);
    let best = p99s.iter().copied().fold(f64::INFINITY, f64::min);
    if let Some(med) = median(&mut p99s.clone()) {
        let ratio = worst / med.max(1e-9);
        println!(
            "soak p99: median window {med:.3} ms, best {best:.3} ms, worst {worst:.3} ms: worst/median \
             {ratio:.2} — {} (goal ≤ {P99_STEADY_RATIO})",
            if ratio <= P99_STEADY_RATIO {
                "steady"
            } else {
                "NOT steady"
            }
        );
    }
    println!(
        "soak loss: {lost_all} lost — {}",
        if lost_all == 0 { "met" } else { "MISSED" }
    );
}
