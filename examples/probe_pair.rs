//! A profiling probe: two processes, one producer and one consumer,
//! busy-polling, for a quick throughput figure:
//! `cargo run --release --example probe_pair -- 5000000`.
use shmq::{Options, Queue, Timeout};
use std::time::Instant;

fn pin(cpu: usize) {
    // SAFETY: plain libc call with a zeroed set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() > 2 && args[1] == "consume" {
        pin(1);
        let q = Queue::open(&args[2]).unwrap();
        let n: u64 = args[3].parse().unwrap();
        let mut buf = [0u8; 64];
        let mut got = 0;
        let mut t = None;
        while got < n {
            match q.claim(Timeout::TryOnce) {
                Ok(m) => {
                    t.get_or_insert_with(Instant::now);
                    m.read_into(&mut buf).unwrap();
                    m.ack().unwrap();
                    got += 1;
                }
                Err(_) => std::hint::spin_loop(),
            }
        }
        let e = t.unwrap().elapsed();
        println!("consumer: {:.2} M msgs/s", n as f64 / e.as_secs_f64() / 1e6);
        return;
    }
    let n: u64 = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    let path = format!("/dev/shm/shmq-pair-{}", std::process::id());
    let q = Queue::create(
        &path,
        &Options {
            capacity: 4096,
            max_message_size: 64,
            ..Options::default()
        },
    )
    .unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["consume", &path, &n.to_string()])
        .spawn()
        .unwrap();
    pin(0);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let payload = [7u8; 64];
    let t = Instant::now();
    for _ in 0..n {
        q.send(&payload, Timeout::Forever).unwrap();
    }
    println!(
        "producer: {:.2} M msgs/s",
        n as f64 / t.elapsed().as_secs_f64() / 1e6
    );
    child.wait().unwrap();
    drop(q);
    std::fs::remove_file(&path).unwrap();
}
