//! Running as a service (issue 5): systemd notification through a fake `NOTIFY_SOCKET` (a real
//! unix datagram socket bound here), the watchdog, reload (SIGHUP, control port, files changing
//! on disk), the control port, export to the daemon's own parameters, bounded shutdown, and the
//! unit files. Every test runs the real binary on 127.0.0.1 with port 0.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use rosc::OscType;

use crate::util::*;

/// `in` (OSC In) exports to `show`; `stats` (Info CHOP of `in`) exports to `stats`; the
/// control port is on a free port.
fn config(show: u16, stats: u16, extra: &str) -> String {
    format!(
        r#"
rate = 100

[control]
port = 0

[destinations.show]
host = "127.0.0.1"
port = {show}
prefix = "/show"

[destinations.stats]
host = "127.0.0.1"
port = {stats}
prefix = "/stats"

[[operator]]
name = "in"
type = "oscin"
port = 0
local_address = "127.0.0.1"
export = {{ method = "autoname", root = "show" }}

[[operator]]
name = "stats"
type = "info"
op = "in"
export = {{ method = "autoname", root = "stats" }}
{extra}
"#
    )
}

/// The fake systemd end of `NOTIFY_SOCKET`.
struct Notify {
    sock: UnixDatagram,
    /// The value for `NOTIFY_SOCKET`.
    env: String,
    _dir: TempDir,
}

impl Notify {
    /// A socket at a filesystem path.
    fn at_path() -> Notify {
        let dir = TempDir::new();
        let p = dir.path("notify");
        Notify {
            sock: UnixDatagram::bind(&p).unwrap(),
            env: p.to_str().unwrap().to_string(),
            _dir: dir,
        }
    }

    /// A socket in the abstract namespace (`@name`), as systemd uses by default.
    fn abstract_() -> Notify {
        use std::os::linux::net::SocketAddrExt;
        let dir = TempDir::new();
        let name = format!(
            "chopd-test-{}",
            dir.0.file_name().unwrap().to_str().unwrap()
        );
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        Notify {
            sock: UnixDatagram::bind_addr(&addr).unwrap(),
            env: format!("@{name}"),
            _dir: dir,
        }
    }

    fn next(&self, timeout: Duration) -> Option<String> {
        self.sock.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 4096];
        let n = self.sock.recv(&mut buf).ok()?;
        Some(String::from_utf8(buf[..n].to_vec()).unwrap())
    }

    /// The next message that is not a watchdog ping.
    fn next_state(&self) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self
                .next(left.max(Duration::from_millis(1)))
                .expect("no notification within the timeout");
            if m != "WATCHDOG=1" {
                return m;
            }
        }
    }

    /// Arrival times of watchdog pings within `window`.
    fn pings(&self, window: Duration) -> Vec<Instant> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return out;
            }
            if let Some(m) = self.next(left) {
                if m == "WATCHDOG=1" {
                    out.push(Instant::now());
                }
            }
        }
    }
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

#[test]
fn ready_reloading_and_stopping_reach_the_notify_socket() {
    let ns = Notify::at_path();
    let (show, stats) = (OscRx::new(), OscRx::new());
    let mut d = Daemon::spawn(
        &config(show.port(), stats.port(), ""),
        &[],
        &[("NOTIFY_SOCKET", &ns.env)],
    );
    let ready = ns.next_state();
    assert!(
        ready.starts_with("READY=1\nSTATUS=running 2 operators at 100 fps, control on 127.0.0.1:"),
        "{ready:?}"
    );
    // READY means every socket is bound and a frame ran: both answer right away.
    d.wait_for("ready", TIMEOUT).unwrap();
    let c = Control::new(d.control_port());
    c.ok("/chopd/ping", vec![]);
    send(d.port("in"), "/a", vec![OscType::Float(0.5)]);
    show.expect("/show/a", 0.5);

    d.signal(libc::SIGHUP);
    let reloading = ns.next_state();
    let usec: u64 = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .and_then(|r| r.lines().next())
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("{reloading:?}"));
    let now = monotonic_usec();
    assert!(usec <= now && now - usec < 10_000_000, "{usec} vs {now}");
    assert!(ns.next_state().starts_with("READY=1\n"));
    d.reload_applied(1);

    let status = d.stop();
    assert!(status.success(), "{status:?}");
    assert_eq!(ns.next_state(), "STOPPING=1\nSTATUS=stopping");
    // No watchdog was asked for: no pings came.
    assert!(ns.pings(Duration::from_millis(50)).is_empty());
}

