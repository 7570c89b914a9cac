mod core;
mod hardening;
mod midi;
mod script;
mod service;
mod util;
