use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Cloud Odyssey bridge: REST service in front of a SLURM cluster.
#[derive(Debug, Parser)]
#[command(name = "bridge", version)]
pub struct Cli {
    /// Address to serve HTTP on. Loopback by default: expose it deliberately.
    #[arg(long, env = "BRIDGE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// slurm.conf the SLURM commands use. Unset means SLURM's own default
    /// lookup, which fails on machines with no /etc/slurm/slurm.conf.
    #[arg(long, env = "SLURM_CONF")]
    pub slurm_conf: Option<PathBuf>,

    /// Seconds between controller probes (`scontrol ping`). 5 s keeps
    /// /healthz fresh while costing slurmctld one RPC per probe.
    #[arg(long, env = "BRIDGE_SLURM_PROBE_INTERVAL", default_value_t = 5.0)]
    pub slurm_probe_interval: f64,

    /// Seconds any SLURM command may take before it counts as failed. SLURM's
    /// own MessageTimeout is 10 s; a probe should give up sooner.
    #[arg(long, env = "BRIDGE_SLURM_TIMEOUT", default_value_t = 5.0)]
    pub slurm_timeout: f64,

    /// Log format: text for people, json for log collectors.
    #[arg(long, env = "BRIDGE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Checked settings: what the rest of the bridge reads.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub slurm_conf: Option<PathBuf>,
    pub slurm_probe_interval: Duration,
    pub slurm_timeout: Duration,
    pub log_format: LogFormat,
}

/// A setting that is out of range, named as on the command line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--{name} must be between {min} and {max} seconds, not {value}")]
    OutOfRange { name: &'static str, min: f64, max: f64, value: f64 },
    #[error("--slurm-conf {0} does not exist")]
    MissingSlurmConf(PathBuf),
}

fn seconds(name: &'static str, value: f64, min: f64, max: f64) -> Result<Duration, ConfigError> {
    if !(min..=max).contains(&value) {
        return Err(ConfigError::OutOfRange { name, min, max, value });
    }
    Ok(Duration::from_secs_f64(value))
}

impl Settings {
    pub fn from_cli(cli: Cli) -> Result<Self, ConfigError> {
        if let Some(path) = &cli.slurm_conf {
            if !path.is_file() {
                return Err(ConfigError::MissingSlurmConf(path.clone()));
            }
        }
        Ok(Settings {
            listen: cli.listen,
            slurm_conf: cli.slurm_conf,
            slurm_probe_interval: seconds("slurm-probe-interval", cli.slurm_probe_interval, 0.1, 3600.0)?,
            slurm_timeout: seconds("slurm-timeout", cli.slurm_timeout, 0.1, 600.0)?,
            log_format: cli.log_format,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_from(std::iter::once("bridge").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_are_valid() {
        let settings = Settings::from_cli(cli(&[])).unwrap();
        assert_eq!(settings.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.slurm_probe_interval, Duration::from_secs(5));
    }

    #[test]
    fn out_of_range_interval_is_rejected_with_its_flag_name() {
        let err = Settings::from_cli(cli(&["--slurm-probe-interval", "0"])).unwrap_err();
        assert!(err.to_string().starts_with("--slurm-probe-interval must be"), "{err}");
    }

    #[test]
    fn missing_slurm_conf_is_rejected() {
        let err = Settings::from_cli(cli(&["--slurm-conf", "/nonexistent/slurm.conf"])).unwrap_err();
        assert!(matches!(err, ConfigError::MissingSlurmConf(_)));
    }
}
