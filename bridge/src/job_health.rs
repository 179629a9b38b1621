//! A job's health records (from the SPANK plugin), grouped for
//! `GET /v1/jobs/{id}/health`: per step, per node, per task. A pure
//! function of the stored records.

use std::collections::BTreeMap;

use odyssey_health_wire::records::{NodeRecord, Record, TaskRecord};

#[derive(Debug, PartialEq)]
pub struct StepHealth {
    /// SLURM's step: a number, or "batch" for a batch script.
    pub step: String,
    pub tasks: usize,
    pub tasks_ok: usize,
    pub nodes: Vec<NodeHealth>,
}

#[derive(Debug, PartialEq)]
pub struct NodeHealth {
    pub node: String,
    /// The node's record for the step (load, memory, free space, start and
    /// end); None until it arrives.
    pub node_record: Option<NodeRecord>,
    /// Task records, by global task id.
    pub tasks: Vec<TaskRecord>,
}

/// Groups records by step (the batch step first, then steps in order), node
/// (by name) and task (by id).
pub fn group(records: &[Record]) -> Vec<StepHealth> {
    let mut steps: BTreeMap<(u8, u64, String), BTreeMap<String, NodeHealth>> = BTreeMap::new();
    for record in records {
        let step = record.step().to_owned();
        let key = match step.parse::<u64>() {
            Ok(n) => (1, n, step),
            Err(_) => (0, 0, step),
        };
        let node = record.node().to_owned();
        let entry = steps.entry(key).or_default().entry(node.clone()).or_insert_with(|| NodeHealth {
            node,
            node_record: None,
            tasks: Vec::new(),
        });
        match record {
            Record::Node(n) => entry.node_record = Some(n.clone()),
            Record::Task(t) => entry.tasks.push(t.clone()),
        }
    }
    steps
        .into_iter()
        .map(|((_, _, step), nodes)| {
            let mut nodes: Vec<NodeHealth> = nodes.into_values().collect();
            for node in &mut nodes {
                node.tasks.sort_by_key(|t| t.task);
            }
            let tasks = nodes.iter().map(|n| n.tasks.len()).sum();
            let tasks_ok = nodes.iter().flat_map(|n| &n.tasks).filter(|t| t.outcome.ok()).count();
            StepHealth { step, tasks, tasks_ok, nodes }
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A record from the fields a test cares about, with the rest filled in.
    pub(crate) fn record(fields: serde_json::Value) -> Record {
        let mut full = json!({"job_id": 7, "step_id": 0, "task": 0, "exit_code": 0, "signal": null, "at": 1.0,
                              "step_start": 0.0, "step_end": 1.0, "tasks": 1, "tasks_ok": 1});
        for (key, value) in fields.as_object().unwrap() {
            full[key] = value.clone();
        }
        serde_json::from_value(full).unwrap()
    }

    #[test]
    fn records_group_by_step_node_and_task() {
        let records = [
            record(json!({"id": "7.0.c2.task1", "kind": "task", "node": "c2", "task": 1, "exit_code": 3})),
            record(json!({"id": "7.0.c1.task0", "kind": "task", "node": "c1", "task": 0, "exit_code": 0})),
            record(json!({"id": "7.batch.c1.task0", "kind": "task", "node": "c1", "task": 0, "exit_code": 0})),
            record(json!({"id": "7.0.c1.node", "kind": "node", "node": "c1"})),
            record(json!({"id": "7.10.c1.task0", "kind": "task", "node": "c1", "task": 0, "exit_code": 0})),
            record(json!({"id": "7.2.c1.task0", "kind": "task", "node": "c1", "task": 0, "exit_code": 0})),
        ];
        let steps = group(&records);
        let names: Vec<&str> = steps.iter().map(|s| s.step.as_str()).collect();
        assert_eq!(names, ["batch", "0", "2", "10"]);
        let zero = &steps[1];
        assert_eq!((zero.tasks, zero.tasks_ok), (2, 1));
        let nodes: Vec<&str> = zero.nodes.iter().map(|n| n.node.as_str()).collect();
        assert_eq!(nodes, ["c1", "c2"]);
        assert_eq!(zero.nodes[0].node_record.as_ref().unwrap().id, "7.0.c1.node");
        assert!(zero.nodes[1].node_record.is_none());
        assert_eq!(zero.nodes[1].tasks[0].task, 1);
    }
}
