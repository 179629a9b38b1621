//! The only code that runs SLURM commands. Nothing here knows HTTP.

pub mod probe;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// Why a SLURM command gave no usable answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SlurmError {
    #[error("cannot run {command}: {reason}")]
    Spawn { command: &'static str, reason: String },
    #[error("{command} did not finish within {timeout:?}")]
    Timeout { command: &'static str, timeout: Duration },
    #[error("{command} failed: {stderr}")]
    Failed { command: &'static str, stderr: String },
    #[error("slurmctld is not up: {0}")]
    ControllerDown(String),
}

/// How to reach the cluster: which slurm.conf, how long to wait.
#[derive(Debug, Clone)]
pub struct Slurm {
    conf: Option<PathBuf>,
    timeout: Duration,
}

/// What `scontrol ping` says when the controller answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    /// e.g. "Slurmctld(primary) at vm is UP".
    pub summary: String,
}

impl Slurm {
    pub fn new(conf: Option<PathBuf>, timeout: Duration) -> Self {
        Slurm { conf, timeout }
    }

    fn command(&self, program: &'static str) -> Command {
        let mut command = Command::new(program);
        if let Some(conf) = &self.conf {
            command.env("SLURM_CONF", conf);
        }
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        command
    }

    /// Runs a command to completion within the timeout; stdout on success.
    async fn output(&self, program: &'static str, args: &[&str]) -> Result<String, SlurmError> {
        let child = self
            .command(program)
            .args(args)
            .spawn()
            .map_err(|e| SlurmError::Spawn { command: program, reason: e.to_string() })?;
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| SlurmError::Timeout { command: program, timeout: self.timeout })?
            .map_err(|e| SlurmError::Spawn { command: program, reason: e.to_string() })?;
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let stderr = last_line(&stderr).unwrap_or(&stdout);
            return Err(SlurmError::Failed { command: program, stderr: stderr.to_owned() });
        }
        Ok(stdout)
    }

    /// Asks the controller whether it is up (`scontrol ping`).
    pub async fn ping(&self) -> Result<Controller, SlurmError> {
        let stdout = self.output("scontrol", &["ping"]).await?;
        parse_ping(&stdout)
    }
}

fn last_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).rfind(|l| !l.is_empty())
}

/// `scontrol ping` prints one line per controller, e.g.
/// `Slurmctld(primary) at vm is UP`; the primary must be UP.
fn parse_ping(stdout: &str) -> Result<Controller, SlurmError> {
    let primary = stdout.lines().map(str::trim).find(|l| l.starts_with("Slurmctld(primary)"));
    match primary {
        Some(line) if line.ends_with(" is UP") => Ok(Controller { summary: line.to_owned() }),
        Some(line) => Err(SlurmError::ControllerDown(line.to_owned())),
        None => Err(SlurmError::ControllerDown(format!("unexpected scontrol ping output: {stdout:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_output_is_parsed() {
        let up = parse_ping("Slurmctld(primary) at vm is UP\n").unwrap();
        assert_eq!(up.summary, "Slurmctld(primary) at vm is UP");
        assert!(matches!(parse_ping("Slurmctld(primary) at vm is DOWN"), Err(SlurmError::ControllerDown(_))));
        assert!(matches!(parse_ping(""), Err(SlurmError::ControllerDown(_))));
    }
}
