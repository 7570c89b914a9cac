//! The Info CHOP of the daemon itself (`op = "/"`): the clock's frames and lateness, exported.

use crate::util::*;

#[test]
fn info_of_the_daemon_reports_the_clock() {
    let rx = OscRx::new();
    let cfg = in_to_show(rx.port()).info("clock", "/", TO_SHOW);
    let _d = Daemon::start(&cfg.text(), &[]);
    // Frames count up while the clock runs.
    let first = rx.value_at("/show/frames");
    rx.until(TIMEOUT, |m| {
        m.addr == "/show/frames" && float(&m.args[0]) >= first + 10.0
    });
    rx.until(TIMEOUT, |m| m.addr == "/show/lateness_p99");
}
