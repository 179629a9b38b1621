//! What a job asks of the cluster (name, partition, counts, memory, time,
//! selectors, mail, array), as SLURM's typed options.

use super::checks::{array, count, mail_type, memory, time_limit, token};
use super::limits::*;
use super::{bad, JobRequest, SpecError};
use crate::config::Limits;
use crate::slurm::job::{JobOptions, Memory};

/// A free-text selector field: (field, value, longest, the characters
/// allowed besides letters and digits).
type Selector<'a> = (&'a str, &'a Option<String>, usize, &'a [char]);

/// The job's name (default `job`) and its resources; the output files,
/// health report, dependencies and comment are filled in by the caller.
pub(super) fn options(request: &JobRequest, limits: &Limits) -> Result<JobOptions, SpecError> {
    let name = request.name.clone().unwrap_or_else(|| "job".to_owned());
    token("name", &name, MAX_NAME_CHARS, &['.', '_', '-', '+'], limits)?;
    if let Some(partition) = &request.partition {
        token("partition", partition, MAX_PARTITION_CHARS, &['_', '-'], limits)?;
    }
    let memory = match (&request.memory, &request.memory_per_cpu) {
        (Some(_), Some(_)) => {
            return Err(bad("memory_per_cpu", "memory and memory_per_cpu are mutually exclusive: give one"));
        }
        (Some(mem), None) => Some(Memory::PerNode(memory("memory", mem, limits)?)),
        (None, Some(mem)) => Some(Memory::PerCpu(memory("memory_per_cpu", mem, limits)?)),
        (None, None) => None,
    };
    let selectors: [Selector<'_>; 5] = [
        (
            "constraint",
            &request.constraint,
            MAX_CONSTRAINT_CHARS,
            &['_', '-', '.', ',', ':', '&', '|', '*', '[', ']', '(', ')', '!'],
        ),
        ("account", &request.account, MAX_ACCOUNT_CHARS, &['_', '-', '.']),
        ("qos", &request.qos, MAX_QOS_CHARS, &['_', '-', '.']),
        ("gres", &request.gres, MAX_GRES_CHARS, &['_', '-', '.', ',', ':']),
        ("mail_user", &request.mail_user, MAX_MAIL_USER_CHARS, &['_', '-', '.', '+', '%', '@']),
    ];
    for (field, value, max, extra) in selectors {
        if let Some(value) = value {
            token(field, value, max, extra, limits)?;
        }
    }
    if let Some(spec) = &request.array {
        array(spec, limits)?;
    }
    Ok(JobOptions {
        name,
        partition: request.partition.clone(),
        nodes: count("nodes", request.nodes, MAX_NODES)?,
        ntasks: count("ntasks", request.ntasks, MAX_NTASKS)?,
        cpus_per_task: count("cpus_per_task", request.cpus_per_task, MAX_CPUS_PER_TASK)?,
        ntasks_per_node: count("ntasks_per_node", request.ntasks_per_node, MAX_NTASKS)?,
        memory,
        exclusive: request.exclusive == Some(true),
        constraint: request.constraint.clone(),
        account: request.account.clone(),
        qos: request.qos.clone(),
        gres: request.gres.clone(),
        mail_types: request.mail_type.as_deref().map(|t| mail_type(t, limits)).transpose()?.unwrap_or_default(),
        mail_user: request.mail_user.clone(),
        time_limit: request.time_limit.as_ref().map(|t| time_limit(t, limits)).transpose()?,
        array: request.array.clone(),
        ..JobOptions::default()
    })
}
