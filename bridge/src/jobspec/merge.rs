//! A request merged with its script's `#SBATCH` directives: each directive
//! fills the field of the same meaning unless the request set it (the request
//! wins, and the record says so). Directives become typed values here, so the
//! one set of rules in `validate_fields` checks both.

use serde::Serialize;

use super::{bad, HealthReport, JobRequest, SpecError, TimeLimit};
use crate::directives::{self, Directive};

/// Where one field's value came from, for the job record.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[schemars(rename = "DirectiveSource")]
pub struct Source {
    pub line: usize,
    /// The directive as written, e.g. `--time=10`.
    pub directive: String,
    pub field: &'static str,
    /// Whether the request's own field won over this directive.
    pub overridden: bool,
}

/// The merged request and where its script-set fields came from.
#[derive(Debug, Clone)]
pub struct Merged {
    pub request: JobRequest,
    pub sources: Vec<Source>,
}

impl Merged {
    /// A validation error about a field the script set names the line.
    pub fn locate(&self, err: SpecError) -> SpecError {
        match self.sources.iter().find(|s| s.field == err.field && !s.overridden) {
            Some(source) => {
                bad("script", format!("line {} ({}): {}: {}", source.line, source.directive, err.field, err.detail))
            }
            None => err,
        }
    }

    /// The record's `spec`: the merged fields, plus `directives`.
    pub fn spec(&self) -> serde_json::Value {
        let mut spec = serde_json::to_value(&self.request).unwrap_or_default();
        if let (Some(object), false) = (spec.as_object_mut(), self.sources.is_empty()) {
            object.retain(|_, v| !v.is_null());
            object.insert("directives".into(), serde_json::to_value(&self.sources).unwrap_or_default());
        }
        spec
    }
}

/// Merges the directives of `request.script` (if any) into a copy of it.
pub fn merge(request: &JobRequest) -> Result<Merged, SpecError> {
    let mut merged = request.clone();
    let mut sources = Vec::new();
    let Some(script) = &request.script else {
        return Ok(Merged { request: merged, sources });
    };
    let found =
        directives::parse(script).map_err(|e| bad("script", format!("line {}: {}: {}", e.line, e.option, e.detail)))?;
    // sbatch lets the last of repeated options win; so does this.
    for (option, (line, value)) in directives::by_option(&found) {
        let directive = match &value {
            Some(v) => format!("--{option}={v}"),
            None => format!("--{option}"),
        };
        let d = Directive { line, option, value };
        let err = |detail: &str| bad("script", format!("line {line} ({directive}): {detail}"));
        let (field, overridden) = apply(&mut merged, &d).map_err(|detail| err(&detail))?;
        sources.push(Source { line, directive: directive.clone(), field, overridden });
    }
    Ok(Merged { request: merged, sources })
}

fn number(value: &Option<String>) -> Result<u32, String> {
    let value = value.as_deref().unwrap_or("");
    value.parse().map_err(|_| format!("must be a whole number, not {value:?} (ranges are not supported)"))
}

fn text(value: &Option<String>) -> String {
    value.clone().unwrap_or_default()
}

/// Sets `slot` from the directive unless the request set it; whether the
/// request won.
fn fill<T>(slot: &mut Option<T>, value: T) -> bool {
    if slot.is_some() {
        return true;
    }
    *slot = Some(value);
    false
}

