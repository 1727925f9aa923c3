//! The production TPM backend: tss-esapi against libtss2 (device, swtpm or tabrmd TCTI).
//!
//! Keys: the SRK lives at persistent handle 0x81000001 (created if absent). The AK is a child of the
//! SRK whose public and private blobs are kept in the state directory (`ak.pub`, `ak.priv`), so
//! every run quotes with the same key without using up NV. Every transient object and session
//! this backend loads is held by a [`flush::Flush`] guard, which flushes it when it goes out of
//! scope; against a raw swtpm (no resource manager) objects and sessions leaked by earlier,
//! killed clients are flushed on open.

mod blobs;
mod credential;
mod flush;
pub mod keys;
mod seal;
mod systemd;
mod tls;

use super::{
    relay, AttestationKey, EkAlg, EkCertificate, EndorsementKey, PcrSelection, Quote, Tcti, Tpm,
    TpmError, TpmInfo,
};
use crate::tpm::tss::{tss, TssError};
use blobs::ChildKey;
use flush::Flush;
use keys::{ak_template, srk_template, SRK_HANDLE};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use tss_esapi::abstraction::{ek, nv, pcr};
use tss_esapi::constants::{CapabilityType, PropertyTag};
use tss_esapi::handles::{KeyHandle, PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::{AsymmetricAlgorithm, HashingAlgorithm};
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::resource_handles::{Hierarchy, Provision};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    CapabilityData, Data, Digest, DigestValues, PcrSelectionListBuilder, PcrSlot, Public,
    SignatureScheme,
};
use tss_esapi::tcti_ldr::{DeviceConfig, NetworkTPMConfig, TabrmdConfig, TctiNameConf};
use tss_esapi::traits::Marshall;
use tss_esapi::Context;
use vouch_attest::{HashAlg, PcrBanks};

/// The attestation key: `ak.pub` / `ak.priv` in the state directory.
const AK: ChildKey = ChildKey {
    name: "attestation key",
    stem: "ak",
    template: ak_template,
    tpm_error: TpmError::AttestationKey,
};

/// A TPM reached through tss-esapi. Blocking; run it on a [`super::worker::TpmClient`] thread.
pub struct EsapiTpm {
    pub(super) ctx: Context,
    pub(super) state_dir: PathBuf,
}

impl EsapiTpm {
    /// Connects through `tcti` and checks the TPM answers. `state_dir` holds the AK blobs.
    pub fn open(tcti: &Tcti, state_dir: &Path) -> Result<EsapiTpm, TpmError> {
        let connect = |e: Box<dyn std::error::Error + Send + Sync>| TpmError::Connect {
            tcti: tcti.to_string(),
            source: e,
        };
        let conf = match tcti {
            Tcti::Device(path) if !path.exists() => {
                return Err(connect(
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no such TPM device").into(),
                ))
            }
            Tcti::Device(path) => TctiNameConf::Device(
                DeviceConfig::from_str(&path.to_string_lossy()).map_err(|e| connect(e.into()))?,
            ),
            Tcti::SwtpmTcp { host, port } => TctiNameConf::Swtpm(
                NetworkTPMConfig::from_str(&format!("host={host},port={port}"))
                    .map_err(|e| connect(e.into()))?,
            ),
            Tcti::SwtpmUnix(path) => {
                let port = relay::start(path).map_err(|e| connect(e.into()))?;
                TctiNameConf::Swtpm(
                    NetworkTPMConfig::from_str(&format!("host=127.0.0.1,port={port}"))
                        .map_err(|e| connect(e.into()))?,
                )
            }
            Tcti::Tabrmd { bus_name, bus_type } => TctiNameConf::Tabrmd(
                TabrmdConfig::from_str(&format!("bus_name={bus_name},bus_type={bus_type}"))
                    .map_err(|e| connect(e.into()))?,
            ),
        };
        let mut ctx = Context::new(conf).map_err(|e| connect(e.into()))?;
        // A TCTI can load without a TPM behind it (e.g. a device node with no driver): ask once.
        ctx.get_tpm_property(PropertyTag::Manufacturer)
            .map_err(|e| connect(e.into()))?;
        if matches!(tcti, Tcti::SwtpmTcp { .. } | Tcti::SwtpmUnix(_)) {
            flush_leftovers(&mut ctx);
        }
        Ok(EsapiTpm {
            ctx,
            state_dir: state_dir.to_path_buf(),
        })
    }

