//! Reloading the config end to end — on a file change (also by rename, also of an export table),
//! on SIGHUP, on `/chopd/reload`: a bad edit keeps the running graph, a good one rebuilds only
//! what changed and keeps the rest with its state, a moved control port follows, and a failed
//! rebuild hands the old graph its ports back. Outcomes are read from the `reload` log fields.

use std::time::{Duration, Instant};

use rosc::OscType;

use crate::util::*;

#[test]
fn a_bad_edit_keeps_the_old_graph_running_and_logs_every_error() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let cfg = in_and_stats(show.port(), stats.port()).text();
    let d = Daemon::start(&cfg, &[]);
    let port = d.port("in");
    // Two mistakes: an unknown key and an Info CHOP of an operator that does not exist.
    let bad = cfg.replace("rate = 100", "rate = 100\nrat = 5")
        + "\n[[operator]]\nname = \"x\"\ntype = \"info\"\nop = \"nope\"\n";
    d.rewrite_config(&bad);
    let refused = d.reload(1);
    assert_eq!(
        (refused["reload"].as_str(), refused["errors"].as_str()),
        ("rejected", "2")
    );
    let unknown = d.wait_for("unknown key \"rat\"", TIMEOUT).unwrap();
    assert!(unknown.contains("chopd.toml:3:1: error:"), "{unknown}");
    d.wait_for("op \"nope\" is not an operator", TIMEOUT)
        .unwrap_or_else(|| panic!("{}", d.log_text()));
    // The old graph still runs: same port, traffic still exported.
    send(port, "/after", vec![OscType::Float(0.25)]);
    show.expect("/show/after", 0.25);
    assert_eq!(d.logged(is_reload).len(), 1);
    // Fixing the file reloads it.
    d.rewrite_config(&cfg.replace("rate = 100", "rate = 50"));
    d.reload_applied(2);
}

#[test]
fn a_good_edit_rebuilds_only_what_changed() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let cfg = in_and_stats(show.port(), stats.port()).text();
    let d = Daemon::start(&cfg, &[]);
    let port = d.port("in");
    send(port, "/a", vec![OscType::Float(0.5)]);
    show.expect("/show/a", 0.5);
    stats.wait_value("/stats/packets", |v| v == 1.0);
    let c = Control::new(d.control_port());
    let cooks_before = num(&c.status(), "/chopd/status/op/in/total_cooks") as f32;

    // A new operator, and `in` only changes its export (to every_cook): `in` stays, with its
    // socket, channels and counters; `stats` is untouched.
    let new = cfg.replace(
        r#"export = { method = "autoname", root = "show" }"#,
        r#"export = { method = "autoname", root = "show", send = "every_cook" }"#,
    ) + r#"
[[operator]]
name = "in2"
type = "oscin"
port = 0
local_address = "127.0.0.1"
"#;
    d.rewrite_config(&new);
    assert_eq!(d.reload_applied(1), "built oscin \"in2\"");
    let in_bound = d.logged(|f| f.get("op").is_some_and(|o| o == "in") && f.contains_key("addr"));
    assert_eq!(in_bound.len(), 1, "in was rebound: {in_bound:?}");
    assert_eq!(num(&c.status(), "/chopd/status/op/in/port"), port as f64);
    // The channel value survived: every_cook sends it again without any new traffic.
    show.expect("/show/a", 0.5);
    // Counters and cook counts go on from where they were (a new operator starts at 0).
    send(port, "/b", vec![OscType::Float(1.0)]);
    show.expect("/show/b", 1.0);
    stats.wait_value("/stats/num_channels", |v| v == 2.0);
    stats.wait_value("/stats/total_cooks", |v| v == cooks_before + 1.0);
    stats.wait_value("/stats/packets", |v| v == 2.0);
}

