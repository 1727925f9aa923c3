//! The two LUKS2 tokens Vouch writes and reads, and re-sealing keyslot 0.
//!
//! * `vouch-tpm2` (keyslots `[0]`): `vouch_sealed` = base64 of the sealed blob
//!   ([`crate::seal::blob`]) holding the keyslot-0 secret, `vouch_policy` = `pcr` or
//!   `authorized`, and for `pcr` the bound selection in `vouch_pcrs` (e.g. `sha256:7`).
//! * `vouch-escrow` (keyslots `[1]`): the recovery passphrase encrypted to the fleet's escrow
//!   key (`vouch_attest::escrow::EscrowRecord` fields: `format`, `device_id`, `volume_uuid`,
//!   `blob`). Ciphertext only: only the fleet can open it.
//!
//! Volumes Vouch creates use keyslots 0 (sealed) and 1 (recovery); adopted volumes use the
//! keyslots their tokens name ([`token_keyslot`]).
//!
//! [`replace_secret_keyslot`] rewrites the sealed secret's keyslot in its own area with a new secret (re-sealing
//! after recovery). It is not atomic: a crash between the area write and the header write
//! leaves keyslot 0 unusable, while keyslot 1 (recovery) keeps working, so reseal can be rerun.

use base64::Engine;
use rand_core::OsRng;
use serde_json::Value;
use zeroize::Zeroizing;

use super::device::BlockDevice;
use super::luks2::format::{RECOVERY_KEYSLOT, SECRET_KEYSLOT};
use super::luks2::json::Fields;
use super::luks2::json::Id;
use super::luks2::kdf::Kdf;
use super::luks2::keyslot::{self, KeyslotError};
use super::luks2::token::Token;
use super::luks2::{Luks2Error, Luks2Volume};
use crate::seal::blob::{self, BlobError};
use crate::seal::{Binding, SealedObject};
use vouch_attest::escrow::{EscrowError, EscrowRecord};

/// Token type of the sealed secret.
pub const TPM_TOKEN: &str = "vouch-tpm2";
/// Token type of the escrowed recovery passphrase.
pub const ESCROW_TOKEN: &str = "vouch-escrow";
/// Largest base64 sealed blob accepted from a token.
const MAX_SEALED_B64: usize = 16 * 1024;

/// Errors of reading and writing Vouch tokens.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The volume has no token of this type.
    #[error("the volume has no {0} token (not created by vouch-agent volume create?)")]
    Missing(&'static str),
    /// A token field is missing or not a string.
    #[error("{token} token {id}: field {field} is missing or not a string")]
    Field {
        token: &'static str,
        id: u32,
        field: &'static str,
    },
    /// The sealed blob field is not base64 or too long.
    #[error(
        "{TPM_TOKEN} token {id}: vouch_sealed is not base64 of at most {MAX_SEALED_B64} characters"
    )]
    Base64 { id: u32 },
    /// The sealed blob is malformed.
    #[error("{TPM_TOKEN} token {id}: the sealed blob is not valid")]
    Blob {
        id: u32,
        #[source]
        source: BlobError,
    },
    /// The escrow token does not hold a valid escrow record.
    #[error("{ESCROW_TOKEN} token {id} is not valid")]
    Escrow {
        id: u32,
        #[source]
        source: EscrowError,
    },
    /// Writing a token or header failed.
    #[error("updating the LUKS2 header failed")]
    Update(#[source] Luks2Error),
    /// The sealed secret's keyslot is missing or has no KDF.
    #[error("keyslot {0} is missing or has no KDF")]
    SecretKeyslot(u32),
    /// Rewriting the sealed secret's keyslot failed.
    #[error("rewriting keyslot {0} failed")]
    Keyslot(u32, #[source] KeyslotError),
    /// The KDF of the sealed secret's keyslot is unreadable.
    #[error("the KDF of keyslot {0} is unusable")]
    Kdf(u32, #[source] super::luks2::kdf::KdfError),
}

/// The `vouch-tpm2` token of a sealed object opening `keyslot` (0 on volumes Vouch created).
pub fn tpm_token(sealed: &SealedObject, keyslot: u32) -> Token {
    let mut fields = Fields::new();
    let b64 = base64::engine::general_purpose::STANDARD.encode(blob::encode(sealed));
    fields.insert("vouch_sealed".into(), Value::String(b64));
    match &sealed.binding {
        Binding::Pcr { selection, .. } => {
            fields.insert("vouch_policy".into(), Value::String("pcr".into()));
            fields.insert("vouch_pcrs".into(), Value::String(selection.to_string()));
        }
        Binding::Authorized { .. } => {
            fields.insert("vouch_policy".into(), Value::String("authorized".into()));
        }
    }
    Token {
        kind: TPM_TOKEN.into(),
        keyslots: vec![keyslot],
        fields,
    }
}

/// The `vouch-escrow` token of an escrow record for `keyslot` (1 on volumes Vouch created).
pub fn escrow_token(record: &EscrowRecord, keyslot: u32) -> Token {
    let mut fields = Fields::new();
    for (k, v) in [
        ("format", &record.format),
        ("device_id", &record.device_id),
        ("volume_uuid", &record.volume_uuid),
        ("blob", &record.blob),
    ] {
        fields.insert(k.into(), Value::String(v.clone()));
    }
    Token {
        kind: ESCROW_TOKEN.into(),
        keyslots: vec![keyslot],
        fields,
    }
}

fn find(volume: &Luks2Volume, kind: &'static str) -> Result<(u32, Token), TokenError> {
    volume
        .tokens()
        .into_iter()
        .find(|(_, t)| t.kind == kind)
        .ok_or(TokenError::Missing(kind))
}

fn field<'a>(
    t: &'a Token,
    token: &'static str,
    id: u32,
    field: &'static str,
) -> Result<&'a str, TokenError> {
    t.fields
        .get(field)
        .and_then(Value::as_str)
        .ok_or(TokenError::Field { token, id, field })
}