    /// Loads the SRK from its persistent handle, creating and persisting it when absent.
    pub(super) fn srk(&mut self) -> Result<KeyHandle, TpmError> {
        let handle = TpmHandle::Persistent(
            PersistentTpmHandle::new(SRK_HANDLE).map_err(tss(TpmError::StorageRootKey))?,
        );
        if let Ok(obj) = self
            .ctx
            .execute_without_session(|c| c.tr_from_tpm_public(handle))
        {
            return Ok(obj.into());
        }
        let template = srk_template().map_err(tss(TpmError::StorageRootKey))?;
        let created = self
            .ctx
            .execute_with_nullauth_session(|c| {
                c.create_primary(Hierarchy::Owner, template, None, None, None, None)
            })
            .map_err(tss(TpmError::StorageRootKey))?;
        let mut primary = Flush::new(self, created.key_handle);
        let persistent =
            PersistentTpmHandle::new(SRK_HANDLE).map_err(tss(TpmError::StorageRootKey))?;
        let result = primary.ctx.execute_with_nullauth_session(|c| {
            c.evict_control(
                Provision::Owner,
                created.key_handle.into(),
                Persistent::Persistent(persistent),
            )
        });
        drop(primary);
        Ok(result.map_err(tss(TpmError::StorageRootKey))?.into())
    }

    /// Loads the AK under the SRK; flushed when the returned guard drops.
    fn load_ak(&mut self) -> Result<(Flush<'_, KeyHandle>, Public), TpmError> {
        blobs::load(self, &AK)
    }
}

/// Flushes transient objects and sessions left behind by killed clients of a raw swtpm.
fn flush_leftovers(ctx: &mut Context) {
    for first in [0x8000_0000u32, 0x0200_0000, 0x0300_0000] {
        let Ok((CapabilityData::Handles(handles), _)) =
            ctx.get_capability(CapabilityType::Handles, first, 64)
        else {
            continue;
        };
        for h in handles.iter() {
            if let Ok(obj) = ctx.tr_from_tpm_public(*h) {
                match ctx.flush_context(obj) {
                    Ok(()) => tracing::debug!(handle = ?h, "flushed leftover TPM handle"),
                    Err(e) => tracing::debug!(handle = ?h, error = %e, "cannot flush leftover"),
                }
            }
        }
    }
}

fn tpm_alg(alg: HashAlg) -> HashingAlgorithm {
    match alg {
        HashAlg::Sha1 => HashingAlgorithm::Sha1,
        HashAlg::Sha256 => HashingAlgorithm::Sha256,
        HashAlg::Sha384 => HashingAlgorithm::Sha384,
        HashAlg::Sha512 => HashingAlgorithm::Sha512,
        HashAlg::Sm3_256 => HashingAlgorithm::Sm3_256,
        HashAlg::Unknown(_) => HashingAlgorithm::Null,
    }
}

fn hash_alg(alg: HashingAlgorithm) -> HashAlg {
    match alg {
        HashingAlgorithm::Sha1 => HashAlg::Sha1,
        HashingAlgorithm::Sha256 => HashAlg::Sha256,
        HashingAlgorithm::Sha384 => HashAlg::Sha384,
        HashingAlgorithm::Sha512 => HashAlg::Sha512,
        HashingAlgorithm::Sm3_256 => HashAlg::Sm3_256,
        other => HashAlg::Unknown(u16::from(tss_esapi::constants::AlgorithmIdentifier::from(
            other,
        ))),
    }
}

fn slot(pcr: u32) -> tss_esapi::Result<PcrSlot> {
    PcrSlot::try_from(1u32 << pcr)
}

pub(super) fn selection_list(
    sel: &PcrSelection,
) -> tss_esapi::Result<tss_esapi::structures::PcrSelectionList> {
    let mut b = PcrSelectionListBuilder::new();
    for (alg, pcrs) in sel.bank_pcrs() {
        let slots = pcrs
            .iter()
            .map(|p| slot(*p))
            .collect::<tss_esapi::Result<Vec<_>>>()?;
        b = b.with_selection(tpm_alg(alg), &slots);
    }
    b.build()
}

pub(super) fn tpm2b(bytes: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 2);
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(&bytes);
    out
}

