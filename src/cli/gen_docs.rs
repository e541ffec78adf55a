//! `mbus-gen-docs`: writes the man pages and shell completions of every binary.

use std::path::PathBuf;

use clap::Parser;

/// Writes `OUTDIR/man/*.1` and `OUTDIR/completions/{bash,zsh,fish}/*` for every mbus binary,
/// generated from the binaries' own command-line definitions.
#[derive(Debug, Parser)]
#[command(
    name = "mbus-gen-docs",
    version,
    about = "Write man pages and shell completions of the mbus binaries",
    after_help = "Example:\n  cargo run --bin mbus-gen-docs -- target/gen-docs\n  man -l target/gen-docs/man/eccmgr.1"
)]
pub struct Args {
    /// Directory to write into (created if missing)
    #[arg(value_name = "OUTDIR", default_value = "target/gen-docs")]
    pub outdir: PathBuf,
}
