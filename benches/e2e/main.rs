//! End-to-end benchmark of chopd: starts the real release binary on a config
//! it writes, sends OSC at a given rate over N channels from a real UDP socket on 127.0.0.1, and
//! measures at the export destination: end-to-end latency, delivery and loss (latest-wins
//! accounted for), the daemon's own Info CHOP counters and clock statistics, its CPU and memory.
//!
//! ```text
//! cargo bench --bench e2e -- --rate 1000 --channels 1000 --msgs 50000 --seconds 10 --runs 5
//! cargo bench --bench e2e -- --idle --seconds 10 --runs 5
//! cargo bench --bench e2e -- --tcp --rate 1000 --channels 1000 --msgs 50000 --runs 3
//! ```
//! See docs/benchmarks.md for what every figure means and the measured numbers.

mod analysis;
mod chopd;
mod forwarder;
mod scenario;
mod soak;
mod traffic;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use analysis::{median, summary};
use chopd::{Chopd, ProcSample};
use scenario::{Scenario, PREFIX};
use traffic::{Receiver, MAX_SEQ};

const USAGE: &str = "\
chopd end-to-end benchmark (docs/benchmarks.md)

usage: cargo bench --bench e2e -- [OPTIONS]
       (the binary itself: e2e-HASH --bench [OPTIONS]; without --bench it only self-tests)

  --scenario NAME      osc (default): OSC → oscin → export; idle: same graph, no traffic;
                       script: OSC → oscin → Script CHOP (numpy ×2) → export
  --idle               same as --scenario idle
  --rate HZ            chopd's frame rate (default: 1000 for osc, 60 for idle)
  --channels N         channels the traffic is spread over (default 1000)
  --msgs N             messages per second, all channels together (default 50000)
  --seconds S          measured seconds per run (default 10)
  --warmup S           seconds of traffic before measuring (default 1)
  --batch N            messages per UDP packet; >1 sends OSC bundles (default 1)
  --runs N             runs, each with a fresh chopd; medians are reported (default 1)
  --tcp                each run twice, over UDP and over TCP (SLIP framing, one connection),
                       alternating; both tables and the TCP/UDP latency ratios are printed
  --react              react = true in the config: input is cooked as it arrives
  --flood              the sender goes as fast as it can until the window ends (--msgs,
                       default 1000000, only caps its rate); the flood targets (handled
                       rate ≥ 2× the anchor's, loss ≤ 0.5 %)
  --no-anchor          no raw forwarder runs (by default each run of a scenario with traffic
                       is followed by one of a std-only UDP forwarder, receive → ×2 → send, and
                       every figure is also shown as a ratio against it)
  --anchor-callback    the forwarder also runs the script scenario's numpy work (embedded
                       Python, per datagram): the floor under any daemon running that callback
                       per message, so the ratios show what is chopd's own
  --max-packet BYTES   the destination's max_packet (default: chopd's)
  --no-info            no Info CHOPs (pure pipeline CPU; no clock or counter figures)
  --config-extra FILE  TOML appended to the generated config
  --chopd PATH         the binary (default: the release chopd cargo built with this bench)
  --json               also print one JSON object per run and one with the medians
  --keep               keep the temp dir with the config
  --explain-loss       print the first lost messages of each run with the frames around them
  --wrap 'CMD ARGS'     start chopd as `CMD ARGS chopd run …` (e.g. 'nice -n -5'); CMD must exec
  --rt PRIO            SCHED_FIFO priority PRIO for chopd (via chrt -f), PRIO-1 for the
                       benchmark's sender and receiver: measures chopd, not the neighbours (root)
  --soak-window S      soak: one run, measured in windows of S seconds (a table of loss,
                       latency, RSS, CPU and clock per window, RSS growth, p99 steadiness)
  --self-test          check the benchmark's own parsing and accounting, then exit
";

