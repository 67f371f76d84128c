//! The payload of a message in a SIGKILL test or torture run: derived
//! entirely from its ledger id, key and version, and closed by a checksum, so a consumer recognises a
//! torn, foreign or misdelivered payload without asking anybody.
//!
//! ```text
//!  0        4        8                16               24                32
//!  +--------+--------+----------------+----------------+-----------------+----------//-----+----------+
//!  | MAGIC  |  len   |       id       |      key       | version as sent | filler(id)      | FNV-1a   |
//!  +--------+--------+----------------+----------------+-----------------+----------//-----+----------+
//! ```
//!
//! The length (between [`MIN_LEN`] and the queue's largest payload) and the
//! filler bytes are functions of the id, so a payload that decodes is
//! exactly the one its producer wrote. The version is the one passed to the
//! send: 0 when the engine chose it.

/// "TRTR".
const MAGIC: u32 = 0x5254_5254;
/// Magic, length, id, key, version and the checksum.
pub const MIN_LEN: usize = 40;

pub use crate::hash::{fnv1a, id_hash};

/// What a payload says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The ledger id.
    pub id: u64,
    /// The key it was sent with (0 = none).
    pub key: u64,
    /// The version it was sent with (0 = the engine's next version).
    pub version: u64,
}

/// The payload of message `id`, at most `max_len` bytes (at least
/// [`MIN_LEN`]).
pub fn encode(id: u64, key: u64, version: u64, max_len: usize) -> Vec<u8> {
    let max_len = max_len.max(MIN_LEN);
    let h = id_hash(id);
    let len = MIN_LEN + (h % (max_len - MIN_LEN + 1) as u64) as usize;
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&MAGIC.to_le_bytes());
    v.extend_from_slice(&(len as u32).to_le_bytes());
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(&key.to_le_bytes());
    v.extend_from_slice(&version.to_le_bytes());
    let fill = h | 1;
    for k in 0..len - MIN_LEN {
        v.push((fill.rotate_left(k as u32 * 7) as u8) ^ k as u8);
    }
    let sum = fnv1a(&v);
    v.extend_from_slice(&sum.to_le_bytes());
    debug_assert_eq!(v.len(), len);
    v
}

/// The id, key and version of a well-formed payload; `None` for a torn or
/// foreign one.
pub fn decode(p: &[u8], max_len: usize) -> Option<Decoded> {
    if p.len() < MIN_LEN {
        return None;
    }
    let u32_at = |o: usize| {
        p.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        p.get(o..o + 8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a)
        })
    };
    let body = p.len() - 8;
    if u32_at(0)? != MAGIC || u32_at(4)? as usize != p.len() || fnv1a(&p[..body]) != u64_at(body)? {
        return None;
    }
    let d = Decoded {
        id: u64_at(8)?,
        key: u64_at(16)?,
        version: u64_at(24)?,
    };
    // The length and the filler follow from the id: a payload whose
    // checksum matches by accident still fails here.
    (encode(d.id, d.key, d.version, max_len) == p).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_flipped_byte_is_caught() {
        for id in [0u64, 1, 77, 1 << 40, u64::MAX] {
            let p = encode(id, 5, 9, 128);
            assert!((MIN_LEN..=128).contains(&p.len()));
            assert_eq!(
                decode(&p, 128),
                Some(Decoded {
                    id,
                    key: 5,
                    version: 9
                })
            );
            for i in 0..p.len() {
                let mut q = p.clone();
                q[i] ^= 0x40;
                assert_eq!(decode(&q, 128), None, "byte {i} of id {id}");
            }
            assert_eq!(decode(&p[..p.len() - 1], 128), None);
        }
        assert_eq!(encode(3, 0, 0, 0).len(), MIN_LEN);
    }
}
