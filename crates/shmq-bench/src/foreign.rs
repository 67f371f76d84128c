//! Peers in other languages: the `c-abi` row (a C producer and a C consumer
//! through `include/shmq.h`), the `python` row (a Python producer and a
//! Python consumer through the binding's batch calls), and the C loops that
//! `--instructions` runs under callgrind (`c_loop.c`, linked statically
//! against `libshmq.a`).
//!
//! Both are built from sources embedded in the `shmq` binary, written to a
//! scratch directory at run time: `c_peer.c` with `shmq.h`, compiled by
//! `cc -O2` against the `libshmq.so` of the target directory the binary
//! sits in, so that the row measures the header and library of the tree
//! the binary was built from; `py_peer.py`, run by the Python interpreter
//! named by `SHMQ_BENCH_PYTHON` (`python3` by default) with the `shmq`
//! package installed in it (`pip install ./bindings/python`: the wheel
//! carries its own build of the engine). A missing compiler, interpreter,
//! library or package skips the row with the reason; any other failure
//! fails the bench.

use super::os::Peer;
use super::shmq_runs::one_to_one_options;
use super::{tmp_path, Cleanup, Row, Sizes};
use shmq::Queue;
use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use std::process::Command;

const C_PEER: &str = include_str!("c_peer.c");
const C_LOOP: &str = include_str!("c_loop.c");
const HEADER: &str = include_str!("../../../include/shmq.h");
const PY_PEER: &str = include_str!("py_peer.py");

/// Messages per batch call of the Python peers.
const PY_BATCH: usize = 256;

/// Why a row could not be measured on this machine (no compiler, no
/// interpreter, no library): the row is reported as skipped.
pub struct Skip(pub String);

/// The scratch directory of one bench run and what was built in it, once.
pub struct Foreign {
    dir: PathBuf,
    c_peer: OnceCell<Result<PathBuf, Skip>>,
    c_loop: OnceCell<Result<PathBuf, Skip>>,
    py_ready: OnceCell<Result<String, Skip>>,
}

impl Foreign {
    /// A scratch directory under the system's temporary directory (removed
    /// on drop); nothing is built yet.
    pub fn new() -> Foreign {
        Foreign {
            dir: std::env::temp_dir().join(format!("shmq-bench-{}", std::process::id())),
            c_peer: OnceCell::new(),
            c_loop: OnceCell::new(),
            py_ready: OnceCell::new(),
        }
    }

    /// The compiled C peer, built on first use.
    fn c_peer(&self) -> Result<&Path, Skip> {
        match self.c_peer.get_or_init(|| self.build_c_peer()) {
            Ok(p) => Ok(p),
            Err(Skip(why)) => Err(Skip(why.clone())),
        }
    }

