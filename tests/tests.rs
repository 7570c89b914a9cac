mod core;
mod hardening;
mod util;
