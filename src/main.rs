//! The `chopd` command line. The only place that chooses exit codes: 0 ok, 1 runtime failure,
//! 2 usage, 78 (EX_CONFIG) bad config.

use std::path::PathBuf;
use std::process::ExitCode;

use chopd::config;
use chopd::daemon::{self, ConfigRejected, Shared};

const USAGE: &str = "\
usage:
  chopd run CONFIG      run the daemon on CONFIG
  chopd check CONFIG    report every problem of CONFIG as file:line:col (exit 0, or 78)
  chopd schema          print the JSON Schema of the config
  chopd --version";

const EX_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["run", path] => {
            chopd::logging::init();
            match daemon::run(&PathBuf::from(path), Shared::default()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.is::<ConfigRejected>() => {
                    eprintln!("chopd: {e:#}");
                    ExitCode::from(EX_CONFIG)
                }
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        ["check", path] => match config::load(&PathBuf::from(path)) {
            Ok(c) => {
                for w in &c.warnings {
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
        ["schema"] => {
            println!("{:#}", config::schema::schema());
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
