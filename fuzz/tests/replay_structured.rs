//! Replays the corpora of the structure-aware (`*_structured`) targets on stable:
//! `cargo test --manifest-path fuzz/Cargo.toml`. (The byte-level targets are replayed by the
//! main workspace's tests.)

use std::path::Path;

#[test]
fn structured_corpora_replay_without_failure() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut targets = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(root.join("fuzz_targets")).expect("fuzz_targets") {
        let path = entry.expect("entry").path();
        let name = path
            .file_stem()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if !name.ends_with("_structured") {
            continue;
        }
        targets += 1;
        let dir = root.join("corpus").join(&name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "corpus of {name} is empty");
        for file in files {
            let data = std::fs::read(&file).expect("readable");
            let ok = std::panic::catch_unwind(|| mbus_fuzz::replay(&name, &data));
            match ok {
                Ok(true) => {}
                Ok(false) => panic!("{name} has no replay entry in fuzz/src/lib.rs"),
                Err(_) => failures.push(file.display().to_string()),
            }
        }
    }
    assert!(targets >= 3, "structured targets missing");
    assert!(failures.is_empty(), "failed:\n{}", failures.join("\n"));
}
