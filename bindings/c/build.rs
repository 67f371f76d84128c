//! Build script: gives the C shared library its soname, so programs link
//! against `libshmq.so.0` and a new ABI version can live beside the old.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libshmq.so.0");
    println!("cargo:rerun-if-changed=build.rs");
}