#[test]
fn the_watchdog_is_fed_through_an_abstract_socket() {
    let ns = Notify::abstract_();
    let (show, stats) = (OscRx::new(), OscRx::new());
    let _d = Daemon::start_env(
        &config(show.port(), stats.port(), ""),
        &[],
        &[("NOTIFY_SOCKET", &ns.env), ("WATCHDOG_USEC", "200000")],
    );
    assert!(ns.next_state().starts_with("READY=1\n"));
    // Every 100 ms (half the interval): about 10 in a second; allow for a busy machine.
    let pings = ns.pings(Duration::from_secs(1));
    assert!(pings.len() >= 5, "{} pings in 1 s", pings.len());

    // A watchdog meant for another process (WATCHDOG_PID) is not ours to feed.
    let ns2 = Notify::abstract_();
    let _d2 = Daemon::start_env(
        &config(show.port(), stats.port(), ""),
        &[],
        &[
            ("NOTIFY_SOCKET", &ns2.env),
            ("WATCHDOG_USEC", "200000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    assert!(ns2.next_state().starts_with("READY=1\n"));
    assert!(ns2.pings(Duration::from_millis(600)).is_empty());
}

#[test]
fn a_stuck_clock_stops_feeding_the_watchdog() {
    let ns = Notify::at_path();
    let (show, stats) = (OscRx::new(), OscRx::new());
    let d = Daemon::start_env(
        &config(show.port(), stats.port(), ""),
        &[],
        &[
            ("NOTIFY_SOCKET", &ns.env),
            ("WATCHDOG_USEC", "200000"),
            ("CHOPD_DEBUG_CONTROL", "1"),
        ],
    );
    assert!(ns.next_state().starts_with("READY=1\n"));
    assert!(!ns.pings(Duration::from_millis(400)).is_empty());
    let c = Control::new(d.control_port());
    // The cook thread sleeps 2 s inside a frame, as a script that does not return would.
    c.ok("/chopd/debug/stall", vec![OscType::Float(2.0)]);
    let t0 = Instant::now();
    let pings = ns.pings(Duration::from_secs(4));
    // At most one ping (already on its way) after the stall began, then a gap of the stall,
    // then pings again.
    let mut times = vec![t0];
    times.extend(pings.iter().copied());
    let longest = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    assert!(
        longest >= Duration::from_millis(1500),
        "longest gap {longest:?}"
    );
    assert!(
        pings
            .last()
            .is_some_and(|&t| t - t0 >= Duration::from_secs(2)),
        "pings did not resume after the stall"
    );
    assert!(d
        .wait_for("the clock has not run a frame for", TIMEOUT)
        .unwrap()
        .contains("the systemd watchdog is no longer fed"));
    d.wait_for("the clock runs again", TIMEOUT).unwrap();
}

#[test]
fn a_bad_edit_keeps_the_old_graph_running_and_logs_every_error() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let cfg = config(show.port(), stats.port(), "");
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
    let cfg = config(show.port(), stats.port(), "");
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
    let cfg = config(show.port(), stats.port(), "");
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
    let cfg = config(show.port(), stats.port(), "").replace(
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
fn control_status_reports_every_operator() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let d = Daemon::start(&config(show.port(), stats.port(), ""), &[]);
    let port = d.port("in");
    send(port, "/a", vec![OscType::Float(0.5)]);
    show.expect("/show/a", 0.5);
    let c = Control::new(d.control_port());
    let s = c.status();
    assert_eq!(
        s["/chopd/status/op/in/kind"],
        OscType::String("oscin".into())
    );
    assert!(num(&s, "/chopd/status/op/in/total_cooks") >= 1.0);
    assert_eq!(num(&s, "/chopd/status/op/in/errors"), 0.0);
    assert_eq!(
        s["/chopd/status/op/in/last_error"],
        OscType::String(String::new())
    );
    assert_eq!(num(&s, "/chopd/status/op/in/port"), port as f64);
    assert_eq!(num(&s, "/chopd/status/op/in/num_channels"), 1.0);
    assert!(num(&s, "/chopd/status/op/stats/total_cooks") >= 1.0);
    assert!(num(&s, "/chopd/status/daemon/frames") >= 1.0);
    assert_eq!(num(&s, "/chopd/status/daemon/rate"), 100.0);
    // The final reply carries the number of operators.
    let r = c.request("/chopd/status", vec![OscType::String("in".into())]);
    let last = r.last().unwrap();
    assert_eq!(
        last.args,
        vec![OscType::String("/chopd/status".into()), OscType::Int(1)]
    );
    assert!(r.iter().all(|m| !m.addr.contains("/op/stats/")));

    let j = c.status_json(None);
    let ops = j["operators"].as_array().unwrap();
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[0]["name"], "in");
    assert_eq!(ops[0]["extras"]["port"], port as f64);
    assert!(ops[0]["last_error"].is_null());
    assert_eq!(j["daemon"]["rate"], 100.0);
    let one = c.status_json(Some("stats"));
    assert_eq!(one["operators"].as_array().unwrap().len(), 1);
    assert!(c
        .err("/chopd/status", vec![OscType::String("nope".into())])
        .contains("no operator \"nope\""));
}

#[test]
fn control_actions_pulse_set_reset_setup_and_reload() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let cfg = config(show.port(), stats.port(), "");
    let d = Daemon::start(&cfg, &[]);
    let port = d.port("in");
    send(port, "/a", vec![OscType::Float(0.5)]);
    show.expect("/show/a", 0.5);
    let c = Control::new(d.control_port());
    assert_eq!(
        c.ok("/chopd/ping", vec![]),
        vec![OscType::String(env!("CARGO_PKG_VERSION").into())]
    );

    // Pulse: OSC In's reset_values zeroes its channels.
    c.ok("/chopd/op/in/pulse/reset_values", vec![]);
    show.expect("/show/a", 0.0);
    // A button's release (0) does nothing.
    send(port, "/a", vec![OscType::Float(0.75)]);
    show.expect("/show/a", 0.75);
    c.ok("/chopd/op/in/pulse/reset_values", vec![OscType::Int(0)]);
    assert!(show
        .drain(Duration::from_millis(150))
        .iter()
        .all(|m| m.addr != "/show/a"));
    assert!(c
        .err("/chopd/op/in/pulse/explode", vec![])
        .contains("no pulse \"explode\""));

    // Reset drops the channels: the Info CHOP sees none.
    c.ok("/chopd/op/in/reset", vec![]);
    stats.until(TIMEOUT, |m| {
        m.addr == "/stats/num_channels" && float(&m.args[0]) == 0.0
    });
    d.wait_for("control: reset \"in\"", TIMEOUT).unwrap();

    // OSC In has no settable parameters and no set-up.
    assert!(c
        .err("/chopd/op/in/par/Gain", vec![OscType::Float(1.0)])
        .contains("no parameter \"Gain\""));
    assert!(!c.err("/chopd/op/in/setuppars", vec![]).is_empty());
    assert!(c
        .err("/chopd/op/nope/reset", vec![])
        .contains("no operator \"nope\""));
    assert!(c
        .err("/chopd/debug/stall", vec![OscType::Float(1.0)])
        .contains("CHOPD_DEBUG_CONTROL=1"));

    // Reload: a good config says what changed, a bad one why it was refused.
    let with_in2 = cfg.clone()
        + "\n[[operator]]\nname = \"in2\"\ntype = \"oscin\"\nport = 0\nlocal_address = \"127.0.0.1\"\n";
    // Let the watcher not race the request: it would reload the same file anyway, but the
    // reply must then say "nothing changed"; so write with watching off.
    let no_watch = |s: &str| s.replace("rate = 100", "rate = 100\nwatch = false");
    d.rewrite_config(&no_watch(&cfg));
    d.reload_applied(1);
    d.rewrite_config(&no_watch(&with_in2));
    assert_eq!(
        c.ok("/chopd/reload", vec![]),
        vec![OscType::String("built oscin \"in2\"".into())]
    );
    d.rewrite_config(&no_watch(&with_in2).replace(
        "type = \"oscin\"\nport = 0\nlocal",
        "type = \"oscin\"\nport = 70000\nlocal",
    ));
    let why = c.err("/chopd/reload", vec![]);
    assert!(
        why.starts_with("reload refused, the running config stays: "),
        "{why}"
    );
    assert!(why.contains("chopd.toml:"), "{why}");
    c.ok("/chopd/ping", vec![]);
}

#[test]
fn garbage_on_the_control_port_is_counted_and_never_crashes() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let d = Daemon::start(&config(show.port(), stats.port(), ""), &[]);
    let c = Control::new(d.control_port());
    for bad in [
        &b"garbage"[..],
        b"",
        b"/chopd/ping\0,s\0\0",
        b"#bundle\0\0\0\0\0\0\0\0\x01\0\0\0\xff",
    ] {
        c.send_raw(bad);
    }
    // Requests that decode but make no sense get an error each.
    assert!(c.err("/nope", vec![]).contains("/chopd/"));
    assert!(c.err("/chopd/op/in", vec![]).contains("unknown address"));
    assert!(c
        .err("/chopd/op/in/par/x", vec![OscType::Nil])
        .contains("cannot set"));
    let s = c.status();
    assert_eq!(num(&s, "/chopd/status/control/malformed"), 4.0);
    assert_eq!(num(&s, "/chopd/status/control/failed"), 3.0);
    assert!(num(&s, "/chopd/status/control/packets") >= 8.0);
    d.wait_for("control: malformed packet from", TIMEOUT)
        .unwrap();
    // A bundle of requests gets one reply each.
    let bundle = rosc::OscPacket::Bundle(rosc::OscBundle {
        timetag: rosc::OscTime::from((0, 1)),
        content: vec![
            rosc::OscPacket::Message(rosc::OscMessage {
                addr: "/chopd/ping".into(),
                args: vec![],
            }),
            rosc::OscPacket::Message(rosc::OscMessage {
                addr: "/chopd/op/in/reset".into(),
                args: vec![],
            }),
        ],
    });
    c.send_raw(&rosc::encoder::encode(&bundle).unwrap());
    c.replies("/chopd/ping", TIMEOUT).unwrap();
    c.replies("/chopd/op/in/reset", TIMEOUT).unwrap();
}

