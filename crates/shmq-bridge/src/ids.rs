//! What a message is called on the far side: its subject, its headers and
//! its de-duplication id.
//!
//! The id (`Nats-Msg-Id`) is `shmq-<file id>-<position>-<version>`:
//!
//! - the file id (16 hex digits) is drawn at random when the queue file is
//!   created, so two files, on one host or on two, never share ids;
//! - the position is the message's ring position, given once when it is
//!   reserved and kept by its slot through every redelivery: a bridge killed
//!   after the publish and before the local ack gets the message again under
//!   a new claim, publishes the same id, and JetStream drops the copy;
//! - the version tells a latest-only replacement from the message it
//!   replaced: the replacement keeps the slot (and its position) but is a
//!   new message, and must not be dropped as a copy of the old one.
//!
//! A position is never given twice in a file's life (64 bits at one per
//! message), so the id is unique for as long as the file exists.

use async_nats::HeaderMap;

use crate::local::Claimed;

/// The header carrying the message's key (absent: keyless).
pub const KEY_HEADER: &str = "Shmq-Key";
/// The header carrying the message's version.
pub const VERSION_HEADER: &str = "Shmq-Version";
/// JetStream's de-duplication header.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";

/// The de-duplication id of a message.
pub fn msg_id(file_id: u64, position: u64, version: u64) -> String {
    format!("shmq-{file_id:016x}-{position}-{version}")
}

/// The subject a message is published on: `PREFIX.<key>`, or `PREFIX` for
/// a keyless message. When the stream keeps one message per subject (a
/// latest-only queue), a keyless message gets a subject of its own,
/// `PREFIX._.<file id>.<position>`, so that it never replaces another.
pub fn subject(prefix: &str, file_id: u64, conflated: bool, m: &Claimed) -> String {
    if m.key != 0 {
        format!("{prefix}.{}", m.key)
    } else if conflated {
        format!("{prefix}._.{file_id:016x}.{}", m.position)
    } else {
        prefix.to_string()
    }
}

/// The headers of a message.
pub fn headers(file_id: u64, m: &Claimed) -> HeaderMap {
    let mut h = HeaderMap::new();
    if m.key != 0 {
        h.insert(KEY_HEADER, m.key.to_string().as_str());
        h.insert(VERSION_HEADER, m.version.to_string().as_str());
    }
    h.insert(
        MSG_ID_HEADER,
        msg_id(file_id, m.position, m.version).as_str(),
    );
    h
}

/// The key and version a received message carries: `(0, 0)` for a keyless
/// one; an error names a header that does not parse.
pub fn parse(headers: Option<&HeaderMap>) -> Result<(u64, u64), String> {
    let Some(h) = headers else {
        return Ok((0, 0));
    };
    let num = |name: &str| -> Result<u64, String> {
        match h.get(name) {
            None => Ok(0),
            Some(v) => v
                .as_str()
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("header {name}: {:?} is not a number", v.as_str())),
        }
    };
    let key = num(KEY_HEADER)?;
    let version = if key == 0 { 0 } else { num(VERSION_HEADER)? };
    Ok((key, version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn claimed(key: u64, version: u64, position: u64) -> Claimed {
        Claimed {
            token: 1,
            key,
            version,
            position,
            deliveries: 1,
            data: Bytes::new(),
        }
    }

    #[test]
    fn ids_are_stable_across_claims_and_tell_replacements_apart() {
        let a = claimed(7, 3, 100);
        let mut again = a.clone();
        again.token = 99;
        again.deliveries = 2;
        let h1 = headers(0xabc, &a);
        let h2 = headers(0xabc, &again);
        assert_eq!(h1.get(MSG_ID_HEADER), h2.get(MSG_ID_HEADER));
        let replaced = claimed(7, 4, 100);
        assert_ne!(
            headers(0xabc, &replaced).get(MSG_ID_HEADER),
            h1.get(MSG_ID_HEADER)
        );
        assert_ne!(headers(0xabd, &a).get(MSG_ID_HEADER), h1.get(MSG_ID_HEADER));
        assert_eq!(parse(Some(&h1)), Ok((7, 3)));
    }

    #[test]
    fn subjects() {
        assert_eq!(subject("s", 1, false, &claimed(5, 1, 9)), "s.5");
        assert_eq!(subject("s", 1, false, &claimed(0, 0, 9)), "s");
        assert_eq!(
            subject("s", 1, true, &claimed(0, 0, 9)),
            "s._.0000000000000001.9"
        );
        assert_eq!(parse(None), Ok((0, 0)));
    }
}
