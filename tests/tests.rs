mod core;
mod hardening;
mod hardening_scripts;
mod midi;
mod script;
mod service;
mod util;
