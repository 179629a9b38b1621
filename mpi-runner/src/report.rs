use serde::Serialize;

/// One rank's place in the run.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Placement {
    pub rank: i32,
    /// `MPI_Get_processor_name`: the node's hostname (cN on the local cluster).
    pub node: String,
    pub pid: u32,
}

/// What a kernel run produces: written as JSON by rank 0 and collated by the
/// bridge into the job record.
#[derive(Debug, Clone, Serialize)]
pub struct KernelResult {
    pub kernel: &'static str,
    pub params: serde_json::Value,
    pub ranks: i32,
    /// Distinct node names, in rank order of first appearance.
    pub nodes: Vec<String>,
    pub placement: Vec<Placement>,
    pub wall_time_s: f64,
    /// Bytes each rank contributed per all-reduce times iterations, over time.
    pub bandwidth_gb_s: f64,
    /// Largest absolute difference from the serial reference.
    pub error_norm: f64,
    pub verified: bool,
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