/// Command-line options.
#[derive(Clone, Debug)]
pub struct Opts {
    pub scenario: Scenario,
    pub rate: f64,
    pub channels: usize,
    pub msgs: f64,
    pub seconds: f64,
    pub warmup: f64,
    pub batch: usize,
    pub runs: usize,
    pub max_packet: Option<usize>,
    pub info: bool,
    pub config_extra: Option<String>,
    pub chopd: PathBuf,
    pub json: bool,
    pub keep: bool,
    pub explain_loss: bool,
    /// Command prefix for chopd (`--wrap`, or `chrt -f N` from `--rt N`).
    pub wrap: Vec<String>,
    /// SCHED_FIFO priority for chopd and the benchmark's own threads (`--rt`).
    pub rt: Option<i32>,
    /// Soak mode: the window length in seconds (`--soak-window`).
    pub soak_window: Option<f64>,
    /// `--tcp`: every run over UDP and over TCP.
    pub compare_tcp: bool,
    /// This run's OSC goes to the oscin over TCP.
    pub over_tcp: bool,
    /// `react = true` in the config (`--react`).
    pub react: bool,
    /// The flood targets (`--flood`).
    pub flood: bool,
    /// Run the raw forwarder after each run (not `--no-anchor`).
    pub anchor: bool,
    /// The forwarder runs the script's numpy work per datagram (`--anchor-callback`).
    pub anchor_callback: bool,
}

fn parse_args() -> Result<Opts, String> {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary too, without it:
    // then only the quick self-test runs, not a benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        self_test();
        println!(
            "(not under `cargo bench`: self-test only; the benchmark is \
             `cargo bench --bench e2e -- ARGS` or scripts/bench)"
        );
        std::process::exit(0);
    }
    let mut args = std::env::args().skip(1).peekable();
    let mut scenario = Scenario::Osc;
    let mut rate = None;
    let mut o = Opts {
        scenario,
        rate: 0.0,
        channels: 1000,
        msgs: 50_000.0,
        seconds: 10.0,
        warmup: 1.0,
        batch: 1,
        runs: 1,
        max_packet: None,
        info: true,
        config_extra: None,
        chopd: PathBuf::from(env!("CARGO_BIN_EXE_chopd")),
        json: false,
        keep: false,
        explain_loss: false,
        wrap: Vec::new(),
        rt: None,
        soak_window: None,
        compare_tcp: false,
        over_tcp: false,
        react: false,
        flood: false,
        anchor: true,
        anchor_callback: false,
    };
    let mut msgs = None;
    fn num<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T, String> {
        let v = v.ok_or(format!("{flag} needs a value"))?;
        v.parse()
            .map_err(|_| format!("{flag}: \"{v}\" is not a valid number"))
    }
    while let Some(a) = args.next() {
        match a.as_str() {
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--scenario" => {
                let v = args.next().ok_or("--scenario needs a value")?;
                scenario = Scenario::parse(&v).ok_or_else(|| {
                    let names: Vec<_> = scenario::ALL.iter().map(|s| s.name()).collect();
                    format!("unknown scenario \"{v}\" (one of: {})", names.join(", "))
                })?;
            }
            "--idle" => scenario = Scenario::Idle,
            "--rate" => rate = Some(num(&a, args.next())?),
            "--channels" => o.channels = num(&a, args.next())?,
            "--msgs" => msgs = Some(num(&a, args.next())?),
            "--react" => o.react = true,
            "--flood" => o.flood = true,
            "--no-anchor" => o.anchor = false,
            "--anchor-callback" => o.anchor_callback = true,
            "--seconds" => o.seconds = num(&a, args.next())?,
            "--warmup" => o.warmup = num(&a, args.next())?,
            "--batch" => o.batch = num(&a, args.next())?,
            "--runs" => o.runs = num(&a, args.next())?,
            "--max-packet" => o.max_packet = Some(num(&a, args.next())?),
            "--no-info" => o.info = false,
            "--config-extra" => {
                let f = args.next().ok_or("--config-extra needs a file")?;
                o.config_extra =
                    Some(std::fs::read_to_string(&f).map_err(|e| format!("{f}: {e}"))?);
            }
            "--chopd" => o.chopd = args.next().ok_or("--chopd needs a path")?.into(),
            "--json" => o.json = true,
            "--keep" => o.keep = true,
            "--explain-loss" => o.explain_loss = true,
            "--wrap" => {
                let w = args.next().ok_or("--wrap needs a command")?;
                o.wrap = w.split_whitespace().map(String::from).collect();
            }
            "--rt" => o.rt = Some(num(&a, args.next())?),
            "--soak-window" => o.soak_window = Some(num(&a, args.next())?),
            "--tcp" => o.compare_tcp = true,
            "--self-test" => {
                self_test();
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument \"{other}\"\n\n{USAGE}")),
        }
    }
    if let Some(p) = o.rt {
        if !o.wrap.is_empty() {
            return Err("--rt and --wrap do not combine".into());
        }
        o.wrap = vec!["chrt".into(), "-f".into(), p.to_string()];
    }
    if let Some(w) = o.soak_window {
        if w.is_nan() || w <= 0.0 || o.runs != 1 || !scenario.has_traffic() {
            return Err(
                "--soak-window takes positive seconds, one run and a scenario with traffic".into(),
            );
        }
    }
    o.scenario = scenario;
    // A flood's default is a rate no one sending thread reaches on loopback: it is never idle.
    o.msgs = msgs.unwrap_or(if o.flood { 1_000_000.0 } else { 50_000.0 });
    o.anchor &= scenario.has_traffic() && o.soak_window.is_none();
    o.rate = rate.unwrap_or(scenario.default_rate());
    if !(1.0..=1000.0).contains(&o.rate) {
        return Err("--rate must be 1–1000".into());
    }
    if o.channels == 0 || o.batch == 0 || o.runs == 0 || o.seconds <= 0.0 || o.msgs <= 0.0 {
        return Err("--channels, --msgs, --seconds, --batch and --runs must be positive".into());
    }
    let total = ((o.warmup + o.seconds) * o.msgs) as usize;
    if scenario.has_traffic() && total / o.channels >= MAX_SEQ {
        return Err(format!(
            "{total} messages over {} channels exceed 2^24 per channel (float sequence numbers): \
             fewer seconds or more channels",
            o.channels
        ));
    }
    if !o.chopd.exists() {
        return Err(format!(
            "{} does not exist (build it: cargo build --release)",
            o.chopd.display()
        ));
    }
    Ok(o)
}

