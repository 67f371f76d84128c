//! The parent's side of the worker processes: starting them (the same binary
//! as `shmq __torture-worker`), killing a victim with SIGKILL after marking
//! it killed in the ledger, starting its replacement, and noticing workers
//! that exited by themselves (a violation: they only ever die by a kill).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::ledger::{kind, Ledger, DRAINER};
use super::Rng;

/// A running worker.
pub struct Worker {
    /// Producer or consumer.
    pub producer: bool,
    /// Index among its role.
    pub index: u32,
    /// Instance number in the ledger.
    pub instance: u32,
    child: Child,
}

impl Worker {
    fn name(&self) -> String {
        format!(
            "{} {} (instance {}, pid {})",
            if self.producer {
                "producer"
            } else {
                "consumer"
            },
            self.index,
            self.instance,
            self.child.id()
        )
    }
}

/// Kills by role.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Kills {
    /// Producers killed during the run.
    pub producers: u64,
    /// Consumers killed during the run.
    pub consumers: u64,
    /// Workers started again after a kill or an exit.
    pub restarts: u64,
    /// Workers killed when the run stopped (not counted above).
    pub at_stop: u64,
}

/// The workers of a run.
pub struct Supervisor<'a> {
    exe: PathBuf,
    dir: PathBuf,
    ledger: &'a Ledger,
    stderr: File,
    next_instance: u32,
    rng: Rng,
    /// The workers running now.
    pub workers: Vec<Worker>,
    /// What was killed.
    pub kills: Kills,
}

impl<'a> Supervisor<'a> {
    /// No workers yet. Their stderr goes to `workers.err` in `dir`.
    pub fn new(dir: &Path, ledger: &'a Ledger, seed: u64) -> Result<Supervisor<'a>, String> {
        let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
        let err_path = dir.join("workers.err");
        let stderr =
            File::create(&err_path).map_err(|e| format!("creating {}: {e}", err_path.display()))?;
        Ok(Supervisor {
            exe,
            dir: dir.to_path_buf(),
            ledger,
            stderr,
            next_instance: DRAINER + 1,
            rng: Rng::new(seed),
            workers: Vec::new(),
            kills: Kills::default(),
        })
    }

    fn spawn(&mut self, producer: bool, index: u32) -> Result<Worker, String> {
        let instance = self.next_instance;
        if !self.ledger.has_instance(instance) {
            return Err(format!(
                "the ledger has room for {instance} worker starts only"
            ));
        }
        self.next_instance += 1;
        let stderr = self
            .stderr
            .try_clone()
            .map_err(|e| format!("workers.err: {e}"))?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("__torture-worker")
            .arg("--dir")
            .arg(&self.dir)
            .args(["--index", &index.to_string()])
            .args(["--instance", &instance.to_string()])
            .args(["--seed", &self.rng.next().to_string()])
            .args(["--parent", &std::process::id().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr));
        if producer {
            cmd.arg("--producer");
        }
        let child = cmd.spawn().map_err(|e| format!("starting a worker: {e}"))?;
        self.ledger.register(
            instance,
            producer,
            index,
            child.id(),
            shmq::sys::monotonic_ns(),
        );
        Ok(Worker {
            producer,
            index,
            instance,
            child,
        })
    }

    /// Starts a worker.
    pub fn start(&mut self, producer: bool, index: u32) -> Result<(), String> {
        let w = self.spawn(producer, index)?;
        self.workers.push(w);
        Ok(())
    }

    /// Kills worker `k` with SIGKILL (marking it killed first) and waits
    /// for it. A worker that had already exited is a violation.
    fn kill(&mut self, k: usize) {
        let w = &mut self.workers[k];
        self.ledger
            .mark_killed(w.instance, shmq::sys::monotonic_ns());
        if let Ok(Some(status)) = w.child.try_wait() {
            let name = w.name();
            self.ledger.violation(
                kind::WORKER,
                &format!("{name} exited by itself ({status}); see workers.err"),
            );
            return;
        }
        let _ = w.child.kill();
        let _ = w.child.wait();
        self.ledger
            .mark_reaped(w.instance, shmq::sys::monotonic_ns());
    }

    /// Kills a random worker and starts its replacement after `delay`.
    pub fn kill_random(&mut self, delay: std::time::Duration) -> Result<(), String> {
        let k = self.rng.below(self.workers.len() as u64) as usize;
        self.kill(k);
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let (producer, index) = (self.workers[k].producer, self.workers[k].index);
        if producer {
            self.kills.producers += 1;
        } else {
            self.kills.consumers += 1;
        }
        self.workers[k] = self.spawn(producer, index)?;
        self.kills.restarts += 1;
        Ok(())
    }

    /// Restarts every worker that exited by itself (each is a violation).
    pub fn reap_exited(&mut self) -> Result<(), String> {
        for k in 0..self.workers.len() {
            if let Ok(Some(_)) = self.workers[k].child.try_wait() {
                self.kill(k);
                let (producer, index) = (self.workers[k].producer, self.workers[k].index);
                self.workers[k] = self.spawn(producer, index)?;
                self.kills.restarts += 1;
            }
        }
        Ok(())
    }

    /// Kills every worker (the end of the run).
    pub fn stop_all(&mut self) {
        for k in 0..self.workers.len() {
            self.kill(k);
            self.kills.at_stop += 1;
        }
        self.workers.clear();
    }

    /// The pseudo-random pause before the next kill.
    pub fn pause(&mut self, min: std::time::Duration, max: std::time::Duration) {
        let span = max.saturating_sub(min).as_nanos() as u64;
        let extra = if span == 0 {
            0
        } else {
            self.rng.below(span + 1)
        };
        std::thread::sleep(min + std::time::Duration::from_nanos(extra));
    }
}

impl Drop for Supervisor<'_> {
    fn drop(&mut self) {
        for w in &mut self.workers {
            let _ = w.child.kill();
            let _ = w.child.wait();
        }
    }
}