#[test]
fn the_control_port_refuses_senders_outside_its_allow_list() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let cfg = config(show.port(), stats.port(), "").replace(
        "[control]\nport = 0",
        "[control]\nport = 0\nallow = [\"127.0.0.2/32\"]",
    );
    let d = Daemon::start(&cfg, &[]);
    let outsider = Control::from_ip("127.0.0.1", d.control_port());
    outsider.send("/chopd/ping", vec![]);
    assert!(outsider
        .replies("/chopd/ping", Duration::from_millis(300))
        .is_none());
    let insider = Control::from_ip("127.0.0.2", d.control_port());
    insider.ok("/chopd/ping", vec![]);
    let s = insider.status();
    assert_eq!(num(&s, "/chopd/status/control/refused"), 1.0);
    d.wait_for("control: refused a packet from 127.0.0.1:", TIMEOUT)
        .unwrap();
}

#[test]
fn a_reload_moves_the_control_port_and_its_allow_list() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    // Reloads are asked over the control port here, so the watcher stays out of it.
    let cfg =
        config(show.port(), stats.port(), "").replace("rate = 100", "rate = 100\nwatch = false");
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
fn an_export_to_an_operator_drives_its_parameter_and_refuses_control_sets() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    // `src` exports to `in`'s parameters: channel Gain → parameter Gain of `in` (root op:in),
    // channel in/Level → parameter Level of `in` (root op:/ in `src2`).
    let extra = r#"
