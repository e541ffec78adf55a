//! Build script of the `mbus` package: in release builds linked by lld, the `spread` daemon's
//! functions are laid out in the order of `src/bin/spread.order` (bench/text-order.py writes it
//! from callgrind profiles of a ring): the code a running ring uses is one block at the start of
//! `.text`, so the kernel's 64 KiB fault-around maps that block instead of nearly the whole
//! text (idle RSS, docs/performance.md). Any other build links as before.

use std::env;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/bin/spread.order");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    if env::var("PROFILE").as_deref() != Ok("release") || !links_with_lld() {
        return;
    }
    let dir = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let order = format!("{dir}/src/bin/spread.order");
    if !std::path::Path::new(&order).exists() {
        return;
    }
    println!("cargo:rustc-link-arg-bin=spread=-Wl,--symbol-ordering-file={order}");
    // Names of another build (a new compiler or Cargo.lock) are skipped, not errors; CI's
    // `bench/text-order.py check` says when the file needs to be generated again.
    println!("cargo:rustc-link-arg-bin=spread=-Wl,--no-warn-symbol-ordering");
}

/// Whether rustc links this build with its own lld (x86_64 Linux from Rust 1.90 on, unless
/// the linker is chosen in the configuration or the flags): GNU ld has no
/// `--symbol-ordering-file`.
fn links_with_lld() -> bool {
    if env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu")
        || env::var_os("RUSTC_LINKER").is_some()
    {
        return false;
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.contains("linker") || flags.contains("link-self-contained") {
        return false;
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("-vV").output() else {
        return false;
    };
    let version = String::from_utf8_lossy(&out.stdout);
    let minor = version
        .lines()
        .find_map(|l| l.strip_prefix("release: 1."))
        .and_then(|rest| rest.split('.').next())
        .and_then(|m| m.parse::<u32>().ok());
    matches!(minor, Some(m) if m >= 90)
}