fn property(ctx: &mut Context, tag: PropertyTag) -> Result<u32, TpmError> {
    Ok(ctx
        .get_tpm_property(tag)
        .map_err(tss(TpmError::Capability))?
        .unwrap_or(0))
}

impl Tpm for EsapiTpm {
    fn info(&mut self) -> Result<TpmInfo, TpmError> {
        let manufacturer = property(&mut self.ctx, PropertyTag::Manufacturer)?;
        let fw1 = property(&mut self.ctx, PropertyTag::FirmwareVersion1)?;
        let fw2 = property(&mut self.ctx, PropertyTag::FirmwareVersion2)?;
        let vendor =
            tss_esapi::utils::get_tpm_vendor(&mut self.ctx).map_err(tss(TpmError::Capability))?;
        let (caps, _) = self
            .ctx
            .get_capability(CapabilityType::AssignedPcr, 0, 8)
            .map_err(tss(TpmError::Capability))?;
        let mut pcr_banks = Vec::new();
        if let CapabilityData::AssignedPcr(list) = caps {
            for s in list.get_selections() {
                if !s.is_empty() {
                    pcr_banks.push(hash_alg(s.hashing_algorithm()));
                }
            }
        }
        Ok(TpmInfo {
            manufacturer: ascii4(manufacturer),
            vendor: vendor.trim_end_matches('\0').trim().to_string(),
            firmware_version: format!("{fw1:08x}.{fw2:08x}"),
            firmware_version_raw: (u64::from(fw1) << 32) | u64::from(fw2),
            pcr_banks,
        })
    }

    fn endorsement_key(&mut self, alg: EkAlg) -> Result<EndorsementKey, TpmError> {
        let err = |source| TpmError::EndorsementKey {
            alg,
            source: TssError(source),
        };
        let asym = match alg {
            EkAlg::EccP256 => AsymmetricAlgorithm::Ecc,
            EkAlg::Rsa2048 => AsymmetricAlgorithm::Rsa,
        };
        let handle = ek::create_ek_object(&mut self.ctx, asym, None).map_err(err)?;
        let mut ek = Flush::new(self, handle);
        let public = ek.ctx.read_public(handle).map(|(p, _, _)| p);
        drop(ek);
        let bytes = public.map_err(err)?.marshall().map_err(err)?;
        Ok(EndorsementKey {
            alg,
            public: tpm2b(bytes),
        })
    }

    fn ek_certificates(&mut self) -> Result<Vec<EkCertificate>, TpmError> {
        let listed = nv::list(&mut self.ctx).map_err(|source| TpmError::EkCertificate {
            index: 0,
            source: TssError(source),
        })?;
        let mut certs = Vec::new();
        for (public, _) in listed {
            let index = u32::from(public.nv_index());
            let wanted = index == 0x01c0_0002
                || index == 0x01c0_000a
                || ((0x01c0_0012..=0x01c0_001e).contains(&index) && index % 2 == 0);
            if !wanted {
                continue;
            }
            let err = |source| TpmError::EkCertificate {
                index,
                source: TssError(source),
            };
            let obj = self
                .ctx
                .execute_without_session(|c| {
                    c.tr_from_tpm_public(TpmHandle::NvIndex(public.nv_index()))
                })
                .map_err(err)?;
            let auth = tss_esapi::interface_types::resource_handles::NvAuth::NvIndex(obj.into());
            let data = self
                .ctx
                .execute_with_nullauth_session(|c| nv::read_full(c, auth, public.nv_index()))
                .map_err(err)?;
            certs.push(EkCertificate {
                nv_index: index,
                der: strip_der_padding(data),
            });
        }
        certs.sort_by_key(|c| c.nv_index);
        Ok(certs)
    }

    fn attestation_key(&mut self) -> Result<AttestationKey, TpmError> {
        let (public, _) = blobs::blobs(self, &AK)?;
        let bytes = public.marshall().map_err(|source| TpmError::Marshal {
            what: "AK public",
            source: TssError(source),
        })?;
        Ok(AttestationKey {
            public: tpm2b(bytes),
        })
    }

