//! `vouch-fleet devices`, `device show ID` and `audit`: reading the registry.

use super::common::{fail, open, rfc3339_ms, ConfigArg};
use crate::exit;
use clap::{Args, Subcommand};
use std::process::ExitCode;
use vouch_fleet::registry::{Device, StoredVerdict};

/// Arguments of `vouch-fleet devices`.
#[derive(Args, Debug)]
pub struct DevicesArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `vouch-fleet device ...`.
#[derive(Args, Debug)]
pub struct DeviceArgs {
    #[command(subcommand)]
    command: DeviceCommand,
}

#[derive(Subcommand, Debug)]
enum DeviceCommand {
    /// Keys, status and the last verdicts (with reasons) of one device.
    Show(ShowArgs),
    /// Assign a policy (NAME.toml in the policies directory) to a device; `vouch-fleet serve`
    /// uses it from the next verdict on (SIGHUP reloads edited policy files).
    SetPolicy(SetPolicyArgs),
}

#[derive(Args, Debug)]
struct SetPolicyArgs {
    /// Device id.
    id: String,
    /// Policy name (the file NAME.toml in the policies directory).
    policy: String,
    #[command(flatten)]
    config: ConfigArg,
}

/// `device set-policy`: the policy must exist and be valid.
fn run_set_policy(args: SetPolicyArgs) -> ExitCode {
    let (cfg, reg) = match open(&args.config) {
        Ok(v) => v,
        Err(e) => return fail("device set-policy", &e, e.code()),
    };
    if !vouch_fleet::config::valid_policy_name(&args.policy) {
        eprintln!(
            "vouch-fleet device set-policy: {:?} is not a policy name",
            args.policy
        );
        return ExitCode::from(exit::INPUT);
    }
    let path = vouch_fleet::serve::policies::path_of(&cfg.policies_dir, &args.policy);
    if let Err(e) = vouch_fleet::serve::policies::load_file(&path) {
        eprintln!("vouch-fleet device set-policy: {e}");
        return ExitCode::from(exit::INPUT);
    }
    match reg.set_policy(&args.id, &args.policy) {
        Ok(()) => {
            println!("device {} now uses policy {}", args.id, args.policy);
            ExitCode::from(exit::OK)
        }
        Err(e @ vouch_fleet::registry::RegistryError::UnknownDevice(_)) => {
            fail("device set-policy", &e, exit::INPUT)
        }
        Err(e) => fail("device set-policy", &e, exit::INTERNAL),
    }
}

#[derive(Args, Debug)]
struct ShowArgs {
    /// Device id.
    id: String,
    #[command(flatten)]
    config: ConfigArg,
    /// How many verdicts to show.
    #[arg(long, default_value_t = 10)]
    verdicts: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `vouch-fleet audit`.
#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Only this device's rows.
    #[arg(long)]
    device: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn last_verdict(v: &[StoredVerdict]) -> String {
    v.first()
        .map(|v| if v.trusted { "trusted" } else { "untrusted" }.to_string())
        .unwrap_or_else(|| "-".into())
}

/// Lists the devices.
pub fn run_devices(args: DevicesArgs) -> ExitCode {
    let (_, reg) = match open(&args.config) {
        Ok(v) => v,
        Err(e) => return fail("devices", &e, e.code()),
    };
    let devices = match reg.devices() {
        Ok(d) => d,
        Err(e) => return fail("devices", &e, exit::INTERNAL),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&devices).unwrap_or_default()
        );
        return ExitCode::from(exit::OK);
    }
    println!(
        "{:<64}  {:<9}  {:<9}  serial",
        "device", "status", "verdict"
    );
    for d in &devices {
        let v = reg.verdicts(&d.id, 1).unwrap_or_default();
        println!(
            "{:<64}  {:<9}  {:<9}  {}",
            d.id,
            d.status.as_str(),
            last_verdict(&v),
            d.cert_serial.as_deref().unwrap_or("-")
        );
    }
    ExitCode::from(exit::OK)
}

fn print_device(d: &Device, verdicts: &[StoredVerdict]) {
    let hex_or = |b: &Option<Vec<u8>>| b.as_ref().map(hex::encode).unwrap_or_else(|| "-".into());
    println!("device:      {}", d.id);
    println!("status:      {}", d.status);
    println!("serial:      {}", d.cert_serial.as_deref().unwrap_or("-"));
    println!("enrolled:    {}", rfc3339_ms(d.enrolled_ms));
    println!("boot id:     {}", d.last_boot_id.as_deref().unwrap_or("-"));
    println!("EK:          {}", hex_or(&d.ek_public));
    println!("AK:          {}", hex_or(&d.ak_public));
    println!("TLS key:     {}", hex_or(&d.tls_public));
    println!("verdicts (newest first):");
    for v in verdicts {
        let what = if v.trusted { "trusted" } else { "untrusted" };
        println!(
            "  #{} at {}: {what} (latency {} ms)",
            v.id,
            rfc3339_ms(v.stored_ms),
            v.stored_ms.saturating_sub(v.challenged_ms)
        );
        for r in &v.reasons {
            println!("    - {r}");
        }
    }
}

/// `device show`.
pub fn run_device(args: DeviceArgs) -> ExitCode {
    let args = match args.command {
        DeviceCommand::Show(a) => a,
        DeviceCommand::SetPolicy(a) => return run_set_policy(a),
    };
    let (_, reg) = match open(&args.config) {
        Ok(v) => v,
        Err(e) => return fail("device show", &e, e.code()),
    };
    let device = match reg.device(&args.id) {
        Ok(Some(d)) => d,
        Ok(None) => {
            eprintln!("vouch-fleet device show: no device with id {:?}", args.id);
            return ExitCode::from(exit::INPUT);
        }
        Err(e) => return fail("device show", &e, exit::INTERNAL),
    };
    let verdicts = match reg.verdicts(&args.id, args.verdicts) {
        Ok(v) => v,
        Err(e) => return fail("device show", &e, exit::INTERNAL),
    };
    let policy = reg.policy_of(&args.id).ok().flatten();
    if args.json {
        let v = serde_json::json!({ "device": device, "policy": policy, "verdicts": verdicts });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print_device(&device, &verdicts);
        println!(
            "policy:      {}",
            policy.as_deref().unwrap_or("(fleet default)")
        );
    }
    ExitCode::from(exit::OK)
}

/// `audit`: prints the log and verifies the hash chain (exit 1 when broken).
pub fn run_audit(args: AuditArgs) -> ExitCode {
    let (_, reg) = match open(&args.config) {
        Ok(v) => v,
        Err(e) => return fail("audit", &e, e.code()),
    };
    let (rows, check) = match reg
        .audit_entries(args.device.as_deref())
        .and_then(|rows| Ok((rows, reg.verify_audit()?)))
    {
        Ok(v) => v,
        Err(e) => return fail("audit", &e, exit::INTERNAL),
    };
    if args.json {
        let v = serde_json::json!({ "entries": rows, "chain": check });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        for r in &rows {
            println!(
                "{:>6}  {}  {:<19}  {}  {}",
                r.seq,
                rfc3339_ms(r.at_ms),
                r.kind,
                r.device_id.as_deref().unwrap_or("-"),
                r.detail
            );
        }
    }
    match &check.problem {
        None => {
            eprintln!("audit chain: {} rows, intact", check.rows);
            ExitCode::from(exit::OK)
        }
        Some(p) => {
            eprintln!("audit chain BROKEN: {p}");
            ExitCode::from(exit::REJECTED)
        }
    }
}
