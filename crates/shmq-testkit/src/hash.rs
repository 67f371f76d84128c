//! FNV-1a, 64 bits: payload checksums and the choices that every process
//! of a test must make alike (payload lengths, poison, injected faults).

/// FNV-1a of `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// FNV-1a of a number's little-endian bytes.
pub fn id_hash(id: u64) -> u64 {
    fnv1a(&id.to_le_bytes())
}
