//! `mbus-gen-docs`: writes the man pages and shell completions of every mbus binary, generated
//! from the binaries' own clap definitions (`mbus::cli`).
//!
//! ```text
//! cargo run --bin mbus-gen-docs -- target/gen-docs
//! ```

use std::process::ExitCode;

use clap::Parser as _;
use mbus::cli::gen_docs::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    match mbus::cli::write_docs(&args.outdir) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => mbus::cli::fail(
            "mbus-gen-docs",
            &anyhow::Error::new(e).context(format!("writing into {}", args.outdir.display())),
        ),
    }
}
