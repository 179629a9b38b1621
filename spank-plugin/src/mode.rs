use std::fmt;
use std::str::FromStr;

/// How much a job reports about its own health.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// No reporting: the plugin does nothing for the job.
    #[default]
    Off,
    /// One record per task and per node.
    Summary,
    /// Summary plus the detail each later release adds.
    Full,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Summary => "summary",
            Mode::Full => "full",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mode name that is none of the known ones.
#[derive(Debug, PartialEq, Eq)]
pub struct UnknownMode(pub String);

impl fmt::Display for UnknownMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown mode {:?} (expected off, summary or full)", self.0)
    }
}

impl std::error::Error for UnknownMode {}

impl FromStr for Mode {
    type Err = UnknownMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(Mode::Off),
            "summary" | "" => Ok(Mode::Summary),
            "full" => Ok(Mode::Full),
            other => Err(UnknownMode(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_mode_and_rejects_others() {
        for mode in [Mode::Off, Mode::Summary, Mode::Full] {
            assert_eq!(mode.as_str().parse::<Mode>(), Ok(mode));
        }
        assert_eq!("".parse::<Mode>(), Ok(Mode::Summary));
        assert_eq!("verbose".parse::<Mode>(), Err(UnknownMode("verbose".into())));
    }
}
