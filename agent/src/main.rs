//! `vouch-agent` entry point: parse the command line, set up logging, run the command, and map
//! its error to a distinct exit code with a one-line message (no panic, no backtrace).

use clap::Parser;
use std::process::ExitCode;
use vouch_agent::cli::Cli;
use vouch_agent::{cmd, exit};

fn main() -> ExitCode {
    // tpm2-tss prints every TPM error to stderr, expected ones too; the agent reports errors itself.
    if std::env::var_os("TSS2_LOG").is_none() {
        std::env::set_var("TSS2_LOG", "all+none");
    }
    let cli = Cli::parse();
    // The agent reports TPM errors itself, with context: tss-esapi's own error logging is off.
    let default = format!("{},tss_esapi=off", cli.command.default_log_level());
    vouch_host::init_logging(cli.global.log_format, &default, "vouch-agent");
    match cmd::run(cli) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            let code = exit::code(&e);
            eprintln!("vouch-agent: {}", exit::chain(&e));
            ExitCode::from(code)
        }
    }
}
