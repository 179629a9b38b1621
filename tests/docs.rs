//! docs/ARCHITECTURE.md stays true: every file or directory it names in
//! backticks exists. Needs no cluster.

use std::collections::BTreeSet;
use std::path::Path;

/// Every tracked file and every directory above one, repo-relative.
fn repo_paths(repo: &Path) -> BTreeSet<String> {
    let out = std::process::Command::new("git").arg("-C").arg(repo).arg("ls-files").output().unwrap();
    assert!(out.status.success(), "git ls-files failed");
    let mut paths = BTreeSet::new();
    for file in String::from_utf8_lossy(&out.stdout).lines() {
        let mut prefix = String::new();
        for part in file.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            paths.insert(prefix.clone());
        }
    }
    paths
}

/// Backticked words that name a file or directory of the repo: a relative
/// path with a `/`, or a file name with an extension. Placeholders,
/// absolute paths, options and commands are not paths of the repo.
fn named_paths(text: &str) -> Vec<String> {
    const EXTENSIONS: [&str; 8] = [".rs", ".sh", ".md", ".toml", ".in", ".json", ".c", ".conf"];
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(|t| t.trim_end_matches('/'))
        .filter(|t| !t.is_empty() && !t.starts_with(['/', '-', '.', '~']))
        .filter(|t| !t.contains(['<', '>', '*', '%', '$', ' ', '{', '=', ':', '(', '@', '"', '+']))
        .filter(|t| t.contains('/') || EXTENSIONS.iter().any(|e| t.ends_with(e)))
        .map(str::to_owned)
        .collect()
}

#[test]
fn issue_14_every_path_the_architecture_document_names_exists() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let text = std::fs::read_to_string(repo.join("docs/ARCHITECTURE.md")).unwrap();
    let paths = repo_paths(repo);
    let named = named_paths(&text);
    assert!(named.len() > 40, "the document names only {} paths: {named:?}", named.len());
    // A path is found at the repo's root or below any directory (the code
    // map names files relative to the section's directory).
    let missing: Vec<&String> =
        named.iter().filter(|name| !paths.iter().any(|p| p == *name || p.ends_with(&format!("/{name}")))).collect();
    assert!(missing.is_empty(), "docs/ARCHITECTURE.md names paths that do not exist: {missing:?}");
}
