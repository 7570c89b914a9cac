mod core;
mod hardening;
mod util;
mod script;
