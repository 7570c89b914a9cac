//! Running as a service: systemd notification through a fake `NOTIFY_SOCKET` (ready, reloading,
//! stopping), the watchdog and what stops feeding it, the signals and the bounded stop, a cook
//! thread that dies, and the installer and unit files.

use std::time::{Duration, Instant};

use rosc::OscType;

use crate::util::*;

/// CLOCK_MONOTONIC in microseconds, the clock `MONOTONIC_USEC` is read against.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
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
fn ready_reloading_and_stopping_reach_the_notify_socket() {
    let ns = Notify::at_path();
    let (show, stats) = (OscRx::new(), OscRx::new());
    let mut d = Daemon::spawn(
        &in_and_stats(show.port(), stats.port()).text(),
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
        &in_and_stats(show.port(), stats.port()).text(),
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
        &in_and_stats(show.port(), stats.port()).text(),
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
        &in_and_stats(show.port(), stats.port()).text(),
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
    let stalled = d.wait_logged(is_clock("stalled"), 1, TIMEOUT).unwrap();
    assert_eq!(stalled["watchdog"], "unfed");
    d.wait_logged(is_clock("running"), 1, TIMEOUT).unwrap();
}

#[test]
fn a_stuck_script_stops_feeding_the_watchdog() {
    let ns = Notify::at_path();
    let (show, stats) = (OscRx::new(), OscRx::new());
    let d = Daemon::start_env(
        &synth(show.port(), stats.port(), 3000).text(),
        &[("synth.py", &fixture("synth.py"))],
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
    d.wait_logged(is_clock("stalled"), 1, TIMEOUT).unwrap();
}

#[test]
fn sigterm_stops_cleanly() {
    let rx = OscRx::new();
    let mut d = Daemon::start(&in_to_show(rx.port()).text(), &[]);
    let status = d.stop();
    assert!(status.success(), "{status:?}");
    assert_eq!(d.logged(is_stop("begin")).len(), 1, "{}", d.log_text());
}

/// Whether signal `sig` is ignored by process `pid` (the `SigIgn` mask of /proc/PID/status).
fn ignores(pid: u32, sig: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|m| m & (1 << (sig - 1)) != 0)
}

/// Regression: a SIGHUP in the first milliseconds after exec killed the process (the signal's
/// default action) because the handler that makes it a reload came only after the config was
/// read and the runtime built. Now no SIGHUP is fatal once chopd's own code runs. The one part
/// before that, the dynamic loader (about a millisecond), cannot be protected from inside: the
/// test starts at the first sign of Rust's runtime, which ignores SIGPIPE just before `main`,
/// and sends SIGHUP after SIGHUP until the daemon is ready — through the whole start.
#[test]
fn a_sighup_right_after_exec_does_not_kill_the_daemon() {
    for i in 0..20 {
        let rx = OscRx::new();
        let mut d = Daemon::spawn(&in_to_show(rx.port()).text(), &[], &[]);
        let pid = d.child.id();
        let deadline = Instant::now() + TIMEOUT;
        while !ignores(pid, libc::SIGPIPE) {
            assert!(Instant::now() < deadline, "start {i}: never reached main");
        }
        let mut sent = 0;
        loop {
            d.signal(libc::SIGHUP);
            sent += 1;
            if let Some(status) = d.child.try_wait().unwrap() {
                panic!(
                    "start {i}: SIGHUP number {sent} ended chopd ({status:?}); log:\n{}",
                    d.log_text()
                );
            }
            if d.log_text()
                .lines()
                .any(|l| l.trim_end().ends_with(" ready"))
            {
                break;
            }
            assert!(Instant::now() < deadline, "start {i}: never ready");
            std::thread::sleep(Duration::from_micros(200));
        }
        let status = d.stop();
        assert!(
            status.success(),
            "start {i}: {status:?}; log:\n{}",
            d.log_text()
        );
    }
}

#[test]
fn sigterm_stops_within_the_bound_and_frees_every_port() {
    let ns = Notify::at_path();
    let (show, stats) = (OscRx::new(), OscRx::new());
    let mut d = Daemon::start_env(
        &in_and_stats(show.port(), stats.port()).text(),
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
    d.wait_logged(is_stop("done"), 1, TIMEOUT).unwrap();
    // Nothing left holding a socket.
    std::net::UdpSocket::bind(("127.0.0.1", osc)).expect("the OSC In port is still taken");
    std::net::UdpSocket::bind(("127.0.0.1", control)).expect("the control port is still taken");
}

#[test]
fn a_stuck_cook_thread_cannot_hold_the_stop_past_the_bound() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let mut d = Daemon::start_env(
        &in_and_stats(show.port(), stats.port()).text(),
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
    let timeout = d.wait_logged(is_stop("timeout"), 1, TIMEOUT).unwrap();
    assert!(
        d.log_text().contains("did not stop within 5 s"),
        "{timeout:?}"
    );
}

#[test]
fn a_second_signal_quits_at_once() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let mut d = Daemon::start_env(
        &in_and_stats(show.port(), stats.port()).text(),
        &[],
        &[("CHOPD_DEBUG_CONTROL", "1")],
    );
    Control::new(d.control_port()).ok("/chopd/debug/stall", vec![OscType::Int(60)]);
    d.signal(libc::SIGTERM);
    let stopping = d.wait_logged(is_stop("begin"), 1, TIMEOUT).unwrap();
    assert_eq!(stopping["cause"], "SIGTERM");
    d.signal(libc::SIGINT);
    let (status, took) = d.wait_exit(TIMEOUT).expect("did not stop");
    assert_eq!(status.code(), Some(128 + libc::SIGINT));
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn a_dead_cook_thread_ends_the_daemon_with_a_failure() {
    // Exiting lets systemd restart it, instead of a daemon without a clock answering pings.
    let (show, stats) = (OscRx::new(), OscRx::new());
    let mut d = Daemon::start_env(
        &in_and_stats(show.port(), stats.port()).text(),
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
    // What the units must say, spelled out.
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
