//! The checks every field of a request goes through: one line, no
//! control characters, nothing that reads as an option or a directive, and
//! the shape SLURM expects (counts, memory, time, arrays, mail types).

use super::limits::{MAX_ARRAY_SPEC_CHARS, MAX_MEMORY_DIGITS, MAX_TIME_PART_DIGITS};
use super::{bad, SpecError, TimeLimit};
use crate::config::Limits;
use crate::slurm::job::{MailType, MiB, Minutes};

/// Checks shared by every single-line field: no NUL, line breaks or other
/// control characters, nothing that reads as an option or a directive.
pub(super) fn line(field: &str, value: &str, limits: &Limits) -> Result<(), SpecError> {
    if value.is_empty() {
        return Err(bad(field, "must not be empty"));
    }
    if value.len() > limits.max_field_bytes {
        return Err(bad(field, format!("is longer than {} bytes", limits.max_field_bytes)));
    }
    if value.contains('\0') {
        return Err(bad(field, "contains a NUL byte"));
    }
    if value.contains(['\n', '\r']) {
        return Err(bad(field, "contains a line break"));
    }
    if value.chars().any(char::is_control) {
        return Err(bad(field, "contains a control character"));
    }
    if value.starts_with('-') {
        return Err(bad(field, "must not start with '-' (it would read as an option)"));
    }
    if value.to_ascii_uppercase().contains("#SBATCH") {
        return Err(bad(field, "must not contain an #SBATCH directive"));
    }
    Ok(())
}

pub(super) fn token(field: &str, value: &str, max: usize, extra: &[char], limits: &Limits) -> Result<(), SpecError> {
    line(field, value, limits)?;
    if value.len() > max || !value.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(&c)) {
        let extra: String = extra.iter().collect();
        return Err(bad(field, format!("must be at most {max} characters of letters, digits and {extra:?}")));
    }
    Ok(())
}

pub(super) fn path(field: &str, value: &str, limits: &Limits) -> Result<(), SpecError> {
    line(field, value, limits)?;
    if !value.starts_with('/') {
        return Err(bad(field, "must be an absolute path"));
    }
    if value.chars().any(char::is_whitespace) {
        return Err(bad(field, "must not contain whitespace"));
    }
    if value.split('/').any(|part| part == "..") {
        return Err(bad(field, "must not contain '..'"));
    }
    Ok(())
}

pub(super) fn count(field: &str, value: Option<u32>, max: u32) -> Result<Option<u32>, SpecError> {
    match value {
        Some(0) => Err(bad(field, "must be at least 1")),
        Some(n) if n > max => Err(bad(field, format!("must be at most {max}"))),
        other => Ok(other),
    }
}

pub(super) fn memory(field: &str, value: &str, limits: &Limits) -> Result<MiB, SpecError> {
    line(field, value, limits)?;
    let digits = value.strip_suffix(['K', 'M', 'G', 'T']).unwrap_or(value);
    let refuse = || bad(field, "must be a positive number with an optional K, M, G or T suffix, e.g. 512M");
    if digits.len() > MAX_MEMORY_DIGITS || digits == "0" {
        return Err(refuse());
    }
    MiB::parse(value).ok_or_else(refuse)
}

pub(super) fn time_limit(value: &TimeLimit, limits: &Limits) -> Result<Minutes, SpecError> {
    let refuse = || bad("time_limit", "must be minutes or [D-]HH:MM:SS, e.g. 90 or 1:30:00");
    let minutes = match value {
        TimeLimit::Minutes(m) => Minutes(*m),
        TimeLimit::Slurm(s) => {
            line("time_limit", s, limits)?;
            let (days, rest) = s.split_once('-').map_or((None, s.as_str()), |(d, rest)| (Some(d), rest));
            let long_part = |p: &str| p.len() > MAX_TIME_PART_DIGITS;
            if days.is_some_and(long_part) || rest.split(':').any(long_part) {
                return Err(refuse());
            }
            Minutes::parse(s).ok_or_else(refuse)?
        }
    };
    if minutes.0 == 0 {
        return Err(bad("time_limit", "must be at least 1 minute"));
    }
    Ok(minutes)
}

pub(super) fn array(value: &str, limits: &Limits) -> Result<(), SpecError> {
    line("array", value, limits)?;
    let valid = value.len() <= MAX_ARRAY_SPEC_CHARS
        && value.chars().all(|c| c.is_ascii_digit() || matches!(c, ',' | '-' | ':' | '%'))
        && value.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        return Err(bad("array", "must be a SLURM array spec like 1-10, 1,3,5 or 0-15%4"));
    }
    Ok(())
}

/// SLURM's mail events (sbatch(1), `--mail-type`), comma-separated.
pub(super) fn mail_type(value: &str, limits: &Limits) -> Result<Vec<MailType>, SpecError> {
    line("mail_type", value, limits)?;
    value.split(',').map(MailType::from_name).collect::<Option<Vec<_>>>().ok_or_else(|| {
        let names: Vec<&str> = MailType::ALL.iter().map(|t| t.as_str()).collect();
        bad("mail_type", format!("must be a comma-separated list of {}", names.join(", ")))
    })
}