/// The keyslot of the volume's token of type `kind`: its first keyslot, or Vouch's fixed
/// keyslot (0 for `vouch-tpm2`, 1 for `vouch-escrow`) when it names none.
pub fn token_keyslot(volume: &Luks2Volume, kind: &'static str) -> Result<u32, TokenError> {
    let (_, t) = find(volume, kind)?;
    let fixed = if kind == ESCROW_TOKEN {
        RECOVERY_KEYSLOT
    } else {
        SECRET_KEYSLOT
    };
    Ok(t.keyslots.first().copied().unwrap_or(fixed))
}

/// The sealed object of the volume's `vouch-tpm2` token, with the token id.
pub fn read_sealed(volume: &Luks2Volume) -> Result<(u32, SealedObject), TokenError> {
    let (id, t) = find(volume, TPM_TOKEN)?;
    let b64 = field(&t, TPM_TOKEN, id, "vouch_sealed")?;
    if b64.len() > MAX_SEALED_B64 {
        return Err(TokenError::Base64 { id });
    }
    let data = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| TokenError::Base64 { id })?;
    let sealed = blob::decode(&data).map_err(|source| TokenError::Blob { id, source })?;
    Ok((id, sealed))
}

/// The escrow record of the volume's `vouch-escrow` token.
pub fn read_escrow(volume: &Luks2Volume) -> Result<EscrowRecord, TokenError> {
    let (id, t) = find(volume, ESCROW_TOKEN)?;
    let get = |f| field(&t, ESCROW_TOKEN, id, f).map(str::to_string);
    let record = EscrowRecord {
        format: get("format")?,
        device_id: get("device_id")?,
        volume_uuid: get("volume_uuid")?,
        blob: get("blob")?,
    };
    if record.format != vouch_attest::escrow::RECORD_FORMAT {
        return Err(TokenError::Escrow {
            id,
            source: EscrowError::RecordFormat(record.format),
        });
    }
    Ok(record)
}

/// Rewrites keyslot 0 so that `secret` opens `volume_key`, in place (same area and KDF), and
/// replaces the `vouch-tpm2` token with one for `sealed`; writes both headers once.
pub fn replace_secret_keyslot<D: BlockDevice>(
    volume: &mut Luks2Volume,
    dev: &mut D,
    volume_key: &Zeroizing<Vec<u8>>,
    secret: &Zeroizing<Vec<u8>>,
    sealed: &SealedObject,
) -> Result<(), TokenError> {
    let slot = token_keyslot(volume, TPM_TOKEN).unwrap_or(SECRET_KEYSLOT);
    let old = volume
        .metadata
        .keyslots
        .get(&Id(slot))
        .ok_or(TokenError::SecretKeyslot(slot))?;
    let kdf_json = old.kdf.as_ref().ok_or(TokenError::SecretKeyslot(slot))?;
    let (kdf, _) = Kdf::from_json(kdf_json).map_err(|e| TokenError::Kdf(slot, e))?;
    let ks = keyslot::create(
        dev,
        volume_key,
        secret,
        kdf,
        old.area.offset.0,
        old.priority,
        &mut OsRng,
    )
    .map_err(|e| TokenError::Keyslot(slot, e))?;
    let mut md = volume.metadata.clone();
    md.keyslots.insert(Id(slot), ks);
    let stale: Vec<Id> = md
        .tokens
        .iter()
        .filter(|(_, t)| t.kind == TPM_TOKEN)
        .map(|(id, _)| *id)
        .collect();
    for id in stale {
        md.tokens.remove(&id);
    }
    super::luks2::token::add(&mut md, &tpm_token(sealed, slot))
        .map_err(|e| TokenError::Update(Luks2Error::Token(e)))?;
    let previous = std::mem::replace(&mut volume.metadata, md);
    if let Err(e) = volume.write_headers(dev) {
        volume.metadata = previous;
        return Err(TokenError::Update(e));
    }
    Ok(())
}
