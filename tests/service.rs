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
    proc_status(pid, "SigIgn")
        .and_then(|m| u64::from_str_radix(&m, 16).ok())
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
        "Environment=PYTHONHOME=",
        "StartLimitIntervalSec=0",
        "IPAddressDeny=any",
        "IPAddressAllow=localhost ",
        "PrivateUsers=yes",
        "ProtectProc=invisible",
        "MemoryDenyWriteExecute=yes",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged @resources",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(line)),
            "chopd.service lacks {line}"
        );
    }
}

/// The binary's RUNPATH (where the loader looks for libpython first).
fn runpath(bin: &std::path::Path) -> Option<String> {
    let out = std::process::Command::new("readelf")
        .arg("-d")
        .arg(bin)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("(RUNPATH)"))?;
    Some(line.split('[').nth(1)?.trim_end_matches(']').to_string())
}

/// Runs `sh -c SCRIPT` in a mount namespace of its own (the units' `ProtectHome=yes` is such a
/// namespace with a tmpfs over /home and /root) until it exits or logs `ready`; returns the
/// exit status (None: it became ready and was stopped) and stderr.
fn run_unshared(script: &str, env: &[(&str, &str)]) -> (Option<std::process::ExitStatus>, String) {
    use std::io::{BufRead, BufReader};
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["-m", "sh", "-c", script])
        .env("CHOPD_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn unshare");
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + TIMEOUT;
    let mut log = String::new();
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                let ready = line.trim_end().ends_with(" ready");
                log.push_str(&line);
                log.push('\n');
                if ready {
                    // SAFETY: a signal to the child we spawned (sh exec'd chopd: same pid).
                    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
                    let _ = child.wait();
                    return (None, log);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return (Some(child.wait().unwrap()), log);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!("neither exit nor ready within {TIMEOUT:?}; log:\n{log}");
            }
        }
    }
}

/// The directory to hide so that the loader cannot find the build's libpython: the home
/// directory RUNPATH points into, as `ProtectHome=yes` hides it, or else RUNPATH itself.
fn hidden_build_home(runpath: &str) -> String {
    let parts: Vec<&str> = runpath.split('/').collect();
    match parts.as_slice() {
        ["", "root", ..] => "/root".to_string(),
        ["", "home", user, ..] => format!("/home/{user}"),
        _ => runpath.to_string(),
    }
}

#[test]
fn a_service_that_cannot_read_the_build_python_refuses_to_start() {
    let bin = std::path::Path::new(BIN);
    let Some(rp) = runpath(bin) else {
        eprintln!("skipped: {BIN} has no RUNPATH (libpython linked in or found by the loader)");
        return;
    };
    if !std::process::Command::new("unshare")
        .args(["-m", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("skipped: `unshare -m` is not permitted here (needs root)");
        return;
    }
    let home = hidden_build_home(&rp);
    let dir = TempDir::new();
    for p in [bin, dir.0.as_path()] {
        if p.starts_with(&home) {
            eprintln!(
                "skipped: {} is under {home}, which the test must hide",
                p.display()
            );
            return;
        }
    }
    // No Script CHOP: the check does not wait for a config that needs Python.
    let config = dir.write("chopd.toml", &Config::new().control().text());
    let env = [
        ("BUILD_HOME", home.as_str()),
        ("CONFIG", config.to_str().unwrap()),
    ];

    // The same namespace without the tmpfs: it starts.
    let (status, log) = run_unshared(&format!("exec {BIN} run \"$CONFIG\""), &env);
    assert!(status.is_none(), "{status:?}\n{log}");

    let (status, log) = run_unshared(
        &format!("mount -t tmpfs none \"$BUILD_HOME\" && exec {BIN} run \"$CONFIG\""),
        &env,
    );
    let status = status.unwrap_or_else(|| panic!("started on another libpython:\n{log}"));
    if status.code() == Some(127) {
        // No other libpython of that name on the machine: the loader itself refuses.
        eprintln!("skipped: no fallback libpython here, the loader refused: {log}");
        return;
    }
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.lines()
            .any(|l| fields(l).get("python").map(String::as_str) == Some("mismatch")),
        "no python=mismatch line:\n{log}"
    );
    assert!(
        log.contains(&format!(
            "chopd was built for Python {}",
            chopd::python::BUILT_VERSION
        )) && log.contains(&format!(" at {rp} but loaded Python "))
            && log.contains("docs/service.md, \"Python\""),
        "{log}"
    );
}