    fn build_c_peer(&self) -> Result<PathBuf, Skip> {
        let lib = library()?;
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        if Command::new(&cc).arg("--version").output().is_err() {
            return Err(Skip(format!("no C compiler ({cc} not found)")));
        }
        let dir = self.dir.join("c");
        let write = |name: &str, text: &str| {
            std::fs::create_dir_all(&dir)
                .and_then(|_| std::fs::write(dir.join(name), text))
                .map_err(|e| Skip(format!("cannot write {}: {e}", dir.display())))
        };
        write("c_peer.c", C_PEER)?;
        write("shmq.h", HEADER)?;
        // The library's soname is libshmq.so.0: the loader looks for that
        // name in the rpath, so the scratch directory links it to the
        // library of the target directory.
        let soname = dir.join("libshmq.so.0");
        let _ = std::fs::remove_file(&soname);
        std::os::unix::fs::symlink(&lib, &soname)
            .map_err(|e| Skip(format!("cannot link {}: {e}", soname.display())))?;
        let exe = dir.join("c_peer");
        let out = Command::new(&cc)
            .args(["-O2", "-o"])
            .arg(&exe)
            .arg(dir.join("c_peer.c"))
            .arg("-I")
            .arg(&dir)
            .arg(&lib)
            .arg(format!("-Wl,-rpath,{}", dir.display()))
            .output()
            .map_err(|e| Skip(format!("{cc}: {e}")))?;
        if !out.status.success() {
            // A compiler that is there but fails on our file is a bug of
            // ours, not of the machine: say so loudly.
            return Err(Skip(format!(
                "FAILED: {cc} -O2 c_peer.c: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(exe)
    }

    /// The C loops of `--instructions` (`c_loop.c`), built on first use
    /// against the static library.
    pub fn c_loop(&self) -> Result<&Path, Skip> {
        match self.c_loop.get_or_init(|| self.build_c_loop()) {
            Ok(p) => Ok(p),
            Err(Skip(why)) => Err(Skip(why.clone())),
        }
    }

    fn build_c_loop(&self) -> Result<PathBuf, Skip> {
        let lib = static_library()?;
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        if Command::new(&cc).arg("--version").output().is_err() {
            return Err(Skip(format!("no C compiler ({cc} not found)")));
        }
        let dir = self.dir.join("c-loop");
        let write = |name: &str, text: &str| {
            std::fs::create_dir_all(&dir)
                .and_then(|_| std::fs::write(dir.join(name), text))
                .map_err(|e| Skip(format!("cannot write {}: {e}", dir.display())))
        };
        write("c_loop.c", C_LOOP)?;
        write("shmq.h", HEADER)?;
        let exe = dir.join("c_loop");
        // What a Rust static library needs from the system (as
        // bindings/c's tests link it).
        let out = Command::new(&cc)
            .args(["-O2", "-o"])
            .arg(&exe)
            .arg(dir.join("c_loop.c"))
            .arg("-I")
            .arg(&dir)
            .arg(&lib)
            .args(["-lpthread", "-ldl", "-lm", "-lrt"])
            .output()
            .map_err(|e| Skip(format!("{cc}: {e}")))?;
        if !out.status.success() {
            return Err(Skip(format!(
                "FAILED: {cc} -O2 c_loop.c {}: {}",
                lib.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(exe)
    }

    /// The Python peer, written on first use, and the interpreter that
    /// runs it (one that imports the installed `shmq` package).
    fn py_ready(&self) -> Result<(&Path, &str), Skip> {
        match self.py_ready.get_or_init(|| self.write_python()) {
            Ok(python) => Ok((&self.dir, python)),
            Err(Skip(why)) => Err(Skip(why.clone())),
        }
    }

    fn write_python(&self) -> Result<String, Skip> {
        let python = std::env::var("SHMQ_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
        let ok = Command::new(&python)
            .args(["-c", "import array, shmq"])
            .output();
        match ok {
            Err(_) => return Err(Skip(format!("no {python}"))),
            Ok(o) if !o.status.success() => {
                return Err(Skip(format!(
                    "{python} cannot import shmq (pip install ./bindings/python, or name an \
                     interpreter that has it in SHMQ_BENCH_PYTHON): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                )))
            }
            Ok(_) => {}
        }
        let dir = self.dir.join("py");
        let path = dir.join("py_peer.py");
        std::fs::create_dir_all(&dir)
            .and_then(|_| std::fs::write(&path, PY_PEER))
            .map_err(|e| Skip(format!("{}: {e}", path.display())))?;
        Ok(python)
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `libshmq.so` of the target directory the running binary sits in
/// (`target/release/libshmq.so` or `target/release/deps/libshmq.so`, the
/// newer of the two).
pub fn library() -> Result<PathBuf, Skip> {
    newest_beside_exe("libshmq.so", "cargo build --release")
}

/// The `libshmq.a` of the target directory the running binary sits in
/// (`target/release/libshmq.a` or `target/release/deps/libshmq.a`, the
/// newer of the two).
pub fn static_library() -> Result<PathBuf, Skip> {
    newest_beside_exe("libshmq.a", "cargo build --release -p shmq-c")
}

/// `build` for a binary of the release profile; without `--release` for
/// any other (a debug `shmq`, as `cargo test` builds, looks in
/// target/debug).
fn build_for(dir: &Path, build: &str) -> String {
    if dir.ends_with("release") {
        build.to_string()
    } else {
        build.replace(" --release", "")
    }
}

fn newest_beside_exe(name: &str, build: &str) -> Result<PathBuf, Skip> {
    let exe = std::env::current_exe().map_err(|e| Skip(e.to_string()))?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    [dir.join(name), dir.join("deps").join(name)]
        .into_iter()
        .filter_map(|p| {
            let m = std::fs::metadata(&p).ok()?.modified().ok()?;
            Some((m, p))
        })
        .max()
        .and_then(|(_, p)| p.canonicalize().ok())
        .ok_or_else(|| {
            Skip(format!(
                "no {name} beside {} (build it with `{}`)",
                exe.display(),
                build_for(dir, build)
            ))
        })
}

/// A row that could not be measured, with the reason.
pub fn skipped(scenario: &'static str, transport: &'static str, why: &str) -> Row {
    let mut row = Row::new(scenario, transport, 64);
    row.note = format!("skipped: {why}");
    eprintln!("shmq bench: {scenario} {transport} skipped: {why}");
    row
}

/// A producer and a consumer process of another language on one fresh
/// queue of the one-to-one options: the consumer (CPU 1) starts first,
/// then the producer (CPU 0); the rate is the count over the longer of the
/// producer's sending time and the consumer's time from its first message,
/// as for the Rust rows.
fn pair(
    scenario: &'static str,
    transport: &'static str,
    s: &Sizes,
    payload: usize,
    command: impl Fn(&str, &str, u32) -> Command,
) -> Result<Row, String> {
    let path = tmp_path(&format!("q-{scenario}"));
    let _c = Cleanup(vec![path.clone()]);
    let _ = std::fs::remove_file(&path);
    // Only the peers stay attached: the file outlives this handle.
    drop(Queue::create(&path, &one_to_one_options(payload, 0)).map_err(|e| e.to_string())?);
    let consumer = Peer::spawn(command("consume", &path, 1), transport)?;
    let producer = Peer::spawn(command("produce", &path, 0), transport)?;
    let (sent, produced, _) = producer.finish()?;
    let (count, consumed, _) = consumer.finish()?;
    if count != s.msgs || sent != s.msgs {
        return Err(format!(
            "{sent} sent, {count} of {} messages arrived",
            s.msgs
        ));
    }
    Ok(Row::new(scenario, transport, payload).rate(count, consumed.max(produced)))
}

/// The `c-abi` row: C processes doing what the Rust one-to-one row does
/// (single send; claim with a checked copy, `shmq_claim_copy`; ack),
/// 64-byte payloads.
pub fn c_abi(s: &Sizes, f: &Foreign) -> Result<Row, String> {
    let exe = match f.c_peer() {
        Ok(p) => p.to_path_buf(),
        Err(Skip(why)) if why.starts_with("FAILED") => return Err(why),
        Err(Skip(why)) => return Ok(skipped("c-abi", "shmq", &why)),
    };
    pair("c-abi", "shmq", s, 64, |role, path, cpu| {
        let mut c = Command::new(&exe);
        c.args([role, path, &s.msgs.to_string(), "64", &cpu.to_string()]);
        c
    })
}

/// The `python` row: Python processes sending with `Queue.send_packed` and
/// taking with `Queue.take_packed` (claim, copy and ack of a batch in one
/// call), 64-byte payloads, every sequence number checked.
pub fn python(s: &Sizes, f: &Foreign) -> Result<Row, String> {
    let (dir, python) = match f.py_ready() {
        Ok((d, python)) => (d.join("py"), python.to_owned()),
        Err(Skip(why)) => return Ok(skipped("python", "shmq", &why)),
    };
    let mut row = pair("python", "shmq", s, 64, |role, path, cpu| {
        let mut c = Command::new(&python);
        c.arg(dir.join("py_peer.py"))
            .args([
                role,
                path,
                &s.msgs.to_string(),
                "64",
                &cpu.to_string(),
                &PY_BATCH.to_string(),
            ])
            .env("PYTHONDONTWRITEBYTECODE", "1");
        c
    })?;
    row.note = format!("batches of {PY_BATCH} (send_packed / take_packed)");
    Ok(row)
}