#[test]
fn saving_by_rename_triggers_a_reload() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let cfg = in_and_stats(show.port(), stats.port()).text();
    let d = Daemon::start(&cfg, &[]);
    // What vim (backupcopy=no), VS Code and most editors do: write a new file, rename it over.
    let tmp = d
        .dir
        .write(".chopd.toml.swp", &cfg.replace("rate = 100", "rate = 50"));
    std::fs::rename(&tmp, &d.config).unwrap();
    d.reload_applied(1);
    let c = Control::new(d.control_port());
    let s = c.status();
    assert_eq!(num(&s, "/chopd/status/daemon/rate"), 50.0);
}

#[test]
fn an_export_table_edit_is_picked_up() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let cfg = in_and_stats(show.port(), stats.port()).text().replace(
        r#"export = { method = "autoname", root = "show" }"#,
        r#"export = { method = "datname", root = "show", table = "map.csv" }"#,
    );
    let d = Daemon::start(&cfg, &[("map.csv", "chan,path,parameter\nf1,desk,one\n")]);
    let port = d.port("in");
    send(port, "/f1", vec![OscType::Float(0.5)]);
    show.expect("/show/desk/one", 0.5);
    d.dir.write("map.csv", "chan,path,parameter\nf1,desk,two\n");
    d.reload_applied(1);
    show.expect("/show/desk/two", 0.5);
}

#[test]
fn a_reload_moves_the_control_port_and_its_allow_list() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    // Reloads are asked over the control port here, so the watcher stays out of it.
    let cfg = in_and_stats(show.port(), stats.port())
        .top("watch = false")
        .text();
    let d = Daemon::start(&cfg, &[]);
    let old = Control::new(d.control_port());
    let free = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let new_port = free.local_addr().unwrap().port();
    drop(free);
    let moved = cfg.replace(
        "[control]\nport = 0",
        &format!("[control]\nport = {new_port}"),
    );
    d.rewrite_config(&moved);
    // The reload that moves the port is still answered through the old one.
    assert_eq!(
        old.ok("/chopd/reload", vec![]),
        vec![OscType::String("nothing changed".into())]
    );
    d.wait_logged(is_control_listener, 2, TIMEOUT).unwrap();
    assert_eq!(d.control_port(), new_port);
    let new = Control::new(new_port);
    new.ok("/chopd/ping", vec![]);
    old.send("/chopd/ping", vec![]);
    assert!(old
        .replies("/chopd/ping", Duration::from_millis(300))
        .is_none());

    // Same address, another allow-list: the port stays, who may use it changes.
    d.rewrite_config(&moved.replace(
        &format!("port = {new_port}"),
        &format!("port = {new_port}\nallow = [\"127.0.0.2/32\"]"),
    ));
    new.ok("/chopd/reload", vec![]);
    new.send("/chopd/ping", vec![]);
    assert!(new
        .replies("/chopd/ping", Duration::from_millis(300))
        .is_none());
    Control::from_ip("127.0.0.2", new_port).ok("/chopd/ping", vec![]);
    assert_eq!(d.logged(is_control_listener).len(), 2);
}

#[test]
fn custom_parameter_values_survive_a_reload() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let cfg = synth(show.port(), stats.port(), 1000).text();
    let d = Daemon::start(&cfg, &[("synth.py", &fixture("synth.py"))]);
    let c = Control::new(d.control_port());
    c.ok("/chopd/op/synth/par/Offset", vec![OscType::Float(0.5)]);
    show.wait_value("/show/offset", |v| v == 0.5);
    // Another operator changes; the script only changes its export: it is kept.
    d.rewrite_config(
        &(cfg.replace(
            "cook_budget_ms = 1000\nexport = { method = \"autoname\", root = \"show\" }",
            "cook_budget_ms = 1000\nexport = { method = \"autoname\", root = \"show\", send = \"every_cook\" }",
        ) + "\n[[operator]]\nname = \"extra\"\ntype = \"info\"\nop = \"/\"\n"),
    );
    assert_eq!(d.reload_applied(1), "built info \"extra\"");
    show.expect("/show/offset", 0.5);
    let s = c.status();
    assert_eq!(s["/chopd/status/op/synth/par/Offset"], OscType::Float(0.5));
}