#[test]
fn the_units_score_at_most_1_5_in_systemd_analyze_security() {
    let dir = TempDir::new();
    for unit in ["chopd.service", "chopd@.service"] {
        let text = std::fs::read_to_string(repo().join("systemd").join(unit)).unwrap();
        dir.write(unit, &text.replace("/usr/local/bin/chopd", BIN));
    }
    for unit in ["chopd.service", "chopd@stage.service"] {
        let Ok(out) = std::process::Command::new("systemd-analyze")
            .current_dir(&dir.0)
            .args(["security", "--offline=yes", unit])
            .output()
        else {
            eprintln!("skipped: systemd-analyze is missing (apt-get install systemd)");
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() && text.trim().is_empty() {
            eprintln!(
                "skipped: this systemd-analyze cannot rate a unit offline: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        // → Overall exposure level for chopd.service: 1.2 OK 🙂
        let score: f64 = text
            .lines()
            .find_map(|l| {
                l.split_once("Overall exposure level for ")?
                    .1
                    .split_once(": ")
            })
            .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
        assert!(score <= 1.5, "{unit} scores {score}:\n{text}");
    }
}

/// Builds and installs for real: a cargo build of its own in `target/install-test` (minutes the
/// first time), hence not in the default run: `cargo test -- --ignored installed`.
#[test]
#[ignore]
fn the_installed_service_runs_on_the_installed_python() {
    let stage = TempDir::new();
    let out = std::process::Command::new(repo().join("scripts/install"))
        .args(["--destdir", stage.0.to_str().unwrap(), "--profile", "dev"])
        .env("CARGO_TARGET_DIR", repo().join("target/install-test"))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let bin = stage.path("usr/local/bin/chopd");
    let rp = runpath(&bin).expect("an installed chopd with a RUNPATH");
    let unit = std::fs::read_to_string(stage.path("etc/systemd/system/chopd.service")).unwrap();
    let home = unit
        .lines()
        .find_map(|l| l.strip_prefix("Environment=PYTHONHOME="))
        .unwrap_or_else(|| panic!("no PYTHONHOME in the unit:\n{unit}"))
        .to_string();
    assert!(
        !["/root", "/home/", "/run/user/"]
            .iter()
            .any(|h| rp.starts_with(h)),
        "RUNPATH {rp} is hidden from the service"
    );
    assert!(
        rp.starts_with(&format!("{home}/")),
        "RUNPATH {rp}, PYTHONHOME {home}"
    );
    if home != "/opt/chopd/python" {
        eprintln!("the build's Python ({home}) is used in place: nothing more to check");
        return;
    }
    let lib = std::fs::read_dir(stage.path(&rp[1..]))
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("libpython"));
    assert!(lib, "no libpython in {rp} of the stage");

    // As the unit runs it: the installed tree at /opt/chopd, the build's home hidden.
    let dir = TempDir::new();
    let config = dir.write(
        "chopd.toml",
        &Config::new().control().script("np", "np.py", "", "").text(),
    );
    dir.write(
        "np.py",
        "import numpy\n\ndef onCook(scriptOp):\n    scriptOp.numpyArray()\n",
    );
    let build_home = hidden_build_home(chopd::python::BUILT_LIB_DIR);
    let (status, log) = run_unshared(
        "mount -t tmpfs none /opt && mkdir /opt/chopd && mount --bind \"$STAGE/opt/chopd\" \
         /opt/chopd && mount -t tmpfs none \"$BUILD_HOME\" && exec \"$STAGE/usr/local/bin/chopd\" \
         run \"$CONFIG\"",
        &[
            ("STAGE", stage.0.to_str().unwrap()),
            ("BUILD_HOME", &build_home),
            ("CONFIG", config.to_str().unwrap()),
            ("PYTHONHOME", &home),
        ],
    );
    assert!(status.is_none(), "{status:?}\n{log}");
    let started = log
        .lines()
        .map(fields)
        .find(|f| f.contains_key("python"))
        .unwrap_or_else(|| panic!("no `python started` line:\n{log}"));
    assert_eq!(started["prefix"], "/opt/chopd/python", "{log}");
    assert_ne!(started["numpy"], "not installed", "{log}");
}

#[test]
fn a_numpy_script_runs_under_the_units_system_call_filter() {
    // scripts/sandbox emulates SystemCallFilter= and MemoryDenyWriteExecute= of the unit.
    let dir = TempDir::new();
    let config = dir.write(
        "chopd.toml",
        &Config::new()
            .control()
            .oscin("in", "")
            .script("np", "np.py", "\"in\"", "")
            .text(),
    );
    dir.write(
        "np.py",
        "import numpy\n\ndef onCook(scriptOp):\n    scriptOp.copy(scriptOp.inputs[0])\n    \
         scriptOp.numpyArray()[:] = numpy.linalg.inv(numpy.eye(4) * 2.0)[0, 0]\n",
    );
    let sandbox = repo().join("scripts/sandbox");
    let (status, log) = run_unshared(
        &format!("exec \"$SANDBOX\" {BIN} run \"$CONFIG\""),
        &[
            ("SANDBOX", sandbox.to_str().unwrap()),
            ("CONFIG", config.to_str().unwrap()),
        ],
    );
    if !log.contains("sandbox: ") {
        eprintln!("skipped: scripts/sandbox cannot run here (libseccomp, systemd-analyze): {log}");
        return;
    }
    assert!(status.is_none(), "{status:?}\n{log}");
    assert!(log.contains("MemoryDenyWriteExecute=yes"), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
    let started = log
        .lines()
        .map(fields)
        .find(|f| f.contains_key("python"))
        .unwrap_or_else(|| panic!("no `python started` line:\n{log}"));
    assert_ne!(started["numpy"], "not installed", "{log}");
}
