//! Replays every file of `fuzz/corpus/<target>/` through the function its fuzz target calls
//! (`spread::fuzzing::TARGETS`), so plain `cargo test` on stable exercises every target and
//! every regression case. A failing input is named in the panic message.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
}

fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = corpus_root().join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus directory {} missing: {e}", dir.display()))
        .map(|e| e.expect("readable corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_file_replays_without_failure() {
    assert!(
        !spread::fuzzing::TARGETS.is_empty(),
        "no fuzz targets registered"
    );
    let mut failures = Vec::new();
    let mut replayed = 0usize;
    for target in spread::fuzzing::TARGETS {
        let files = corpus_files(target.name);
        assert!(!files.is_empty(), "corpus of {} is empty", target.name);
        for file in files {
            let data = std::fs::read(&file).expect("readable corpus file");
            if catch_unwind(AssertUnwindSafe(|| (target.run)(&data))).is_err() {
                failures.push(file.display().to_string());
            }
            replayed += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {replayed} corpus files failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