#[test]
fn an_edit_then_sighup_reloads_once() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let cfg = in_and_stats(show.port(), stats.port()).text();
    let d = Daemon::start(&cfg, &[]);
    d.rewrite_config(&cfg.replace("rate = 100", "rate = 50"));
    d.signal(libc::SIGHUP);
    d.reload_applied(1);
    // The watcher saw the same edit: it must not reload it again. Give it several polls.
    assert!(
        d.wait_logged(is_reload, 2, Duration::from_millis(600))
            .is_none(),
        "{}",
        d.log_text()
    );
}

/// A MIDI In that must have a device that is not there: it fails the build of its graph.
const NO_SUCH_DEVICE: &str = r#"
[[operator]]
name = "keys"
type = "midiin"
device = "chopd-test-no-such-device"
required = true
"#;

/// Regression: a reload that rebuilt an OSC In on the same port, and then failed on another
/// operator, handed back the old graph with that input taken down (its port released for the
/// new one): the "kept" graph received nothing any more.
#[test]
fn a_failed_reload_gives_a_rebuilt_input_its_port_back() {
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let show = OscRx::new();
    let cfg = Config::new()
        .dest("show", show.port())
        .oscin_at("in", port, TO_SHOW)
        .text();
    let d = Daemon::start(&cfg, &[]);
    send(port, "/before", vec![OscType::Float(0.5)]);
    show.expect("/show/before", 0.5);
    // `in` changes (so it is rebuilt on the same port) and a required MIDI device that is not
    // there fails the build of the new graph.
    let bad = cfg.replace(
        "local_address = \"127.0.0.1\"",
        "local_address = \"127.0.0.1\"\naddress_scope = \"/after*\"",
    ) + NO_SUCH_DEVICE;
    d.rewrite_config(&bad);
    assert_eq!(d.reload(1)["reload"], "rejected", "{}", d.log_text());
    // The old `in` is bound again and still exports.
    send(port, "/again", vec![OscType::Float(0.75)]);
    show.expect("/show/again", 0.75);
}