[[operator]]
name = "src"
type = "oscin"
port = 0
local_address = "127.0.0.1"
export = { method = "autoname", root = "op:in" }

[[operator]]
name = "src2"
type = "oscin"
port = 0
local_address = "127.0.0.1"
export = { method = "autoname", root = "op:/" }
"#;
    let d = Daemon::start(&config(show.port(), stats.port(), extra), &[]);
    send(d.port("src"), "/Gain", vec![OscType::Float(0.5)]);
    send(d.port("src2"), "/in/Level", vec![OscType::Float(0.5)]);
    let c = Control::new(d.control_port());
    let deadline = Instant::now() + TIMEOUT;
    let s = loop {
        let s = c.status();
        if s.contains_key("/chopd/status/op/in/driven/Level") || Instant::now() > deadline {
            break s;
        }
    };
    assert_eq!(
        s["/chopd/status/op/in/driven/Gain"],
        OscType::String("src".into())
    );
    assert_eq!(
        s["/chopd/status/op/in/driven/Level"],
        OscType::String("src2".into())
    );
    let j = c.status_json(Some("in"));
    assert_eq!(j["operators"][0]["pars"]["Gain"]["driven_by"], "src");
    let why = c.err("/chopd/op/in/par/Gain", vec![OscType::Float(1.0)]);
    assert_eq!(
        why,
        "parameter \"Gain\" of \"in\" is driven by the export of \"src\"; change that export to set it by hand"
    );
    // A parameter no export drives goes to the operator (OSC In has none to set).
    assert!(c
        .err("/chopd/op/in/par/Other", vec![OscType::Float(1.0)])
        .contains("no parameter"));
    // OSC In cannot take the exported values: counted as warnings of `in`, once per change.
    assert!(num(&c.status(), "/chopd/status/op/in/warnings") >= 2.0);
}

