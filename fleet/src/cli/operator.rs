//! `vouch-fleet operator add|revoke|list`: client certificates of the operators of the HTTPS
//! API (`[http] tls = true`). The work is [`vouch_fleet::http::operators`].

use super::common::{open, rfc3339_ms, ConfigArg};
use super::{CliError, Outcome};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use vouch_fleet::http::operators::{self, OperatorError};

/// Arguments of `vouch-fleet operator`.
#[derive(Args, Debug)]
pub struct OperatorArgs {
    #[command(subcommand)]
    command: OperatorCommand,
}

#[derive(Subcommand, Debug)]
enum OperatorCommand {
    /// Issue an operator certificate NAME.crt / NAME.key (and, the first time, the operator CA
    /// and the API's server certificate in operators/ of the fleet directory).
    Add {
        /// The operator's name (the certificate's CN; in the audit log).
        name: String,
        #[command(flatten)]
        config: ConfigArg,
        /// Directory for NAME.crt and NAME.key (0600).
        #[arg(long, value_name = "DIR", default_value = ".")]
        out_dir: PathBuf,
        /// Extra DNS name or IP address of the API's server certificate (first `add` only;
        /// repeatable; localhost and 127.0.0.1 are always included).
        #[arg(long = "server-name")]
        server_names: Vec<String>,
    },
    /// Revoke every certificate of an operator (the running server refuses it at once).
    Revoke {
        /// The operator's name.
        name: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// List operator certificates.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

impl OperatorArgs {
    /// The command's name for messages.
    pub fn name(&self) -> &'static str {
        match self.command {
            OperatorCommand::Add { .. } => "operator add",
            OperatorCommand::Revoke { .. } => "operator revoke",
            OperatorCommand::List { .. } => "operator list",
        }
    }
}

/// Runs `vouch-fleet operator`.
pub fn run(args: OperatorArgs) -> Result<Outcome, CliError> {
    match args.command {
        OperatorCommand::Add {
            name,
            config,
            out_dir,
            server_names,
        } => {
            let (cfg, mut reg) = open(&config)?;
            let a = operators::add(&cfg, &mut reg, &name, &server_names, &out_dir)?;
            println!(
                "operator {name}: certificate {} ({}, key {}); clients trust {}",
                a.serial,
                a.cert.display(),
                a.key.display(),
                a.ca.display()
            );
        }
        OperatorCommand::Revoke { name, config } => {
            let (cfg, mut reg) = open(&config)?;
            for s in operators::revoke(&cfg, &mut reg, &name)? {
                println!("operator {name}: certificate {s} revoked");
            }
        }
        OperatorCommand::List { config, json } => {
            let (cfg, _) = open(&config)?;
            let dir = operators::operators_dir(&cfg);
            let certs = if dir.exists() {
                operators::list(&dir)?
            } else {
                Vec::new()
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&certs).unwrap_or_default()
                );
            } else {
                println!(
                    "{:<24}  {:<32}  {:<8}  valid until",
                    "operator", "serial", "status"
                );
                for c in &certs {
                    println!(
                        "{:<24}  {:<32}  {:<8}  {}",
                        c.name,
                        c.serial,
                        if c.revoked { "revoked" } else { "valid" },
                        rfc3339_ms(c.not_after.saturating_mul(1000))
                    );
                }
            }
        }
    }
    Ok(Outcome::Done)
}

impl From<OperatorError> for CliError {
    fn from(e: OperatorError) -> Self {
        CliError::Operator(e)
    }
}