/// `a` and `b`, and `in` exporting to `b`.
fn two_destinations(a: &OscRx, b: &OscRx) -> String {
    Config::new()
        .dest("a", a.port())
        .dest("b", b.port())
        .oscin("in", r#"export = { method = "autoname", root = "b" }"#)
        .text()
}

/// Regression: the exports cached `b` by its index; with `a` gone that index pointed past the
/// end and the first value sent panicked the cook thread.
#[test]
fn removing_a_destination_does_not_crash_the_exports_to_another() {
    let (a, b) = (OscRx::new(), OscRx::new());
    let cfg = two_destinations(&a, &b);
    let d = Daemon::start(&cfg, &[]);
    let port = d.port("in");
    send(port, "/x", vec![OscType::Float(0.25)]);
    b.expect("/b/x", 0.25);
    let without_a = cfg.replace(
        &format!(
            "[destinations.a]\nhost = \"127.0.0.1\"\nport = {}\nprefix = \"/a\"\n",
            a.port()
        ),
        "",
    );
    assert_ne!(without_a, cfg);
    d.rewrite_config(&without_a);
    assert_eq!(d.reload_applied(1), "removed destination a");
    send(port, "/x", vec![OscType::Float(0.5)]);
    b.expect("/b/x", 0.5);
    send(port, "/y", vec![OscType::Float(1.0)]);
    b.expect("/b/y", 1.0);
}

/// Regression: with `a` added before `b`, the index cached for `b` named `a`: the exports of
/// the channels that existed went to `a`'s port.
#[test]
fn adding_a_destination_leaves_the_exports_where_they_were() {
    let (a, b) = (OscRx::new(), OscRx::new());
    let cfg = two_destinations(&a, &b);
    let only_b = cfg.replace(
        &format!(
            "[destinations.a]\nhost = \"127.0.0.1\"\nport = {}\nprefix = \"/a\"\n",
            a.port()
        ),
        "",
    );
    let d = Daemon::start(&only_b, &[]);
    let port = d.port("in");
    send(port, "/x", vec![OscType::Float(0.25)]);
    b.expect("/b/x", 0.25);
    d.rewrite_config(&cfg);
    assert_eq!(d.reload_applied(1), "added destination a");
    send(port, "/x", vec![OscType::Float(0.5)]);
    b.expect("/b/x", 0.5);
    send(port, "/y", vec![OscType::Float(1.0)]);
    b.expect("/b/y", 1.0);
    let strays = a.drain(Duration::from_millis(300));
    assert!(strays.is_empty(), "sent to a: {strays:?}");
}

/// Regression: the addresses were resolved once per channel list, so a new prefix of `b` was
/// ignored until a channel appeared, and the log said "nothing changed". The value that did not
/// change is sent again at its new address; an unchanged destination resends nothing.
#[test]
fn a_changed_destination_prefix_readdresses_the_exports() {
    let (a, b) = (OscRx::new(), OscRx::new());
    let cfg = two_destinations(&a, &b);
    let d = Daemon::start(&cfg, &[]);
    let port = d.port("in");
    send(port, "/x", vec![OscType::Float(0.25)]);
    b.expect("/b/x", 0.25);
    d.rewrite_config(&cfg.replace("prefix = \"/b\"", "prefix = \"/stage\""));
    assert_eq!(d.reload_applied(1), "destination b: prefix /b → /stage");
    b.expect("/stage/x", 0.25);
    send(port, "/x", vec![OscType::Float(0.5)]);
    b.expect("/stage/x", 0.5);
    let strays = a.drain(Duration::from_millis(300));
    assert!(strays.is_empty(), "sent to a: {strays:?}");
}

/// Regression: the control plane gave up on a reload after 10 s and logged "the running graph
/// stays" while the cook thread went on to apply it; the new `[control]` port never opened.
/// The report of a slow reload is cut to 200 ms here (a test-only variable); the script's load
/// takes longer.
#[test]
fn a_reload_longer_than_the_wait_is_applied_whole_and_reported_applied() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let cfg = in_and_stats(show.port(), stats.port())
        .top("watch = false")
        .text();
    let slow = "import time\ntime.sleep(1.0)\n\ndef onCook(scriptOp):\n    scriptOp.clear()\n    scriptOp.appendChan('loaded')[0] = 1\n";
    let d = Daemon::start_env(
        &cfg,
        &[("slow.py", slow)],
        &[("CHOPD_TEST_RELOAD_SLOW_MS", "200")],
    );
    let free = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let new_port = free.local_addr().unwrap().port();
    drop(free);
    let new = cfg.replace(
        "[control]\nport = 0",
        &format!("[control]\nport = {new_port}"),
    ) + "\n[[operator]]\nname = \"slow\"\ntype = \"script\"\ncallbacks = \"slow.py\"\ncook_budget_ms = 5000\nexport = { method = \"autoname\", root = \"show\" }\n";
    d.rewrite_config(&new);
    d.signal(libc::SIGHUP);
    assert_eq!(d.reload_applied(1), "built script \"slow\"");
    // The plane said it kept waiting, and did.
    assert_eq!(
        d.logged(|f| f.contains_key("reload_waited_s")).len(),
        1,
        "{}",
        d.log_text()
    );
    d.wait_logged(is_control_listener, 2, TIMEOUT).unwrap();
    assert_eq!(d.control_port(), new_port);
    Control::new(new_port).ok("/chopd/ping", vec![]);
    show.expect("/show/loaded", 1.0);
    assert_eq!(d.logged(is_reload).len(), 1);
}