/// Applies one directive; the field it maps to and whether it was overridden.
fn apply(request: &mut JobRequest, d: &Directive) -> Result<(&'static str, bool), String> {
    let v = &d.value;
    let r = request;
    Ok(match d.option {
        "job-name" => ("name", fill(&mut r.name, text(v))),
        "nodes" => ("nodes", fill(&mut r.nodes, number(v)?)),
        "ntasks" => ("ntasks", fill(&mut r.ntasks, number(v)?)),
        "ntasks-per-node" => ("ntasks_per_node", fill(&mut r.ntasks_per_node, number(v)?)),
        "cpus-per-task" => ("cpus_per_task", fill(&mut r.cpus_per_task, number(v)?)),
        "mem" => ("memory", fill(&mut r.memory, text(v))),
        "mem-per-cpu" => ("memory_per_cpu", fill(&mut r.memory_per_cpu, text(v))),
        "time" => ("time_limit", fill(&mut r.time_limit, TimeLimit::Slurm(text(v)))),
        "partition" => ("partition", fill(&mut r.partition, text(v))),
        "output" => ("stdout", fill(&mut r.stdout, text(v))),
        "error" => ("stderr", fill(&mut r.stderr, text(v))),
        "array" => ("array", fill(&mut r.array, text(v))),
        "dependency" => ("dependencies", fill(&mut r.dependencies, dependency(v)?)),
        "chdir" => ("working_dir", fill(&mut r.working_dir, text(v))),
        "exclusive" => ("exclusive", fill(&mut r.exclusive, true)),
        "constraint" => ("constraint", fill(&mut r.constraint, text(v))),
        "account" => ("account", fill(&mut r.account, text(v))),
        "qos" => ("qos", fill(&mut r.qos, text(v))),
        "gres" => ("gres", fill(&mut r.gres, text(v))),
        "mail-type" => ("mail_type", fill(&mut r.mail_type, text(v))),
        "mail-user" => ("mail_user", fill(&mut r.mail_user, text(v))),
        "health-report" => (
            "health_report",
            fill(&mut r.health_report, HealthReport::Mode(v.clone().unwrap_or_else(|| "summary".into()))),
        ),
        // directives::ALLOWED and this match are one list in two places; a
        // new allowed option without a field is a bug caught by the tests.
        other => return Err(format!("--{other} has no field in the bridge")),
    })
}

/// `afterok:ID[:ID...]` with the bridge's job ids, as in `dependencies`.
fn dependency(value: &Option<String>) -> Result<Vec<i64>, String> {
    let value = value.as_deref().unwrap_or("");
    let ids = value.strip_prefix("afterok:").ok_or("only afterok:<bridge job id>[:<id>...] is supported")?;
    ids.split(':')
        .map(|id| id.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| format!("{id:?} is not a bridge job id")))
        .collect::<Result<Vec<_>, _>>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(s: &str) -> JobRequest {
        JobRequest { script: Some(s.into()), ..Default::default() }
    }

    #[test]
    fn directives_fill_fields_and_the_request_wins() {
        let request = JobRequest {
            time_limit: Some(TimeLimit::Minutes(5)),
            ..script("#!/bin/sh\n#SBATCH --time=10 -N 2 -J x --exclusive\n#SBATCH --dependency=afterok:3:4\ntrue\n")
        };
        let merged = merge(&request).unwrap();
        assert_eq!(merged.request.nodes, Some(2));
        assert_eq!(merged.request.name.as_deref(), Some("x"));
        assert_eq!(merged.request.exclusive, Some(true));
        assert_eq!(merged.request.dependencies, Some(vec![3, 4]));
        assert!(matches!(merged.request.time_limit, Some(TimeLimit::Minutes(5))));
        let time = merged.sources.iter().find(|s| s.field == "time_limit").unwrap();
        assert!(time.overridden && time.line == 2 && time.directive == "--time=10");
        assert_eq!(merged.spec()["directives"].as_array().unwrap().len(), 5);
    }

    #[test]
    fn every_allowed_option_has_a_field() {
        for option in crate::directives::tests_allowed() {
            let mut request = JobRequest::default();
            let d = Directive { line: 1, option, value: Some("1".into()) };
            let result = apply(&mut request, &d);
            assert!(!matches!(&result, Err(e) if e.contains("has no field")), "{option}");
        }
    }

    #[test]
    fn bad_values_name_the_line() {
        let err = merge(&script("#!/bin/sh\n\n#SBATCH -N 2-4\n")).unwrap_err();
        assert_eq!(err.field, "script");
        assert!(err.detail.starts_with("line 3 (--nodes=2-4): must be a whole number"), "{err}");
        let err = merge(&script("#!/bin/sh\n#SBATCH --dependency=afterany:1\n")).unwrap_err();
        assert!(err.detail.contains("only afterok"), "{err}");
    }
}
