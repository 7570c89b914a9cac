mod core;
mod hardening;
mod service;
mod util;
mod script;
