//! Plain tables that fit the terminal, and times as people read them.

/// Columns separated by two spaces; the last column is cut to the
/// terminal's width (COLUMNS, else 100) when stdout is a terminal.
pub fn print(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let limit = terminal_width();
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        match limit {
            Some(limit) if out.chars().count() > limit => {
                out.chars().take(limit.saturating_sub(1)).chain(['…']).collect()
            }
            _ => out,
        }
    };
    println!("{}", line(headers.to_vec()));
    for row in rows {
        println!("{}", line(row.iter().map(String::as_str).collect()));
    }
}

fn terminal_width() -> Option<usize> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    Some(std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).unwrap_or(100))
}

/// "3m 12s", "1h 05m", "2d 03h".
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// How long ago a Unix time was.
pub fn ago(at: Option<f64>) -> String {
    at.map(|at| format!("{} ago", duration(crate::api::now() - at))).unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(super::duration(42.0), "42s");
        assert_eq!(super::duration(192.0), "3m 12s");
        assert_eq!(super::duration(3900.0), "1h 05m");
        assert_eq!(super::duration(183_600.0), "2d 03h");
    }
}
