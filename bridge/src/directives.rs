//! `#SBATCH` directives of a submitted script, read the way sbatch reads
//! them, into the same typed fields as a JSON request. Nothing here knows
//! HTTP or runs a command.
//!
//! sbatch's rules (src/sbatch/opt.c, 22.05): after the `#!` line, every line
//! starting exactly with `#SBATCH` (or the deprecated `#SLURM`) is a
//! directive; other lines whose first non-blank character is `#`, and blank
//! lines, are skipped; the first other line ends the header. A directive's
//! arguments split at blanks, with `'`/`"` quoting, `\` escapes, and an
//! unquoted `#` starting a comment.
//!
//! Only options in `ALLOWED` are accepted; anything else is refused with its
//! line. Then `neutralise` turns every directive line into a plain comment
//! before the script reaches SLURM, so sbatch applies nothing from the
//! script: the bridge passes the validated values as options. A difference
//! between this parser and sbatch's can only refuse a script, never let a
//! directive through unchecked.

use std::collections::BTreeMap;

/// One accepted directive option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// 1-based line number in the script.
    pub line: usize,
    /// The option's long name, e.g. `time`.
    pub option: &'static str,
    /// Its value; `None` for a flag (`--exclusive`).
    pub value: Option<String>,
}

/// A directive the bridge will not pass: which line, which option, why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {option}: {detail}")]
pub struct DirectiveError {
    pub line: usize,
    pub option: String,
    pub detail: String,
}

/// How an allowed option takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arity {
    Required,
    /// `--health-report` alone means `summary`.
    Optional,
    Flag,
}

/// The allowlist: long name, short letter, arity. Everyday resource, naming
/// and notification options; never one that names a file sbatch reads
/// (`--bbf`, `--export-file`, `--input`), changes identity (`--uid`,
/// `--gid`), needs an operator (`--priority`, `--nice`, `--reboot`,
/// `--admin-comment`), or steers the environment (`--export`,
/// `--get-user-env`).
const ALLOWED: &[(&str, Option<char>, Arity)] = &[
    ("job-name", Some('J'), Arity::Required),
    ("nodes", Some('N'), Arity::Required),
    ("ntasks", Some('n'), Arity::Required),
    ("ntasks-per-node", None, Arity::Required),
    ("cpus-per-task", Some('c'), Arity::Required),
    ("mem", None, Arity::Required),
    ("mem-per-cpu", None, Arity::Required),
    ("time", Some('t'), Arity::Required),
    ("partition", Some('p'), Arity::Required),
    ("output", Some('o'), Arity::Required),
    ("error", Some('e'), Arity::Required),
    ("array", Some('a'), Arity::Required),
    ("dependency", Some('d'), Arity::Required),
    ("chdir", Some('D'), Arity::Required),
    ("exclusive", None, Arity::Flag),
    ("constraint", Some('C'), Arity::Required),
    ("account", Some('A'), Arity::Required),
    ("qos", Some('q'), Arity::Required),
    ("gres", None, Arity::Required),
    ("mail-type", None, Arity::Required),
    ("mail-user", None, Arity::Required),
    ("health-report", None, Arity::Optional),
];

/// The magic words sbatch 22.05 recognises at the start of a line.
const MAGIC: &[&str] = &["#SBATCH", "#SLURM"];

/// Longest directive line read; sbatch itself has no limit, but a longer
/// line is no everyday option.
const MAX_LINE: usize = 4096;

/// What a header line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind<'a> {
    /// A directive: the text after the magic word.
    Directive(&'a str),
    Comment,
    /// The first command: the header ends before it.
    Command,
}

fn classify(line: &str) -> Kind<'_> {
    for magic in MAGIC {
        if let Some(rest) = line.strip_prefix(magic) {
            return Kind::Directive(rest);
        }
    }
    match line.trim_start().chars().next() {
        None | Some('#') => Kind::Comment,
        Some(_) => Kind::Command,
    }
}

