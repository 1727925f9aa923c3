//! `vouch-fleet devices`, `device show ID` and `audit`: reading the registry.

use super::common::{open, rfc3339_ms, ConfigArg};
use super::{CliError, Outcome};
use clap::{Args, Subcommand};
use vouch_fleet::registry::{Device, RegistryError, StoredVerdict};

/// Why `devices`, `device show|set-policy` or `audit` failed.
#[derive(Debug, thiserror::Error)]
pub enum DevicesError {
    /// No device has the id (`device show`).
    #[error("no device with id {0:?}")]
    NoDevice(String),
    /// `device set-policy`: not a policy name.
    #[error("{0:?} is not a policy name")]
    PolicyName(String),
    /// `device set-policy`: the policy file is missing or invalid (the loader's message: file
    /// and causes).
    #[error("{0}")]
    Policy(String),
    /// The registry failed (or, for `device set-policy`, has no such device).
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

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

impl DeviceArgs {
    /// The command's name for messages: `device show` or `device set-policy`.
    pub fn name(&self) -> &'static str {
        match self.command {
            DeviceCommand::Show(_) => "device show",
            DeviceCommand::SetPolicy(_) => "device set-policy",
        }
    }
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
fn run_set_policy(args: SetPolicyArgs) -> Result<Outcome, CliError> {
    let (cfg, reg) = open(&args.config)?;
    if !vouch_fleet::config::valid_policy_name(&args.policy) {
        return Err(DevicesError::PolicyName(args.policy).into());
    }
    let path = vouch_fleet::serve::policies::path_of(&cfg.policies_dir, &args.policy);
    let releases = vouch_fleet::serve::releases::ReleaseStore::load(&cfg.releases_dir);
    vouch_fleet::serve::policies::load_file(&path, &releases).map_err(DevicesError::Policy)?;
    reg.set_policy(&args.id, &args.policy)
        .map_err(DevicesError::from)?;
    println!("device {} now uses policy {}", args.id, args.policy);
    Ok(Outcome::Done)
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
pub fn run_devices(args: DevicesArgs) -> Result<Outcome, CliError> {
    let (cfg, reg) = open(&args.config)?;
    let liveness = vouch_fleet::serve::liveness::Liveness::of(&cfg);
    let devices = liveness
        .devices(&reg, vouch_fleet::registry::now_ms())
        .map_err(DevicesError::from)?;
    if args.json {
        let v: Vec<serde_json::Value> = devices
            .iter()
            .map(|(d, stale)| {
                let mut v = serde_json::to_value(d).unwrap_or_default();
                if let serde_json::Value::Object(m) = &mut v {
                    m.insert("stale".into(), (*stale).into());
                }
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(Outcome::Done);
    }
    println!(
        "{:<64}  {:<9}  {:<9}  {:<5}  serial",
        "device", "status", "verdict", "stale"
    );
    for (d, stale) in &devices {
        let v = reg.verdicts(&d.id, 1).unwrap_or_default();
        println!(
            "{:<64}  {:<9}  {:<9}  {:<5}  {}",
            d.id,
            d.status.as_str(),
            last_verdict(&v),
            if *stale { "STALE" } else { "-" },
            d.cert_serial.as_deref().unwrap_or("-")
        );
    }
    Ok(Outcome::Done)
}

/// A TPM public area for people: its algorithm and the SHA-256 fingerprint of its
/// SubjectPublicKeyInfo (what `openssl pkey -pubin -outform DER | sha256sum` prints); `--json`
/// keeps the full public area.
fn key_summary(public: Option<&[u8]>) -> String {
    use vouch_attest::tpm::{EccCurve, PublicKey, TpmPublic};
    let Some(bytes) = public else {
        return "-".into();
    };
    let key = TpmPublic::parse(bytes).and_then(|(p, _)| p.key());
    let Ok(key) = key else {
        return format!("unreadable public area ({} bytes)", bytes.len());
    };
    let alg = match &key {
        PublicKey::Rsa { modulus, .. } => format!("RSA-{}", modulus.len() * 8),
        PublicKey::Ec { curve, .. } => match curve {
            EccCurve::NistP256 => "ECC P-256".to_string(),
            EccCurve::NistP384 => "ECC P-384".to_string(),
            EccCurve::NistP521 => "ECC P-521".to_string(),
            EccCurve::Other(id) => format!("ECC curve 0x{id:04x}"),
        },
    };
    match key.to_spki_der() {
        Ok(der) => {
            let digest = ring::digest::digest(&ring::digest::SHA256, &der);
            format!("{alg}, SPKI SHA-256 {}", hex::encode(digest.as_ref()))
        }
        Err(_) => alg,
    }
}

fn print_device(d: &Device, verdicts: &[StoredVerdict]) {
    println!("device:      {}", d.id);
    println!("status:      {}", d.status);
    println!("serial:      {}", d.cert_serial.as_deref().unwrap_or("-"));
    println!("enrolled:    {}", rfc3339_ms(d.enrolled_ms));
    println!("boot id:     {}", d.last_boot_id.as_deref().unwrap_or("-"));
    println!("EK:          {}", key_summary(d.ek_public.as_deref()));
    println!("AK:          {}", key_summary(d.ak_public.as_deref()));
    println!("TLS key:     {}", key_summary(d.tls_public.as_deref()));
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
pub fn run_device(args: DeviceArgs) -> Result<Outcome, CliError> {
    let args = match args.command {
        DeviceCommand::Show(a) => a,
        DeviceCommand::SetPolicy(a) => return run_set_policy(a),
    };
    let (cfg, reg) = open(&args.config)?;
    let device = reg
        .device(&args.id)
        .map_err(DevicesError::from)?
        .ok_or_else(|| DevicesError::NoDevice(args.id.clone()))?;
    let verdicts = reg
        .verdicts(&args.id, args.verdicts)
        .map_err(DevicesError::from)?;
    let policy = reg.policy_of(&args.id).ok().flatten();
    let last_trusted = reg
        .last_trusted_ms()
        .map_err(DevicesError::from)?
        .get(&args.id)
        .copied();
    let stale = vouch_fleet::serve::liveness::Liveness::of(&cfg).is_stale(
        &device,
        last_trusted,
        vouch_fleet::registry::now_ms(),
    );
    if args.json {
        let v = serde_json::json!({
            "device": device, "policy": policy, "verdicts": verdicts, "stale": stale,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print_device(&device, &verdicts);
        println!(
            "policy:      {}",
            policy.as_deref().unwrap_or("(fleet default)")
        );
        let since = last_trusted.map_or_else(|| "none".to_string(), rfc3339_ms);
        println!(
            "liveness:    {} (last trusted verdict: {since})",
            if stale { "STALE" } else { "live" }
        );
    }
    Ok(Outcome::Done)
}

/// `audit`: prints the log and verifies the hash chain (exit 1 when broken).
pub fn run_audit(args: AuditArgs) -> Result<Outcome, CliError> {
    let (_, reg) = open(&args.config)?;
    let rows = reg
        .audit_entries(args.device.as_deref())
        .map_err(DevicesError::from)?;
    let check = reg.verify_audit().map_err(DevicesError::from)?;
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
            Ok(Outcome::Done)
        }
        Some(p) => {
            eprintln!("audit chain BROKEN: {p}");
            Ok(Outcome::Rejected)
        }
    }
}
