//! End-to-end tests against the real local cluster (`slurm-conf/cluster`).
//! One binary, one module per area; the harness lives in `harness/`.

mod bridge;
mod cli;
mod cluster;
mod docs;
mod health;
mod kernels;
mod lifecycle;
mod monitoring;
mod mpi;
mod oidc;
mod operations;
mod scheduling;
mod security;
mod spank;
mod submit_paths;
mod web;
mod workers;
