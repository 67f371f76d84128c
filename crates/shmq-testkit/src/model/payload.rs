//! Payloads that name their message: the message id (little-endian), then a
//! pattern derived from the id, so a claim tells which message it got and
//! that its bytes are the ones sent.

/// The payload of message `id`, `len` bytes long (at least the 8 bytes of
/// the id).
pub fn payload(id: u64, len: usize) -> Vec<u8> {
    let mut v = id.to_le_bytes().to_vec();
    v.extend((8..len).map(|k| (id as u8).wrapping_mul(31).wrapping_add(k as u8)));
    v
}

/// The message id a payload names (check the rest with [`payload`]); a
/// payload shorter than 8 bytes names the id its bytes spell, zero-extended.
pub fn id_of(data: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = data.len().min(8);
    b[..n].copy_from_slice(&data[..n]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_names_its_message() {
        for (id, len) in [(0, 8), (1, 24), (u64::MAX, 32), (300, 9)] {
            let p = payload(id, len);
            assert_eq!((p.len(), id_of(&p)), (len, id));
        }
    }
}
