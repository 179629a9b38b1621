//! Router tests: the HTTP surface through `tower::ServiceExt::oneshot`,
//! without a socket (axum `examples/testing`). Nothing here reaches SLURM:
//! everything that does lives in the e2e crate (`tests/`).

mod support;

mod auth;
mod health;
mod health_reports;
mod jobs;
mod users;