#[test]
fn sigterm_stops_within_the_bound_and_frees_every_port() {
    let ns = Notify::at_path();
    let (show, stats) = (OscRx::new(), OscRx::new());
    let mut d = Daemon::start_env(
        &config(show.port(), stats.port(), ""),
        &[],
        &[("NOTIFY_SOCKET", &ns.env)],
    );
    let (osc, control) = (d.port("in"), d.control_port());
    d.signal(libc::SIGTERM);
    let (status, took) = d.wait_exit(TIMEOUT).expect("did not stop");
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(ns.next_state().starts_with("READY=1"));
    assert!(ns.next_state().starts_with("STOPPING=1"));
    d.wait_for("stopped", TIMEOUT).unwrap();
    // Nothing left holding a socket.
    std::net::UdpSocket::bind(("127.0.0.1", osc)).expect("the OSC In port is still taken");
    std::net::UdpSocket::bind(("127.0.0.1", control)).expect("the control port is still taken");
}

#[test]
fn a_stuck_cook_thread_cannot_hold_the_stop_past_the_bound() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let mut d = Daemon::start_env(
        &config(show.port(), stats.port(), ""),
        &[],
        &[("CHOPD_DEBUG_CONTROL", "1")],
    );
    Control::new(d.control_port()).ok("/chopd/debug/stall", vec![OscType::Int(60)]);
    d.signal(libc::SIGTERM);
    let (status, took) = d.wait_exit(TIMEOUT).expect("did not stop");
    assert_eq!(status.code(), Some(1));
    assert!(
        took >= Duration::from_millis(4500) && took < Duration::from_secs(7),
        "{took:?}"
    );
    d.wait_for("did not stop within 5 s", TIMEOUT).unwrap();
}

#[test]
fn a_second_signal_quits_at_once() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let mut d = Daemon::start_env(
        &config(show.port(), stats.port(), ""),
        &[],
        &[("CHOPD_DEBUG_CONTROL", "1")],
    );
    Control::new(d.control_port()).ok("/chopd/debug/stall", vec![OscType::Int(60)]);
    d.signal(libc::SIGTERM);
    d.wait_for("stopping (SIGTERM)", TIMEOUT).unwrap();
    d.signal(libc::SIGINT);
    let (status, took) = d.wait_exit(TIMEOUT).expect("did not stop");
    assert_eq!(status.code(), Some(128 + libc::SIGINT));
    assert!(took < Duration::from_secs(1), "{took:?}");
}

/// Runs `scripts/install` into `dir` with the binary under test.
fn staged_units(dir: &TempDir) {
    let st = std::process::Command::new(repo().join("scripts/install"))
        .args([
            "--destdir",
            dir.0.to_str().unwrap(),
            "--prefix",
            "/usr/local",
            "--bin",
            BIN,
        ])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
}

