//! Links the libpython this crate was built against by absolute path (RUNPATH), so the binary and
//! the test binaries never pick up another libpython on the loader path, and records which Python
//! that is so that chopd can refuse to run on another one (docs/platform.md, docs/service.md).
//!
//! `CHOPD_PYTHON_HOME` names where that same interpreter lives at run time when it is not where
//! the build found it: `scripts/install` builds against the `python3` on `PATH` and copies that
//! interpreter to a directory the service can read; RUNPATH then points there.
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CHOPD_PYTHON_HOME");
    // Py_3_12, … for the parts of the embedding that differ between Python versions.
    pyo3_build_config::use_pyo3_cfgs();
    let config = pyo3_build_config::get();
    let exe = config
        .executable()
        .map(str::to_string)
        .expect("pyo3 found no Python interpreter (set PYO3_PYTHON)");
    // The full version (pyo3 knows only X.Y) and the interpreter's home, from the interpreter.
    let out = Command::new(&exe)
        .args([
            "-c",
            "import sys; print('%d.%d.%d' % sys.version_info[:3]); print(sys.base_prefix)",
        ])
        .output()
        .unwrap_or_else(|e| panic!("run {exe}: {e}"));
    assert!(out.status.success(), "{exe} -c …: {:?}", out);
    let text = String::from_utf8(out.stdout).expect("python printed UTF-8");
    let mut lines = text.lines();
    let version = lines.next().expect("version").to_string();
    let mut home = lines.next().expect("base_prefix").to_string();
    let mut lib_dir = config.lib_dir().unwrap_or_default().to_string();
    match std::env::var("CHOPD_PYTHON_HOME") {
        Ok(h) if !h.is_empty() => {
            // Same layout as the build interpreter, moved: lib_dir relative to its home.
            let rel = Path::new(&lib_dir)
                .strip_prefix(&home)
                .map(Path::to_path_buf)
                .unwrap_or_else(|_| "lib".into());
            lib_dir = Path::new(&h).join(rel).display().to_string();
            home = h;
            println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
        }
        _ => {
            pyo3_build_config::add_libpython_rpath_link_args();
            // The kernel reports the loaded library by its real path: compare like with like.
            if let Ok(real) = std::fs::canonicalize(&lib_dir) {
                lib_dir = real.display().to_string();
            }
        }
    }
    println!("cargo:rustc-env=CHOPD_BUILT_PYTHON_VERSION={version}");
    println!("cargo:rustc-env=CHOPD_BUILT_PYTHON_HOME={home}");
    println!("cargo:rustc-env=CHOPD_BUILT_PYTHON_LIBDIR={lib_dir}");
    println!(
        "cargo:rustc-env=CHOPD_BUILT_PYTHON_SHARED={}",
        if config.shared() { "1" } else { "0" }
    );
}
