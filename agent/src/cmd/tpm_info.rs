//! `vouch-agent tpm info`: the TPM's identity as the fleet will see it.
//!
//! Which EK identifies the device, and how the device id is derived: see [`crate::identity`].

use super::CmdError;
use crate::identity::device_identity;
use crate::tpm::worker::TpmClient;
use crate::tpm::{EkCertificate, TpmInfo};
use serde::Serialize;

/// The identity facts `tpm info` prints.
#[derive(Debug, Serialize)]
pub struct Identity {
    #[serde(flatten)]
    pub info: TpmInfo,
    /// Algorithm of the EK the device id is derived from.
    pub ek_algorithm: &'static str,
    /// Whether a certificate for that EK was found (the device id is then vouched for).
    pub ek_certified: bool,
    /// SHA-256 of the EK's SubjectPublicKeyInfo DER, hex.
    pub device_id: String,
    /// Whether any EK certificate is stored in NV.
    pub ek_certificate_present: bool,
    /// The stored EK certificates: NV index and size.
    pub ek_certificates: Vec<CertSummary>,
    /// This boot's id, as the agent announces it ([`crate::boot`]); `None` when it cannot be
    /// read, with the reason in `boot_id_error`.
    pub boot_id: Option<vouch_attest::boot::BootId>,
    /// Why the boot id could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_id_error: Option<String>,
}

/// One EK certificate found in NV.
#[derive(Debug, Serialize)]
pub struct CertSummary {
    /// NV index as 0x01c0xxxx.
    pub nv_index: String,
    /// DER size in bytes.
    pub bytes: usize,
}

/// Collects the identity from the TPM.
pub fn identity(tpm: &TpmClient) -> Result<Identity, CmdError> {
    let (info, id) = tpm.call(|t| {
        let info = t.info()?;
        Ok((info, device_identity(t)))
    })?;
    let id = id?;
    let boot = crate::boot::current();
    Ok(Identity {
        boot_id: boot.as_ref().ok().copied(),
        boot_id_error: boot.err().map(|e| crate::exit::chain(&e)),
        info,
        ek_algorithm: id.ek.alg.name(),
        ek_certified: id.ek_certified(),
        device_id: id.device_id.clone(),
        ek_certificate_present: !id.certificates.is_empty(),
        ek_certificates: id.certificates.iter().map(summary).collect(),
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
    println!(
        "ek algorithm:      {}{}",
        id.ek_algorithm,
        if id.ek_certified { " (certified)" } else { "" }
    );
    println!("device id:         {}", id.device_id);
    match (&id.boot_id, &id.boot_id_error) {
        (Some(b), _) => println!("boot id:           {b}"),
        (None, why) => println!(
            "boot id:           unavailable: {}",
            why.as_deref().unwrap_or("unknown reason")
        ),
    }
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
