//! Checks that the copied golden captures are present.

#[test]
fn golden_captures_are_copied() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/client");
    let n = std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "hex")
        })
        .count();
    assert_eq!(n, 34);
}
