//! Batches: `claim_many` and `ack_many`, and the packed calls, which move
//! a batch of payloads packed in one buffer with one call into the engine
//! and no Python object per message (`send_packed`, `take_packed`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use shmq::{Outcome, Status, Timeout};

use crate::args::payload;
use crate::claim::Message;
use crate::detach::Detached;
use crate::errors::{err, raise};
use crate::queue::{borrow, Queue};

#[pymethods]
impl Queue {
    /// Claims up to ``count`` messages (``count`` > 0, timeout in ns as the
    /// C API counts it): a list of Message.
    fn _claim_many(slf: &Bound<'_, Self>, count: usize, timeout_ns: i64) -> PyResult<Vec<Message>> {
        let py = slf.py();
        let timeout = Timeout::from_nanos(timeout_ns);
        let me = borrow(slf.get(), py, "claim_many")?;
        let q = me.handle(py)?;
        let mut got = Vec::new();
        let mut r = q.claim_batch_into(count, Timeout::TryOnce, &mut got);
        if !matches!(timeout, Timeout::TryOnce)
            && matches!(&r, Err(e) if e.status() == Status::Empty)
        {
            let w = Detached((q, &mut got));
            r = py
                .detach(move || {
                    let (q, got) = w.get();
                    Detached(q.claim_batch_into(count, timeout, got))
                })
                .get();
        }
        r.map_err(|e| err(py, e))?;
        let mut out = Vec::with_capacity(got.len());
        for m in &got {
            let claimed_ns = me.sample(m.claimed_ns());
            out.push(Message::new(slf, m, claimed_ns));
        }
        Ok(out)
    }

    /// Acks every message not yet settled; returns how many were acked (a
    /// message whose lease was lost is skipped). Messages claimed through
    /// another Queue raise InvalidArgument, and none is acked.
    fn ack_many(slf: &Bound<'_, Self>, messages: &Bound<'_, PyAny>) -> PyResult<usize> {
        let py = slf.py();
        let mut todo = Vec::new();
        for m in messages.try_iter()? {
            let m = m?;
            let m = m.cast::<Message>()?.clone();
            if m.get().done.load(Ordering::Relaxed) {
                continue;
            }
            if !m.get().queue.bind(py).is(slf) {
                let path = &slf.get().path;
                return Err(raise(
                    py,
                    Status::InvalidArgument,
                    &format!(
                        "{path}: ack_many: a message was claimed through another handle (Queue)"
                    ),
                ));
            }
            todo.push(m);
        }
        if todo.is_empty() {
            return Ok(0);
        }
        let me = borrow(slf.get(), py, "ack_many")?;
        let q = me.handle(py)?;
        for m in &todo {
            m.get().before_outcome(py)?;
        }
        let mut acked = 0;
        for m in &todo {
            m.get().done.store(true, Ordering::Relaxed);
        }
        for m in &todo {
            let m = m.get();
            let (claimed, enqueued) = m.times();
            match q.settle(m.token, &Outcome::Ack, claimed, enqueued) {
                Ok(_) => acked += 1,
                Err(e) if e.status() == Status::LeaseLost => {}
                Err(e) => return Err(err(py, e)),
            }
        }
        Ok(acked)
    }

