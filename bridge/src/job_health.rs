//! A job's health records (from the SPANK plugin), grouped for
//! `GET /v1/jobs/{id}/health`: per step, per node, per task. A pure
//! function of the stored records.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Serialize, PartialEq)]
pub struct StepHealth {
    /// SLURM's step: a number, or "batch" for a batch script.
    pub step: String,
    pub tasks: usize,
    pub tasks_ok: usize,
    pub nodes: Vec<NodeHealth>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct NodeHealth {
    pub node: String,
    /// The node's record for the step (load, memory, free space, start and
    /// end); null until it arrives.
    pub node_record: Option<Value>,
    /// Task records, by global task id.
    pub tasks: Vec<Value>,
}

/// The step a record belongs to, from its id `<job>.<step>.<node>.<what>`.
fn step_of(record: &Value) -> String {
    record["id"].as_str().and_then(|id| id.split('.').nth(1)).unwrap_or("?").to_owned()
}

fn task_ok(record: &Value) -> bool {
    record["exit_code"] == 0
}

/// Groups records by step (the batch step first, then steps in order), node
/// (by name) and task (by id).
pub fn group(records: &[Value]) -> Vec<StepHealth> {
    let mut steps: BTreeMap<(u8, u64, String), BTreeMap<String, NodeHealth>> = BTreeMap::new();
    for record in records {
        let step = step_of(record);
        let key = match step.parse::<u64>() {
            Ok(n) => (1, n, step),
            Err(_) => (0, 0, step),
        };
        let node = record["node"].as_str().unwrap_or("?").to_owned();
        let entry = steps.entry(key).or_default().entry(node.clone()).or_insert_with(|| NodeHealth {
            node,
            node_record: None,
            tasks: Vec::new(),
        });
        match record["kind"].as_str() {
            Some("node") => entry.node_record = Some(record.clone()),
            Some("task") => entry.tasks.push(record.clone()),
            _ => {}
        }
    }
    steps
        .into_iter()
        .map(|((_, _, step), nodes)| {
            let mut nodes: Vec<NodeHealth> = nodes.into_values().collect();
            for node in &mut nodes {
                node.tasks.sort_by_key(|t| t["task"].as_u64().unwrap_or(u64::MAX));
            }
            let tasks = nodes.iter().map(|n| n.tasks.len()).sum();
            let tasks_ok = nodes.iter().flat_map(|n| &n.tasks).filter(|t| task_ok(t)).count();
            StepHealth { step, tasks, tasks_ok, nodes }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_group_by_step_node_and_task() {
        let records = [
            json!({"id": "7.0.c2.task1", "kind": "task", "node": "c2", "task": 1, "exit_code": 3}),
            json!({"id": "7.0.c1.task0", "kind": "task", "node": "c1", "task": 0, "exit_code": 0}),
            json!({"id": "7.batch.c1.task0", "kind": "task", "node": "c1", "task": 0, "exit_code": 0}),
            json!({"id": "7.0.c1.node", "kind": "node", "node": "c1"}),
            json!({"id": "7.10.c1.task0", "kind": "task", "node": "c1", "task": 0, "exit_code": 0}),
            json!({"id": "7.2.c1.task0", "kind": "task", "node": "c1", "task": 0, "exit_code": 0}),
        ];
        let steps = group(&records);
        let names: Vec<&str> = steps.iter().map(|s| s.step.as_str()).collect();
        assert_eq!(names, ["batch", "0", "2", "10"]);
        let zero = &steps[1];
        assert_eq!((zero.tasks, zero.tasks_ok), (2, 1));
        let nodes: Vec<&str> = zero.nodes.iter().map(|n| n.node.as_str()).collect();
        assert_eq!(nodes, ["c1", "c2"]);
        assert_eq!(zero.nodes[0].node_record.as_ref().unwrap()["kind"], "node");
        assert!(zero.nodes[1].node_record.is_none());
        assert_eq!(zero.nodes[1].tasks[0]["task"], 1);
    }
}
