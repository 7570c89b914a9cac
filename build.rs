//! Link the libpython this crate was built against by absolute path (RUNPATH), so the binary
//! and the test binaries never pick up another libpython on the loader path (see PLATFORM.md).
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
    // Py_3_12, … for the parts of the embedding that differ between Python versions.
    pyo3_build_config::use_pyo3_cfgs();
}
