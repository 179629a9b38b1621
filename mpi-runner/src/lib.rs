//! Verified parallel compute kernels for Cloud Odyssey.
//!
//! Every kernel computes its answer in parallel with MPI and checks it
//! against a serial computation of the same problem before anything reports
//! success: no kernel result goes out unverified.

/// Kernels, one module each: the parallel version and its serial reference.
pub mod kernels;
/// The JSON result every kernel run produces, and where ranks ran.
pub mod report;
