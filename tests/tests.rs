mod core;
mod hardening;
mod script;
mod service;
mod util;
