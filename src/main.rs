//! The `hermes` binary: parses the command line and hands off to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = hermes::cli::args::Cli::parse();
    match hermes::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hermes: {}", one_line(&e));
            // Exit 2: a mixture that cannot meet its budget, or inputs that would share an
            // output (docs/label.md, docs/mix.md); 1 for every other failure.
            use hermes::jobs::{label::LabelJobError, mix::MixError};
            let refused = matches!(e.downcast_ref::<MixError>(), Some(MixError::Short { .. }))
                || matches!(
                    e.downcast_ref::<LabelJobError>(),
                    Some(LabelJobError::Inputs(
                        hermes::corpus::inputs::InputsError::Collision { .. }
                    ))
                );
            if refused {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The error and its causes on one line, skipping a cause whose text the line already holds
/// (many of hermes' errors name their cause in their own message, e.g. `path: os error`).
fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
}
