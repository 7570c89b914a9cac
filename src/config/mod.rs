//! Config: TOML text → checked model, with every problem reported at once as
//! `file:line:col: error: …` (sorted, with "did you mean").
//!
//! - [`model`]: the checked config, the only config types the rest of the daemon sees.
//! - `raw`: the serde mirror of the file's common parts, seen by nothing outside this module.
//! - [`checker`]: the checker's tools (typed reading, ranges, patterns), which kinds use too;
//!   `check`: the file read key by key; [`refs`]: whole-config checks and the cook order.
//! - [`kind`]: the contract through which operator kinds check their own keys; their checked
//!   settings build the operator (`model::Settings`).
//! - [`tables`]: MIDI channel lists and export tables; [`diag`]: diagnostics; [`schema`]: the
//!   JSON Schema for editors.
//!
//! Checking is pure apart from reading files the config names (export tables; script files are
//! only checked for existence here, the Script CHOP loads them).

mod check;
pub mod checker;
pub mod diag;
pub mod kind;
pub mod model;
mod raw;
pub mod refs;
pub mod schema;
pub mod tables;

use std::path::Path;

pub use checker::Checker;
pub use diag::{Diagnostic, Severity};
pub use kind::{Kind, Kinds, OperatorKind};
pub use model::*;
pub use tables::{export_rows, parse_export_table, parse_midi_channels};

use diag::Diagnostics;

/// Reads and checks a config file. `Err` holds every error (and the warnings) sorted by
/// position; `Ok` holds the model with its warnings.
pub fn load(path: &Path, kinds: &Kinds) -> Result<Config, Vec<Diagnostic>> {
    let label = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic {
            file: label.clone(),
            line: 1,
            col: 1,
            severity: Severity::Error,
            message: format!("cannot read config: {e}"),
        }]
    })?;
    check_str(path, &src, kinds)
}

/// Checks config text as if read from `path` (relative files resolve next to it).
pub fn check_str(path: &Path, src: &str, kinds: &Kinds) -> Result<Config, Vec<Diagnostic>> {
    let label = path.display().to_string();
    let mut d = Diagnostics::new(&label, src);
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut cx = Checker {
        d: &mut d,
        dir: &dir,
    };
    let config = check::Reader { cx: &mut cx, kinds }.check(path, src);
    let has_errors = d.has_errors();
    let list = d.into_sorted();
    match config {
        Some(mut c) if !has_errors => {
            c.warnings = list;
            Ok(c)
        }
        _ => Err(list),
    }
}

#[cfg(test)]
mod tests;
