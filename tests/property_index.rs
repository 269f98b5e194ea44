//! Every property in docs/properties.md has a row in docs/testing.md naming the test(s) that check
//! it (each must exist) or saying which issue it waits for; the copy of the property list matches
//! the shared one where both are present.

use std::collections::BTreeSet;
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn property_ids(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("- "))
        .filter_map(|l| l.split(':').next())
        .filter(|id| id.contains('-') && id.split('-').next().is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_uppercase())))
        .map(String::from)
        .collect()
}

#[test]
fn the_property_list_is_the_shared_one() {
    let ours = std::fs::read_to_string(repo().join("docs/properties.md")).unwrap();
    let shared = repo().join("../shared/docs/properties.md");
    if let Ok(theirs) = std::fs::read_to_string(&shared) {
        assert_eq!(ours, theirs, "docs/properties.md differs from {}: copy it again and update docs/testing.md", shared.display());
    }
    assert!(property_ids(&ours).len() >= 30, "{:?}", property_ids(&ours));
}

#[test]
fn every_property_has_a_test_that_exists_or_says_what_it_waits_for() {
    let ids = property_ids(&std::fs::read_to_string(repo().join("docs/properties.md")).unwrap());
    let table = std::fs::read_to_string(repo().join("docs/testing.md")).unwrap();
    let mut missing = vec![];
    let mut pending = vec![];
    let mut seen = BTreeSet::new();
    for id in &ids {
        let Some(row) = table.lines().find(|l| l.starts_with(&format!("| {id} |"))) else {
            missing.push(format!("{id}: no row"));
            continue;
        };
        seen.insert(id.clone());
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let tests = cells.get(2).copied().unwrap_or_default();
        if tests.starts_with("pending") {
            assert!(tests.contains('#'), "{id}: a pending row names its issue: {row}");
            pending.push(id.clone());
            continue;
        }
        let named: Vec<&str> = tests.split('`').skip(1).step_by(2).collect();
        assert!(!named.is_empty(), "{id}: no test named: {row}");
        for t in named {
            let (file, name) = t.rsplit_once("::").unwrap_or_else(|| panic!("{id}: `{t}` is not file::test"));
            let src = std::fs::read_to_string(repo().join(file)).unwrap_or_else(|e| panic!("{id}: {file}: {e}"));
            if !src.contains(&format!("fn {name}()")) {
                missing.push(format!("{id}: {file} has no test {name}"));
            }
        }
        let breaks = cells.get(3).copied().unwrap_or_default();
        assert!(!breaks.is_empty(), "{id}: the break that made the test fail is not recorded: {row}");
    }
    assert!(missing.is_empty(), "{missing:#?}");
    println!("{} properties, {} with tests, pending: {pending:?}", ids.len(), seen.len() - pending.len());
}
