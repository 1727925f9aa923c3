//! `vouch-fleet seal-policy`: the fleet's PCR policy signing key and signed policies for devices
//! whose secrets are sealed with `vouch-agent seal --authorized`.
//!
//! - `keygen --key K.pem --public P.pem` creates the ECC P-256 signing key (PKCS#8 PEM, mode
//!   0600) and its public key PEM, which devices get as `--policy-key`.
//! - `sign --key K.pem --pcrs sha256:7 (--pcr-values F | --eventlog F) --out S.json` approves
//!   PCR values (given as JSON / tpm2-tools PCR file, or replayed from a TCG event log) and writes
//!   a signed policy file (`vouch_attest::policy_digest::signed`). `--serial` defaults to the
//!   current Unix time in milliseconds; devices refuse a file older than the newest they hold.

use super::{CliError, Outcome};
use clap::{Args, Subcommand};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use std::io::Write;
use std::path::{Path, PathBuf};
use vouch_attest::policy_digest::signed::PolicyDraft;
use vouch_attest::policy_digest::{fleet_key_public, PolicyDigestError, SignedPolicyError};
use vouch_attest::tpm::keys::{KeyError, PublicKey};
use vouch_attest::tpm::{EccCurve, PcrSelection, Signature, TpmPublic};
use vouch_attest::{HashAlg, PcrBanks};

/// Arguments of `vouch-fleet seal-policy`.
#[derive(Args, Debug)]
pub struct SealPolicyArgs {
    #[command(subcommand)]
    command: SealPolicyCommand,
}

#[derive(Subcommand, Debug)]
enum SealPolicyCommand {
    /// Create the fleet's ECC P-256 PCR policy signing key.
    Keygen {
        /// Private key output (PKCS#8 PEM, mode 0600); refused if it exists.
        #[arg(long, value_name = "PEM")]
        key: PathBuf,
        /// Public key output (SubjectPublicKeyInfo PEM) for `vouch-agent seal --policy-key`.
        #[arg(long, value_name = "PEM")]
        public: PathBuf,
    },
    /// Approve PCR values: write a signed policy file for devices.
    Sign(SignArgs),
}

/// Arguments of `seal-policy sign`.
#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("values").required(true).args(["pcr_values", "eventlog"]))]
pub struct SignArgs {
    /// The fleet's policy signing key (PKCS#8 PEM from `keygen`).
    #[arg(long, value_name = "PEM")]
    key: PathBuf,
    /// PCRs the approved policy binds, e.g. sha256:7.
    #[arg(long, default_value = "sha256:7")]
    pcrs: PcrSelection,
    /// PCR values: JSON {"sha256": {"7": "<hex>"}} or a tpm2-tools PCR file.
    #[arg(long, value_name = "FILE")]
    pcr_values: Option<PathBuf>,
    /// A TCG event log whose replay gives the PCR values.
    #[arg(long, value_name = "FILE")]
    eventlog: Option<PathBuf>,
    /// Serial number (default: now, in Unix milliseconds). Devices refuse lower serials.
    #[arg(long)]
    serial: Option<u64>,
    /// policyRef named by the sealed objects (as `vouch-agent seal --policy-ref`).
    #[arg(long, default_value = "vouch-seal")]
    policy_ref: String,
    /// Where to write the signed policy (JSON).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Why a `seal-policy` command failed.
#[derive(Debug, thiserror::Error)]
pub enum PolicySignError {
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The key file is not an ECC P-256 PKCS#8 PEM.
    #[error("{path}: not an ECC P-256 private key PEM (PKCS#8): {detail}")]
    Key { path: PathBuf, detail: String },
    /// Key generation failed.
    #[error("generating the policy key failed: {0}")]
    Generate(String),
    /// The PCR values file is malformed.
    #[error("{path}: unusable PCR values")]
    PcrValues {
        path: PathBuf,
        #[source]
        source: vouch_attest::pcrfile::PcrFileError,
    },
    /// The event log is malformed.
    #[error("{path}: malformed event log")]
    EventLog {
        path: PathBuf,
        #[source]
        source: vouch_attest::eventlog::ParseError,
    },
    /// A selected PCR has no value in the input.
    #[error("{path}: no value for selected PCR {bank}:{pcr}")]
    MissingPcr {
        path: PathBuf,
        bank: HashAlg,
        pcr: u32,
    },
    /// The public key could not be turned into the device-side key.
    #[error("unusable policy key")]
    FleetKey(#[source] PolicyDigestError),
    /// The policy could not be built or signed.
    #[error(transparent)]
    Policy(SignedPolicyError),
    /// ECDSA signing failed.
    #[error("signing failed")]
    Sign,
}

impl SealPolicyArgs {
    /// The command's name for messages: `seal-policy keygen` or `seal-policy sign`.
    pub fn name(&self) -> &'static str {
        match self.command {
            SealPolicyCommand::Keygen { .. } => "seal-policy keygen",
            SealPolicyCommand::Sign(_) => "seal-policy sign",
        }
    }
}

/// Runs `vouch-fleet seal-policy ...` and prints what it wrote.
pub fn run(args: SealPolicyArgs) -> Result<Outcome, CliError> {
    let message = match args.command {
        SealPolicyCommand::Keygen { key, public } => keygen(&key, &public)?,
        SealPolicyCommand::Sign(a) => sign(&a)?,
    };
    println!("{message}");
    Ok(Outcome::Done)
}

/// Runs `vouch-fleet policy sign` (the same as `seal-policy sign`).
pub fn run_sign(args: &SignArgs) -> Result<Outcome, CliError> {
    println!("{}", sign(args)?);
    Ok(Outcome::Done)
}

fn read(path: &Path) -> Result<Vec<u8>, PolicySignError> {
    std::fs::read(path).map_err(|source| PolicySignError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, bytes: &[u8], private: bool) -> Result<(), PolicySignError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| PolicySignError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if private {
        options.create_new(true).mode(0o600);
    } else {
        options.create(true).truncate(true);
    }
    let mut f = options.open(path).map_err(err)?;
    f.write_all(bytes).map_err(err)
}

/// The device-side public area of a ring P-256 key pair.
fn device_key(pair: &EcdsaKeyPair) -> Result<TpmPublic, PolicySignError> {
    let point = pair.public_key().as_ref();
    let (x, y) = match point.split_first() {
        Some((4, xy)) if xy.len() == 64 => xy.split_at(32),
        _ => return Err(PolicySignError::FleetKey(PolicyDigestError::KeyType)),
    };
    let key = PublicKey::ec(EccCurve::NistP256, x, y)
        .map_err(|e: KeyError| PolicySignError::FleetKey(PolicyDigestError::Key(e.to_string())))?;
    fleet_key_public(&key).map_err(PolicySignError::FleetKey)
}

fn keygen(key: &Path, public: &Path) -> Result<String, PolicySignError> {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| PolicySignError::Generate(e.to_string()))?;
    write(key, pair.serialize_pem().as_bytes(), true)?;
    write(public, pair.public_key_pem().as_bytes(), false)?;
    let ring_pair = load_key_der(key, &pair.serialize_der())?;
    let name = device_key(&ring_pair)?
        .name()
        .map_err(|e| PolicySignError::FleetKey(PolicyDigestError::Key(e.to_string())))?;
    Ok(format!(
        "policy key {}, public key {} (key name {})",
        key.display(),
        public.display(),
        hex::encode(name)
    ))
}

