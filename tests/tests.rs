mod core;
mod util;
