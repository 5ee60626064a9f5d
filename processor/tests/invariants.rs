//! ARCHITECTURE.md's invariants that a test can hold.

use std::path::{Path, PathBuf};

/// Only `processor::store` talks to DuckDB: the store is opened with
/// external access off and its configuration locked, and a connection made
/// anywhere else would not be. Tests, examples and every other module go
/// through `store` (its `Reader`, `bench` and `file_from_sql`).
#[test]
fn only_the_store_module_opens_duckdb() {
    let root = manifest_dir();
    let store = root.join("src").join("store");
    let mut offenders = Vec::new();
    for top in ["src", "tests", "examples"] {
        for file in rust_files(&root.join(top)) {
            if file.starts_with(&store) || file.ends_with("invariants.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            if text.contains("duckdb::") || text.contains("use duckdb") {
                offenders.push(file.display().to_string());
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "DuckDB used outside processor::store: {offenders:?}"
    );
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The package's folder as `cargo test` names it when the test runs.
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), PathBuf::from)
}