fn load_key_der(path: &Path, der: &[u8]) -> Result<EcdsaKeyPair, PolicySignError> {
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &SystemRandom::new()).map_err(
        |e| PolicySignError::Key {
            path: path.to_path_buf(),
            detail: e.to_string(),
        },
    )
}

fn load_key(path: &Path) -> Result<EcdsaKeyPair, PolicySignError> {
    let bad = |detail: String| PolicySignError::Key {
        path: path.to_path_buf(),
        detail,
    };
    let text = String::from_utf8(read(path)?).map_err(|_| bad("not a PEM text file".into()))?;
    let pair = rcgen::KeyPair::from_pem(&text).map_err(|e| bad(e.to_string()))?;
    load_key_der(path, &pair.serialize_der())
}

fn values(args: &SignArgs) -> Result<(PathBuf, PcrBanks), PolicySignError> {
    if let Some(path) = &args.eventlog {
        let data = read(path)?;
        let log =
            vouch_attest::eventlog::parse(&data).map_err(|source| PolicySignError::EventLog {
                path: path.clone(),
                source,
            })?;
        return Ok((path.clone(), log.replay()));
    }
    let path = args.pcr_values.clone().unwrap_or_default();
    let (banks, _) = vouch_attest::pcrfile::read_pcr_file(&read(&path)?).map_err(|source| {
        PolicySignError::PcrValues {
            path: path.clone(),
            source,
        }
    })?;
    Ok((path, banks))
}

fn ecdsa(pair: &EcdsaKeyPair, message: &[u8]) -> Result<Signature, PolicySignError> {
    let sig = pair
        .sign(&SystemRandom::new(), message)
        .map_err(|_| PolicySignError::Sign)?;
    let (r, s) = sig.as_ref().split_at(sig.as_ref().len() / 2);
    Ok(Signature::Ecdsa {
        hash: HashAlg::Sha256,
        r: r.to_vec(),
        s: s.to_vec(),
    })
}

fn sign(args: &SignArgs) -> Result<String, PolicySignError> {
    let pair = load_key(&args.key)?;
    let key = device_key(&pair)?;
    let (source, banks) = values(args)?;
    for (bank, pcr) in args.pcrs.iter() {
        if banks.get(bank, pcr).is_none() {
            return Err(PolicySignError::MissingPcr {
                path: source,
                bank,
                pcr,
            });
        }
    }
    let serial = args.serial.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    });
    let draft = PolicyDraft::new(
        serial,
        args.pcrs.clone(),
        &banks,
        args.policy_ref.as_bytes().to_vec(),
        key,
    )
    .map_err(PolicySignError::Policy)?;
    let approval = ecdsa(&pair, &draft.approval_message())?;
    let statement = ecdsa(&pair, &draft.statement().map_err(PolicySignError::Policy)?)?;
    let signed = draft
        .finish(approval, statement)
        .map_err(PolicySignError::Policy)?;
    let json = signed.to_json().map_err(PolicySignError::Policy)?;
    write(&args.out, json.as_bytes(), false)?;
    Ok(format!(
        "signed policy serial {serial} for {} (approved policy {}): {}",
        args.pcrs,
        hex::encode(&signed.draft.approved_policy),
        args.out.display()
    ))
}
