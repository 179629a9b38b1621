//! What a job asks of the cluster (name, partition, counts, memory, time,
//! selectors, mail, array), as sbatch options.

use super::checks::{array, count, mail_type, memory, time_limit, token};
use super::limits::*;
use super::{JobRequest, SpecError};
use crate::config::Limits;

/// A free-text selector field: (field, sbatch option, value, longest, the
/// characters allowed besides letters and digits).
type Selector<'a> = (&'a str, &'static str, &'a Option<String>, usize, &'a [char]);

/// sbatch options as (long name without `--`, value) pairs.
pub(super) type Options = Vec<(&'static str, String)>;

/// The job's name (default `job`) and its resource options, in the order
/// sbatch gets them.
pub(super) fn options(request: &JobRequest, limits: &Limits) -> Result<(String, Options), SpecError> {
    let name = request.name.clone().unwrap_or_else(|| "job".to_owned());
    token("name", &name, MAX_NAME_CHARS, &['.', '_', '-', '+'], limits)?;
    let mut options: Options = vec![("job-name", name.clone())];

    if let Some(partition) = &request.partition {
        token("partition", partition, MAX_PARTITION_CHARS, &['_', '-'], limits)?;
        options.push(("partition", partition.clone()));
    }
    if let Some(n) = count("nodes", request.nodes, MAX_NODES)? {
        options.push(("nodes", n.to_string()));
    }
    if let Some(n) = count("ntasks", request.ntasks, MAX_NTASKS)? {
        options.push(("ntasks", n.to_string()));
    }
    if let Some(n) = count("cpus_per_task", request.cpus_per_task, MAX_CPUS_PER_TASK)? {
        options.push(("cpus-per-task", n.to_string()));
    }
    if let Some(mem) = &request.memory {
        memory("memory", mem, limits)?;
        options.push(("mem", mem.clone()));
    }
    if let Some(n) = count("ntasks_per_node", request.ntasks_per_node, MAX_NTASKS)? {
        options.push(("ntasks-per-node", n.to_string()));
    }
    if let Some(mem) = &request.memory_per_cpu {
        memory("memory_per_cpu", mem, limits)?;
        options.push(("mem-per-cpu", mem.clone()));
    }
    if request.exclusive == Some(true) {
        // An empty value is a bare flag (`--exclusive`).
        options.push(("exclusive", String::new()));
    }
    let selectors: [Selector<'_>; 5] = [
        (
            "constraint",
            "constraint",
            &request.constraint,
            MAX_CONSTRAINT_CHARS,
            &['_', '-', '.', ',', ':', '&', '|', '*', '[', ']', '(', ')', '!'],
        ),
        ("account", "account", &request.account, MAX_ACCOUNT_CHARS, &['_', '-', '.']),
        ("qos", "qos", &request.qos, MAX_QOS_CHARS, &['_', '-', '.']),
        ("gres", "gres", &request.gres, MAX_GRES_CHARS, &['_', '-', '.', ',', ':']),
        ("mail_user", "mail-user", &request.mail_user, MAX_MAIL_USER_CHARS, &['_', '-', '.', '+', '%', '@']),
    ];
    for (field, option, value, max, extra) in selectors {
        if let Some(value) = value {
            token(field, value, max, extra, limits)?;
            options.push((option, value.clone()));
        }
    }
    if let Some(types) = &request.mail_type {
        mail_type(types, limits)?;
        options.push(("mail-type", types.clone()));
    }
    if let Some(limit) = &request.time_limit {
        options.push(("time", time_limit(limit, limits)?));
    }
    if let Some(spec) = &request.array {
        array(spec, limits)?;
        options.push(("array", spec.clone()));
    }
    Ok((name, options))
}
