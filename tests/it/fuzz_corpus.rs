//! Replays every file of `fuzz/corpus/<target>/` through the function its fuzz target calls
//! (`mbus::fuzzing::TARGETS`; the `spread` targets are replayed by `spread/tests/fuzz_corpus.rs`),
//! and checks that fuzz targets, replay functions and corpora match one to one.

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn names_in(dir: &Path, dirs: bool) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{} missing: {e}", dir.display()))
        .map(|e| e.expect("readable entry").path())
        .filter(|p| {
            if dirs {
                p.is_dir()
            } else {
                p.extension().is_some_and(|x| x == "rs")
            }
        })
        .map(|p| p.file_stem().expect("named").to_string_lossy().into_owned())
        .collect()
}

#[test]
fn mbus_fuzz_corpus_replays_without_failure() {
    let mut failures = Vec::new();
    let mut replayed = 0usize;
    for target in mbus::fuzzing::TARGETS {
        let dir = fuzz_dir().join("corpus").join(target.name);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus directory {} missing: {e}", dir.display()))
            .map(|e| e.expect("readable corpus entry").path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
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

/// Every `fuzz_targets/<t>.rs` has a corpus and a replay function (in `spread::fuzzing`,
/// `mbus::fuzzing`, or — for `*_structured` targets — `fuzz/tests/replay_structured.rs`), and
/// every replay function has its fuzz target.
#[test]
fn fuzz_targets_corpora_and_replay_functions_match() {
    let targets = names_in(&fuzz_dir().join("fuzz_targets"), false);
    let corpora = names_in(&fuzz_dir().join("corpus"), true);
    let replayed: BTreeSet<String> = spread::fuzzing::TARGETS
        .iter()
        .chain(mbus::fuzzing::TARGETS)
        .map(|t| t.name.to_string())
        .collect();
    for t in &targets {
        assert!(
            corpora.contains(t),
            "fuzz target {t} has no fuzz/corpus/{t}/"
        );
        assert!(
            replayed.contains(t) || t.ends_with("_structured"),
            "fuzz target {t} is not in spread::fuzzing::TARGETS or mbus::fuzzing::TARGETS"
        );
    }
    for t in &replayed {
        assert!(
            targets.contains(t),
            "replay function {t} has no fuzz/fuzz_targets/{t}.rs"
        );
    }
}