/// The figures of one run, in print order.
#[derive(Default, Clone)]
struct Metrics(Vec<(&'static str, f64)>);

impl Metrics {
    fn put(&mut self, k: &'static str, v: f64) {
        self.0.push((k, v));
    }
    fn get(&self, k: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)
    }
}

/// Thread names get a fixed key each (the metric table is keyed by static strings).
fn thread_key(name: &str) -> &'static str {
    match name {
        "cook" => "cpu_cook_thread_pct",
        n if n.starts_with("oscin") => "cpu_oscin_threads_pct",
        "chopd" => "cpu_main_thread_pct",
        _ => "cpu_other_threads_pct",
    }
}

/// One run of chopd, or with `anchor` of the raw forwarder (forwarder.rs) in its place.
fn run_once(o: &Opts, run: usize, anchor: bool) -> Result<(Metrics, Vec<String>), String> {
    let mut receiver = Receiver::bind(PREFIX).map_err(|e| format!("bind the destination: {e}"))?;
    receiver.scale = if anchor {
        2.0
    } else {
        o.scenario.value_scale()
    };
    let config = o.scenario.config(o, receiver.port());
    let bin = if anchor {
        std::env::current_exe().map_err(|e| format!("the benchmark's own path: {e}"))?
    } else {
        o.chopd.clone()
    };
    let mut files = o.scenario.files();
    if anchor && o.anchor_callback {
        files.push((
            forwarder::CALLBACK_FILE.into(),
            forwarder::callback_source(o.channels),
        ));
    }
    let mut daemon = Chopd::start(&bin, &o.wrap, &config, &files, o.keep)?;
    let who = if anchor { "forwarder" } else { "chopd" };
    eprintln!("run {}/{}: {who} pid {}", run + 1, o.runs, daemon.pid);
    if o.keep && run == 0 {
        eprintln!("config: {}", daemon.dir.join("chopd.toml").display());
    }
    let load = o.scenario.load(o, &daemon.ports)?;
    let traffic = load.is_some();
    let epoch = Instant::now();
    let channels = o.channels;
    let warm_msgs = if traffic {
        (o.warmup * o.msgs) as usize
    } else {
        0
    };
    let total = if traffic {
        warm_msgs + (o.seconds * o.msgs) as usize
    } else {
        0
    };
    let stop = Arc::new(AtomicBool::new(false));
    let rt = o.rt;
    let rx_thread = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("bench-rx".into())
            .spawn(move || {
                realtime(rt);
                receiver.run(channels, total, epoch, stop)
            })
            .map_err(|e| e.to_string())?
    };
    let start = Instant::now() + Duration::from_millis(50);
    let t_meas = start + Duration::from_secs_f64(o.warmup);
    let t_end = t_meas + Duration::from_secs_f64(o.seconds);
    // A flood goes on until the window ends, however many messages that is.
    let until = o.flood.then_some(t_end);
    let tx_thread = match load {
        Some(mut load) => {
            let (batch, msgs) = (o.batch, o.msgs);
            Some(
                std::thread::Builder::new()
                    .name("bench-tx".into())
                    .spawn(move || {
                        realtime(rt);
                        traffic::send_paced(
                            load.as_mut(),
                            total,
                            batch,
                            msgs,
                            (start, until),
                            epoch,
                        )
                    })
                    .map_err(|e| e.to_string())?,
            )
        }
        None => None,
    };
    sleep_until(t_meas);
    let (p0, m0, b0) = (
        daemon.sample(),
        chopd::machine_busy_ticks(),
        ProcSample::of(std::process::id()),
    );
    // Soak: a /proc sample of chopd at the end of every window (else just the wait).
    let windows = soak::sample(o, &daemon, &p0, t_meas, t_end);
    let (p1, m1, b1) = (
        daemon.sample(),
        chopd::machine_busy_ticks(),
        ProcSample::of(std::process::id()),
    );
    let sent = tx_thread.map(|t| t.join().expect("sender thread"));
    // Let the last frames arrive and chopd's counters catch up (kernel drops are read once a
    // second, lateness statistics every 250 ms).
    std::thread::sleep(Duration::from_millis(1300));
    stop.store(true, Ordering::Relaxed);
    let recv = rx_thread.join().expect("receiver thread");
    let problems = daemon.problems();
    let status = daemon.stop()?;
    drop(daemon);

    let ns = |t: Instant| t.duration_since(epoch).as_nanos() as u64;
    let (meas_ns, end_ns) = (ns(t_meas), ns(t_end));
    let mut m = Metrics::default();
    let mut notes = Vec::new();
    // The forwarder ends by SIGTERM's default action.
    if !status.success() && !anchor {
        notes.push(format!("chopd exited with {status}"));
    }
    for p in problems.iter().take(5) {
        notes.push(format!("chopd: {p}"));
    }

    if let Some(sent) = &sent {
        // A flood's warm-up is what went out before the window, its total what went out by
        // its end.
        let (warm_msgs, total) = if o.flood {
            let warm = sent.times.partition_point(|&t| t < meas_ns);
            (warm, sent.times.len().max(warm + 1))
        } else {
            (warm_msgs, total)
        };
        let measured = warm_msgs..total;
        let mut d = analysis::deliveries(
            sent,
            &recv,
            channels,
            measured.clone(),
            (1e9 / o.rate) as u64,
            (latency_limit_ms(o) * 1e6) as u64,
            o.react && !anchor,
        );
        if anchor {
            // The forwarder sends every message it receives: one whose value never came was
            // lost, whatever later value of its channel came soon after.
            d.lost += d.superseded;
            d.superseded = 0;
        }
        let at = |i: usize| sent.times.get(i).copied().unwrap_or(end_ns);
        let span = at(total - 1).saturating_sub(at(warm_msgs)) as f64 / 1e9;
        m.put("sent_per_s", measured.len() as f64 / span.max(1e-9));
        m.put("sender_lag_p99_ms", sent.lag_p99_ns as f64 / 1e6);
        m.put("sender_lag_max_ms", sent.lag_max_ns as f64 / 1e6);
        m.put("sender_slip_ms", sent.slipped_ns as f64 / 1e6);
        if let Some((p50, p99, max)) = summary(&d.latency) {
            m.put("latency_p50_ms", p50 as f64 / 1e6);
            m.put("latency_p99_ms", p99 as f64 / 1e6);
            m.put("latency_max_ms", max as f64 / 1e6);
        }
        if let Some(w) = o.soak_window {
            soak::report(
                w,
                sent,
                &recv,
                &windows,
                channels,
                measured.clone(),
                (meas_ns, end_ns),
                (1e9 / o.rate) as u64,
                (latency_limit_ms(o) * 1e6) as u64,
            );
        }
        if o.explain_loss {
            notes.extend(d.lost_examples.iter().map(|e| format!("lost: {e}")));
        }
        // Why the slow ones were slow (% of the messages over the latency target).
        let t = &d.tail;
        if t.over > 0 {
            let pct = |n: usize| n as f64 / t.over as f64 * 100.0;
            m.put("over_limit", t.over as f64);
            m.put("over_limit_late_frame_pct", pct(t.late_frame));
            m.put("over_limit_dropped_frame_pct", pct(t.dropped_frame));
            m.put("over_limit_missed_fold_pct", pct(t.missed_fold));
        }
        m.put(
            "missed_fold_pct",
            t.missed_fold_all as f64 / d.delivered.max(1) as f64 * 100.0,
        );
        // Messages accounted for per second: delivered, or superseded by a later value of
        // their channel (latest wins); the rate a flood is judged by.
        m.put(
            "handled_per_s",
            (d.delivered + d.superseded) as f64 / span.max(1e-9),
        );
        // A value that chopd dropped on the way in (its socket's buffer or its OSC In's queue
        // full) is lost even when a later value of its channel came through and it counts as
        // superseded above: those drops count too (all of them, warm-up included, and one
        // dropped message may also be counted lost: a bound from above).
        let drops = ["queue_drops", "kernel_drops"]
            .iter()
            .filter_map(|k| recv.last(k))
            .sum::<f32>() as usize;
        m.put(
            "loss_pct",
            (d.lost + drops) as f64 / d.sent.max(1) as f64 * 100.0,
        );
        m.put("sent", d.sent as f64);
        m.put("delivered", d.delivered as f64);
        m.put("superseded", d.superseded as f64);
        m.put("lost", d.lost as f64);
        if d.duplicates > 0 {
            m.put("duplicates", d.duplicates as f64);
        }
        if d.reordered > 0 {
            m.put("reordered", d.reordered as f64);
        }
        if sent.errors > 0 {
            m.put("send_errors", sent.errors as f64);
        }
        if let Some(msgs) = recv.last("messages") {
            // Every message sent, warm-up included, should have reached chopd's decoder.
            m.put("not_decoded", total as f64 - msgs as f64);
        }
    }
    if let Some(q) = recv.last("queue_drops") {
        m.put("queue_drops", q as f64);
    }
    if let Some(k) = recv.last("kernel_drops") {
        m.put("kernel_drops", k as f64);
    }
    if recv.socket_drops > 0 || recv.unexpected > 0 || recv.malformed > 0 {
        notes.push(format!(
            "benchmark side: {} drops on the destination socket, {} unexpected values, {} undecodable packets",
            recv.socket_drops, recv.unexpected, recv.malformed
        ));
    }

    // Clock: chopd's own lateness statistics (window of the last 4096 frames; max since start).
    let at_end = |k: &str| recv.value_at(k, end_ns).map(f64::from);
    if let (Some(p50), Some(p99)) = (at_end("lateness_p50"), at_end("lateness_p99")) {
        m.put("clock_p50_ms", p50);
        m.put("clock_p99_ms", p99);
        let worst = recv
            .series("lateness_p99")
            .iter()
            .filter(|e| e.0 > meas_ns && e.0 <= end_ns)
            .map(|e| e.1 as f64)
            .fold(p99, f64::max);
        m.put("clock_p99_worst_ms", worst);
    }
    if let Some(max) = at_end("lateness_max") {
        m.put("clock_max_ms", max);
    }
    // Counters of the measured window: dropped frames, and with react the reaction passes and
    // the arrivals the interval's reaction budget made wait for the frame.
    for key in ["dropped_frames", "react_passes", "react_deferred"] {
        if let (Some(a), Some(b)) = (recv.value_at(key, meas_ns), recv.value_at(key, end_ns)) {
            m.put(key, (b - a) as f64);
        }
    }
    let mut ft: Vec<u64> = recv
        .series("frame_time")
        .iter()
        .filter(|e| e.0 > meas_ns && e.0 <= end_ns)
        .map(|e| (e.1 as f64 * 1e6) as u64)
        .collect();
    ft.sort_unstable();
    if let Some((p50, p99, max)) = summary(&ft) {
        m.put("frame_time_p50_ms", p50 as f64 / 1e6);
        m.put("frame_time_p99_ms", p99 as f64 / 1e6);
        m.put("frame_time_max_ms", max as f64 / 1e6);
    }
    // Arrival of each frame's first export packet against the ideal frame grid (includes the
    // benchmark's own wake-up delays): how regular the output is as a receiver sees it.
    let marks: Vec<(i64, u64)> = recv
        .frames
        .iter()
        .copied()
        .filter(|f| f.1 > meas_ns && f.1 <= end_ns)
        .collect();
    if marks.len() > 10 {
        let period = 1e9 / o.rate;
        let offs: Vec<f64> = marks
            .iter()
            .map(|&(f, t)| t as f64 - f as f64 * period)
            .collect();
        let base = offs.iter().copied().fold(f64::INFINITY, f64::min);
        let mut late: Vec<u64> = offs.iter().map(|x| (x - base) as u64).collect();
        late.sort_unstable();
        if let Some((p50, p99, _)) = summary(&late) {
            m.put("export_jitter_p50_ms", p50 as f64 / 1e6);
            m.put("export_jitter_p99_ms", p99 as f64 / 1e6);
        }
        let expect = o.seconds * o.rate;
        m.put("frames_seen_pct", marks.len() as f64 / expect * 100.0);
    }

    m.put("cpu_pct", p1.cpu_pct_since(&p0));
    let mut threads: Vec<(&'static str, f64)> = Vec::new();
    for (name, pct) in p1.thread_pct_since(&p0) {
        let k = thread_key(&name);
        match threads.iter_mut().find(|t| t.0 == k) {
            Some(t) => t.1 += pct,
            None => threads.push((k, pct)),
        }
    }
    threads.sort_by_key(|t| t.0);
    for (k, v) in threads {
        m.put(k, v);
    }
    m.put("rss_mb", p1.rss_kb as f64 * 1024.0 / 1e6);
    m.put("rss_peak_mb", p1.hwm_kb as f64 * 1024.0 / 1e6);
    let secs = p1
        .at
        .zip(p0.at)
        .map_or(1.0, |(a, b)| a.duration_since(b).as_secs_f64());
    m.put("bench_cpu_pct", b1.cpu_pct_since(&b0));
    for (name, pct) in b1.thread_pct_since(&b0) {
        match name.as_str() {
            "bench-tx" => m.put("bench_tx_thread_pct", pct),
            "bench-rx" => m.put("bench_rx_thread_pct", pct),
            _ => {}
        }
    }
    m.put(
        "machine_busy_pct",
        m1.saturating_sub(m0) as f64 / chopd::clock_ticks_per_second() / secs * 100.0,
    );
    Ok((m, notes))
}

