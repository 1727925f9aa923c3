//! `vouch-agent tpm info`: the TPM's identity as the fleet will see it.
//!
//! The device id is the SHA-256 of the ECC P-256 EK's SubjectPublicKeyInfo (DER), so anybody can
//! recompute it from the EK public key with standard tools
//! (`openssl pkey -pubin -outform DER | sha256sum`).

use super::CmdError;
use crate::tpm::worker::TpmClient;
use crate::tpm::{EkAlg, EkCertificate, EndorsementKey, TpmInfo};
use serde::Serialize;
use sha2::{Digest, Sha256};
use vouch_attest::tpm::TpmPublic;

/// The identity facts `tpm info` prints.
#[derive(Debug, Serialize)]
pub struct Identity {
    #[serde(flatten)]
    pub info: TpmInfo,
    /// Algorithm of the EK the device id is derived from.
    pub ek_algorithm: &'static str,
    /// SHA-256 of the EK's SubjectPublicKeyInfo DER, hex.
    pub device_id: String,
    /// Whether any EK certificate is stored in NV.
    pub ek_certificate_present: bool,
    /// The stored EK certificates: NV index and size.
    pub ek_certificates: Vec<CertSummary>,
}

/// One EK certificate found in NV.
#[derive(Debug, Serialize)]
pub struct CertSummary {
    /// NV index as 0x01c0xxxx.
    pub nv_index: String,
    /// DER size in bytes.
    pub bytes: usize,
}

/// SPKI DER of an EK from its TPM2B_PUBLIC.
pub fn ek_spki_der(ek: &EndorsementKey) -> Result<Vec<u8>, CmdError> {
    let decode = |detail: String| CmdError::Decode {
        what: "EK public",
        detail,
    };
    let (public, _) = TpmPublic::parse(&ek.public).map_err(|e| decode(e.to_string()))?;
    public
        .key()
        .map_err(|e| decode(e.to_string()))?
        .to_spki_der()
        .map_err(|e| decode(e.to_string()))
}

/// Device id: hex SHA-256 of the EK SPKI DER.
pub fn device_id(ek: &EndorsementKey) -> Result<String, CmdError> {
    Ok(hex::encode(Sha256::digest(ek_spki_der(ek)?)))
}

/// Collects the identity from the TPM.
pub fn identity(tpm: &TpmClient) -> Result<Identity, CmdError> {
    let (info, ek, certs) = tpm.call(|t| {
        Ok((
            t.info()?,
            t.endorsement_key(EkAlg::EccP256)?,
            t.ek_certificates()?,
        ))
    })?;
    Ok(Identity {
        info,
        ek_algorithm: ek.alg.name(),
        device_id: device_id(&ek)?,
        ek_certificate_present: !certs.is_empty(),
        ek_certificates: certs.iter().map(summary).collect(),
    })
}

fn summary(c: &EkCertificate) -> CertSummary {
    CertSummary {
        nv_index: format!("0x{:08x}", c.nv_index),
        bytes: c.der.len(),
    }
}

/// Prints the identity as text or JSON.
pub fn run(tpm: &TpmClient, json: bool) -> Result<(), CmdError> {
    let id = identity(tpm)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&id)?);
        return Ok(());
    }
    let banks: Vec<String> = id.info.pcr_banks.iter().map(|b| b.name()).collect();
    println!("manufacturer:      {}", id.info.manufacturer);
    println!("vendor:            {}", id.info.vendor);
    println!("firmware version:  {}", id.info.firmware_version);
    println!("pcr banks:         {}", banks.join(", "));
    println!("ek algorithm:      {}", id.ek_algorithm);
    println!("device id:         {}", id.device_id);
    let certs: Vec<String> = id
        .ek_certificates
        .iter()
        .map(|c| format!("{} ({} bytes)", c.nv_index, c.bytes))
        .collect();
    println!(
        "ek certificate:    {}",
        if certs.is_empty() {
            "none".to_string()
        } else {
            certs.join(", ")
        }
    );
    Ok(())
}
