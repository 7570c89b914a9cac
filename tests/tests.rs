mod core;
mod hardening;
mod midi;
mod service;
mod util;
