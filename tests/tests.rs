mod core;
mod hardening;
mod midi;
mod util;