#[test]
fn the_installer_stages_binary_units_and_a_valid_default_config() {
    let dir = TempDir::new();
    staged_units(&dir);
    for f in [
        "usr/local/bin/chopd",
        "etc/systemd/system/chopd.service",
        "etc/systemd/system/chopd@.service",
        "etc/chopd/chopd.toml",
        "etc/chopd/chopd.schema.json",
        "usr/local/share/doc/chopd/service.md",
    ] {
        assert!(dir.path(f).exists(), "{f} not installed");
    }
    let (code, out) = check(&dir.path("etc/chopd/chopd.toml"));
    assert_eq!(code, 0, "{out}");
    // An edited config survives a second install.
    dir.write("etc/chopd/chopd.toml", "rate = 30\n");
    staged_units(&dir);
    assert_eq!(
        std::fs::read_to_string(dir.path("etc/chopd/chopd.toml")).unwrap(),
        "rate = 30\n"
    );
    // --prefix follows into the units.
    let other = TempDir::new();
    let st = std::process::Command::new(repo().join("scripts/install"))
        .args([
            "--destdir",
            other.0.to_str().unwrap(),
            "--prefix",
            "/opt/chopd",
            "--bin",
            BIN,
        ])
        .output()
        .unwrap();
    assert!(st.status.success());
    let unit = std::fs::read_to_string(other.path("etc/systemd/system/chopd.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/opt/chopd/bin/chopd run /etc/chopd/chopd.toml"),
        "{unit}"
    );
}

#[test]
fn the_units_pass_systemd_analyze_verify() {
    let Ok(probe) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        panic!("systemd-analyze is missing: apt-get install systemd");
    };
    assert!(probe.status.success());
    let dir = TempDir::new();
    for unit in ["chopd.service", "chopd@.service"] {
        let text = std::fs::read_to_string(repo().join("systemd").join(unit)).unwrap();
        // Verify checks that ExecStart exists: point it at the binary under test.
        dir.write(unit, &text.replace("/usr/local/bin/chopd", BIN));
    }
    let out = std::process::Command::new("systemd-analyze")
        .current_dir(&dir.0)
        .args(["verify", "chopd.service", "chopd@stage.service"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
    // What the issue asks of the units, spelled out.
    let unit = std::fs::read_to_string(repo().join("systemd/chopd.service")).unwrap();
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
        "SupplementaryGroups=audio",
        "DeviceAllow=char-alsa rw",
        "DynamicUser=yes",
        "MemoryMax=",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(line)),
            "chopd.service lacks {line}"
        );
    }
}

fn ctl(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(BIN)
        .arg("ctl")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn chopd_ctl_shows_status_and_acts() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let extra = r#"
[[operator]]
name = "src"
type = "oscin"
port = 0
local_address = "127.0.0.1"
export = { method = "autoname", root = "op:in" }
"#;
    let d = Daemon::start(&config(show.port(), stats.port(), extra), &[]);
    send(d.port("in"), "/a", vec![OscType::Float(0.5)]);
    show.expect("/show/a", 0.5);
    send(d.port("src"), "/Gain", vec![OscType::Float(0.5)]);
    let port = d.control_port().to_string();
    let (code, out, _) = ctl(&[&port, "ping"]);
    assert_eq!((code, out.trim()), (0, env!("CARGO_PKG_VERSION")));
    // The export mapping is built on the frame after the first value: ask until it shows.
    let deadline = Instant::now() + TIMEOUT;
    let out = loop {
        let (code, out, err) = ctl(&[&port, "status"]);
        assert_eq!(code, 0, "{err}");
        if out.contains("driven by") || Instant::now() > deadline {
            break out;
        }
    };
    assert!(out.contains("\nin (oscin)  cooks "), "{out}");
    assert!(out.contains("\nstats (info)  cooks "), "{out}");
    assert!(
        out.contains("    par Gain  (driven by the export of \"src\")"),
        "{out}"
    );
    let (code, out, _) = ctl(&[&port, "json", "in"]);
    assert_eq!(code, 0);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["operators"][0]["name"], "in");
    assert_eq!(ctl(&[&port, "reset", "in"]).0, 0);
    stats.wait_value("/stats/num_channels", |v| v == 0.0);
    let (code, _, err) = ctl(&[&port, "set", "in", "Gain", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("driven by the export of \"src\""), "{err}");
    let (code, _, err) = ctl(&[&port, "explode"]);
    assert_eq!(code, 2, "{err}");
    // A config names its control port.
    let free = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let fixed = free.local_addr().unwrap().port();
    drop(free);
    let cfg = d.dir.write(
        "fixed.toml",
        &format!(
            "[control]\nport = {fixed}\n[[operator]]\nname = \"x\"\ntype = \"info\"\nop = \"/\"\n"
        ),
    );
    let cfg = cfg.to_str().unwrap();
    let (code, _, err) = ctl(&[cfg, "ping"]);
    assert_eq!(code, 1);
    assert!(err.contains("nothing listens on 127.0.0.1:"), "{err}");
}

