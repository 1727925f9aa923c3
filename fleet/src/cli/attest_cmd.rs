//! `vouch-fleet attest ID`: asks the running server to challenge a device now and waits for
//! the verdict. The request goes through the registry (`attest_requests`), which the server
//! polls every second; the verdict is read back from the registry.

use super::common::{open, ConfigArg};
use super::{CliError, Outcome};
use clap::Args;
use std::time::{Duration, Instant};
use vouch_fleet::registry::{now_ms, DeviceStatus, Registry, RegistryError};

/// Arguments of `vouch-fleet attest`.
#[derive(Args, Debug)]
pub struct AttestArgs {
    /// Device id.
    id: String,
    #[command(flatten)]
    config: ConfigArg,
    /// Seconds to wait for the verdict (0: queue the request and return).
    #[arg(long, default_value_t = 30)]
    wait: u64,
    /// Print the verdict as JSON.
    #[arg(long)]
    json: bool,
}

/// Why `attest` failed.
#[derive(Debug, thiserror::Error)]
pub enum AttestCmdError {
    /// No device has the id.
    #[error("no device with id {0:?}")]
    NoDevice(String),
    /// The device is revoked or deleted.
    #[error("device {id} is {status}")]
    Inactive {
        /// The device id.
        id: String,
        /// Its status.
        status: DeviceStatus,
    },
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// `--wait` ran out before the server stored a verdict.
    #[error(
        "no verdict for {id} within {secs} s (is `vouch-fleet serve` running and the device \
         connected?)"
    )]
    NoVerdict {
        /// The device id.
        id: String,
        /// The wait, in seconds.
        secs: u64,
    },
}

/// Queues the request and waits: [`Outcome::Done`] trusted (or only queued, `--wait 0`),
/// [`Outcome::Rejected`] untrusted, [`AttestCmdError::NoVerdict`] no verdict in time.
pub fn run(args: AttestArgs) -> Result<Outcome, CliError> {
    let (_, reg) = open(&args.config)?;
    Ok(attest(&args, &reg)?)
}

fn attest(args: &AttestArgs, reg: &Registry) -> Result<Outcome, AttestCmdError> {
    use vouch_fleet::serve::ondemand::{request_attestation, OnDemandError};
    let requested = now_ms();
    request_attestation(reg, &args.id, requested).map_err(|e| match e {
        OnDemandError::NoDevice(id) => AttestCmdError::NoDevice(id),
        OnDemandError::Inactive { id, status } => AttestCmdError::Inactive { id, status },
        OnDemandError::Registry(r) => AttestCmdError::Registry(r),
    })?;
    if args.wait == 0 {
        println!("attestation of {} requested", args.id);
        return Ok(Outcome::Done);
    }
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    while Instant::now() < deadline {
        let verdicts = reg.verdicts(&args.id, 1)?;
        if let Some(v) = verdicts.into_iter().find(|v| v.challenged_ms >= requested) {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                let what = if v.trusted { "trusted" } else { "untrusted" };
                println!("device {}: {what}", args.id);
                for r in &v.reasons {
                    println!("  - {r}");
                }
            }
            return Ok(Outcome::of(v.trusted));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(AttestCmdError::NoVerdict {
        id: args.id.clone(),
        secs: args.wait,
    })
}
