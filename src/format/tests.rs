//! The layout's own checks: regions, limits, the header round trip.

use super::*;

fn params() -> Params {
    Params {
        capacity: 16,
        max_message_size: 64,
        key_capacity: 8,
        dlq_capacity: 4,
        participant_capacity: 4,
    }
}

#[test]
fn regions_do_not_overlap_and_are_aligned() {
    let l = Layout::new(params()).unwrap();
    assert_eq!(l.slot_stride, 192);
    assert!(l.participants_offset >= HEADER_SIZE);
    assert!(l.slots_offset >= l.participants_offset + 4 * part::STRIDE);
    assert!(l.keys_offset >= l.slots_offset + 16 * l.slot_stride);
    assert!(l.dlq_offset >= l.keys_offset + 8 * key::SIZE);
    assert!(l.file_size >= l.dlq_offset + 4 * l.dlq_stride);
    for off in [
        l.participants_offset,
        l.slots_offset,
        l.keys_offset,
        l.dlq_offset,
    ] {
        assert_eq!(off % HOT_ALIGN, 0);
    }
    assert_eq!(part::STRIDE % HOT_ALIGN, 0);
}

#[test]
fn latest_only_queues_have_a_replacement_record_per_participant() {
    let plain = Layout::new(params()).unwrap();
    assert_eq!(plain.replacement(0), None);
    let l = Layout::with_flags(params(), flags::LATEST_ONLY).unwrap();
    assert_eq!(
        (l.slots_offset, l.keys_offset, l.dlq_offset),
        (plain.slots_offset, plain.keys_offset, plain.dlq_offset)
    );
    assert!(l.replace_offset >= l.dlq_offset + 4 * l.dlq_stride);
    assert_eq!(l.replace_offset % HOT_ALIGN, 0);
    assert!(l.replace_stride >= replace::PAYLOAD + 64);
    assert_eq!(l.replacement(1), Some(l.replace_offset + l.replace_stride));
    assert_eq!(l.replacement(4), None);
    assert!(l.file_size >= l.replacement(3).unwrap() + l.replace_stride);
    let mut words = header_of(&l);
    words[hdr::FLAGS / 8] = flags::LATEST_ONLY;
    words[hdr::CHECKSUM / 8] = header_checksum(&|o| words[o / 8]);
    assert_eq!(
        Layout::from_header(l.file_size, |o| words[o / 8]).unwrap(),
        l
    );
    // The flags are part of the checksummed header: a file sized for
    // one layout is refused under the other.
    words[hdr::FLAGS / 8] = 0;
    words[hdr::CHECKSUM / 8] = header_checksum(&|o| words[o / 8]);
    if plain.file_size != l.file_size {
        assert!(Layout::from_header(l.file_size, |o| words[o / 8]).is_err());
    }
}

#[test]
fn out_of_range_parameters_are_refused() {
    for p in [
        Params {
            capacity: 0,
            ..params()
        },
        Params {
            max_message_size: 0,
            ..params()
        },
        Params {
            participant_capacity: 2000,
            ..params()
        },
        Params {
            capacity: u64::MAX,
            ..params()
        },
    ] {
        assert_eq!(
            Layout::new(p).unwrap_err().status(),
            Status::InvalidArgument
        );
    }
}

fn header_of(l: &Layout) -> Vec<u64> {
    let mut words = vec![0u64; HEADER_SIZE / 8];
    words[hdr::MAGIC / 8] = MAGIC;
    for (off, v) in l.header_words() {
        words[off / 8] = v;
    }
    words[hdr::CHECKSUM / 8] = header_checksum(&|o| words[o / 8]);
    words
}

#[test]
fn header_round_trips_and_every_flipped_word_is_caught() {
    let l = Layout::new(params()).unwrap();
    let words = header_of(&l);
    assert_eq!(
        Layout::from_header(l.file_size, |o| words[o / 8]).unwrap(),
        l
    );
    assert!(Layout::from_header(l.file_size - 1, |o| words[o / 8]).is_err());
    for i in 0..=hdr::CHECKSUM / 8 {
        let mut bad = words.clone();
        bad[i] ^= 1 << (i % 64);
        let err = Layout::from_header(l.file_size, |o| bad[o / 8]).unwrap_err();
        assert!(matches!(
            err.status(),
            Status::Corrupt | Status::Incompatible
        ));
    }
}
