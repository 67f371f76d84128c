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

/// The repository's root (this crate is bindings/c).
fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
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
        remove_stale_work_dirs();
        let dir = std::env::temp_dir().join(format!("shmq-c-abi-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let lib = dir.join("lib");
        std::fs::create_dir_all(&lib).expect("scratch dir");
        let so = lib_dir().join("libshmq.so");
        assert!(
            so.exists(),
            "{} is missing: `cargo test` does not build it; build it first with \
             `cargo build -p shmq-c` (with this test's profile and target directory)",
            so.display()
        );
        std::fs::copy(&so, lib.join("libshmq.so.0")).expect("copying libshmq.so");
        std::os::unix::fs::symlink("libshmq.so.0", lib.join("libshmq.so")).expect("symlink");
        dir
    })
}

/// Removes the scratch directories of earlier runs whose process is gone
/// (each run keeps its own for inspection until then).
fn remove_stale_work_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("shmq-c-abi-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
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
    build_and_run_with(name, compiler, flags, source, link_static, &[]);
}

/// [`build_and_run`] with environment variables for the run.
fn build_and_run_with(
    name: &str,
    compiler: &str,
    flags: &[&str],
    source: &str,
    link_static: bool,
    env: &[(&str, &str)],
) {
    let dir = work_dir();
    let exe = dir.join(name);
    let mut cmd = Command::new(compiler);
    cmd.args(flags)
        .args(["-Wall", "-Wextra", "-Werror", "-pthread"])
        .arg(format!("-I{}", root().join("include").display()))
        .arg(format!("-I{}", root().join("bindings/cpp").display()))
        .arg(root().join("bindings/c/tests/c").join(source))
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
    let out = run(
        Command::new(&exe).arg(&data).envs(env.iter().copied()),
        &format!("running {name}"),
    );
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

/// Threads passing one handle between calls, racing to call at once,
/// closing it while another calls, and forking while one calls
/// (tests/c/test_handle_stress.c), with membarrier (the owner's calls take
/// no lock).
#[test]
fn handle_stress() {
    build_and_run("stress", "gcc", &["-std=c11"], "test_handle_stress.c", true);
}

/// The same without membarrier: every call takes the handle with a CAS.
#[test]
fn handle_stress_without_membarrier() {
    build_and_run_with(
        "stress-cas",
        "gcc",
        &["-std=c11"],
        "test_handle_stress.c",
        true,
        &[("SHMQ_NO_MEMBARRIER", "1")],
    );
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
    let q = engine::Queue::open(&path).expect("open");
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

/// `pkg-config --cflags --libs shmq` for the installed prefix: through
/// pkg-config when it is installed, else by reading the .pc file the same way
/// (variables, then Cflags and Libs), so the test runs on a machine without it.
fn pkg_config_flags(prefix: &Path) -> Vec<String> {
    let pc_dir = prefix.join("lib/pkgconfig");
    if let Ok(out) = Command::new("pkg-config")
        .args(["--cflags", "--libs", "shmq"])
        .env("PKG_CONFIG_PATH", &pc_dir)
        .output()
    {
        assert!(
            out.status.success(),
            "pkg-config: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
    }
    let text = std::fs::read_to_string(pc_dir.join("shmq.pc")).expect("shmq.pc");
    let mut vars: Vec<(String, String)> = Vec::new();
    let expand = |s: &str, vars: &[(String, String)]| {
        let mut s = s.to_string();
        for _ in 0..8 {
            for (k, v) in vars {
                s = s.replace(&format!("${{{k}}}"), v);
            }
        }
        s
    };
    let mut flags = Vec::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=').filter(|(k, _)| !k.contains(':')) {
            let v = expand(v.trim(), &vars);
            vars.push((k.trim().to_string(), v));
        } else if let Some(v) = line
            .strip_prefix("Cflags:")
            .or_else(|| line.strip_prefix("Libs:"))
        {
            flags.extend(expand(v, &vars).split_whitespace().map(str::to_string));
        }
    }
    flags
}

/// The documented install step (bindings/c/install.sh, here from the
/// libraries of this build), then the C and C++ examples built with
/// `$(pkg-config --cflags --libs shmq)` and run: a producer and a consumer.
#[test]
fn install_pkg_config_and_examples() {
    let dir = work_dir().join("install");
    let prefix = dir.join("prefix");
    run(
        Command::new("sh")
            .arg(root().join("bindings/c/install.sh"))
            .arg(&prefix)
            .env("SHMQ_LIB_DIR", lib_dir()),
        "bindings/c/install.sh",
    );
    for f in [
        "lib/libshmq.so.0",
        "lib/libshmq.so",
        "lib/libshmq.a",
        "include/shmq.h",
        "include/shmq.hpp",
        "lib/pkgconfig/shmq.pc",
    ] {
        assert!(prefix.join(f).exists(), "install.sh did not install {f}");
    }
    // Installed without the release profile's debug information (it is
    // most of the shared library's size), unless SHMQ_KEEP_DEBUG=1.
    let sections = |lib: &Path| {
        Command::new("readelf")
            .arg("-S")
            .arg(lib)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let installed = prefix.join("lib/libshmq.so.0");
    match sections(&installed) {
        Some(s) => assert!(
            !s.contains(".debug_info"),
            "install.sh left the debug information in {}",
            installed.display()
        ),
        None => eprintln!("readelf not found: the installed library's sections are not checked"),
    }
    let flags = pkg_config_flags(&prefix);
    let libdir = prefix.join("lib");
    let build = |compiler: &str, std: &str, src: &str, exe: &str| {
        run(
            Command::new(compiler)
                .arg(std)
                .args(["-Wall", "-Wextra", "-Werror"])
                .arg(root().join(src))
                .args(&flags)
                .arg("-o")
                .arg(dir.join(exe)),
            &format!("building {src} with pkg-config's flags {flags:?}"),
        );
        dir.join(exe)
    };
    let producer = build("cc", "-std=c11", "examples/c/producer.c", "producer");
    let consumer = build("cc", "-std=c11", "examples/c/consumer.c", "consumer");
    let orders = build("c++", "-std=c++17", "examples/cpp/orders.cpp", "orders");
    let queue = dir.join("orders-queue");
    let _ = std::fs::remove_file(&queue);
    // As examples/README.md says: create, start the consumer, then produce
    // more than the queue holds (the producer waits for room).
    run(
        Command::new(&producer)
            .arg(&queue)
            .args(["0", "0"])
            .env("LD_LIBRARY_PATH", &libdir),
        "examples/c/producer (create)",
    );
    let consumer = Command::new(&consumer)
        .arg(&queue)
        .env("LD_LIBRARY_PATH", &libdir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting examples/c/consumer");
    run(
        Command::new(&producer)
            .arg(&queue)
            .args(["300", "1"])
            .env("LD_LIBRARY_PATH", &libdir),
        "examples/c/producer",
    );
    let done = consumer.wait_with_output().expect("examples/c/consumer");
    assert!(
        done.status.success(),
        "examples/c/consumer: {}",
        done.status
    );
    let out = String::from_utf8_lossy(&done.stdout).into_owned();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 300, "{out}");
    assert_eq!(lines[0], "order 0");
    let out = run(
        Command::new(&orders)
            .arg(dir.join("kitchen"))
            .env("LD_LIBRARY_PATH", &libdir),
        "examples/cpp/orders",
    );
    assert!(out.contains("cooked steak (delivery 2)"), "{out}");
}
