//! SLURM hostlist expressions (`c[1-3,5]`, `a1,b[01-02]`) to node names.

/// Expands a hostlist; names that do not parse are kept as they are.
pub fn expand(list: &str) -> Vec<String> {
    let mut names = Vec::new();
    for part in split_top_level(list) {
        match (part.find('['), part.ends_with(']')) {
            (Some(open), true) => {
                let prefix = &part[..open];
                let ranges = &part[open + 1..part.len() - 1];
                for range in ranges.split(',') {
                    match range.split_once('-') {
                        Some((lo, hi)) => match (lo.parse::<u64>(), hi.parse::<u64>()) {
                            (Ok(a), Ok(b)) if a <= b && b - a < 100_000 => {
                                for n in a..=b {
                                    names.push(format!("{prefix}{n:0width$}", width = lo.len()));
                                }
                            }
                            _ => names.push(format!("{prefix}{range}")),
                        },
                        None => names.push(format!("{prefix}{range}")),
                    }
                }
            }
            _ if !part.is_empty() => names.push(part.to_owned()),
            _ => {}
        }
    }
    names
}

/// Splits on commas outside brackets.
fn split_top_level(list: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&list[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn expands_ranges_lists_and_padding() {
        assert_eq!(expand("c[1-3]"), ["c1", "c2", "c3"]);
        assert_eq!(expand("c[1,3-4],gpu7"), ["c1", "c3", "c4", "gpu7"]);
        assert_eq!(expand("n[08-10]"), ["n08", "n09", "n10"]);
        assert_eq!(expand("c2"), ["c2"]);
        assert!(expand("").is_empty());
    }
}
