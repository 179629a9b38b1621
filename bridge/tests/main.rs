//! Router tests: the HTTP surface without a socket (axum `examples/testing`).
//! Everything that needs SLURM itself lives in the e2e crate (`tests/`).

mod health;
