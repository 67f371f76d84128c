//! The `shmq` command line.
fn main() {
    println!("shmq");
}
