use serde::{Deserialize, Serialize};

/// One rank's place in the run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Placement {
    pub rank: i32,
    /// `MPI_Get_processor_name`: the node's hostname (cN on the local cluster).
    pub node: String,
    pub pid: u32,
}

/// What a kernel run produces: written as JSON by rank 0 and collated by the
/// bridge into the job record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KernelResult {
    pub kernel: String,
    pub params: serde_json::Value,
    pub ranks: i32,
    /// Distinct node names, in rank order of first appearance.
    pub nodes: Vec<String>,
    pub placement: Vec<Placement>,
    /// Slowest rank's time for the parallel computation, verification excluded.
    pub wall_time_s: f64,
    pub gflop_s: Option<f64>,
    pub bandwidth_gb_s: Option<f64>,
    /// Distance from the serial reference, in the kernel's own norm.
    pub error_norm: f64,
    /// Largest error_norm that counts as verified.
    pub tolerance: f64,
    pub verified: bool,
    /// Kernel-specific figures (residual history, latency tables, ...).
    pub details: serde_json::Value,
}

impl KernelResult {
    /// Distinct nodes of a placement list, first appearance first.
    pub fn nodes_of(placement: &[Placement]) -> Vec<String> {
        let mut nodes: Vec<String> = Vec::new();
        for p in placement {
            if !nodes.contains(&p.node) {
                nodes.push(p.node.clone());
            }
        }
        nodes
    }
}