    fn pcr_read(&mut self, selection: &PcrSelection) -> Result<PcrBanks, TpmError> {
        let list = selection_list(selection).map_err(tss(TpmError::PcrRead))?;
        let data = pcr::read_all(&mut self.ctx, list).map_err(tss(TpmError::PcrRead))?;
        let mut out = PcrBanks::new();
        for (alg, pcrs) in selection.bank_pcrs() {
            let Some(bank) = data.pcr_bank(tpm_alg(alg)) else {
                continue;
            };
            for p in pcrs {
                if let Some(d) = slot(p).ok().and_then(|s| bank.get_digest(s)) {
                    out.insert(alg, p, d.value().to_vec());
                }
            }
        }
        Ok(out)
    }

    fn pcr_extend(&mut self, pcr: u32, digests: &[(HashAlg, Vec<u8>)]) -> Result<(), TpmError> {
        let err = |source| TpmError::PcrExtend {
            pcr,
            source: TssError(source),
        };
        let mut values = DigestValues::new();
        for (alg, d) in digests {
            values.set(tpm_alg(*alg), Digest::try_from(d.clone()).map_err(err)?);
        }
        let handle = tss_esapi::handles::PcrHandle::try_from(pcr).map_err(err)?;
        self.ctx
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.pcr_extend(handle, values)
            })
            .map_err(err)
    }

    fn quote(&mut self, nonce: &[u8], selection: &PcrSelection) -> Result<Quote, TpmError> {
        let list = selection_list(selection).map_err(tss(TpmError::Quote))?;
        let data = Data::try_from(nonce.to_vec()).map_err(tss(TpmError::Quote))?;
        let (mut ak, _) = self.load_ak()?;
        let handle = ak.handle();
        let result = ak
            .ctx
            // The AK's auth is empty: a password session avoids starting (and flushing) an HMAC
            // session per quote, which costs more than the quote itself.
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.quote(handle, data, SignatureScheme::Null, list)
            });
        drop(ak);
        let (attest, signature) = result.map_err(tss(TpmError::Quote))?;
        let marshal = |what| {
            move |source| TpmError::Marshal {
                what,
                source: TssError(source),
            }
        };
        Ok(Quote {
            attest: attest.marshall().map_err(marshal("TPMS_ATTEST"))?,
            signature: signature.marshall().map_err(marshal("TPMT_SIGNATURE"))?,
            pcrs: self.pcr_read(selection)?,
        })
    }

    fn activate_credential(
        &mut self,
        ek: EkAlg,
        credential_blob: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, TpmError> {
        credential::activate(self, ek, credential_blob, encrypted_secret)
    }

    fn tls_key(&mut self) -> Result<super::TlsKey, TpmError> {
        tls::tls_key(self)
    }

    fn certify_tls_key(
        &mut self,
        qualifying_data: &[u8],
    ) -> Result<super::Certification, TpmError> {
        tls::certify(self, qualifying_data)
    }

    fn sign_tls(&mut self, digest: &[u8]) -> Result<Vec<u8>, TpmError> {
        tls::sign(self, digest)
    }

    fn seal(
        &mut self,
        secret: &[u8],
        policy: &crate::seal::SealPolicy,
    ) -> Result<crate::seal::SealedObject, TpmError> {
        seal::seal(self, secret, policy)
    }

    fn unseal(
        &mut self,
        sealed: &crate::seal::SealedObject,
        authorization: Option<&vouch_attest::policy_digest::SignedPolicy>,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, TpmError> {
        seal::unseal(self, sealed, authorization)
    }

    fn seal_systemd(
        &mut self,
        secret: &[u8],
        bank: HashAlg,
        pcrs: &[u32],
    ) -> Result<crate::volume::systemd_token::SystemdSeal, TpmError> {
        systemd::seal(self, secret, bank, pcrs)
    }

    fn unseal_systemd(
        &mut self,
        seal: &crate::volume::systemd_token::SystemdSeal,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, TpmError> {
        systemd::unseal(self, seal)
    }
}

fn ascii4(v: u32) -> String {
    v.to_be_bytes()
        .iter()
        .filter(|b| b.is_ascii_graphic())
        .map(|b| char::from(*b))
        .collect()
}

/// NV indices are often larger than the certificate: cut to the DER SEQUENCE length.
fn strip_der_padding(mut data: Vec<u8>) -> Vec<u8> {
    if data.len() >= 4 && data[0] == 0x30 && data[1] == 0x82 {
        let len = usize::from(u16::from_be_bytes([data[2], data[3]])) + 4;
        if len <= data.len() {
            data.truncate(len);
        }
    }
    data
}
