//! `vouch-fleet revoke ID` and `vouch-fleet delete ID`: revoke the device certificate (CRL,
//! broker reload) and, for `delete`, decommission the device (keys forgotten, audit kept).

use super::common::{open, ConfigArg};
use super::{CliError, Outcome};
use clap::Args;
use vouch_fleet::registry::now_ms;
use vouch_fleet::serve::revoke::{revoke_device, RevokeError};
use vouch_fleet::serve::{load_fleet_ca, ServeError};

/// Arguments of `revoke` and `delete`.
#[derive(Args, Debug)]
pub struct RevokeArgs {
    /// Device id.
    id: String,
    #[command(flatten)]
    config: ConfigArg,
}

/// Why `revoke` or `delete` failed.
#[derive(Debug, thiserror::Error)]
pub enum RevokeCmdError {
    /// The fleet CA named by the configuration could not be loaded.
    #[error(transparent)]
    Ca(ServeError),
    /// The revocation failed.
    #[error(transparent)]
    Revoke(#[from] RevokeError),
}

/// Runs `revoke` (`forget = false`) or `delete` (`forget = true`).
pub fn run(args: RevokeArgs, forget: bool) -> Result<Outcome, CliError> {
    let (cfg, mut reg) = open(&args.config)?;
    let ca = load_fleet_ca(&cfg).map_err(RevokeCmdError::Ca)?;
    let why = if forget {
        "operator: delete"
    } else {
        "operator: revoke"
    };
    let r = revoke_device(
        &mut reg,
        &ca,
        cfg.broker_reload_pid_file.as_deref(),
        &args.id,
        why,
        forget,
        now_ms(),
    )
    .map_err(RevokeCmdError::from)?;
    println!(
        "device {} {}; certificate {} on CRL {}; broker {}",
        args.id,
        if forget { "deleted" } else { "revoked" },
        r.serial.as_deref().unwrap_or("(none)"),
        r.crl_number
            .map(|n| n.to_string())
            .unwrap_or_else(|| "-".into()),
        if r.broker_reloaded {
            "reloaded"
        } else {
            "not configured for reload"
        }
    );
    Ok(Outcome::Done)
}
