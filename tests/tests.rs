//! The integration tests: one binary, one module per subject, all on the harness in `util`.

mod config;
mod control;
mod dat;
mod export;
mod info;
mod midi;
mod midiout;
mod midisync;
mod native;
mod native_shape;
mod network;
mod osc;
mod osc_out;
mod osc_tcp;
mod oscquery;
mod react;
mod reliability;
mod reload;
mod script;
mod service;
mod state;
mod util;
