//! Containment against the real binary, in two parts.
//!
//! Bad input: a corpus of broken packets, a flood of addresses, refused senders — everything is
//! counted and visible in the Info CHOP, nothing crashes, and good traffic interleaved with the
//! bad arrives intact.
//!
//! Scripts that misbehave: a Script CHOP `bad` runs a callbacks file that raises every frame,
//! leaks memory, blocks in `time.sleep`, tries to end the process, or swallows the budget's
//! exception. Each time the fault is contained and reported — counted in an Info CHOP exported to
//! OSC, one clear (rate-limited) log line — and the rest of the graph keeps cooking: a healthy
//! path (OSC In `in` → export) still delivers, and the daemon's own Info CHOP (`op = "/"`) still
//! advances. What cannot be contained in-process is documented in docs/script.md ("Faults and
//! their limits").

use std::time::{Duration, Instant};

use rosc::{OscBundle, OscMessage, OscPacket, OscTime, OscType};

use crate::util::*;

/// The bad-input graph at 200 fps: `in` (OSC In, at most 1000 channels, `in_settings` added)
/// exports to `out`; `in_info` (its Info CHOP) to `stats`; neither destination has a prefix.
fn inputs(dest: u16, stats: u16, in_settings: &str) -> String {
    Config::new()
        .rate(200)
        .dest_unprefixed("out", dest)
        .dest_unprefixed("stats", stats)
        .oscin(
            "in",
            &format!("max_channels = 1000\nexport = {{ root = \"out\" }}\n{in_settings}"),
        )
        .info("in_info", "in", r#"export = { root = "stats" }"#)
        .text()
}

fn encode(p: &OscPacket) -> Vec<u8> {
    rosc::encoder::encode(p).unwrap()
}

fn msg(addr: &str, args: Vec<OscType>) -> OscPacket {
    OscPacket::Message(OscMessage {
        addr: addr.into(),
        args,
    })
}

fn bundle(content: Vec<OscPacket>) -> OscPacket {
    OscPacket::Bundle(OscBundle {
        timetag: OscTime::from((0, 1)),
        content,
    })
}

/// Waits until the Info CHOP reports `chan` ≥ `at_least`; returns the value.
fn stat(rx: &OscRx, chan: &str, at_least: f32) -> f32 {
    rx.wait_value(&format!("/{chan}"), |v| v >= at_least)
}

/// The misbehaving-script graph, at 100 fps, all exports to `rx`:
/// - `in` (OSC In) → `/out/…`: the healthy path;
/// - `trig` (OSC In), input of the script: what the test sends to provoke it;
/// - `bad` (Script CHOP on `file`, with `extra` settings) → `/script/…`;
/// - `bad_info` (Info CHOP of `bad`) → `/info/…`, `clock` (Info CHOP of `/`) → `/clock/…`,
///   both sent every frame so a packet lost while the test looks elsewhere is sent again.
fn scripted(rx: u16, file: &str, extra: &str) -> Config {
    let every_cook = |root: &str| {
        format!(r#"export = {{ method = "autoname", root = "{root}", send = "every_cook" }}"#)
    };
    Config::new()
        .dest("out", rx)
        .dest("script", rx)
        .dest("info", rx)
        .dest("clock", rx)
        .oscin("in", r#"export = { method = "autoname", root = "out" }"#)
        .oscin("trig", "")
        .script(
            "bad",
            file,
            r#""trig""#,
            &format!("{}\n{extra}", every_cook("script")),
        )
        .info("bad_info", "bad", &every_cook("info"))
        .info("clock", "/", &every_cook("clock"))
}

fn start(rx: &OscRx, file: &str, extra: &str) -> Daemon {
    start_with(rx, file, extra, |c| c, &[])
}

/// [`start`] on the graph as `more` changes it (top-level keys, a control port), with `env`.
fn start_with(
    rx: &OscRx,
    file: &str,
    extra: &str,
    more: fn(Config) -> Config,
    env: &[(&str, &str)],
) -> Daemon {
    Daemon::start_env(
        &more(scripted(rx.port(), file, extra)).text(),
        &[(file, &fixture(file))],
        env,
    )
}

/// The latest value at `addr` (waiting for the first one).
fn latest(rx: &OscRx, addr: &str) -> f32 {
    rx.wait_value(addr, |_| true)
}

/// The rest of the graph keeps cooking: a new value through the healthy path arrives, and the
/// daemon's frame count moves on by at least 20 frames (0.2 s at 100 fps).
fn rest_of_graph_cooks(d: &mut Daemon, rx: &OscRx, value: f32) {
    let frames = latest(rx, "/clock/frames");
    send(d.port("in"), "/ok", vec![OscType::Float(value)]);
    rx.expect("/out/ok", value);
    rx.wait_value("/clock/frames", |f| f >= frames + 20.0);
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "chopd ended; log:\n{}",
        d.log_text()
    );
}

/// `N` of `(it ran N ms; …)` in an interrupt's log line (the Script CHOP's message: it has no
/// field for it).
fn ran_ms(line: &str) -> u64 {
    line.split("(it ran ")
        .nth(1)
        .and_then(|r| r.split(" ms").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no duration in {line}"))
}

/// Provokes the script: `/NAME value` into its input `trig`.
fn poke(d: &mut Daemon, name: &str, value: f32) {
    send(
        d.port("trig"),
        &format!("/{name}"),
        vec![OscType::Float(value)],
    );
}

#[test]
fn bad_packets_are_counted_and_good_traffic_survives() {
    let out = OscRx::new();
    let stats = OscRx::new();
    let mut d = Daemon::start(&inputs(out.port(), stats.port(), ""), &[]);
    let port = d.port("in");
    let good = encode(&msg("/good", vec![OscType::Float(0.5)]));

    let mut corpus: Vec<Vec<u8>> = Vec::new();
    // Truncations of a good message at every length.
    let full = encode(&msg(
        "/cut/here",
        vec![OscType::Float(1.0), OscType::Int(2)],
    ));
    corpus.extend((1..full.len()).map(|n| full[..n].to_vec()));
    // Wrong type tags: a tag the arguments don't carry, a tag string without the comma.
    corpus.push(b"/t\0\0,ff\0\0\0\0\0".to_vec());
    corpus.push(b"/t\0\0ff\0\0\0\0\0\0\0\0\0\0".to_vec());
    // Non-UTF-8 address.
    corpus.push(b"/\xff\xfe\0,f\0\0\0\0\0\0".to_vec());
    // Bundles nested deeper than anyone sends, and one whose element size overruns it.
    let mut deep = msg("/deep", vec![OscType::Float(1.0)]);
    for _ in 0..40 {
        deep = bundle(vec![deep]);
    }
    corpus.push(encode(&deep));
    corpus.push(b"#bundle\0\0\0\0\0\0\0\0\x01\0\0\x10\0/x\0\0".to_vec());
    // Oversized: one big datagram whose 60 kB blob is ignored, with a number beside it.
    corpus.push(encode(&msg(
        "/big",
        vec![OscType::Blob(vec![7; 60_000]), OscType::Float(3.0)],
    )));
    // NaN and infinities are dropped, the finite value beside them kept.
    corpus.push(encode(&msg(
        "/nan",
        vec![
            OscType::Float(f32::NAN),
            OscType::Double(f64::INFINITY),
            OscType::Float(-1.0),
        ],
    )));
    // What the decoder itself calls malformed: the daemon must count exactly these.
    let counters = chopd::chop::oscin::Counters::default();
    let decoder = chopd::chop::oscin::Decoder {
        address_scope: chopd::pattern::Pattern::all(),
        strip_segments: 0,
        max_address: chopd::chop::oscin::config::DEFAULT_MAX_ADDRESS_LENGTH,
        bundle_window: std::time::Duration::from_secs(1),
    };
    for p in &corpus {
        decoder.decode(p, &counters, |_| {});
    }
    let malformed = counters
        .malformed
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        malformed >= 20,
        "the corpus has only {malformed} malformed packets"
    );
    for p in &corpus {
        send_raw(port, p);
        send_raw(port, &good);
    }

    stat(&stats, "malformed", malformed as f32);
    stat(&stats, "ignored_args", 1.0);
    stat(&stats, "nonfinite", 2.0);
    out.expect("/good", 0.5);
    out.expect("/big", 3.0);
    out.expect("/nan", -1.0);
    // A good change after all that still goes through.
    send(port, "/good", vec![OscType::Float(0.25)]);
    out.expect("/good", 0.25);
    assert!(d.stop().success(), "{}", d.log_text());
}

#[test]
fn a_flood_of_distinct_addresses_is_capped_by_max_channels() {
    let out = OscRx::new();
    let stats = OscRx::new();
    let mut d = Daemon::start(&inputs(out.port(), stats.port(), ""), &[]);
    let port = d.port("in");
    // 100k distinct addresses, 50 to a bundle, paced so the kernel buffer keeps up.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for chunk in 0..2000 {
        let content = (0..50)
            .map(|i| {
                msg(
                    &format!("/flood/{}", chunk * 50 + i),
                    vec![OscType::Float(1.0)],
                )
            })
            .collect();
        sock.send_to(&encode(&bundle(content)), ("127.0.0.1", port))
            .unwrap();
        if chunk % 100 == 99 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let dropped = stat(&stats, "channel_limit", 90_000.0);
    assert!(dropped <= 99_000.0);
    stats.wait_value("/num_channels", |v| v == 1000.0);
    assert!(
        d.wait_for("updates over max_channels (1000)", TIMEOUT)
            .is_some(),
        "{}",
        d.log_text()
    );
    // Known channels still update.
    send(port, "/flood/0", vec![OscType::Float(2.0)]);
    out.expect("/flood/0", 2.0);
    assert!(d.stop().success());
}

#[test]
fn senders_outside_the_allow_list_are_refused() {
    let out = OscRx::new();
    let stats = OscRx::new();
    let cfg = inputs(out.port(), stats.port(), r#"allow = ["192.0.2.0/24"]"#);
    let d = Daemon::start(&cfg, &[]);
    let port = d.port("in");
    for _ in 0..5 {
        send(port, "/nope", vec![OscType::Float(1.0)]);
    }
    stat(&stats, "refused", 5.0);
    assert!(out.drain(Duration::from_millis(100)).is_empty());
}

#[test]
fn raising_every_frame_is_counted_every_frame_logged_rarely_and_keeps_the_last_output() {
    let rx = OscRx::new();
    let mut d = start(&rx, "raise_always.py", "");
    rest_of_graph_cooks(&mut d, &rx, 1.0);
    // ≥ 3 s of failures at 100 fps: one failure per frame.
    let t0 = Instant::now();
    let errors_before = latest(&rx, "/info/errors");
    let errors = rx.wait_value("/info/errors", |e| e >= errors_before + 300.0);
    let took = t0.elapsed().as_secs_f32();
    assert!(
        errors - errors_before <= took * 100.0 + 10.0,
        "{errors} errors in {took} s at 100 fps"
    );
    // The log: the first failure, then at most one line per 2 s saying how many were held back.
    d.wait_for("similar failures not logged", TIMEOUT)
        .unwrap_or_else(|| panic!("no rate-limited line; log:\n{}", d.log_text()));
    let lines = d.count("script \"bad\" onCook failed");
    assert!(
        lines >= 2 && lines as f32 * 50.0 < errors,
        "{lines} log lines for {errors} errors"
    );
    let first = d.wait_for("script \"bad\" onCook failed", TIMEOUT).unwrap();
    assert!(
        first.contains("raise_always.py:12: RuntimeError: bad frame 2"),
        "{first}"
    );
    // The output keeps the last good cook's channel, sent every frame.
    rx.until(TIMEOUT, |m| m.addr == "/script/good")
        .args
        .first()
        .map(|a| assert_eq!(float(a), 42.0))
        .unwrap();
    rx.wait_value("/info/num_channels", |n| n == 1.0);
    rest_of_graph_cooks(&mut d, &rx, 2.0);
    for k in [
        "dropped_frames",
        "lateness_p99",
        "lateness_max",
        "frame_time",
    ] {
        eprintln!("{k} = {}", latest(&rx, &format!("/clock/{k}")));
    }
    assert!(d.stop().success(), "{}", d.log_text());
}

#[test]
fn a_leaking_script_shows_in_rss_mb_and_is_warned_about() {
    let rx = OscRx::new();
    // leak.py keeps 1 MB more every frame, up to 300 MB.
    let mut d = start_with(
        &rx,
        "leak.py",
        "",
        |c| c.top("rss_warn_mb = 200").control(),
        &[],
    );
    // Sampled once a second: it rises while the script hoards (to ~300 MB above the start).
    let grown = rx.wait_value("/clock/rss_mb", |mb| mb >= 250.0);
    let is_warning = |f: &Fields| f.contains_key("warn_mb");
    let warning = d
        .wait_logged(is_warning, 1, TIMEOUT)
        .unwrap_or_else(|| panic!("no memory warning; log:\n{}", d.log_text()));
    assert_eq!(warning["warn_mb"], "200", "{warning:?}");
    let at_start: f32 = warning["start_mb"].parse().unwrap();
    assert!(at_start < 150.0 && grown >= at_start + 100.0, "{warning:?}");
    // What to do about it is in the text.
    let line = d.wait_for("resident memory is", TIMEOUT).unwrap();
    assert!(line.contains("(rss_warn_mb;"), "{line}");
    assert!(line.contains("MemoryMax="), "{line}");
    assert_eq!(d.logged(is_warning).len(), 1, "{}", d.log_text());
    // The status carries it too.
    let status = Control::new(d.control_port()).status_json(None);
    let rss = status["daemon"]["rss_mb"].as_f64().unwrap();
    assert!(
        rss >= grown as f64 - 1.0,
        "status rss_mb {rss}, Info CHOP {grown}"
    );
    // The script itself cooks without errors; everything else goes on.
    rx.wait_value("/script/hoard_mb", |n| n >= 150.0);
    assert_eq!(latest(&rx, "/info/errors"), 0.0);
    rest_of_graph_cooks(&mut d, &rx, 1.0);
    // The whole hoard held: memory at its peak (the first reading past 250 MB may be any point
    // on the way up, and what is released is measured from the top).
    rx.wait_value("/script/hoard_mb", |n| n >= 300.0);
    let peak = rx.wait_value("/clock/rss_mb", |mb| mb >= at_start + 280.0);
    // Fixing the file releases what the old module held: the module runs afresh.
    d.dir.write(
        "leak.py",
        &fixture("leak.py").replace("LIMIT = 300", "LIMIT = 0"),
    );
    d.wait_for("new callbacks applied", TIMEOUT).unwrap();
    rx.wait_value("/script/hoard_mb", |n| n == 0.0);
    rx.wait_value("/clock/rss_mb", |mb| mb <= peak - 200.0);
    assert!(d.stop().success(), "{}", d.log_text());
}

#[test]
fn a_script_blocking_in_sleep_fails_when_it_returns_and_the_clock_drops_the_missed_frames() {
    let rx = OscRx::new();
    let mut d = start(&rx, "sleepy.py", "cook_budget_ms = 50");
    rest_of_graph_cooks(&mut d, &rx, 1.0);
    rx.wait_value("/script/awake", |v| v == 1.0);
    let dropped = latest(&rx, "/clock/dropped_frames");
    let errors = latest(&rx, "/info/errors");
    // 0.3 s in time.sleep with a budget of 50 ms: the exception lands when the sleep returns.
    poke(&mut d, "sleep", 0.3);
    rx.wait_value("/info/errors", |e| e == errors + 1.0);
    rx.wait_value("/info/script_interrupts", |n| n == 1.0);
    let line = d
        .wait_for("interrupted after the cook budget of 50 ms", TIMEOUT)
        .unwrap_or_else(|| panic!("no interrupt line; log:\n{}", d.log_text()));
    assert!(
        line.contains("sleepy.py:8:") && line.contains("cannot be interrupted before it returns"),
        "{line}"
    );
    let ran = ran_ms(&line);
    assert!((300..1000).contains(&ran), "{line}");
    // The frames the sleep took (~30 at 100 fps) are dropped, not replayed, and counted.
    rx.wait_value("/clock/dropped_frames", |v| v >= dropped + 20.0);
    rest_of_graph_cooks(&mut d, &rx, 2.0);
    // One failure, not one per frame after it; the output is still the last good one.
    let frames = latest(&rx, "/clock/frames");
    rx.wait_value("/clock/frames", |f| f >= frames + 50.0);
    assert_eq!(latest(&rx, "/info/errors"), errors + 1.0);
    rx.until(TIMEOUT, |m| m.addr == "/script/awake");
    assert!(d.stop().success(), "{}", d.log_text());
}

#[test]
fn a_sleep_longer_than_the_watchdog_stops_feeding_it_until_the_sleep_returns() {
    // WATCHDOG_USEC as systemd sets it, scaled down: 200 ms instead of the unit's 10 s.
    let ns = Notify::at_path();
    let rx = OscRx::new();
    let mut d = start_with(
        &rx,
        "sleepy.py",
        "cook_budget_ms = 50",
        |c| c,
        &[("NOTIFY_SOCKET", &ns.env), ("WATCHDOG_USEC", "200000")],
    );
    assert!(!ns.pings(Duration::from_millis(300)).is_empty());
    poke(&mut d, "sleep", 1.5);
    let t0 = Instant::now();
    let pings = ns.pings(Duration::from_secs(3));
    let mut times = vec![t0];
    times.extend(pings.iter().copied());
    let longest = times.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(longest >= Duration::from_secs(1), "longest gap {longest:?}");
    assert!(
        pings
            .last()
            .is_some_and(|&t| t - t0 >= Duration::from_millis(1500)),
        "pings did not resume after the sleep"
    );
    let stalled = d.wait_logged(is_clock("stalled"), 1, TIMEOUT).unwrap();
    assert_eq!(stalled["watchdog"], "unfed");
    d.wait_logged(is_clock("running"), 1, TIMEOUT).unwrap();
    rx.wait_value("/info/errors", |e| e == 1.0);
    rest_of_graph_cooks(&mut d, &rx, 1.0);
}

#[test]
fn sys_exit_exit_and_os_exit_are_counted_errors_and_chopd_keeps_running() {
    let rx = OscRx::new();
    let mut d = start_with(&rx, "exits.py", "", Config::control, &[]);
    let c = Control::new(d.control_port());
    rx.wait_value("/script/alive", |v| v == 1.0);
    let cases = [
        (
            1,
            "/exits.py:11: SystemExit: 3 (a script cannot end chopd; counted as an error)",
        ),
        (2, "/exits.py:13: SystemExit (a script cannot end chopd"),
        (
            3,
            "/exits.py:15: SystemExit: None (a script cannot end chopd",
        ),
        (
            4,
            "/exits.py:17: ExitRefused: os._exit(0) would end the daemon",
        ),
        (
            5,
            "/exits.py:19: ExitRefused: os.abort() would end the daemon",
        ),
        (
            6,
            "/exits.py:21: ExitRefused: os._exit(1) would end the daemon",
        ),
    ];
    for (how, expected) in cases {
        poke(&mut d, "how", how as f32);
        rx.wait_value("/info/errors", |e| e == how as f32);
        let s = c.status_json(Some("bad"));
        let last = s["operators"][0]["last_error"].as_str().unwrap_or_default();
        assert!(last.contains(expected), "how = {how}: {last}");
        rest_of_graph_cooks(&mut d, &rx, how as f32);
    }
    // The output is still the first cook's.
    rx.until(TIMEOUT, |m| m.addr == "/script/alive");
    // A forked child may still end itself with os._exit (multiprocessing does).
    poke(&mut d, "how", 7.0);
    rx.wait_value("/script/child_exit", |v| v == 7.0);
    assert_eq!(latest(&rx, "/info/errors"), 6.0);
    // The first failure was logged; the daemon stops as it always does.
    assert_eq!(
        d.count("/exits.py:11: SystemExit: 3"),
        1,
        "{}",
        d.log_text()
    );
    assert!(d.stop().success(), "{}", d.log_text());
}

#[test]
fn a_bare_except_around_an_endless_loop_still_fails_the_cook() {
    let rx = OscRx::new();
    let mut d = start(&rx, "swallow.py", "cook_budget_ms = 50");
    rx.wait_value("/script/cooks", |v| v == 1.0);
    poke(&mut d, "x", 1.0);
    rx.wait_value("/info/errors", |e| e == 1.0);
    let line = d
        .wait_for("swallowed the CookBudgetExceeded exception", TIMEOUT)
        .unwrap_or_else(|| panic!("no swallow line; log:\n{}", d.log_text()));
    assert!(
        line.contains("interrupted after the cook budget of 50 ms"),
        "{line}"
    );
    // The cook returned "normally" with cooks = 2, but it failed: the last good output stays.
    rx.until(TIMEOUT, |m| m.addr == "/script/cooks")
        .args
        .first()
        .map(|a| assert_eq!(float(a), 1.0))
        .unwrap();
    rest_of_graph_cooks(&mut d, &rx, 1.0);
    assert!(d.stop().success(), "{}", d.log_text());
}

#[test]
fn a_loop_that_swallows_every_interrupt_is_ended_by_the_second_stage() {
    let rx = OscRx::new();
    let mut d = start(&rx, "swallow_in_loop.py", "cook_budget_ms = 50");
    rx.wait_value("/script/cooks", |v| v == 1.0);
    let dropped = latest(&rx, "/clock/dropped_frames");
    poke(&mut d, "x", 1.0);
    rx.wait_value("/info/errors", |e| e == 1.0);
    let line = d
        .wait_for("interrupted after the cook budget of 50 ms", TIMEOUT)
        .unwrap_or_else(|| panic!("not interrupted; log:\n{}", d.log_text()));
    assert!(line.contains("swallow_in_loop.py:"), "{line}");
    // Budget + 100 ms of grace, not a stalled clock; the frames it took are dropped.
    let ran = ran_ms(&line);
    assert!((150..1000).contains(&ran), "{line}");
    rx.wait_value("/clock/dropped_frames", |v| v >= dropped + 10.0);
    // Again: the second stage is gone after each cook and comes back for the next.
    poke(&mut d, "x", 2.0);
    rx.wait_value("/info/errors", |e| e == 2.0);
    rest_of_graph_cooks(&mut d, &rx, 1.0);
    assert!(d.stop().success(), "{}", d.log_text());
}

/// Type tags opening arrays 14 500 deep: refused as malformed by the control port and by OSC In
/// before anything is built from them, and both keep working.
#[test]
fn arrays_nested_thousands_deep_are_refused() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let d = Daemon::start(&in_and_stats(show.port(), stats.port()).text(), &[]);
    let c = Control::new(d.control_port());
    const DEPTH: usize = 14_500;
    let mut packet = b"/chopd/op/in/par/Gain\0\0\0,".to_vec();
    packet.extend(std::iter::repeat_n(b'[', DEPTH));
    packet.extend(std::iter::repeat_n(b']', DEPTH));
    packet.resize((packet.len() + 4) & !3, 0);
    c.send_raw(&packet);
    send_raw(d.port("in"), &packet);
    c.ok("/chopd/ping", vec![]);
    assert_eq!(num(&c.status(), "/chopd/status/control/malformed"), 1.0);
    send(d.port("in"), "/a", vec![OscType::Float(0.5)]);
    show.expect("/show/a", 0.5);
    assert_eq!(num(&c.status(), "/chopd/status/op/in/malformed"), 1.0);
}
