//! Tests of the ABI called from Rust, where the C tests (bindings/c/tests/c_abi.rs)
//! cannot reach: two handles handing out equal tokens.

/// Two queues used alike hand out equal tokens: a message claimed from one
/// must be refused by every call of the other (guarantee G12), with nothing
/// changed on either, and so must a message of a closed handle given to a
/// newer handle of the same file.
#[test]
fn a_message_of_another_queue_or_handle_is_refused() {
    use super::claim::*;
    use super::options::shmq_options;
    use super::queue::*;
    use super::send::*;
    use super::status::{shmq_last_error, shmq_status::*};
    use std::ffi::{CStr, CString};

    fn last_error() -> String {
        // SAFETY: shmq_last_error returns a valid NUL-terminated string.
        unsafe { CStr::from_ptr(shmq_last_error()) }
            .to_string_lossy()
            .into_owned()
    }
    let dir = std::env::temp_dir().join(format!("shmq-c-foreign-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let px = CString::new(dir.join("x").to_str().unwrap()).unwrap();
    let py = CString::new(dir.join("y").to_str().unwrap()).unwrap();
    let _ = std::fs::remove_file(px.to_str().unwrap());
    let _ = std::fs::remove_file(py.to_str().unwrap());
    let o = shmq_options {
        capacity: 4,
        max_message_size: 16,
        ..Default::default()
    };
    let (mut x, mut y) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: every pointer below is valid for the call; handles are
    // shmq's, messages are filled by claims before use.
    unsafe {
        assert_eq!(shmq_create(px.as_ptr(), &o, &mut x), SHMQ_OK);
        assert_eq!(shmq_create(py.as_ptr(), &o, &mut y), SHMQ_OK);
        for (q, b) in [(x, b"from x"), (y, b"from y")] {
            let st = shmq_send(q, b.as_ptr().cast(), b.len(), 0, 0, 0);
            assert_eq!(st, SHMQ_OK);
        }
        let mut mx: shmq_message = std::mem::zeroed();
        let mut my: shmq_message = std::mem::zeroed();
        assert_eq!(shmq_claim(x, &mut mx, 0), SHMQ_OK);
        assert_eq!(shmq_claim(y, &mut my, 0), SHMQ_OK);
        let refused = |st, op: &str| {
            assert_eq!(st, SHMQ_INVALID_ARGUMENT, "{op}: {}", last_error());
            let e = last_error();
            assert!(
                e.contains(op) && e.contains(py.to_str().unwrap()) && e.contains("another"),
                "{op}: {e}"
            );
        };
        refused(shmq_ack(y, &mx), "shmq_ack");
        refused(shmq_nack(y, &mx, 0), "shmq_nack");
        refused(shmq_reject(y, &mx, c"no".as_ptr()), "shmq_reject");
        refused(shmq_extend_lease(y, &mx, 1_000_000), "shmq_extend_lease");
        let mut buf = [0u8; 16];
        let mut n = 99usize;
        refused(
            shmq_read(y, &mx, buf.as_mut_ptr().cast(), buf.len(), &mut n),
            "shmq_read",
        );
        assert_eq!(n, 99, "out_len written on failure");
        // A batch with one foreign message acks nothing, not even y's own.
        let batch = [my, mx];
        let mut acked = 99usize;
        refused(
            shmq_ack_batch(y, batch.as_ptr(), 2, &mut acked),
            "shmq_ack_batch",
        );
        assert_eq!(acked, 99);
        // Nothing changed: both claims are still held by their handles.
        assert_eq!(
            shmq_read(y, &my, buf.as_mut_ptr().cast(), buf.len(), &mut n),
            SHMQ_OK
        );
        assert_eq!(&buf[..n], b"from y");
        assert_eq!(shmq_extend_lease(x, &mx, 1_000_000_000), SHMQ_OK);
        assert_eq!(shmq_ack(y, &my), SHMQ_OK);
        assert_eq!(shmq_claim(y, &mut my, 0), SHMQ_EMPTY);
        // A message of a closed handle, to a newer handle of the same file.
        assert_eq!(shmq_close(x), SHMQ_OK);
        let mut x2 = std::ptr::null_mut();
        assert_eq!(shmq_open(px.as_ptr(), &mut x2), SHMQ_OK);
        let mut again: shmq_message = std::mem::zeroed();
        assert_eq!(shmq_claim(x2, &mut again, 0), SHMQ_OK);
        assert_eq!(again.deliveries, 2);
        assert_eq!(shmq_ack(x2, &mx), SHMQ_INVALID_ARGUMENT, "{}", last_error());
        assert_eq!(shmq_ack(x2, &again), SHMQ_OK);
        assert_eq!(shmq_close(x2), SHMQ_OK);
        assert_eq!(shmq_close(y), SHMQ_OK);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A file of an older format version is refused with `SHMQ_INCOMPATIBLE`,
/// and the last error names both versions and `shmq migrate` (the same
/// text as the Rust API and the command line).
#[test]
fn an_older_file_is_refused_with_the_command_that_moves_it() {
    use super::queue::*;
    use super::status::{shmq_last_error, shmq_status::*};
    use std::ffi::{CStr, CString};

    // From this crate's directory, or from the root's when the root's
    // tests/damaged.rs includes this file.
    let gz = [
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/migrate-v1.shmq.gz"
        ),
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/migrate-v1.shmq.gz"
        ),
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .expect("the fixture tests/fixtures/migrate-v1.shmq.gz");
    let Ok(out) = std::process::Command::new("gzip")
        .args(["-dc", gz])
        .output()
    else {
        eprintln!("skipped: gzip is not installed");
        return;
    };
    assert!(out.status.success());
    let path = std::env::temp_dir().join(format!("shmq-c-v1-{}", std::process::id()));
    std::fs::write(&path, out.stdout).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let p = CString::new(path.to_str().unwrap()).unwrap();
    let mut q = std::ptr::null_mut();
    // SAFETY: a valid path and out-pointer.
    let st = unsafe { shmq_open(p.as_ptr(), &mut q) };
    // SAFETY: shmq_last_error returns a valid NUL-terminated string.
    let msg = unsafe { CStr::from_ptr(shmq_last_error()) }
        .to_string_lossy()
        .into_owned();
    let _ = std::fs::remove_file(&path);
    assert_eq!(st, SHMQ_INCOMPATIBLE);
    assert!(q.is_null());
    assert!(
        msg.contains("made by format version 1")
            && msg.contains("move its messages into a new file with `shmq migrate OLD NEW`"),
        "{msg}"
    );
}

/// `shmq_purge` removes the waiting messages, leaves a claim in flight
/// (whose ack succeeds) and counts them in `shmq_stats.purged`.
#[test]
fn purge_removes_waiting_messages_and_counts_them() {
    use super::claim::*;
    use super::dlq::shmq_purge;
    use super::options::shmq_options;
    use super::queue::*;
    use super::send::*;
    use super::stats::{shmq_get_stats, shmq_stats};
    use super::status::shmq_status::*;
    use std::ffi::CString;

    let dir = std::env::temp_dir().join(format!("shmq-c-purge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = CString::new(dir.join("q").to_str().unwrap()).unwrap();
    let _ = std::fs::remove_file(path.to_str().unwrap());
    let o = shmq_options {
        capacity: 8,
        max_message_size: 16,
        ..Default::default()
    };
    let mut q = std::ptr::null_mut();
    // SAFETY: every pointer below is valid for the call; the handle is
    // shmq's, the message is filled by a claim before use.
    unsafe {
        assert_eq!(shmq_create(path.as_ptr(), &o, &mut q), SHMQ_OK);
        for b in [b"a", b"b", b"c"] {
            assert_eq!(shmq_send(q, b.as_ptr().cast(), 1, 0, 0, 0), SHMQ_OK);
        }
        let mut m: shmq_message = std::mem::zeroed();
        assert_eq!(shmq_claim(q, &mut m, 0), SHMQ_OK);
        let mut n = 99u64;
        assert_eq!(shmq_purge(q, &mut n), SHMQ_OK);
        assert_eq!(n, 2);
        assert_eq!(shmq_purge(q, std::ptr::null_mut()), SHMQ_OK);
        assert_eq!(shmq_ack(q, &m), SHMQ_OK);
        let mut s: shmq_stats = std::mem::zeroed();
        s.size = std::mem::size_of::<shmq_stats>() as u32;
        assert_eq!(shmq_get_stats(q, &mut s), SHMQ_OK);
        assert_eq!((s.purged, s.depth, s.acked), (2, 0, 1));
        assert_eq!(
            shmq_purge(std::ptr::null_mut(), &mut n),
            SHMQ_INVALID_ARGUMENT
        );
        assert_eq!(shmq_close(q), SHMQ_OK);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Expiry through the ABI: `shmq_options.message_ttl_ns` with
/// `SHMQ_FLAG_EXPIRY_DROP`, and `shmq_send_options.ttl_ns` overriding it;
/// a `shmq_send_options` of ABI 2's size (without `ttl_ns`) is accepted.
#[test]
fn expiry_options_and_a_version_2_send_options() {
    use super::claim::*;
    use super::options::*;
    use super::queue::*;
    use super::send::*;
    use super::stats::{shmq_get_stats, shmq_stats};
    use super::status::shmq_status::*;
    use std::ffi::CString;

    let dir = std::env::temp_dir().join(format!("shmq-c-ttl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = CString::new(dir.join("q").to_str().unwrap()).unwrap();
    let _ = std::fs::remove_file(path.to_str().unwrap());
    let o = shmq_options {
        capacity: 8,
        max_message_size: 16,
        message_ttl_ns: 5_000_000,
        flags: SHMQ_FLAG_EXPIRY_DROP,
        ..Default::default()
    };
    let mut q = std::ptr::null_mut();
    // SAFETY: every pointer below is valid for the call; the handle is
    // shmq's, the message is filled by a claim before use.
    unsafe {
        assert_eq!(shmq_create(path.as_ptr(), &o, &mut q), SHMQ_OK);
        // The queue's default: expires.
        assert_eq!(shmq_send(q, b"a".as_ptr().cast(), 1, 0, 0, 0), SHMQ_OK);
        // Its own, long TTL.
        let mut so: shmq_send_options = std::mem::zeroed();
        shmq_send_options_init(&mut so);
        so.ttl_ns = 3_600_000_000_000;
        let st = shmq_send_ex(
            q,
            b"b".as_ptr().cast(),
            1,
            &so,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        assert_eq!(st, SHMQ_OK);
        // A caller compiled against ABI 2: its struct ends before ttl_ns,
        // which then takes its default (the queue's TTL). The bytes past
        // its size are not read.
        let mut old: shmq_send_options = std::mem::zeroed();
        shmq_send_options_init(&mut old);
        old.size = std::mem::offset_of!(shmq_send_options, ttl_ns) as u32;
        old.ttl_ns = 3_600_000_000_000;
        let st = shmq_send_ex(
            q,
            b"c".as_ptr().cast(),
            1,
            &old,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        assert_eq!(st, SHMQ_OK);
        std::thread::sleep(std::time::Duration::from_millis(60));
        let mut m: shmq_message = std::mem::zeroed();
        assert_eq!(shmq_claim(q, &mut m, 0), SHMQ_OK);
        assert_eq!(std::slice::from_raw_parts(m.data, m.len), b"b");
        assert_eq!(shmq_ack(q, &m), SHMQ_OK);
        assert_eq!(shmq_claim(q, &mut m, 0), SHMQ_EMPTY);
        let mut s: shmq_stats = std::mem::zeroed();
        s.size = std::mem::size_of::<shmq_stats>() as u32;
        assert_eq!(shmq_get_stats(q, &mut s), SHMQ_OK);
        assert_eq!((s.expired, s.dead_letters), (2, 0));
        assert_eq!(shmq_close(q), SHMQ_OK);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