fn self_test() {
    analysis::checks::percentiles();
    analysis::checks::superseded_within_the_frame_lost_otherwise();
    analysis::checks::tail_causes();
    forwarder::checks::doubles_and_prefixes();
    chopd::checks::bound_line();
    chopd::checks::stat_fields();
    println!("self-test passed");
}

/// Puts the calling benchmark thread in SCHED_FIFO one below chopd's `prio`, so the daemon
/// under test always wins (no-op for None; warns when refused).
fn realtime(prio: Option<i32>) {
    let Some(prio) = prio else { return };
    let prio = (prio - 1).max(1);
    let param = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: sets the scheduling policy of the calling thread from a plain struct.
    let r = unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
    if r != 0 {
        eprintln!("e2e: SCHED_FIFO {prio} refused (error {r}): the benchmark threads run normally");
    }
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// A target of the issue: (metric, comparison, limit, text); with `ratio`, the limit is on
/// the median's ratio to the anchor's (the raw forwarder of the same invocation).
struct Target {
    key: &'static str,
    cmp: Cmp,
    limit: f64,
    ratio: bool,
    text: String,
}

#[derive(Clone, Copy)]
enum Cmp {
    Le,
    Lt,
    Ge,
}

impl Target {
    fn met(&self, v: f64) -> bool {
        match self.cmp {
            Cmp::Le => v <= self.limit,
            Cmp::Lt => v < self.limit,
            Cmp::Ge => v >= self.limit,
        }
    }
}

/// The issue's latency target: one frame + 0.3 ms.
fn latency_limit_ms(o: &Opts) -> f64 {
    1000.0 / o.rate + 0.3
}

fn targets(o: &Opts) -> Vec<Target> {
    let t = |key, cmp, limit, text: &str| Target {
        key,
        cmp,
        limit,
        ratio: false,
        text: text.to_string(),
    };
    let r = |key, cmp, limit, text: &str| Target {
        ratio: true,
        ..t(key, cmp, limit, text)
    };
    let mut v = Vec::new();
    if o.flood {
        v.push(t("loss_pct", Cmp::Le, 0.5, "≤ 0.5 % lost"));
        if o.anchor {
            v.push(r("handled_per_s", Cmp::Ge, 2.0, "≥ 2 × the forwarder's"));
        }
    } else if o.scenario.has_traffic() {
        let limit = latency_limit_ms(o);
        v.push(t("lost", Cmp::Le, 0.0, "no loss"));
        v.push(t("queue_drops", Cmp::Le, 0.0, "no queue drops"));
        v.push(t("kernel_drops", Cmp::Le, 0.0, "no kernel drops"));
        v.push(t(
            "latency_p99_ms",
            Cmp::Le,
            limit,
            &format!("≤ 1 frame + 0.3 ms = {limit:.2} ms"),
        ));
        // The OSC scenario's target: the script scenario also holds the interpreter and numpy
        // (about 27 MB of a bare `python3 -c "import numpy"` on this machine).
        if o.scenario != Scenario::Script {
            v.push(t("rss_mb", Cmp::Lt, 20.0, "< 20 MB with the channels live"));
        }
        if o.react && o.anchor && o.msgs >= 10_000.0 {
            v.push(r("latency_p50_ms", Cmp::Le, 3.0, "≤ 3 × the forwarder's"));
            v.push(r("latency_p99_ms", Cmp::Le, 3.0, "≤ 3 × the forwarder's"));
        }
        if o.msgs <= 1000.0 && o.anchor {
            v.push(r("cpu_pct", Cmp::Le, 3.0, "≤ 3 × the forwarder's"));
        }
    } else {
        v.push(t("cpu_pct", Cmp::Lt, 1.0, "< 1 % of a core idle"));
    }
    // Reacting, with nothing whose output follows time (these scenarios' operators), frames
    // start when the kernel wakes the cook thread, unspun (docs/react.md): the clock figures
    // are shown, not judged.
    if !o.flood && !o.react {
        v.push(t("clock_p99_ms", Cmp::Le, 0.05, "≤ 50 µs"));
    }
    v
}

fn wrap_note(o: &Opts) -> String {
    match (o.rt, o.wrap.is_empty()) {
        (Some(p), _) => format!(
            ", SCHED_FIFO {p} for chopd, {} for the benchmark threads",
            (p - 1).max(1)
        ),
        (None, false) => format!(", chopd started under `{}`", o.wrap.join(" ")),
        (None, true) => String::new(),
    }
}

fn fmt(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e9 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn main() {
    // The bench binary started as `run CONFIG` is the raw forwarder of another invocation.
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("run") {
        forwarder::main(argv.get(2).map_or("", String::as_str));
    }
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("e2e: {e}");
            std::process::exit(2);
        }
    };
    let host = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let header = if o.scenario.has_traffic() {
        format!(
            "scenario {}: rate {} Hz, {} channels, {} msg/s, batch {}, {} s (+{} s warm-up), {} run(s){}",
            o.scenario.name(),
            o.rate,
            o.channels,
            o.msgs,
            o.batch,
            o.seconds,
            o.warmup,
            o.runs,
            if o.info { "" } else { ", no Info CHOPs" }
        ) + if o.react { ", react = true" } else { "" }
            + if o.flood { ", flood" } else { "" }
            + if o.anchor_callback {
                ", the forwarder runs the script's numpy work per datagram"
            } else {
                ""
            }
            + &wrap_note(&o)
    } else {
        format!(
            "scenario {}: rate {} Hz, no traffic, {} s, {} run(s)",
            o.scenario.name(),
            o.rate,
            o.seconds,
            o.runs
        ) + if o.react { ", react = true" } else { "" }
            + &wrap_note(&o)
    };
    println!("{header}");
    println!(
        "machine: {host}, {cores} cores, load average {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let transports: &[bool] = if o.compare_tcp {
        &[false, true]
    } else {
        &[false]
    };
    let mut runs: Vec<Vec<Metrics>> = vec![Vec::new(); transports.len()];
    let mut anchors: Vec<Metrics> = Vec::new();
    for r in 0..o.runs {
        // Alternating, so that all of them see the same machine over the same minutes.
        for (t, &over_tcp) in transports.iter().enumerate() {
            let o = Opts {
                over_tcp,
                ..o.clone()
            };
            runs[t].push(run(&o, r, false));
        }
        if o.anchor {
            anchors.push(run(&o, r, true));
        }
    }
    let mut medians = Vec::new();
    for (t, &over_tcp) in transports.iter().enumerate() {
        if o.compare_tcp {
            println!(
                "\n== OSC over {}",
                if over_tcp { "TCP (SLIP)" } else { "UDP" }
            );
        }
        medians.push(table(&o, &runs[t], &anchors));
    }
    if let [udp, tcp] = &medians[..] {
        for k in ["latency_p50_ms", "latency_p99_ms"] {
            let (Some(u), Some(t)) = (
                udp.get(k).and_then(|v| v.as_f64()),
                tcp.get(k).and_then(|v| v.as_f64()),
            ) else {
                continue;
            };
            let ratio = t / u;
            println!(
                "{k}: tcp {} / udp {} = {:.2}  {} (target ≤ 1.5)",
                fmt(t),
                fmt(u),
                ratio,
                if ratio <= 1.5 { "met" } else { "MISSED" }
            );
        }
    }
}

