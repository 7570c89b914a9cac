//! The `chopd` command line. The only place that chooses exit codes: 0 ok, 1 runtime failure
//! (or a stop that overran its bound), 2 usage, 78 (EX_CONFIG) bad config, 128 + signal when a
//! second SIGINT/SIGTERM cut the stop short.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use chopd::config;
use chopd::daemon::{self, ConfigRejected, Liveness, Stopped};

const USAGE: &str = "\
usage:
  chopd run CONFIG      run the daemon on CONFIG
  chopd check CONFIG    report every problem of CONFIG as file:line:col (exit 0, or 78)
  chopd ctl TARGET ...  ask a running daemon over its control port (chopd ctl --help)
  chopd schema          print the JSON Schema of the config
  chopd midi-ports      list the MIDI ports a midiin `device` can match
  chopd --version";

const EX_CONFIG: u8 = 78;

/// SIGHUP asks the daemon to reload, but its default action ends the process, and what turns it
/// into a reload (the control runtime's handler) exists only a few milliseconds into `run`. So
/// it is ignored from before `main` — an ELF constructor; only the dynamic loader runs earlier —
/// until that handler takes over. A SIGHUP in between is dropped, which loses nothing: the
/// config chopd then reads is the one the sender meant. The other commands get back the
/// disposition chopd inherited (a `chopd ctl` on a terminal that hangs up ends, as it did).
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static IGNORE_SIGHUP_FROM_THE_START: extern "C" fn() = ignore_sighup;

/// The disposition of SIGHUP before [`ignore_sighup`] (`SIG_ERR`: not changed).
static INHERITED_SIGHUP: AtomicUsize = AtomicUsize::new(libc::SIG_ERR);

extern "C" fn ignore_sighup() {
    // SAFETY: signal(2) with SIG_IGN, before any thread exists.
    let before = unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
    INHERITED_SIGHUP.store(before, Ordering::Relaxed);
}

fn restore_sighup() {
    let before = INHERITED_SIGHUP.load(Ordering::Relaxed);
    if before != libc::SIG_ERR {
        // SAFETY: puts back the disposition signal(2) returned, before any thread exists.
        unsafe {
            libc::signal(libc::SIGHUP, before);
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if !matches!(args.as_slice(), ["run", _]) {
        restore_sighup();
    }
    match args.as_slice() {
        ["run", path] => {
            chopd::logging::init();
            if let Err(e) = chopd::python::check_libpython() {
                tracing::error!(python = "mismatch", "{e}");
                return ExitCode::FAILURE;
            }
            let result = daemon::run(&PathBuf::from(path), Liveness::default());
            if result.is_ok() {
                // A clean stop dropped the graph: MIDI In closes its MIDI clients on threads of
                // its own; let them finish (bounded).
                chopd::chop::midiin::close_all(std::time::Duration::from_millis(500));
            }
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.is::<ConfigRejected>() => {
                    eprintln!("chopd: {e:#}");
                    ExitCode::from(EX_CONFIG)
                }
                // Already logged. The cook thread may still be running: returning exits the
                // process, which is the point.
                Err(e) => match e.downcast_ref::<Stopped>() {
                    Some(Stopped::Forced(sig)) => ExitCode::from(128 + *sig as u8),
                    Some(Stopped::Timeout) => ExitCode::FAILURE,
                    None => {
                        tracing::error!("{e:#}");
                        ExitCode::FAILURE
                    }
                },
            }
        }
        ["check", path] => match config::load(&PathBuf::from(path), chopd::chop::KINDS) {
            Ok(c) => {
                for w in c
                    .warnings
                    .iter()
                    .chain(&chopd::daemon::exposure::exposure(&c))
                {
                    println!("{w}");
                }
                println!("{path}: ok ({} operators)", c.operators.len());
                ExitCode::SUCCESS
            }
            Err(diags) => {
                for d in &diags {
                    println!("{d}");
                }
                ExitCode::from(EX_CONFIG)
            }
        },
        // MIDI In's port list (src/chop/midiin/ports.rs).
        ["midi-ports"] => match chopd::chop::midiin::list_ports() {
            Ok(ports) => {
                for p in &ports {
                    println!("{p}");
                }
                if ports.is_empty() {
                    eprintln!(
                        "chopd: no MIDI ports ({} backend)",
                        chopd::chop::midiin::BACKEND
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("chopd: MIDI is unavailable: {e}");
                ExitCode::FAILURE
            }
        },
        ["ctl", rest @ ..] => match daemon::ctl::run(rest) {
            Ok(out) => {
                println!("{out}");
                ExitCode::SUCCESS
            }
            Err(e @ daemon::ctl::CtlError::Usage(_)) => {
                eprintln!("chopd ctl: {e}");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("chopd ctl: {e}");
                ExitCode::FAILURE
            }
        },
        ["schema"] => {
            println!("{:#}", config::schema::schema(chopd::chop::KINDS));
            ExitCode::SUCCESS
        }
        ["--version"] | ["-V"] => {
            println!("chopd {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        ["--help"] | ["-h"] | ["help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
