//! The parent's side of the worker processes: starting them (the same binary
//! as `shmq __torture-worker`), killing a victim with SIGKILL after marking
//! it killed in the ledger, starting its replacement, and noticing workers
//! that exited by themselves (a violation: they only ever die by a kill).
//!
//! Besides kills, the supervisor makes two other events:
//!
//! - a *double kill*: a second victim a few milliseconds after the first,
//!   while the survivors' liveness sweep (every 2 ms) is repairing after the
//!   first; the second victim may be the one repairing;
//! - a *stall*: SIGSTOP, preferably while the victim holds something (its
//!   busy word says a consumer holds claims, or a producer a reservation,
//!   and pauses on purpose), for more than twice the lease (consumers) or
//!   the reservation timeout (producers), then SIGCONT. Its claims are
//!   taken back by lease expiry and redelivered meanwhile (the engine
//!   cannot tell a stopped process from a slow one), so its late outcome
//!   must get `LeaseLost`, and its late commit `Abandoned`. A stalled
//!   worker is not chosen for another event until it runs again.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Rng;
use shmq_testkit::ledger::{busy, kill_how, kind, Ledger, DRAINER};

/// How long a stall waits for its victim to pause holding something before
/// it stops it wherever it is.
const STALL_AIM: Duration = Duration::from_millis(20);

/// A running worker.
pub struct Worker {
    /// Producer or consumer.
    pub producer: bool,
    /// Index among its role.
    pub index: u32,
    /// Instance number in the ledger.
    pub instance: u32,
    child: Child,
    /// Stopped (SIGSTOP) until then.
    stopped_until: Option<Instant>,
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
    /// Consumers killed while they held claims (their busy word said so).
    pub consumers_holding: u64,
    /// Second victims of double kills: killed a few ms after another
    /// worker's death, while the survivors repair after it (counted in
    /// `producers` and `consumers` too).
    pub during_repair: u64,
    /// Workers started again after a kill or an exit.
    pub restarts: u64,
    /// Workers killed when the run stopped (not counted above).
    pub at_stop: u64,
}

/// Stalls (SIGSTOP past the deadline, then SIGCONT) by role.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Stalls {
    /// Producers stalled.
    pub producers: u64,
    /// Of which while holding a reservation.
    pub producers_holding: u64,
    /// Consumers stalled.
    pub consumers: u64,
    /// Of which while holding claims.
    pub consumers_holding: u64,
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
    /// What was stalled.
    pub stalls: Stalls,
    /// How long stalls last: consumers, producers.
    stall_for: (Duration, Duration),
    /// The injected fault `hide-death`: how long a victim stays stopped
    /// between its mark as killed and its SIGKILL.
    pub hide_death: Option<Duration>,
}

