//! `spread`: drop-in replacement for the Spread 5.0.1 daemon.

fn main() {
    eprintln!("spread: not yet implemented");
    std::process::exit(1);
}
