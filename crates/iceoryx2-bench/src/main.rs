//! iceoryx2 publish/subscribe measured the way `shmq bench` measures shmq,
//! printed as `shmq bench` JSON rows on standard output.
//!
//! - `one-to-one`: a publisher (this process, CPU 0) sends COUNT 64-byte
//!   payloads carrying their sequence numbers to a subscriber (a child
//!   process, CPU 1) that busy-polls, checks every number and releases each
//!   sample. No sample may be lost: the service does not overflow and the
//!   publisher retries until the subscriber's buffer has room (4096 samples,
//!   the capacity of shmq's queue in the same scenario). The rate is COUNT
//!   over the longer of the sending time and the receiving time from the
//!   first sample, as in `shmq bench`.
//! - `ping-pong`: two services; this process sends a payload on one and
//!   busy-polls for the child's answer on the other; p50 and p99 of the
//!   round trips (measured with `Instant`, as read around each round trip).
//!
//! ```text
//! shmq-bench-iceoryx2 [--msgs N] [--rtts N] [--runs N]
//! ```
//! (The child roles `__sub` and `__pong` are internal.)

use iceoryx2::prelude::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Instant;

type Payload = [u8; 64];
type Res<T> = Result<T, String>;

/// Subscriber buffer and shmq's queue capacity in the same scenario.
const BUFFER: usize = 4096;

#[derive(serde::Serialize)]
struct Row {
    scenario: &'static str,
    transport: &'static str,
    payload: usize,
    msgs_per_s: Option<f64>,
    rtt_p50_ns: Option<u64>,
    rtt_p99_ns: Option<u64>,
    ratio: Option<f64>,
    reference: Option<String>,
    target: Option<String>,
    meets_target: Option<bool>,
    note: String,
}

impl Row {
    fn new(scenario: &'static str) -> Row {
        Row {
            scenario,
            transport: "iceoryx2",
            payload: std::mem::size_of::<Payload>(),
            msgs_per_s: None,
            rtt_p50_ns: None,
            rtt_p99_ns: None,
            ratio: None,
            reference: None,
            target: None,
            meets_target: None,
            note: "iceoryx2 0.10.0 publish/subscribe, ipc::Service, busy-poll".into(),
        }
    }
}

fn pin(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes inside the set for cpu < CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu % libc::CPU_SETSIZE as usize, &mut set) };
    // SAFETY: valid set pointer and size; 0 is the calling thread. A
    // missing CPU makes the call fail, and the thread runs anywhere.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
}

fn e<E: std::fmt::Debug>(what: &'static str) -> impl Fn(E) -> String {
    move |err| format!("{what}: {err:?}")
}

fn payload(seq: u64) -> Payload {
    let mut p = [0xa5u8; 64];
    p[..8].copy_from_slice(&seq.to_le_bytes());
    p
}

fn seq_of(p: &Payload) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&p[..8]);
    u64::from_le_bytes(b)
}

type Service =
    iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, Payload, ()>;

fn service(node: &Node<ipc::Service>, name: &str) -> Res<Service> {
    let name: ServiceName = name.try_into().map_err(e("service name"))?;
    node.service_builder(&name)
        .publish_subscribe::<Payload>()
        .enable_safe_overflow(false)
        .subscriber_max_buffer_size(BUFFER)
        .history_size(0)
        .max_publishers(1)
        .max_subscribers(1)
        .open_or_create()
        .map_err(e("service"))
}

fn node() -> Res<Node<ipc::Service>> {
    set_log_level(LogLevel::Error);
    NodeBuilder::new()
        .create::<ipc::Service>()
        .map_err(e("node"))
}

/// A child process of this binary that prints `ready`, then `done COUNT NS`.
struct Peer {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Peer {
    fn start(args: &[String]) -> Res<Peer> {
        let exe = std::env::current_exe().map_err(e("current_exe"))?;
        let mut child = Command::new(exe)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(e("spawn"))?;
        let mut out = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut line = String::new();
        out.read_line(&mut line).map_err(e("read"))?;
        if line.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("peer {:?} did not start: {line:?}", args.first()));
        }
        Ok(Peer { child, out })
    }

    fn finish(mut self) -> Res<(u64, u64)> {
        let mut line = String::new();
        self.out.read_line(&mut line).map_err(e("read"))?;
        let status = self.child.wait().map_err(e("wait"))?;
        if !status.success() {
            return Err(format!("peer failed ({status})"));
        }
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        match (line.starts_with("done"), f.as_slice()) {
            (true, [count, ns, ..]) => Ok((*count, *ns)),
            _ => Err(format!("peer said {line:?}")),
        }
    }
}

fn ready() {
    println!("ready");
    let _ = std::io::stdout().flush();
}

fn send(
    publisher: &iceoryx2::port::publisher::Publisher<ipc::Service, Payload, ()>,
    seq: u64,
) -> Res<()> {
    let sample = publisher.loan_uninit().map_err(e("loan"))?;
    sample
        .write_payload(payload(seq))
        .send()
        .map_err(e("send"))?;
    Ok(())
}

/// The parent of `one-to-one`: publishes `count` payloads.
fn one_to_one(count: u64, run: usize) -> Res<Row> {
    let name = format!("shmq-bench/{}/one-to-one/{run}", std::process::id());
    let node = node()?;
    let svc = service(&node, &name)?;
    let publisher = svc
        .publisher_builder()
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()
        .map_err(e("publisher"))?;
    let peer = Peer::start(&["__sub".into(), name.clone(), count.to_string(), "1".into()])?;
    pin(0);
    let start = Instant::now();
    for i in 0..count {
        send(&publisher, i)?;
    }
    let produced = start.elapsed().as_nanos() as u64;
    let (got, consumed) = peer.finish()?;
    if got != count {
        return Err(format!("{got} of {count} samples arrived"));
    }
    let mut row = Row::new("one-to-one");
    row.msgs_per_s = Some(count as f64 * 1e9 / consumed.max(produced).max(1) as f64);
    Ok(row)
}