// Script CHOP tests: written against SPEC §4.3/§5, they need the Script CHOP (branch `script`).
// Enable them (drop the `ignore`) once it is merged.

const SYNTH: &str = r#"
import time

def onSetupParameters(scriptOp):
    page = scriptOp.appendCustomPage('Custom')
    page.appendFloat('Gain')
    page.appendFloat('Offset')
    page.appendPulse('Go')
    page.appendPulse('Hang')
    scriptOp.store('setups', scriptOp.fetch('setups', 0) + 1)

def onPulse(par):
    o = par.owner
    if par.name == 'Go':
        o.store('pulses', o.fetch('pulses', 0) + 1)
    elif par.name == 'Hang':
        while True:
            pass

def onCook(scriptOp):
    scriptOp.clear()
    scriptOp.numSamples = 1
    for name, v in (
        ('gain', scriptOp.par.Gain.eval()),
        ('offset', scriptOp.par.Offset.eval()),
        ('pulses', scriptOp.fetch('pulses', 0)),
        ('setups', scriptOp.fetch('setups', 0)),
    ):
        scriptOp.appendChan(name)[0] = v
"#;

fn synth_config(show: u16, stats: u16, budget_ms: u32) -> String {
    config(
        show,
        stats,
        &format!(
            r#"
[[operator]]
name = "synth"
type = "script"
callbacks = "synth.py"
cook_budget_ms = {budget_ms}
export = {{ method = "autoname", root = "show" }}

[[operator]]
name = "lfo"
type = "oscin"
port = 0
local_address = "127.0.0.1"
export = {{ method = "autoname", root = "op:synth" }}
"#
        ),
    )
}

#[test]
fn an_export_drives_a_script_parameter_and_control_sets_on_it_are_refused() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let d = Daemon::start(
        &synth_config(show.port(), stats.port(), 1000),
        &[("synth.py", SYNTH)],
    );
    send(d.port("lfo"), "/Gain", vec![OscType::Float(0.25)]);
    show.wait_value("/show/gain", |v| v == 0.25);
    let c = Control::new(d.control_port());
    let s = c.status();
    assert_eq!(
        s["/chopd/status/op/synth/driven/Gain"],
        OscType::String("lfo".into())
    );
    assert!(c
        .err("/chopd/op/synth/par/Gain", vec![OscType::Float(1.0)])
        .contains("driven by the export of \"lfo\""));
    // A parameter no export drives is set.
    c.ok("/chopd/op/synth/par/Offset", vec![OscType::Float(0.75)]);
    show.wait_value("/show/offset", |v| v == 0.75);
}

#[test]
fn control_pulse_runs_onpulse_and_setuppars_runs_onsetupparameters() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let d = Daemon::start(
        &synth_config(show.port(), stats.port(), 1000),
        &[("synth.py", SYNTH)],
    );
    let c = Control::new(d.control_port());
    show.wait_value("/show/setups", |v| v == 1.0);
    c.ok("/chopd/op/synth/pulse/Go", vec![]);
    show.wait_value("/show/pulses", |v| v == 1.0);
    // Press and release: one pulse.
    c.ok("/chopd/op/synth/pulse/Go", vec![OscType::Int(1)]);
    c.ok("/chopd/op/synth/pulse/Go", vec![OscType::Int(0)]);
    show.wait_value("/show/pulses", |v| v == 2.0);
    c.ok("/chopd/op/synth/setuppars", vec![]);
    show.wait_value("/show/setups", |v| v == 2.0);
    assert!(c
        .err("/chopd/op/synth/pulse/Gain", vec![])
        .contains("not a pulse"));
}

