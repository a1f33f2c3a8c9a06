//! The `hermes` binary: parses the command line and hands off to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = hermes::cli::args::Cli::parse();
    match hermes::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hermes: {e:#}");
            ExitCode::FAILURE
        }
    }
}
