//! Helper processes. A test that needs other processes starts its own
//! binary again to run one of its helper tests: a `#[test]` marked
//! `#[ignore = "helper"]` (so a normal run skips it), run by the parent
//! with `--ignored --exact NAME` ([`helper`], [`Work::spawn`]). The helper
//! reads its [`Work`] from the environment, and keeps a [`Lifeline`] to its
//! parent so that a failing test never leaves processes behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The command that runs the helper test `name` of the current test binary
/// alone, quietly, on one thread; its stdout is dropped and its stderr
/// shared with the parent. Add the environment and spawn it.
pub fn helper(name: &str) -> Command {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--ignored",
        "--exact",
        name,
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    cmd
}

/// An environment variable as a number (0 when absent or malformed).
fn env_u64(key: &str) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// An environment variable as a path (empty when absent).
fn env_path(key: &str) -> PathBuf {
    PathBuf::from(std::env::var(key).unwrap_or_default())
}

/// A helper's tie to the process that started it: the helper exits as soon
/// as that parent is gone (it was re-parented) or, with a lifetime, once it
/// has lived that long.
#[derive(Clone, Copy, Debug)]
pub struct Lifeline {
    parent: u32,
    born: Instant,
    lifetime: Option<Duration>,
}

impl Lifeline {
    /// Tied to the current parent, for at most `lifetime` (`None`: as long
    /// as the parent lives).
    pub fn new(lifetime: Option<Duration>) -> Lifeline {
        Lifeline {
            parent: std::os::unix::process::parent_id(),
            born: Instant::now(),
            lifetime,
        }
    }

    /// Tied to the process `parent` (given by it: it may already be gone).
    pub fn of(parent: u32, lifetime: Option<Duration>) -> Lifeline {
        Lifeline {
            parent,
            born: Instant::now(),
            lifetime,
        }
    }

    /// Also asks the kernel to SIGKILL this process when the parent dies.
    pub fn die_with_parent(self) -> Lifeline {
        // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and touches
        // no memory of ours.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        self.check();
        self
    }

    /// The pid of the parent it is tied to.
    pub fn parent(&self) -> u32 {
        self.parent
    }

    /// Whether the parent is gone or the lifetime is over.
    pub fn cut(&self) -> bool {
        std::os::unix::process::parent_id() != self.parent
            || self.lifetime.is_some_and(|l| self.born.elapsed() > l)
    }

    /// Exits the process (status 0) when the lifeline is cut.
    pub fn check(&self) {
        if self.cut() {
            std::process::exit(0);
        }
    }