    /// Sends the messages packed in `data`: each `size` bytes long when
    /// `lens` is None, else message i is `lens[i]` bytes (checked by the
    /// package: they add up to the length of `data`). Sends in batches
    /// until all are sent or `timeout_ns` has passed (-1: never; 0: what
    /// fits now); returns how many were sent.
    fn _send_packed(
        slf: &Bound<'_, Self>,
        data: &Bound<'_, PyAny>,
        size: usize,
        lens: Option<Vec<usize>>,
        timeout_ns: i64,
    ) -> PyResult<usize> {
        let py = slf.py();
        let data = payload(data)?;
        let bytes = data.bytes();
        let mut slices: Vec<&[u8]> = Vec::new();
        match lens {
            Some(lens) => {
                let mut at = 0usize;
                for n in lens {
                    let end = at.checked_add(n).filter(|&e| e <= bytes.len());
                    let Some(end) = end else {
                        return Err(raise(
                            py,
                            Status::InvalidArgument,
                            "send_packed: the sizes exceed the data",
                        ));
                    };
                    slices.push(&bytes[at..end]);
                    at = end;
                }
            }
            None if size > 0 => slices.extend(bytes.chunks(size)),
            None => {}
        }
        let me = borrow(slf.get(), py, "send_packed")?;
        let q = me.handle(py)?;
        let deadline =
            (timeout_ns > 0).then(|| shmq::monotonic_ns().saturating_add(timeout_ns as u64));
        let w = Detached((q, &slices[..]));
        let r = py.detach(move || {
            let (q, slices) = w.get();
            let mut sent = 0usize;
            while sent < slices.len() {
                let t = match (timeout_ns, deadline) {
                    (0, _) => Timeout::TryOnce,
                    (_, None) => Timeout::Forever,
                    (_, Some(d)) => {
                        let now = shmq::monotonic_ns();
                        if now >= d {
                            Timeout::TryOnce
                        } else {
                            Timeout::For(Duration::from_nanos(d - now))
                        }
                    }
                };
                match q.send_batch(&slices[sent..], t) {
                    Ok(n) => sent += n,
                    Err(e) if matches!(e.status(), Status::Full | Status::Timeout) => break,
                    Err(e) => return Detached(Err(e)),
                }
                if matches!(t, Timeout::TryOnce) && sent < slices.len() {
                    // Sent what fit now (or the deadline has passed).
                    if timeout_ns == 0 || deadline.is_some_and(|d| shmq::monotonic_ns() >= d) {
                        break;
                    }
                }
            }
            Detached(Ok(sent))
        });
        r.get().map_err(|e| err(py, e))
    }

    /// Claims up to `count` messages, copies their payloads one after
    /// another and acks them all: `(data, lengths)`.
    ///
    /// The whole batch is one engine call made without the GIL (its cost
    /// is spread over the batch): claim, checked copy into the reused
    /// scratch buffer (grown once to `count` messages of the largest size,
    /// never cleared), ack. Then one `bytes` of what was copied and the
    /// lengths; a length of at most 256 is a cached small int, so the list
    /// costs no allocation per message.
    fn _take_packed<'py>(
        slf: &Bound<'py, Self>,
        count: usize,
        timeout_ns: i64,
    ) -> PyResult<(Bound<'py, PyBytes>, Vec<usize>)> {
        let py = slf.py();
        let timeout = Timeout::from_nanos(timeout_ns);
        let max = slf.get().max_message_size as usize;
        let mut me = borrow(slf.get(), py, "take_packed")?;
        let mut scratch = std::mem::take(&mut me.scratch);
        let q = me.handle(py)?;
        // Room for a whole batch of the largest messages; a call asking for
        // more than fits in memory is refused rather than aborting.
        let want = count.checked_mul(max).filter(|&n| n <= isize::MAX as usize);
        let Some(want) = want else {
            me.scratch = scratch;
            let msg = format!(
                "{}: take_packed: count {count} is too large",
                slf.get().path
            );
            return Err(raise(py, Status::InvalidArgument, &msg));
        };
        if scratch.len() < want {
            scratch.resize(want, 0);
        }
        let w = Detached((q, &mut scratch));
        let r = py.detach(move || {
            let (q, scratch) = w.get();
            let r = (|| {
                // The queue's packed claim: in the common case one fast run
                // of claims on one clock read, each copy checked once after
                // it; a message whose claim ran out during its copy is left
                // out (someone else's now). Then the batch's acks by token.
                let mut lens = Vec::with_capacity(count.min(1024));
                let mut acks = Vec::with_capacity(count.min(1024));
                let mut end = 0;
                let claimed = q.claim_packed(scratch, count, timeout, |m, at, len| {
                    lens.push(len);
                    end = at + len;
                    let sampled = m.sampled();
                    acks.push((
                        m.token(),
                        sampled.then_some(m.claimed_ns()),
                        sampled.then_some(m.enqueued_ns()),
                    ));
                });
                match claimed {
                    Ok(_) => {}
                    // Every claim ran out during its copy: nothing is ours.
                    Err(e) if e.status() == Status::LeaseLost && acks.is_empty() => {
                        return Ok((0, Vec::new()));
                    }
                    Err(e) => return Err(e),
                }
                q.ack_tokens(acks.len(), |i| acks[i])?;
                Ok::<_, shmq::Error>((end, lens))
            })();
            Detached(r)
        });
        let out = r
            .get()
            .map(|(at, lens)| (PyBytes::new(py, &scratch[..at]), lens));
        me.scratch = scratch;
        out.map_err(|e| err(py, e))
    }
}
