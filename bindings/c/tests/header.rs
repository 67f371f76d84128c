//! Regenerates `include/shmq.h` with the pinned cbindgen and fails when the
//! checked-in header differs. `SHMQ_BLESS=1` rewrites it instead.

use std::path::Path;

#[test]
fn header_is_up_to_date() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/lib.rs"))
        .generate()
        .expect("cbindgen failed on bindings/c/src")
        .write(&mut out);
    let fresh = String::from_utf8(out).expect("utf-8 header");
    let path = root.join("../../include/shmq.h");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    if std::env::var_os("SHMQ_BLESS").is_some_and(|v| v == "1") {
        if old != fresh {
            std::fs::write(&path, &fresh).expect("writing include/shmq.h");
            eprintln!("rewrote {}", path.display());
        }
        return;
    }
    assert!(
        old == fresh,
        "include/shmq.h is stale: regenerate it with \
         `SHMQ_BLESS=1 cargo test --test header` and commit it.\n{}",
        first_difference(&old, &fresh)
    );
}

fn first_difference(old: &str, new: &str) -> String {
    for (i, (a, b)) in old.lines().zip(new.lines()).enumerate() {
        if a != b {
            return format!("line {}:\n  checked in: {a}\n  generated:  {b}", i + 1);
        }
    }
    format!(
        "the files differ in length ({} and {} lines)",
        old.lines().count(),
        new.lines().count()
    )
}
