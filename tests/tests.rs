mod core;
mod service;
mod util;