#[test]
fn custom_parameter_values_survive_a_reload() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let cfg = synth_config(show.port(), stats.port(), 1000);
    let d = Daemon::start(&cfg, &[("synth.py", SYNTH)]);
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
fn a_stuck_script_stops_feeding_the_watchdog() {
    let ns = Notify::at_path();
    let (show, stats) = (OscRx::new(), OscRx::new());
    let d = Daemon::start_env(
        &synth_config(show.port(), stats.port(), 3000),
        &[("synth.py", SYNTH)],
        &[("NOTIFY_SOCKET", &ns.env), ("WATCHDOG_USEC", "200000")],
    );
    assert!(ns.next_state().starts_with("READY=1\n"));
    assert!(!ns.pings(Duration::from_millis(300)).is_empty());
    // onPulse loops until the cook budget (3 s) interrupts it.
    Control::new(d.control_port()).ok("/chopd/op/synth/pulse/Hang", vec![]);
    let t0 = Instant::now();
    let pings = ns.pings(Duration::from_secs(5));
    let mut times = vec![t0];
    times.extend(pings.iter().copied());
    let longest = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    assert!(longest >= Duration::from_secs(2), "longest gap {longest:?}");
    assert!(!pings.is_empty() && *pings.last().unwrap() - t0 >= Duration::from_secs(3));
    d.wait_for("the clock has not run a frame for", TIMEOUT)
        .unwrap();
}

#[test]
fn a_dead_cook_thread_ends_the_daemon_with_a_failure() {
    // Exiting lets systemd restart it, instead of a daemon without a clock answering pings.
    let (show, stats) = (OscRx::new(), OscRx::new());
    let mut d = Daemon::start_env(
        &config(show.port(), stats.port(), ""),
        &[],
        &[("CHOPD_DEBUG_CONTROL", "1")],
    );
    Control::new(d.control_port()).ok("/chopd/debug/panic", vec![]);
    let (status, _) = d.wait_exit(TIMEOUT).expect("did not exit");
    assert_eq!(status.code(), Some(1));
    d.wait_for("panic requested over the control port", TIMEOUT)
        .unwrap();
    d.wait_for("the cook thread stopped unexpectedly", TIMEOUT)
        .unwrap();
}

#[test]
fn a_taken_control_port_fails_the_start() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (show, stats) = (OscRx::new(), OscRx::new());
    let cfg = config(show.port(), stats.port(), "")
        .replace("[control]\nport = 0", &format!("[control]\nport = {port}"));
    let ns = Notify::at_path();
    let mut d = Daemon::spawn(&cfg, &[], &[("NOTIFY_SOCKET", &ns.env)]);
    let (status, _) = d.wait_exit(TIMEOUT).expect("did not exit");
    assert_eq!(status.code(), Some(1));
    d.wait_for(&format!("bind control on 127.0.0.1:{port}"), TIMEOUT)
        .unwrap();
    // Never announced ready.
    assert!(ns.next(Duration::from_millis(100)).is_none());
}

#[test]
fn an_edit_then_sighup_reloads_once() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let cfg = config(show.port(), stats.port(), "");
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
    let cfg = format!(
        r#"
rate = 100

[destinations.show]
host = "127.0.0.1"
port = {show}
prefix = "/show"

[[operator]]
name = "in"
type = "oscin"
port = {port}
local_address = "127.0.0.1"
export = {{ method = "autoname", root = "show" }}
"#,
        show = show.port()
    );
    let d = Daemon::start(&cfg, &[]);
    send(port, "/before", vec![OscType::Float(0.5)]);
    show.expect("/show/before", 0.5);
    // `in` changes (so it is rebuilt on the same port) and a required MIDI device that is not
    // there fails the build of the new graph.
    let bad = cfg.replace(
        "local_address = \"127.0.0.1\"",
        "local_address = \"127.0.0.1\"\naddress_scope = \"/after*\"",
    ) + r#"
[[operator]]
name = "keys"
type = "midiin"
device = "chopd-test-no-such-device"
required = true
"#;
    d.rewrite_config(&bad);
    assert_eq!(d.reload(1)["reload"], "rejected", "{}", d.log_text());
    // The old `in` is bound again and still exports.
    send(port, "/again", vec![OscType::Float(0.75)]);
    show.expect("/show/again", 0.75);
}