    /// Sleeps until killed, or until the lifeline is cut.
    pub fn idle(&self) -> ! {
        loop {
            self.check();
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Polls every millisecond until `path` exists (bounded by the
    /// lifeline).
    pub fn await_path(&self, path: &Path) {
        while !path.exists() {
            self.check();
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// SIGKILLs a child and reaps it. Returns how it had exited if it was
/// already gone (`None` when the kill hit a running process).
pub fn kill(child: &mut Child) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Children that are killed when the test ends, however it ends.
#[derive(Default)]
pub struct Children(pub Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            kill(c);
        }
    }
}

/// Waits until the hand-shake file `path` (written by `child` with
/// [`put_file`]) is complete, failing fast if `child` exits first or
/// nothing comes within `limit`.
pub fn await_file(path: &Path, child: &mut Child, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if s.ends_with('\n') {
                return s;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the child exited ({status}) before writing {}",
                path.display()
            );
        }
        assert!(
            start.elapsed() < limit,
            "no {} after {limit:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Writes a hand-shake file atomically (write, then rename).
pub fn put_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write a hand-shake file");
    std::fs::rename(&tmp, path).expect("publish a hand-shake file");
}

/// The environment variables through which a parent hands a helper its
/// work.
mod var {
    pub const ROLE: &str = "SHMQ_HELPER_ROLE";
    pub const QUEUE: &str = "SHMQ_HELPER_QUEUE";
    pub const DIR: &str = "SHMQ_HELPER_DIR";
    pub const INDEX: &str = "SHMQ_HELPER_INDEX";
    pub const GEN: &str = "SHMQ_HELPER_GEN";
    pub const COUNT: &str = "SHMQ_HELPER_COUNT";
    pub const SEED: &str = "SHMQ_HELPER_SEED";
}

/// The work of a helper process: its role, the queue file, a directory
/// for ledgers and hand-shake files, its index among its role, its restart
/// generation, a role-specific count, and a random seed.
#[derive(Clone, Debug, Default)]
pub struct Work {
    /// What the helper does.
    pub role: String,
    /// The queue file.
    pub queue: PathBuf,
    /// The directory for ledgers and hand-shake files.
    pub dir: PathBuf,
    /// The helper's index among its role.
    pub index: u64,
    /// The helper's restart generation.
    pub gen: u64,
    /// A role-specific count.
    pub count: u64,
    /// The helper's random seed.
    pub seed: u64,
}

impl Work {
    /// A `role` on `queue`, with `dir` for its files.
    pub fn new(role: &str, queue: &Path, dir: &Path) -> Work {
        Work {
            role: role.to_string(),
            queue: queue.to_path_buf(),
            dir: dir.to_path_buf(),
            ..Work::default()
        }
    }

    /// The same with index `index`.
    pub fn index(mut self, index: u64) -> Work {
        self.index = index;
        self
    }

    /// The same with generation `gen`.
    pub fn gen(mut self, gen: u64) -> Work {
        self.gen = gen;
        self
    }

    /// The same with count `count`.
    pub fn count(mut self, count: u64) -> Work {
        self.count = count;
        self
    }

    /// The same with seed `seed`.
    pub fn seed(mut self, seed: u64) -> Work {
        self.seed = seed;
        self
    }

    /// Starts this binary's helper test (see [`crate::helper_test!`]) on this
    /// work.
    pub fn spawn(&self) -> Child {
        helper(HELPER)
            .env(var::ROLE, &self.role)
            .env(var::QUEUE, &self.queue)
            .env(var::DIR, &self.dir)
            .env(var::INDEX, self.index.to_string())
            .env(var::GEN, self.gen.to_string())
            .env(var::COUNT, self.count.to_string())
            .env(var::SEED, self.seed.to_string())
            .spawn()
            .expect("spawn a helper process")
    }

    /// The work handed to this process, with a lifeline to its parent of
    /// at most `lifetime`; `None` when there is none (a helper test run
    /// with `--include-ignored`, not by its parent: it does nothing).
    pub fn read(lifetime: Duration) -> Option<(Work, Lifeline)> {
        let role = std::env::var(var::ROLE).ok()?;
        let work = Work {
            role,
            queue: env_path(var::QUEUE),
            dir: env_path(var::DIR),
            index: env_u64(var::INDEX),
            gen: env_u64(var::GEN),
            count: env_u64(var::COUNT),
            seed: env_u64(var::SEED),
        };
        Some((work, Lifeline::new(Some(lifetime))))
    }

    /// A file in the work's directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// What a helper does in one role.
pub type Role = fn(&Work, &Lifeline);

/// The body of a helper test: runs the role its parent handed it (see
/// [`Work::spawn`]), with a lifeline of at most `lifetime`; does nothing
/// when no parent handed it work (`--include-ignored`).
pub fn serve(lifetime: Duration, roles: &[(&str, Role)]) {
    let Some((work, life)) = Work::read(lifetime) else {
        return;
    };
    match roles.iter().find(|(name, _)| *name == work.role) {
        Some((_, role)) => role(&work, &life),
        None => panic!("unknown helper role {}", work.role),
    }
}

/// The name of the helper test that [`crate::helper_test!`] declares.
pub const HELPER: &str = "helper";

/// Declares a test binary's helper test, `helper`: `#[ignore = "helper"]`,
/// so a normal run skips it, and run by [`Work::spawn`] with `--ignored
/// --exact helper`; it runs the role its parent handed it ([`serve`]).
///
/// ```ignore
/// shmq_testkit::helper_test!(LIFETIME, {
///     "producer" => producer,
///     "consumer" => consumer,
/// });
/// ```
#[macro_export]
macro_rules! helper_test {
    ($lifetime:expr, { $($role:literal => $run:path),+ $(,)? }) => {
        /// The entry point of every child process of this test binary, run
        /// by its parent alone with `--ignored --exact helper`.
        #[test]
        #[ignore = "helper"]
        fn helper() {
            $crate::child::serve(
                $lifetime,
                &[$(($role, $run as $crate::child::Role)),+],
            );
        }
    };
}