/// Regression: the watcher acted on 200 ms of quiet, so a file written in place by a writer that
/// paused (scp over a slow link, a full disk) was applied half-written: here the half is a valid
/// config without `stats`, which was removed and built again, its counters reset.
#[test]
fn a_config_written_in_place_with_a_pause_is_applied_only_once_complete() {
    use std::io::Write;
    let (show, stats) = (OscRx::new(), OscRx::new());
    let cfg = in_and_stats(show.port(), stats.port()).text();
    let d = Daemon::start(&cfg, &[]);
    let new = cfg.clone() + "\n[[operator]]\nname = \"in2\"\ntype = \"oscin\"\nport = 0\nlocal_address = \"127.0.0.1\"\n";
    // The first half ends where `stats` begins: on its own, a good config without it.
    let cut = new.find("[[operator]]\nname = \"stats\"").unwrap();
    let mut f = std::fs::File::create(&d.config).unwrap();
    f.write_all(&new.as_bytes()[..cut]).unwrap();
    f.flush().unwrap();
    std::thread::sleep(Duration::from_millis(600));
    f.write_all(&new.as_bytes()[cut..]).unwrap();
    drop(f);
    assert_eq!(d.reload_applied(1), "built oscin \"in2\"");
    assert_eq!(d.logged(is_reload).len(), 1, "{}", d.log_text());
}

/// A show that sends `/x/N` (a new channel each, so each is exported exactly once) to `in`
/// until `stop`; returns how many it sent.
fn keep_sending(
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut n = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            send(port, &format!("/x/{n}"), vec![OscType::Float(1.0)]);
            n += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
        n
    })
}

/// Reads `show` on its own thread (unread, its receive buffer would overflow) until the marker
/// `/show/done` arrives (sent after the last counted message: OSC In and export keep order), or
/// `TIMEOUT` passes without it; returns it with every address received.
fn collect(show: OscRx) -> std::thread::JoinHandle<(OscRx, std::collections::HashSet<String>)> {
    std::thread::spawn(move || {
        let mut got = std::collections::HashSet::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !got.contains("/show/done") && Instant::now() < deadline {
            if let Some(msgs) = show.recv_packet(TIMEOUT) {
                got.extend(msgs.into_iter().map(|m| m.addr));
            }
        }
        (show, got)
    })
}

/// Regression: truncating the config to 0 bytes (`> chopd.toml`, the first step of every
/// in-place write) was applied as a config without operators: the show stopped until the file
/// was written again. From the watcher, an empty config is refused with a warning.
#[test]
fn truncating_the_config_to_nothing_is_refused_and_the_show_goes_on() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let cfg = in_and_stats(show.port(), stats.port()).text();
    let d = Daemon::start(&cfg, &[]);
    let port = d.port("in");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = keep_sending(port, stop.clone());
    show.value_at("/show/x/0");
    let collector = collect(show);
    d.write_in_place("");
    let outcome = d.reload(1);
    // The show goes on sending for a while after the verdict.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let n = sender.join().unwrap();
    send(port, "/done", vec![OscType::Float(1.0)]);
    let (show, got) = collector.join().unwrap();
    // `/show/x/0` was waited for above.
    let lost = (1..n)
        .filter(|k| !got.contains(&format!("/show/x/{k}")))
        .count();
    eprintln!("truncated to 0 bytes: {lost} of {n} messages lost");
    assert_eq!(outcome["reload"], "refused", "{}", d.log_text());
    assert_eq!(outcome["why"], "empty");
    assert_eq!(lost, 0);
    send(port, "/after", vec![OscType::Float(0.5)]);
    show.expect("/show/after", 0.5);
}

