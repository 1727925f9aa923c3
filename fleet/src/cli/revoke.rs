//! `vouch-fleet revoke ID` and `vouch-fleet delete ID`: revoke the device certificate (CRL,
//! broker reload) and, for `delete`, decommission the device (keys forgotten, audit kept).

use super::common::{fail, open, ConfigArg};
use crate::exit;
use clap::Args;
use std::process::ExitCode;
use vouch_fleet::registry::now_ms;
use vouch_fleet::serve::load_fleet_ca;
use vouch_fleet::serve::revoke::{revoke_device, RevokeError};

/// Arguments of `revoke` and `delete`.
#[derive(Args, Debug)]
pub struct RevokeArgs {
    /// Device id.
    id: String,
    #[command(flatten)]
    config: ConfigArg,
}

/// Runs `revoke` (`forget = false`) or `delete` (`forget = true`).
pub fn run(args: RevokeArgs, forget: bool) -> ExitCode {
    let cmd = if forget { "delete" } else { "revoke" };
    let (cfg, mut reg) = match open(&args.config) {
        Ok(v) => v,
        Err(e) => return fail(cmd, &e, e.code()),
    };
    let ca = match load_fleet_ca(&cfg) {
        Ok(ca) => ca,
        Err(e) => return fail(cmd, &e, exit::INPUT),
    };
    let why = if forget {
        "operator: delete"
    } else {
        "operator: revoke"
    };
    match revoke_device(
        &mut reg,
        &ca,
        cfg.broker_reload_pid_file.as_deref(),
        &args.id,
        why,
        forget,
        now_ms(),
    ) {
        Ok(r) => {
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
            ExitCode::from(exit::OK)
        }
        Err(e @ RevokeError::UnknownDevice(_)) => fail(cmd, &e, exit::INPUT),
        Err(e) => fail(cmd, &e, exit::INTERNAL),
    }
}
