//! chopd: a headless control-signal daemon. A TOML config describes a graph of TouchDesigner-style
//! channel operators (CHOPs); a fixed clock folds incoming OSC and MIDI into channels, cooks the
//! graph (Python Script CHOPs included) and exports channels to OSC addresses.
//!
//! # Layout
//! The dataflow, stage by stage:
//! - [`config`]: TOML → checked model; every problem reported as `file:line:col`.
//! - [`graph`]: the running operator graph: topological order, cook decisions, export; no I/O of
//!   its own.
//! - [`clock`]: the frame clock with absolute deadlines and lateness statistics.
//! - [`chop`]: the channel data model and one module per operator kind.
//! - [`export`]: Channel Name is Path:Parameter, export tables, OSC bundling and sending.
//! - [`daemon`]: the run loop, signals, control port, reload and systemd notification.
//! - [`pattern`]: TouchDesigner name patterns.
//!
//! Beneath them all, [`osc`]: the OSC wire format (framing and depth checks, decoding, encoding,
//! bundle packing, time tags) that OSC In, export, the control port and `chopd ctl` share.

pub mod chop;
pub mod clock;
pub mod config;
pub mod cook;
pub mod daemon;
pub mod export;
pub mod graph;
pub mod logging;
pub mod osc;
pub mod pattern;
pub mod python;
