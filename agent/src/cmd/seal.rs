//! `vouch-agent seal` and `vouch-agent unseal`: secrets sealed to PCR values (PolicyPCR) or to
//! PCR policies the fleet approves (PolicyAuthorize), stored in the blob format of
//! [`crate::seal::blob`].
//!
//! For fleet-authorized blobs, `unseal --signed-policy FILE` verifies the file, refuses it when
//! the agent already holds a newer one (serial), stores it in the state directory, and uses it;
//! without `--signed-policy` the newest stored one is used. Secrets are held in `Zeroizing`
//! buffers and never logged; `--out` files are created with mode 0600.

pub use crate::cli::{SealArgs, UnsealArgs};

use super::CmdError;
use crate::seal::store::{read_bounded, read_signed_policy, PolicyStore};
use crate::seal::{blob, check_authorization, Binding, SealError, SealPolicy, MAX_SECRET};
use crate::tpm::worker::TpmClient;
use std::io::Write;
use std::path::{Path, PathBuf};
use vouch_attest::policy_digest::{fleet_key_public, PolicyDigestError};
use vouch_attest::tpm::keys::PublicKey;
use zeroize::Zeroizing;

/// Largest sealed blob read.
const MAX_BLOB: u64 = 16 * 1024;
/// Largest PCR values file read.
const MAX_PCR_FILE: u64 = 64 * 1024;

fn read_secret(path: &Path) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let limit = MAX_SECRET as u64 + 1;
    let mut data = Zeroizing::new(Vec::new());
    if path == Path::new("-") {
        use std::io::Read;
        std::io::stdin()
            .take(limit)
            .read_to_end(&mut data)
            .map_err(|source| SealError::Read {
                path: path.to_path_buf(),
                source,
            })?;
    } else {
        match read_bounded(path, limit) {
            Ok(d) => data = Zeroizing::new(d),
            Err(SealError::TooLarge { .. }) => {
                return Err(SealError::SecretSize {
                    len: MAX_SECRET + 1,
                })
            }
            Err(e) => return Err(e),
        }
    }
    if data.is_empty() || data.len() > MAX_SECRET {
        return Err(SealError::SecretSize { len: data.len() });
    }
    Ok(data)
}

fn policy(args: &SealArgs) -> Result<SealPolicy, SealError> {
    if args.authorized {
        let path = args.policy_key.clone().unwrap_or_default();
        let pem = read_bounded(&path, 16 * 1024)?;
        let bad = |detail: String| SealError::PolicyKey {
            path: path.clone(),
            detail,
        };
        let text = String::from_utf8(pem).map_err(|_| bad("not a PEM text file".into()))?;
        let key = PublicKey::from_pem(&text).map_err(|e| bad(e.to_string()))?;
        let key = fleet_key_public(&key).map_err(|e| bad(e.to_string()))?;
        let policy_ref = args.policy_ref.as_bytes().to_vec();
        if policy_ref.len() > 64 {
            return Err(SealError::PolicyRef(PolicyDigestError::PolicyRefLength(
                policy_ref.len(),
            )));
        }
        return Ok(SealPolicy::Authorized { key, policy_ref });
    }
    let values = match &args.pcr_values {
        Some(path) => {
            let data = read_bounded(path, MAX_PCR_FILE)?;
            let (banks, _) = vouch_attest::pcrfile::read_pcr_file(&data).map_err(|source| {
                SealError::PcrValues {
                    path: path.clone(),
                    source,
                }
            })?;
            Some(banks)
        }
        None => None,
    };
    Ok(SealPolicy::Pcr {
        selection: args.pcrs.clone(),
        values,
    })
}

/// `vouch-agent seal`.
pub fn seal(tpm: &TpmClient, args: &SealArgs) -> Result<(), CmdError> {
    let secret = read_secret(&args.input)?;
    let policy = policy(args)?;
    let sealed = tpm.call(move |t| t.seal(&secret, &policy))?;
    let what = match &sealed.binding {
        Binding::Pcr { selection, .. } => format!("PCRs {selection}"),
        Binding::Authorized { .. } => "fleet-approved PCR policies".to_string(),
    };
    super::write_file(&args.out, &blob::encode(&sealed))?;
    eprintln!("sealed to {what}: {}", args.out.display());
    Ok(())
}

/// `vouch-agent unseal`.
pub fn unseal(tpm: &TpmClient, state_dir: &Path, args: &UnsealArgs) -> Result<(), CmdError> {
    let data = read_bounded(&args.input, MAX_BLOB)?;
    let sealed = blob::decode(&data).map_err(|source| SealError::Blob {
        path: args.input.clone(),
        source,
    })?;
    let authorization = match &sealed.binding {
        Binding::Pcr { .. } => {
            if args.signed_policy.is_some() {
                tracing::warn!("the blob is sealed to fixed PCR values: --signed-policy ignored");
            }
            None
        }
        Binding::Authorized { key, policy_ref } => {
            let store = PolicyStore::new(state_dir);
            let policy = match &args.signed_policy {
                Some(path) => {
                    let given = read_signed_policy(path)?;
                    check_authorization(key, policy_ref, Some(&given))
                        .map_err(SealError::Mismatch)?;
                    store.offer(&given)?;
                    given
                }
                None => {
                    let name = key.name().map_err(|e| {
                        SealError::Mismatch(crate::seal::PolicyError::Digest(
                            PolicyDigestError::Key(e.to_string()),
                        ))
                    })?;
                    store
                        .newest(&name, policy_ref)?
                        .ok_or_else(|| SealError::NoSignedPolicy {
                            dir: store.dir().to_path_buf(),
                        })?
                }
            };
            Some(policy)
        }
    };
    let secret = tpm.call(move |t| t.unseal(&sealed, authorization.as_ref()))?;
    match &args.out {
        Some(path) => write_private(path, &secret),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&secret)
                .and_then(|_| out.flush())
                .map_err(|source| CmdError::Write {
                    path: PathBuf::from("-"),
                    source,
                })
        }
    }
}

fn write_private(path: &Path, secret: &[u8]) -> Result<(), CmdError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| CmdError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.write_all(secret).map_err(err)
}
