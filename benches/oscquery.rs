//! What the OSCQuery server costs chopd: CPU of the release binary with and without clients.
//!
//! ```text
//! cargo bench --bench oscquery -- [--seconds S] [--runs N]
//! ```
//! - **listen**: a Script CHOP makes 1000 channels, every one changing every frame at 60 fps;
//!   4 websocket clients LISTEN to all of them (each gets every value of every frame as binary
//!   OSC). Against the same show with `[oscquery]` and no client.
//! - **idle page**: a show with an OSC In of 8 channels and no traffic; one client does what an
//!   open page does (LISTEN to /project1 and the clock's statistics, GET /_chopd/log every 2 s). Against the
//!   same show with no client.
//!
//! Prints per run the process's CPU (% of one core) and the oscquery thread's, then medians and
//! the added CPU. docs/oscquery.md quotes the numbers.

#[path = "e2e/chopd.rs"]
#[allow(dead_code)]
mod chopd;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chopd::{Chopd, ProcSample};
use tokio_tungstenite::tungstenite::{self, Message};

const MANY: &str = "\
import numpy as np
def onGetCookLevel(scriptOp):
    return CookLevel.ALWAYS
def onCook(scriptOp):
    n = scriptOp.fetch('n', 0) + 1
    scriptOp.store('n', n)
    if scriptOp.numChans != 1000:
        scriptOp.clear()
        for i in range(1000):
            scriptOp.appendChan('c%d' % i)
    scriptOp.copyNumpyArray((np.arange(1000, dtype=np.float32) + n).reshape(1000, 1))
";

fn bin() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("release/chopd")
}

fn oq_port(c: &Chopd) -> u16 {
    let log = c.log.lock().unwrap();
    let line = log
        .iter()
        .find(|l| l.contains("kind=oscquery"))
        .expect("no oscquery line");
    let addr = line
        .split("addr=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// What the web page LISTENs to (page.html, `connect`).
const PAGE_LISTENS: &[&str] = &[
    "/project1",
    "/chopd/rate",
    "/chopd/dropped_frames",
    "/chopd/lateness_p50",
    "/chopd/lateness_p99",
    "/chopd/rss_mb",
];

/// A client that LISTENs to `paths` and reads everything until `stop`; counts bytes.
fn client(port: u16, paths: &[&str], poll_log: bool, stop: Arc<AtomicBool>, bytes: Arc<AtomicU64>) {
    let (mut ws, _) = tungstenite::connect(format!("ws://127.0.0.1:{port}/")).unwrap();
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
    }
    for p in paths {
        let cmd = format!("{{\"COMMAND\":\"LISTEN\",\"DATA\":\"{p}\"}}");
        ws.send(Message::Text(cmd.into())).unwrap();
    }
    let mut last_poll = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Ok(m) = ws.read() {
            bytes.fetch_add(m.len() as u64, Ordering::Relaxed);
        }
        if poll_log && last_poll.elapsed() >= Duration::from_secs(2) {
            last_poll = Instant::now();
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"GET /_chopd/log HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let _ = s.read_to_end(&mut Vec::new());
        }
    }
}

struct Run {
    cpu: f64,
    oscquery: f64,
    mb_per_s: f64,
}

fn thread_ns(s: &ProcSample, name: &str) -> u64 {
    s.threads
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, ns)| ns)
        .sum()
}

fn run(
    config: &str,
    files: &[(String, String)],
    clients: usize,
    paths: &[&str],
    poll_log: bool,
    secs: f64,
) -> Run {
    let c = Chopd::start(&bin(), &[], config, files, false).expect("start chopd");
    let port = oq_port(&c);
    let stop = Arc::new(AtomicBool::new(false));
    let bytes = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (stop, bytes, paths) = (
                stop.clone(),
                bytes.clone(),
                paths.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            );
            std::thread::spawn(move || {
                let p: Vec<&str> = paths.iter().map(String::as_str).collect();
                client(port, &p, poll_log, stop, bytes)
            })
        })
        .collect();
    // Warm-up: the script's channels exist and every client is streaming.
    std::thread::sleep(Duration::from_secs(2));
    let (a, b0) = (c.sample(), bytes.load(Ordering::Relaxed));
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (b, b1) = (c.sample(), bytes.load(Ordering::Relaxed));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    let wall = b.at.unwrap().duration_since(a.at.unwrap()).as_secs_f64();
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Run {
        cpu: (b.ticks - a.ticks) as f64 / tick / wall * 100.0,
        oscquery: (thread_ns(&b, "oscquery") - thread_ns(&a, "oscquery")) as f64 / 1e9 / wall
            * 100.0,
        mb_per_s: (b1 - b0) as f64 / wall / 1e6,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn report(name: &str, runs: &[Run]) -> (f64, f64) {
    for (i, r) in runs.iter().enumerate() {
        println!(
            "  {name} run {i}: cpu {:.2} %  oscquery thread {:.2} %  streamed {:.2} MB/s",
            r.cpu, r.oscquery, r.mb_per_s
        );
    }
    let cpu = median(runs.iter().map(|r| r.cpu).collect());
    let oq = median(runs.iter().map(|r| r.oscquery).collect());
    println!("  {name} median: cpu {cpu:.2} %  oscquery thread {oq:.2} %");
    (cpu, oq)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        return; // `cargo test --all-targets` builds it; only `cargo bench` runs it
    }
    let opt = |k: &str, d: f64| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (secs, runs) = (opt("--seconds", 10.0), opt("--runs", 3.0) as usize);
    assert!(
        bin().exists(),
        "build the release binary first: cargo build --release"
    );
    let oq = "[oscquery]\nport = 0\n";
    let listen = format!("rate = 60\n{oq}\n[[operator]]\nname = \"many\"\ntype = \"script\"\ncallbacks = \"many.py\"\n");
    let files = vec![("many.py".to_string(), MANY.to_string())];
    println!("== LISTEN: 1000 channels changing every frame at 60 fps");
    let base: Vec<Run> = (0..runs)
        .map(|_| run(&listen, &files, 0, &[], false, secs))
        .collect();
    let (b, _) = report("no client", &base);
    let four: Vec<Run> = (0..runs)
        .map(|_| run(&listen, &files, 4, &["/project1/many/chan"], false, secs))
        .collect();
    let (f, t) = report("4 clients", &four);
    println!(
        "  added by 4 clients: {:.2} % of a core (oscquery thread {t:.2} %)",
        f - b
    );
    let show = format!("rate = 60\n{oq}\n[[operator]]\nname = \"in\"\ntype = \"oscin\"\nport = 0\nlocal_address = \"127.0.0.1\"\n");
    println!("== an idle open page (one client as the page: LISTEN what it shows, log every 2 s)");
    let base: Vec<Run> = (0..runs)
        .map(|_| run(&show, &[], 0, &[], false, secs))
        .collect();
    let (b, _) = report("no page", &base);
    let page: Vec<Run> = (0..runs)
        .map(|_| run(&show, &[], 1, PAGE_LISTENS, true, secs))
        .collect();
    let (p, t) = report("open page", &page);
    println!(
        "  added by an idle page: {:.2} % of a core (oscquery thread {t:.2} %)",
        p - b
    );
}
