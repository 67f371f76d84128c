//! The C ABI (see `include/shmq.h`).