/// One run of chopd, or with `anchor` of the raw forwarder, reported on stderr (and as JSON
/// with `--json`); a failed run ends the benchmark.
fn run(o: &Opts, r: usize, anchor: bool) -> Metrics {
    let wire = match (anchor, o.over_tcp) {
        (true, _) => " (forwarder)",
        (false, true) => " tcp",
        (false, false) => "",
    };
    match run_once(o, r, anchor) {
        Ok((m, notes)) => {
            let brief: Vec<String> = ["latency_p99_ms", "lost", "cpu_pct", "clock_p99_ms"]
                .iter()
                .filter_map(|k| m.get(k).map(|v| format!("{k} {}", fmt(v))))
                .collect();
            eprintln!("run {}/{}{wire}: {}", r + 1, o.runs, brief.join(", "));
            for n in notes {
                eprintln!("  {n}");
            }
            if o.json {
                let obj: serde_json::Map<String, serde_json::Value> =
                    m.0.iter()
                        .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
                        .collect();
                println!(
                    "{}",
                    serde_json::json!({"scenario": o.scenario.name(), "tcp": o.over_tcp, "run": r + 1, "anchor": anchor, "metrics": obj})
                );
            }
            m
        }
        Err(e) => {
            eprintln!("run {}/{}{wire} failed: {e}", r + 1, o.runs);
            std::process::exit(1);
        }
    }
}

