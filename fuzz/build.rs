//! Link the libpython this crate was built against by absolute path (RUNPATH), so the binary
//! and the test binaries never pick up another libpython on the loader path (see docs/platform.md).
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
}
