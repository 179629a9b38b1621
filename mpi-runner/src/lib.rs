//! Verified parallel compute kernels for Cloud Odyssey.
//!
//! Every kernel computes its answer in parallel with MPI and checks it
//! against a serial computation of the same problem before anything reports
//! success: no kernel result goes out unverified.
//!
//! Without the default `mpi` feature only [`params`] and [`report`] build:
//! the bridge uses them to validate kernel jobs and read their results
//! without linking MPI.

/// Kernels, one module each: the parallel version and its serial reference.
#[cfg(feature = "mpi")]
pub mod kernels;
/// Kernel parameters and their validation, shared with the bridge.
pub mod params;
/// The JSON result every kernel run produces, and where ranks ran.
pub mod report;