/// Prints one row per metric, one column per run, then the median, the forwarder's median and
/// the ratio to it, and the target; returns the medians.
fn table(
    o: &Opts,
    runs: &[Metrics],
    anchors: &[Metrics],
) -> serde_json::Map<String, serde_json::Value> {
    let mut keys: Vec<&'static str> = Vec::new();
    for m in runs {
        for (k, _) in &m.0 {
            if !keys.contains(k) {
                keys.push(k);
            }
        }
    }
    let targets = targets(o);
    let mut medians = serde_json::Map::new();
    let mut anchor_medians = serde_json::Map::new();
    let mut missed = 0;
    print!("{:<24}", "metric");
    for r in 0..runs.len() {
        print!("{:>10}", format!("run{}", r + 1));
    }
    print!("{:>10}", "median");
    if o.anchor {
        print!("{:>10}{:>8}", "forwarder", "ratio");
    }
    println!("  target");
    for k in keys {
        let mut vals: Vec<f64> = runs.iter().map(|m| m.get(k).unwrap_or(f64::NAN)).collect();
        print!("{k:<24}");
        for v in &vals {
            print!("{:>10}", if v.is_nan() { "-".into() } else { fmt(*v) });
        }
        let med = median(&mut vals);
        print!("{:>10}", med.map_or("-".into(), fmt));
        if let Some(med) = med {
            medians.insert(k.to_string(), serde_json::json!(med));
        }
        let mut ratio = None;
        if o.anchor {
            let mut a: Vec<f64> = anchors.iter().filter_map(|m| m.get(k)).collect();
            let am = median(&mut a);
            ratio = med.zip(am).filter(|(_, a)| *a != 0.0).map(|(m, a)| m / a);
            print!(
                "{:>10}{:>8}",
                am.map_or("-".into(), fmt),
                ratio.map_or("-".into(), |r| format!("{r:.2}"))
            );
            if let Some(am) = am {
                anchor_medians.insert(k.to_string(), serde_json::json!(am));
            }
        }
        for t in targets.iter().filter(|t| t.key == k) {
            let v = if t.ratio { ratio } else { med };
            let Some(v) = v else { continue };
            let ok = t.met(v);
            if !ok {
                missed += 1;
            }
            let what = if t.ratio { "ratio " } else { "" };
            let verdict = if ok { "met" } else { "MISSED" };
            print!("  {verdict} ({what}{})", t.text);
        }
        println!();
    }
    if o.json {
        println!(
            "{}",
            serde_json::json!({"scenario": o.scenario.name(), "tcp": o.over_tcp, "median": medians, "forwarder_median": anchor_medians})
        );
    }
    println!(
        "{} of {} targets met (on the medians of {} run(s))",
        targets.len() - missed,
        targets.len(),
        runs.len()
    );
    medians
}
