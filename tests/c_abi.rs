//! Compiles the C tests (tests/c) against include/shmq.h and the library
//! cargo built, and runs them: as C11 with gcc and as C++17 with g++, both
//! with -Wall -Wextra -Werror, against the shared library (through its
//! soname) and the static library; and the C++ wrapper tests as C++17 and
//! C++20, with and without exceptions.
//!
//! It also holds `rust_consumer`, an ignored test that the Python
//! multi-process test runs as a Rust consumer process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where this test build's libraries are: cargo builds every crate type of
/// the library into target/<profile>/deps for the tests (and copies them up
/// to target/<profile> only on `cargo build`), beside this test binary.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().expect("deps dir").to_path_buf()
}

/// A scratch directory with the shared library under its soname
/// (`libshmq.so.0`, as a program linked with -lshmq looks for it) and the
/// development symlink `libshmq.so`.
fn work_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("shmq-c-abi-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let lib = dir.join("lib");
        std::fs::create_dir_all(&lib).expect("scratch dir");
        let so = lib_dir().join("libshmq.so");
        assert!(
            so.exists(),
            "{} is missing: the crate builds a cdylib",
            so.display()
        );
        std::fs::copy(&so, lib.join("libshmq.so.0")).expect("copying libshmq.so");
        std::os::unix::fs::symlink("libshmq.so.0", lib.join("libshmq.so")).expect("symlink");
        dir
    })
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    print!("{stdout}");
    stdout
}

/// Compiles `source` with `compiler` and `flags`, linked against the shared
/// library (or the static one), and runs it with the scratch directory.
fn build_and_run(name: &str, compiler: &str, flags: &[&str], source: &str, link_static: bool) {
    let dir = work_dir();
    let exe = dir.join(name);
    let mut cmd = Command::new(compiler);
    cmd.args(flags)
        .args(["-Wall", "-Wextra", "-Werror", "-pthread"])
        .arg(format!("-I{}", root().join("include").display()))
        .arg(format!("-I{}", root().join("bindings/cpp").display()))
        .arg(root().join("tests/c").join(source))
        .arg("-o")
        .arg(&exe);
    if link_static {
        cmd.arg(lib_dir().join("libshmq.a"))
            .args(["-lpthread", "-ldl", "-lm", "-lrt"]);
    } else {
        let lib = dir.join("lib");
        cmd.arg(format!("-L{}", lib.display()))
            .arg("-lshmq")
            .arg(format!("-Wl,-rpath,{}", lib.display()));
    }
    run(&mut cmd, &format!("compiling {source} as {name}"));
    let data = dir.join(format!("data-{name}"));
    std::fs::create_dir_all(&data).expect("data dir");
    let out = run(Command::new(&exe).arg(&data), &format!("running {name}"));
    assert!(out.contains(" passed, 0 failed"), "{name}: {out}");
}

#[test]
fn c11_against_the_shared_library() {
    build_and_run("c11", "gcc", &["-std=c11"], "test_c_api.c", false);
}

#[test]
fn cxx17_against_the_shared_library() {
    build_and_run(
        "cxx17",
        "g++",
        &["-std=c++17", "-x", "c++"],
        "test_c_api.c",
        false,
    );
}

#[test]
fn c11_against_the_static_library() {
    build_and_run("c11-static", "gcc", &["-std=c11"], "test_c_api.c", true);
}

#[test]
fn cpp_wrapper_cxx17() {
    build_and_run(
        "wrap17",
        "g++",
        &["-std=c++17"],
        "test_cpp_wrapper.cpp",
        false,
    );
}

#[test]
fn cpp_wrapper_cxx20_with_exceptions() {
    build_and_run(
        "wrap20",
        "g++",
        &["-std=c++20", "-DSHMQ_CPP_EXCEPTIONS"],
        "test_cpp_wrapper.cpp",
        false,
    );
}

#[test]
fn shared_library_has_the_soname() {
    let so = lib_dir().join("libshmq.so");
    let out = run(
        Command::new("readelf").arg("-d").arg(&so),
        "readelf -d libshmq.so",
    );
    assert!(
        out.contains("[libshmq.so.0]"),
        "no soname libshmq.so.0:\n{out}"
    );
}

/// A consumer process for bindings/python/tests (not a test by itself):
/// claims from `SHMQ_CONSUME_PATH` until it gets the payload `stop`,
/// acking each and writing each payload as a line to `SHMQ_CONSUME_OUT`.
#[test]
#[ignore = "helper process run by bindings/python/tests/test_multiprocess.py"]
fn rust_consumer() {
    let (Some(path), Some(out)) = (
        std::env::var_os("SHMQ_CONSUME_PATH"),
        std::env::var_os("SHMQ_CONSUME_OUT"),
    ) else {
        panic!("set SHMQ_CONSUME_PATH and SHMQ_CONSUME_OUT");
    };
    let q = shmq::Queue::open(&path).expect("open");
    let mut seen = Vec::new();
    loop {
        let m = q
            .claim(std::time::Duration::from_secs(30))
            .expect("claim (nothing for 30 s)");
        let data = m.data().expect("read");
        m.ack().expect("ack");
        if data == b"stop" {
            break;
        }
        seen.push(String::from_utf8(data).expect("utf-8 payload"));
    }
    let mut text = seen.join("\n");
    text.push('\n');
    std::fs::write(out, text).expect("writing the consumer's output");
}