impl<'a> Supervisor<'a> {
    /// No workers yet. Their stderr goes to `workers.err` in `dir`.
    /// Consumers are stalled for `stall_for.0` and up to half as long
    /// again, producers for `stall_for.1` and up to half as long again.
    pub fn new(
        dir: &Path,
        ledger: &'a Ledger,
        seed: u64,
        stall_for: (Duration, Duration),
    ) -> Result<Supervisor<'a>, String> {
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
            stalls: Stalls::default(),
            stall_for,
            hide_death: None,
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
            shmq::internals::sys::monotonic_ns(),
        );
        Ok(Worker {
            producer,
            index,
            instance,
            child,
            stopped_until: None,
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
            .mark_killed(w.instance, shmq::internals::sys::monotonic_ns());
        if let Ok(Some(status)) = w.child.try_wait() {
            let name = w.name();
            self.ledger.violation(
                kind::WORKER,
                &format!("{name} exited by itself ({status}); see workers.err"),
            );
            return;
        }
        if let Some(d) = self.hide_death {
            // SAFETY: kill(2) on our own unreaped child.
            unsafe { libc::kill(w.child.id() as i32, libc::SIGSTOP) };
            std::thread::sleep(d);
        }
        let _ = w.child.kill();
        let _ = w.child.wait();
        self.ledger
            .mark_reaped(w.instance, shmq::internals::sys::monotonic_ns());
    }

    /// A random worker that runs (not stalled), other than `but`, and not
    /// the last running consumer (so that a dead one's claims are taken
    /// over at once, and the death-to-claim latency measures the engine,
    /// not a stall or a restart). With `stall`, not of a role that has a
    /// stalled worker already.
    fn pick(&mut self, but: Option<usize>, stall: bool) -> Option<usize> {
        let running_consumers = self
            .workers
            .iter()
            .enumerate()
            .filter(|(k, w)| !w.producer && w.stopped_until.is_none() && Some(*k) != but)
            .count();
        let role_stalled = |producer: bool| {
            self.workers
                .iter()
                .any(|w| w.producer == producer && w.stopped_until.is_some())
        };
        let running: Vec<usize> = (0..self.workers.len())
            .filter(|&k| {
                let w = &self.workers[k];
                w.stopped_until.is_none()
                    && Some(k) != but
                    && (w.producer || running_consumers > 1)
                    && !(stall && role_stalled(w.producer))
            })
            .collect();
        if running.is_empty() {
            return None;
        }
        Some(running[self.rng.below(running.len() as u64) as usize])
    }

    /// Kills worker `k` and counts it; `how` goes to the ledger.
    fn kill_counted(&mut self, k: usize, how: u64) {
        self.ledger.set_kill_how(self.workers[k].instance, how);
        self.kill(k);
        let w = &self.workers[k];
        if w.producer {
            self.kills.producers += 1;
        } else {
            self.kills.consumers += 1;
            // Read after its death: what it held when it died.
            if self.ledger.busy(w.instance) != busy::IDLE {
                self.kills.consumers_holding += 1;
            }
        }
    }

    /// Kills a random running worker and starts its replacement after
    /// `delay`; with `double`, kills a second one 0 to 3 ms after the
    /// first died (while the survivors repair after it) before either is
    /// started again. Returns the number of kills.
    pub fn kill_random(&mut self, delay: Duration, double: bool) -> Result<u64, String> {
        let Some(k) = self.pick(None, false) else {
            return Ok(0);
        };
        let second = if double {
            self.pick(Some(k), false)
        } else {
            None
        };
        let how = if second.is_some() {
            kill_how::FIRST_OF_TWO
        } else {
            kill_how::SINGLE
        };
        self.kill_counted(k, how);
        let mut victims = vec![k];
        if double {
            if let Some(j) = second {
                let wait = self.rng.below(3_000_000);
                std::thread::sleep(Duration::from_nanos(wait));
                self.kill_counted(j, kill_how::SECOND_OF_TWO);
                self.kills.during_repair += 1;
                victims.push(j);
            }
        }
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        for &v in &victims {
            let (producer, index) = (self.workers[v].producer, self.workers[v].index);
            self.workers[v] = self.spawn(producer, index)?;
            self.kills.restarts += 1;
        }
        Ok(victims.len() as u64)
    }

    /// Stalls a random running worker: waits up to [`STALL_AIM`] for it to
    /// pause holding something, SIGSTOPs it, and leaves it stopped for its
    /// role's stall time ([`Supervisor::resume_due`] starts it again). At
    /// most one worker per role is stalled at a time, never the last
    /// running consumer: the repairs that take a stalled worker's claims
    /// back need somebody running.
    /// Returns whether a worker was stalled.
    pub fn stall_random(&mut self) -> Result<bool, String> {
        let Some(k) = self.pick(None, true) else {
            return Ok(false);
        };
        let (instance, producer) = (self.workers[k].instance, self.workers[k].producer);
        let pid = self.workers[k].child.id();
        let aim = Instant::now();
        while self.ledger.busy(instance) != busy::PAUSED && aim.elapsed() < STALL_AIM {
            std::thread::sleep(Duration::from_micros(50));
        }
        self.ledger.add_stall(instance);
        // SAFETY: kill(2) on our own child, which we have not reaped (so
        // the pid is not reused).
        if unsafe { libc::kill(pid as i32, libc::SIGSTOP) } != 0 {
            return Err(format!(
                "SIGSTOP of pid {pid}: {}",
                std::io::Error::last_os_error()
            ));
        }
        let t0 = Instant::now();
        while !is_stopped(pid) {
            if t0.elapsed() > Duration::from_secs(5) {
                return Err(format!("pid {pid} did not stop within 5 s of SIGSTOP"));
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        let holding = self.ledger.busy(instance) != busy::IDLE;
        let base = if producer {
            self.stall_for.1
        } else {
            self.stall_for.0
        };
        let extra = self.rng.below(base.as_nanos() as u64 / 2 + 1);
        self.workers[k].stopped_until = Some(Instant::now() + base + Duration::from_nanos(extra));
        match (producer, holding) {
            (true, h) => {
                self.stalls.producers += 1;
                self.stalls.producers_holding += h as u64;
            }
            (false, h) => {
                self.stalls.consumers += 1;
                self.stalls.consumers_holding += h as u64;
            }
        }
        Ok(true)
    }

    /// SIGCONTs every stalled worker whose stall is over (all of them with
    /// `all`). Returns how many are still stopped.
    pub fn resume_due(&mut self, all: bool) -> usize {
        let now = Instant::now();
        let mut left = 0;
        for w in &mut self.workers {
            match w.stopped_until {
                Some(t) if all || t <= now => {
                    // SAFETY: kill(2) on our own unreaped child.
                    unsafe { libc::kill(w.child.id() as i32, libc::SIGCONT) };
                    w.stopped_until = None;
                }
                Some(_) => left += 1,
                None => {}
            }
        }
        left
    }

    /// When the next stalled worker is due to run again.
    pub fn next_resume(&self) -> Option<Instant> {
        self.workers.iter().filter_map(|w| w.stopped_until).min()
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

    /// Kills every worker (the end of the run; a stalled one dies stopped).
    pub fn stop_all(&mut self) {
        for k in 0..self.workers.len() {
            self.ledger
                .set_kill_how(self.workers[k].instance, kill_how::AT_STOP);
            self.kill(k);
            self.kills.at_stop += 1;
        }
        self.workers.clear();
    }

    /// The pseudo-random pause before the next event; stalled workers
    /// whose time is up are started again meanwhile.
    pub fn pause(&mut self, min: Duration, max: Duration) {
        let span = max.saturating_sub(min).as_nanos() as u64;
        let extra = if span == 0 {
            0
        } else {
            self.rng.below(span + 1)
        };
        let until = Instant::now() + min + Duration::from_nanos(extra);
        loop {
            self.resume_due(false);
            let now = Instant::now();
            if now >= until {
                return;
            }
            let next = self.next_resume().unwrap_or(until).min(until);
            std::thread::sleep(next.saturating_duration_since(now));
        }
    }

    /// A random number below `n`, from the supervisor's generator.
    pub fn below(&mut self, n: u64) -> u64 {
        self.rng.below(n)
    }
}

/// Whether process `pid` is stopped (state `T` in /proc/PID/stat).
fn is_stopped(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        .is_some_and(|c| c == 'T' || c == 't')
}

impl Drop for Supervisor<'_> {
    fn drop(&mut self) {
        for w in &mut self.workers {
            let _ = w.child.kill();
            let _ = w.child.wait();
        }
    }
}
