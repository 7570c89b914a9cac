//! chopd: a headless control-signal daemon. A TOML config describes a graph of TouchDesigner-style
//! channel operators (CHOPs); a fixed clock folds incoming OSC and MIDI into channels, cooks the
//! graph (Python Script CHOPs included) and exports channels to OSC addresses.
//!
//! # Layout
//! Models below machinery; every import points down this list (the TouchDesigner object classes
//! in `python::api` are the one circle: they reference each other as TouchDesigner's objects do).
//!
//! The floor, knowing nothing of operators:
//! - [`pattern`]: TouchDesigner name patterns.
//! - [`path`]: TouchDesigner operator paths (`/project1/show/gain`) and how they resolve.
//! - [`clock`]: the frame clock with absolute deadlines and lateness statistics.
//! - [`logging`]: the journal-friendly log format and the one log rate limiter.
//! - [`osc`]: the OSC wire format (framing and depth checks, decoding, encoding, bundle packing,
//!   time tags) that OSC In, export, the control port and `chopd ctl` share.
//! - [`wake`]: the doorbell receive threads ring to wake the cook thread between frames.
//!
//! The model:
//! - [`cook`]: the channel data, DAT content and the operator contract: what a cook sees and
//!   reports.
//! - [`config`]: TOML → checked model, every problem reported as `file:line:col`; the contract
//!   through which operator kinds check their keys and build; the cook order.
//!
//! The machinery:
//! - [`python`]: the embedded interpreter, its watchdog, and the TouchDesigner Python objects.
//! - [`chop`]: one module per operator kind, and the list of kinds.
//! - [`export`]: Channel Name is Path:Parameter, export tables, OSC sending.
//! - [`graph`]: the running operator graph: cook decisions, export, in-place reload; no I/O of
//!   its own.
//! - [`daemon`]: the run loop, signals, control port, status, reload, the show state kept
//!   across restarts, and systemd notification.
//!
//! `main.rs` is the command line and the only place that chooses exit codes.

pub mod chop;
pub mod clock;
pub mod config;
pub mod cook;
pub mod daemon;
pub mod export;
pub mod graph;
pub mod logging;
pub mod osc;
pub mod path;
pub mod pattern;
pub mod python;
pub mod wake;
