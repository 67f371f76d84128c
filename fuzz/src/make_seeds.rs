//! Writes the seed corpus: `cargo run --manifest-path fuzz/Cargo.toml --bin
//! make_seeds` (from the repository root) fills `fuzz/seeds/<target>/`.

#[path = "harness.rs"]
mod harness;

use shmq::internals::layout::{self, hdr};
use std::path::Path;

fn put(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn patch(kind: u8, off: u16, value: u64) -> Vec<u8> {
    let mut v = vec![kind];
    v.extend_from_slice(&off.to_le_bytes());
    v.extend_from_slice(&value.to_le_bytes());
    v
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let oo = root.join("open_and_operate");
    // Every operation once, on every template, unpatched.
    let all_ops: Vec<u8> = (0u8..24)
        .flat_map(|op| [op, 3, 1, 2])
        .chain([
            3, 3, 5, 0, 6, 1, 7, 0, 0, 8, 2, 10, 11, 12, 13, 14, 0, 15, 200,
        ])
        .collect();
    for t in 0..harness::TEMPLATES as u8 {
        let mut s = vec![1u8, t, 0];
        s.extend_from_slice(&all_ops);
        put(&oo, &format!("template{t}-ops"), &s);
        // The same with a hostile (checksummed) header and an inspector.
        let mut s = vec![1u8 | 4 | 8, t, 2];
        s.extend(patch(3, hdr::LEASE_NS as u16, 12)); // lease = i64::MAX
        s.extend(patch(24, 1, 3)); // hot word: head cursor
        s.extend_from_slice(&all_ops);
        put(&oo, &format!("template{t}-hostile"), &s);
        // Scribbles in each region.
        for region in 0u8..8 {
            let mut s = vec![1u8, t, 3];
            for k in 0..3u16 {
                s.extend(patch(
                    region << 2 | (k as u8 % 4),
                    k * 8 + 8,
                    0xdead_beef << k,
                ));
            }
            s.extend_from_slice(&all_ops);
            put(&oo, &format!("template{t}-region{region}"), &s);
        }
        // Raw image of the template.
        let tpl = harness::build_template(t as usize);
        let mut raw = vec![0u8];
        raw.extend_from_slice(&tpl.bytes);
        put(&oo, &format!("template{t}-raw"), &raw);
    }
    // Headers: a valid one of each template, and a few broken ones.
    let hd = root.join("header");
    for t in 0..harness::TEMPLATES {
        let tpl = harness::build_template(t);
        let mut s = (tpl.layout.file_size as u64).to_le_bytes().to_vec();
        s.push(0);
        s.extend_from_slice(&tpl.bytes[..layout::HEADER_SIZE]);
        put(&hd, &format!("valid{t}"), &s);
        let mut s2 = s.clone();
        s2[8] = 0x17; // fix magic/version/checksum, length from the header
        put(&hd, &format!("fixed{t}"), &s2);
    }
    put(&hd, "empty", &[0u8; 9]);
    println!("seeds written to {}", root.display());
}