/// `__sub NAME COUNT CPU`: receives and checks `count` payloads.
fn sub(a: &[String]) -> Res<()> {
    let (name, count, cpu) = parse3(a)?;
    pin(cpu as usize);
    let node = node()?;
    let svc = service(&node, &name)?;
    let subscriber = svc
        .subscriber_builder()
        .buffer_size(BUFFER)
        .create()
        .map_err(e("subscriber"))?;
    ready();
    let mut got = 0u64;
    let mut start = None;
    while got < count {
        match subscriber.receive().map_err(e("receive"))? {
            Some(sample) => {
                start.get_or_insert_with(Instant::now);
                if seq_of(&sample) != got {
                    return Err(format!("sample {got} arrived as {}", seq_of(&sample)));
                }
                got += 1;
            }
            None => std::hint::spin_loop(),
        }
    }
    let ns = start.map_or(0, |s| s.elapsed().as_nanos());
    println!("done {got} {ns}");
    Ok(())
}

/// The parent of `ping-pong`: `count` round trips.
fn ping_pong(count: u64) -> Res<Row> {
    let a2b = format!("shmq-bench/{}/ping", std::process::id());
    let b2a = format!("shmq-bench/{}/pong", std::process::id());
    let node = node()?;
    let ping = service(&node, &a2b)?;
    let pong = service(&node, &b2a)?;
    let publisher = ping
        .publisher_builder()
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()
        .map_err(e("publisher"))?;
    let subscriber = pong
        .subscriber_builder()
        .buffer_size(BUFFER)
        .create()
        .map_err(e("subscriber"))?;
    let peer = Peer::start(&[
        "__pong".into(),
        a2b.clone(),
        b2a.clone(),
        count.to_string(),
        "1".into(),
    ])?;
    pin(0);
    let mut rtts = Vec::with_capacity(count as usize);
    for i in 0..count {
        let t0 = Instant::now();
        send(&publisher, i)?;
        loop {
            if let Some(s) = subscriber.receive().map_err(e("receive"))? {
                if seq_of(&s) != i {
                    return Err(format!("answer {i} arrived as {}", seq_of(&s)));
                }
                break;
            }
            std::hint::spin_loop();
        }
        rtts.push(t0.elapsed().as_nanos() as u64);
    }
    peer.finish()?;
    rtts.sort_unstable();
    let q = |p: f64| {
        rtts.get(((rtts.len() as f64 - 1.0) * p).round() as usize)
            .copied()
    };
    let mut row = Row::new("ping-pong");
    row.rtt_p50_ns = q(0.5);
    row.rtt_p99_ns = q(0.99);
    Ok(row)
}

/// `__pong PING PONG COUNT CPU`: answers `count` pings.
fn pong(a: &[String]) -> Res<()> {
    let (a2b, b2a) = (a.first().ok_or("ping")?, a.get(1).ok_or("pong")?);
    let count: u64 = a.get(2).and_then(|x| x.parse().ok()).ok_or("count")?;
    let cpu: usize = a.get(3).and_then(|x| x.parse().ok()).ok_or("cpu")?;
    pin(cpu);
    let node = node()?;
    let ping = service(&node, a2b)?;
    let pong = service(&node, b2a)?;
    let subscriber = ping
        .subscriber_builder()
        .buffer_size(BUFFER)
        .create()
        .map_err(e("subscriber"))?;
    let publisher = pong
        .publisher_builder()
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()
        .map_err(e("publisher"))?;
    ready();
    let start = Instant::now();
    for i in 0..count {
        let seq = loop {
            if let Some(s) = subscriber.receive().map_err(e("receive"))? {
                break seq_of(&s);
            }
            std::hint::spin_loop();
        };
        if seq != i {
            return Err(format!("ping {i} arrived as {seq}"));
        }
        send(&publisher, seq)?;
    }
    println!("done {count} {}", start.elapsed().as_nanos());
    Ok(())
}

fn parse3(a: &[String]) -> Res<(String, u64, u64)> {
    let name = a.first().ok_or("name")?.clone();
    let n = a.get(1).and_then(|x| x.parse().ok()).ok_or("count")?;
    let c = a.get(2).and_then(|x| x.parse().ok()).ok_or("cpu")?;
    Ok((name, n, c))
}

fn flag(args: &[String], name: &str, default: u64) -> Res<u64> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{name} needs a number")),
    }
}

fn main_inner() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("__sub") => return sub(&args[1..]),
        Some("__pong") => return pong(&args[1..]),
        _ => {}
    }
    let msgs = flag(&args, "--msgs", 5_000_000)?;
    let rtts = flag(&args, "--rtts", 100_000)?;
    let runs = flag(&args, "--runs", 3)?.max(1) as usize;
    let mut tput = Vec::new();
    for run in 0..runs {
        tput.push(one_to_one(msgs, run)?);
    }
    // The median run by throughput, as `shmq bench` keeps.
    tput.sort_by(|a, b| {
        a.msgs_per_s
            .partial_cmp(&b.msgs_per_s)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let median = tput.swap_remove(runs / 2);
    let rows = vec![median, ping_pong(rtts)?];
    println!(
        "{}",
        serde_json::to_string_pretty(&rows).map_err(e("json"))?
    );
    Ok(())
}

fn main() {
    if let Err(err) = main_inner() {
        eprintln!("shmq-bench-iceoryx2: {err}");
        std::process::exit(1);
    }
}