/// The header's lines, 1-based, up to (not including) the first command.
fn header(script: &str) -> impl Iterator<Item = (usize, &str)> {
    script
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate()
        .map(|(idx, line)| (idx + 1, line))
        .take_while(|(_, line)| classify(line) != Kind::Command)
}

/// Splits a directive's text into arguments as sbatch's `_get_argument` does.
fn arguments(text: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else {
            return Ok(args);
        };
        if first == '#' {
            return Ok(args);
        }
        let mut arg = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => arg.push(c),
                None if c.is_whitespace() => break,
                None if c == '#' => break,
                None if c == '"' || c == '\'' => quote = Some(c),
                None if c == '\\' => {
                    chars.next();
                    match chars.peek() {
                        Some(&escaped) => arg.push(escaped),
                        None => return Err("ends with a lone backslash".into()),
                    }
                }
                None => arg.push(c),
            }
            chars.next();
        }
        if quote.is_some() {
            return Err("has an unmatched quote".into());
        }
        args.push(arg);
    }
}

fn find_long(name: &str) -> Option<(&'static str, Arity)> {
    ALLOWED.iter().find(|(long, _, _)| *long == name).map(|(long, _, arity)| (*long, *arity))
}

fn find_short(letter: char) -> Option<(&'static str, Arity)> {
    ALLOWED.iter().find(|(_, short, _)| *short == Some(letter)).map(|(long, _, arity)| (*long, *arity))
}

fn allowed_list() -> String {
    ALLOWED.iter().map(|(long, _, _)| format!("--{long}")).collect::<Vec<_>>().join(", ")
}

/// Every directive of the script's header, or the first one refused.
pub fn parse(script: &str) -> Result<Vec<Directive>, DirectiveError> {
    let mut directives = Vec::new();
    for (line, text) in header(script) {
        let Kind::Directive(rest) = classify(text) else {
            continue;
        };
        let err = |option: &str, detail: String| DirectiveError { line, option: option.to_owned(), detail };
        if text.len() > MAX_LINE {
            return Err(err("#SBATCH", format!("is longer than {MAX_LINE} bytes")));
        }
        if text.chars().any(|c| c.is_control() && c != '\t') {
            return Err(err("#SBATCH", "contains a control character".into()));
        }
        if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
            // "#SBATCHfoo" is a directive to sbatch too; nobody means it.
            return Err(err("#SBATCH", "needs a blank after #SBATCH".into()));
        }
        let lower = rest.to_ascii_lowercase();
        if lower.contains("hetjob") || lower.contains("packjob") {
            return Err(err("hetjob", "heterogeneous jobs are not supported".into()));
        }
        let args = arguments(rest).map_err(|detail| err("#SBATCH", detail))?;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (option, arity, attached) = if let Some(long) = arg.strip_prefix("--") {
                let (name, value) = match long.split_once('=') {
                    Some((name, value)) => (name, Some(value.to_owned())),
                    None => (long, None),
                };
                let (option, arity) = find_long(name).ok_or_else(|| {
                    err(
                        &format!("--{name}"),
                        format!("is not allowed in a script submitted to the bridge (allowed: {})", allowed_list()),
                    )
                })?;
                (option, arity, value)
            } else if let Some(short) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
                let mut letters = short.chars();
                let letter = letters.next().unwrap_or('-');
                let (option, arity) = find_short(letter).ok_or_else(|| {
                    err(
                        &format!("-{letter}"),
                        format!("is not allowed in a script submitted to the bridge (allowed: {})", allowed_list()),
                    )
                })?;
                let rest: String = letters.collect();
                let rest = rest.strip_prefix('=').map(str::to_owned).unwrap_or(rest);
                (option, arity, (!rest.is_empty()).then_some(rest))
            } else {
                return Err(err(&arg, "is not an option (directives hold options only)".into()));
            };
            let value = match (arity, attached) {
                (Arity::Flag, None) => None,
                (Arity::Flag, Some(_)) => return Err(err(&format!("--{option}"), "takes no value".into())),
                (Arity::Optional, value) => value,
                (Arity::Required, Some(value)) => Some(value),
                (Arity::Required, None) => match args.next() {
                    Some(value) if !value.starts_with('-') => Some(value),
                    _ => return Err(err(&format!("--{option}"), "needs a value".into())),
                },
            };
            directives.push(Directive { line, option, value });
        }
    }
    Ok(directives)
}

