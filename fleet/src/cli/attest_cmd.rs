//! `vouch-fleet attest ID`: asks the running server to challenge a device now and waits for
//! the verdict. The request goes through the registry (`attest_requests`), which the server
//! polls every second; the verdict is read back from the registry.

use super::common::{fail, open, ConfigArg};
use crate::exit;
use clap::Args;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use vouch_fleet::registry::now_ms;

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

/// Queues the request and waits; exit 0 trusted, 1 untrusted, 70 no verdict in time.
pub fn run(args: AttestArgs) -> ExitCode {
    let (_, reg) = match open(&args.config) {
        Ok(v) => v,
        Err(e) => return fail("attest", &e, e.code()),
    };
    match reg.device(&args.id) {
        Ok(Some(d)) if d.status.is_active() => {}
        Ok(Some(d)) => {
            eprintln!("vouch-fleet attest: device {} is {}", args.id, d.status);
            return ExitCode::from(exit::INPUT);
        }
        Ok(None) => {
            eprintln!("vouch-fleet attest: no device with id {:?}", args.id);
            return ExitCode::from(exit::INPUT);
        }
        Err(e) => return fail("attest", &e, exit::INTERNAL),
    }
    let requested = now_ms();
    if let Err(e) = reg.request_attestation(&args.id, requested) {
        return fail("attest", &e, exit::INTERNAL);
    }
    if args.wait == 0 {
        println!("attestation of {} requested", args.id);
        return ExitCode::from(exit::OK);
    }
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    while Instant::now() < deadline {
        match reg.verdicts(&args.id, 1) {
            Ok(v) => {
                if let Some(v) = v.into_iter().find(|v| v.challenged_ms >= requested) {
                    if args.json {
                        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                    } else {
                        let what = if v.trusted { "trusted" } else { "untrusted" };
                        println!("device {}: {what}", args.id);
                        for r in &v.reasons {
                            println!("  - {r}");
                        }
                    }
                    return ExitCode::from(if v.trusted { exit::OK } else { exit::REJECTED });
                }
            }
            Err(e) => return fail("attest", &e, exit::INTERNAL),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "vouch-fleet attest: no verdict for {} within {} s (is `vouch-fleet serve` running and \
         the device connected?)",
        args.id, args.wait
    );
    ExitCode::from(exit::INTERNAL)
}
