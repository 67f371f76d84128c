//! The `memory` row: the queue file's size is fixed by the options, and the
//! resident memory of a producer and a consumer stays flat while they move
//! 10^8 messages (10^6 with `--quick`).
//!
//! Both sides are peer processes of their own (the bench process carries
//! the other scenarios' allocations), pinned like the one-to-one row, on a
//! queue of the one-to-one options. Each reports its resident memory
//! (`VmRSS` and its parts `RssAnon`, `RssFile`, `RssShmem`, from
//! `/proc/self/status`) after the first 1% of the messages and at the end.
//! The ratio is the larger end / first-1% `RssAnon` of the two: the heap
//! and the stacks are where memory would grow with the messages; the shared
//! pages are bounded by the file, whose size is checked to stay fixed, and
//! the file pages by the binary (code first run late, such as the liveness
//! sweep, shows there).

use super::os::Peer;
use super::shmq_runs::one_to_one_options;
use super::{tmp_path, Cleanup, Row};
use shmq::Queue;

/// Resident memory of one process after 1% of the messages and at the
/// end, KiB, from `/proc/self/status`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Resident {
    /// `VmRSS`: everything resident.
    pub rss_kib: [u64; 2],
    /// `RssAnon`: the heap and the stacks, where a leak would show.
    pub anon_kib: [u64; 2],
    /// `RssFile`: pages of the binary and the libraries.
    pub file_kib: [u64; 2],
    /// `RssShmem`: pages of the queue file's mapping touched so far.
    pub shmem_kib: [u64; 2],
}

impl Resident {
    /// Parses a peer's `RSS/ANON/FILE/SHMEM,RSS/ANON/FILE/SHMEM`.
    fn parse(extra: &str) -> Result<Resident, String> {
        let bad = || format!("bad memory figures {extra:?}");
        let mut r = Resident::default();
        let parts: Vec<&str> = extra.split(',').collect();
        if parts.len() != 2 {
            return Err(bad());
        }
        for (i, p) in parts.iter().enumerate() {
            let v: Vec<u64> = p.split('/').filter_map(|x| x.parse().ok()).collect();
            let [rss, anon, file, shmem] = v[..] else {
                return Err(bad());
            };
            r.rss_kib[i] = rss;
            r.anon_kib[i] = anon;
            r.file_kib[i] = file;
            r.shmem_kib[i] = shmem;
        }
        Ok(r)
    }

    fn show(&self) -> String {
        let f = |x: [u64; 2]| format!("{} -> {}", x[0], x[1]);
        format!(
            "RSS {} KiB (anon {}, file {}, shmem {})",
            f(self.rss_kib),
            f(self.anon_kib),
            f(self.file_kib),
            f(self.shmem_kib)
        )
    }
}

/// What the memory row measured, as extra JSON fields.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MemoryFigures {
    /// Messages moved.
    pub messages: u64,
    /// Messages after which the first figures were taken (1%).
    pub sampled_after: u64,
    /// The queue file's size fixed by the options (capacity 4096, 64-byte
    /// messages), at creation.
    pub file_bytes: u64,
    /// Its size after the run.
    pub file_bytes_end: u64,
    /// The producer's resident memory.
    pub producer: Resident,
    /// The consumer's resident memory.
    pub consumer: Resident,
}

impl MemoryFigures {
    /// The larger growth of anonymous resident memory (heap, stacks) from
    /// 1% to the end: what would grow with the messages if anything leaked.
    pub fn growth(&self) -> f64 {
        let g = |r: [u64; 2]| r[1] as f64 / r[0].max(1) as f64;
        g(self.producer.anon_kib).max(g(self.consumer.anon_kib))
    }
}

/// Runs one-to-one for `messages` 64-byte messages between two peers.
pub fn memory(messages: u64) -> Result<Row, String> {
    let payload = 64;
    let path = tmp_path("memory");
    let _c = Cleanup(vec![path.clone()]);
    let _ = std::fs::remove_file(&path);
    let q = Queue::create(&path, &one_to_one_options(payload, 0)).map_err(|e| e.to_string())?;
    let size = |p: &str| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let file_bytes = size(&path);
    drop(q);
    let sample = (messages / 100).max(1);
    let consumer = Peer::start(&[
        "shmq-consume".into(),
        path.clone(),
        messages.to_string(),
        payload.to_string(),
        "1".into(),
        "1".into(),
        "1".into(),
        "1".into(),
        sample.to_string(),
    ])?;
    let producer = Peer::start(&[
        "shmq-produce".into(),
        path.clone(),
        messages.to_string(),
        payload.to_string(),
        "0".into(),
        sample.to_string(),
    ])?;
    let (sent, produced, p_extra) = producer.finish()?;
    let (count, consumed, c_extra) = consumer.finish()?;
    if count != messages || sent != messages {
        return Err(format!(
            "{sent} sent, {count} of {messages} messages arrived"
        ));
    }
    let figures = MemoryFigures {
        messages,
        sampled_after: sample,
        file_bytes,
        file_bytes_end: size(&path),
        producer: Resident::parse(&p_extra)?,
        consumer: Resident::parse(&c_extra)?,
    };
    let mut row = Row::new("memory", "shmq", payload).rate(count, consumed.max(produced));
    row.note = format!(
        "{messages} msgs; file {} KiB{}; after 1% -> at the end: producer {}; consumer {}",
        file_bytes / 1024,
        if figures.file_bytes_end == file_bytes {
            String::new()
        } else {
            format!(" -> {} KiB: CHANGED", figures.file_bytes_end / 1024)
        },
        figures.producer.show(),
        figures.consumer.show(),
    );
    row.memory = Some(figures);
    Ok(row)
}