/// The script with every header directive turned into a comment that sbatch
/// does not read (`# [applied by the bridge] #SBATCH ...`): the bridge passes
/// the validated values as options instead.
pub fn neutralise(script: &str) -> String {
    let directive_lines: Vec<usize> =
        header(script).filter(|(_, text)| matches!(classify(text), Kind::Directive(_))).map(|(line, _)| line).collect();
    if directive_lines.is_empty() {
        return script.to_owned();
    }
    let mut out = String::with_capacity(script.len() + 32 * directive_lines.len());
    for (idx, line) in script.split_inclusive('\n').enumerate() {
        if directive_lines.contains(&(idx + 1)) {
            out.push_str("# [applied by the bridge] ");
        }
        out.push_str(line);
    }
    out
}

/// Directive values by option, the last one winning as in sbatch; the line
/// each came from.
pub fn by_option(directives: &[Directive]) -> BTreeMap<&'static str, (usize, Option<String>)> {
    directives.iter().map(|d| (d.option, (d.line, d.value.clone()))).collect()
}

/// The allowed options' long names, for the merge's completeness test.
#[cfg(test)]
pub(crate) fn tests_allowed() -> Vec<&'static str> {
    ALLOWED.iter().map(|(long, _, _)| *long).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(script: &str) -> Result<Vec<(&'static str, Option<String>)>, DirectiveError> {
        parse(script).map(|ds| ds.into_iter().map(|d| (d.option, d.value)).collect())
    }

    #[test]
    fn reads_the_forms_users_write() {
        let script = "#!/bin/bash\n#SBATCH --time=10 -N 2\n# a comment\n\n#SBATCH -J 'my job' --mem 1G # why\n\
                      #SBATCH -n4 --exclusive\n#SLURM --partition=debug\nhostname\n#SBATCH --bbf=/etc/shadow\n";
        assert_eq!(
            one(script).unwrap(),
            vec![
                ("time", Some("10".into())),
                ("nodes", Some("2".into())),
                ("job-name", Some("my job".into())),
                ("mem", Some("1G".into())),
                ("ntasks", Some("4".into())),
                ("exclusive", None),
                ("partition", Some("debug".into())),
            ]
        );
    }

    #[test]
    fn refuses_what_is_not_allowed_with_its_line() {
        for (script, line, option) in [
            ("#!/bin/cat\n#SBATCH --bbf=/etc/shadow\n", 2, "--bbf"),
            ("#!/bin/sh\n\n#SBATCH --export-file=/var/lib/x\n", 3, "--export-file"),
            ("#!/bin/sh\n#SBATCH --uid=0\n", 2, "--uid"),
            ("#!/bin/sh\n#SBATCH --priority=1000000\n", 2, "--priority"),
            ("#!/bin/sh\n#SBATCH --nice=-100\n", 2, "--nice"),
            ("#!/bin/sh\n#SBATCH -i /etc/shadow\n", 2, "-i"),
            ("#!/bin/sh\n#SBATCH --tim=5\n", 2, "--tim"),
            ("#!/bin/sh\n#SBATCH hetjob\n", 2, "hetjob"),
            ("#!/bin/sh\n#SBATCH --time\n", 2, "--time"),
            ("#!/bin/sh\n#SBATCH --exclusive=user\n", 2, "--exclusive"),
            ("#!/bin/sh\n#SBATCH --job-name='x\n", 2, "#SBATCH"),
            ("#!/bin/sh\n#SBATCH--uid=0\n", 2, "#SBATCH"),
            ("#!/bin/sh\n#SLURM --admin-comment=x\n", 2, "--admin-comment"),
        ] {
            let err = parse(script).unwrap_err();
            assert_eq!((err.line, err.option.as_str()), (line, option), "{script:?}: {err}");
        }
    }

    #[test]
    fn the_header_ends_at_the_first_command() {
        assert_eq!(one("#!/bin/sh\necho hi\n#SBATCH --bbf=/etc/shadow\n").unwrap(), vec![]);
        // Indented "#SBATCH" is a comment to sbatch, and so here.
        assert_eq!(one("#!/bin/sh\n  #SBATCH --bbf=/etc/shadow\n").unwrap(), vec![]);
    }

    #[test]
    fn neutralised_scripts_have_no_directive_left() {
        let script = "#!/bin/sh\n#SBATCH --time=5\r\n#SLURM -N1\necho '#SBATCH x'\n#SBATCH --late\n";
        let out = neutralise(script);
        assert_eq!(
            out,
            "#!/bin/sh\n# [applied by the bridge] #SBATCH --time=5\r\n# [applied by the bridge] #SLURM -N1\n\
             echo '#SBATCH x'\n#SBATCH --late\n"
        );
        assert!(header(&out).all(|(_, l)| !matches!(classify(l), Kind::Directive(_))));
    }

    /// Fragments scripts are built from in the fuzz test, so random inputs
    /// reach the parser's corners (quotes, escapes, magic words, options).
    const FRAGMENTS: &[&str] = &[
        "#SBATCH",
        "#SLURM",
        "#PBS",
        " ",
        "\t",
        "\n",
        "\r\n",
        "#",
        "'",
        "\"",
        "\\",
        "=",
        "-",
        "--",
        "--time",
        "5",
        "-N",
        "2",
        "-J",
        "x y",
        "--bbf=/etc/shadow",
        "--export-file",
        "--uid=0",
        "hetjob",
        "echo hi",
        "#!/bin/sh",
        "--exclusive",
        "--health-report",
        "-n4",
        "--mem",
        "1G",
        "\u{0}",
        "\u{7f}",
        "é",
    ];

    fn script_from(indexes: &[u8]) -> String {
        indexes.iter().map(|i| FRAGMENTS[*i as usize % FRAGMENTS.len()]).collect()
    }

    /// Fuzzing (bolero; a bounded random run under `cargo test`, the same
    /// target under `cargo bolero test` with a fuzzing engine): any script
    /// either parses into allowed options or is refused with a line, never
    /// panics; after `neutralise` nothing is left for sbatch to apply.
    #[test]
    fn fuzz_directives() {
        bolero::check!().with_test_time(std::time::Duration::from_secs(8)).with_type::<Vec<u8>>().for_each(|indexes| {
            let script = script_from(indexes);
            check_script(&script);
        });
        bolero::check!()
            .with_test_time(std::time::Duration::from_secs(8))
            .with_type::<String>()
            .for_each(|script| check_script(script));
    }

    fn check_script(script: &str) {
        match parse(script) {
            Ok(directives) => {
                for d in &directives {
                    assert!(ALLOWED.iter().any(|(long, _, _)| *long == d.option), "{script:?}");
                    if let Some(v) = &d.value {
                        assert!(!v.contains('\n'), "{script:?}");
                    }
                }
            }
            Err(e) => assert!(e.line >= 1 && !e.detail.is_empty(), "{script:?}"),
        }
        let out = neutralise(script);
        assert_eq!(parse(&out), Ok(vec![]), "{script:?} -> {out:?}");
        assert!(header(&out).all(|(_, l)| !matches!(classify(l), Kind::Directive(_))), "{out:?}");
    }
}