/// What the watcher refuses, an explicit reload applies: SIGHUP after a truncation empties the
/// show.
#[test]
fn sighup_applies_a_config_the_watcher_refused() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let cfg = in_and_stats(show.port(), stats.port()).text();
    let d = Daemon::start(&cfg, &[]);
    d.write_in_place("");
    assert_eq!(d.reload(1)["reload"], "refused", "{}", d.log_text());
    d.signal(libc::SIGHUP);
    assert_eq!(
        d.reload_applied(2),
        "removed \"in\", removed \"stats\", removed destination show, removed destination stats"
    );
}

/// A complete file that keeps none of the running operators is what a file cut after its
/// top-level tables looks like: from the watcher it is refused too, however it was written.
#[test]
fn a_file_change_that_would_remove_every_operator_is_refused() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let cfg = in_and_stats(show.port(), stats.port()).text();
    let d = Daemon::start(&cfg, &[]);
    let port = d.port("in");
    let cut = cfg.find("[[operator]]").unwrap();
    d.rewrite_config(&cfg[..cut]);
    let refused = d.reload(1);
    assert_eq!(
        (refused["reload"].as_str(), refused["why"].as_str()),
        ("refused", "removes_every_operator"),
        "{}",
        d.log_text()
    );
    send(port, "/still", vec![OscType::Float(0.5)]);
    show.expect("/show/still", 0.5);
}

/// Regression: a rejected reload had already taken the MIDI destinations of the new config, so
/// the kept exports to `b`, which cached it as the second MIDI destination, pointed past the end
/// of a list without `a`, and the next value sent panicked the cook thread.
#[test]
fn a_rejected_reload_keeps_the_midi_destinations_it_had() {
    let show = OscRx::new();
    let midi = |name: &str| {
        format!(
            "[destinations.{name}]\ntype = \"midi\"\ndevice = \"chopd-test-absent-{name}\"\nscan_ms = 50\n"
        )
    };
    let base = Config::new()
        .dest("show", show.port())
        .oscin("in", r#"export = { root = "b" }"#)
        .oscin("ok", TO_SHOW);
    let cfg = base.clone().raw(&midi("a")).raw(&midi("b")).text();
    let d = Daemon::start(&cfg, &[]);
    let (port, ok) = (d.port("in"), d.port("ok"));
    send(port, "/ch1c7", vec![OscType::Float(0.5)]);
    send(ok, "/before", vec![OscType::Float(0.5)]);
    show.expect("/show/before", 0.5);
    // Without `a`, and with a required MIDI device that is not there: rejected.
    let bad = base.raw(&midi("b")).text() + NO_SUCH_DEVICE;
    d.rewrite_config(&bad);
    assert_eq!(d.reload(1)["reload"], "rejected", "{}", d.log_text());
    send(port, "/ch1c7", vec![OscType::Float(1.0)]);
    send(ok, "/after", vec![OscType::Float(0.75)]);
    show.expect("/show/after", 0.75);
    assert_eq!(d.count("panicked"), 0, "{}", d.log_text());
}

/// Times the daemon's main thread (the control plane) has been switched out.
fn main_thread_switches(pid: u32) -> u64 {
    ["voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"]
        .iter()
        .map(|k| {
            proc_status(pid, k)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap()
        })
        .sum()
}

#[test]
fn with_watch_off_the_control_plane_sleeps_between_health_checks() {
    // Nothing to watch: the control plane wakes for its health check only (every 500 ms
    // without a systemd watchdog), not ten times a second as while it watches the files.
    let cfg = Config::new().top("watch = false").oscin("in", "").text();
    let mut d = Daemon::start(&cfg, &[]);
    let pid = d.child.id();
    let before = main_thread_switches(pid);
    std::thread::sleep(Duration::from_secs(3));
    let woke = main_thread_switches(pid) - before;
    // About 6 health checks in 3 s, a switch or two each (10–12 seen, also next to two CPU
    // hogs); with the files polled it was 58.
    assert!(
        woke < 30,
        "the main thread was switched out {woke} times in 3 s"
    );
    // A signal is an event, not something a poll finds: SIGTERM still stops it cleanly.
    assert!(d.stop().success());
}
