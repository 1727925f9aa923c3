//! A software TPM for unit tests: PCR banks, an ECC P-256 EK and AK held in memory, quotes that
//! are bit-exact TPM structures (marshalled by `vouch-attest`) signed with ECDSA-SHA256.
//!
//! It models only what the agent uses. Keys are random per instance and never leave the process;
//! this is a test double, never used with real secrets. Credential activation, the TLS key and
//! its certification live in [`keys`].

mod keys;
mod seal;

use super::{
    AttestationKey, EkAlg, EkCertificate, EndorsementKey, PcrSelection, Quote, Tpm, TpmError,
    TpmInfo,
};
use p256::ecdsa::SigningKey;
use rand_core::OsRng;
use std::collections::BTreeMap;
use vouch_attest::tpm::{
    AsymScheme, Attest, AttestBody, ClockInfo, EccCurve, KdfScheme, ObjectAttributes, PcrSelect,
    PublicParams, QuoteInfo, SymDef, TpmPublic,
};
use vouch_attest::{HashAlg, PcrBanks};

/// Firmware version the software TPM reports.
pub(super) const FIRMWARE: u64 = 0x2026_1123_0000_0001;

/// The in-memory TPM.
pub struct MemoryTpm {
    pcrs: BTreeMap<(HashAlg, u32), Vec<u8>>,
    pub(super) ek: SigningKey,
    pub(super) ak: SigningKey,
    pub(super) tls: SigningKey,
    pub(super) clock: u64,
    certificates: Vec<EkCertificate>,
    pub(super) sealed: seal::SealedStore,
}

impl Default for MemoryTpm {
    fn default() -> MemoryTpm {
        MemoryTpm::new()
    }
}

impl MemoryTpm {
    /// A fresh TPM: sha1 and sha256 banks all zero, new random keys, no EK certificate.
    pub fn new() -> MemoryTpm {
        let mut pcrs = BTreeMap::new();
        for alg in [HashAlg::Sha1, HashAlg::Sha256] {
            for pcr in 0..=crate::tpm::MAX_PCR {
                pcrs.insert((alg, pcr), vec![0; alg.digest_len().unwrap_or(32)]);
            }
        }
        MemoryTpm {
            pcrs,
            ek: SigningKey::random(&mut OsRng),
            ak: SigningKey::random(&mut OsRng),
            tls: SigningKey::random(&mut OsRng),
            clock: 1000,
            certificates: Vec::new(),
            sealed: Default::default(),
        }
    }

    /// Stores an EK certificate, as a manufacturer would.
    pub fn with_ek_certificate(mut self, cert: EkCertificate) -> MemoryTpm {
        self.certificates.push(cert);
        self
    }

    pub(super) fn public(key: &SigningKey, attributes: ObjectAttributes, ek: bool) -> TpmPublic {
        let point = key.verifying_key().to_encoded_point(false);
        let coord = |c: Option<&p256::FieldBytes>| c.map(|b| b.to_vec()).unwrap_or_default();
        let mut public =
            TpmPublic::ecc_p256_signing(attributes, &coord(point.x()), &coord(point.y()));
        if ek {
            if let PublicParams::Ecc(p) = &mut public.params {
                p.symmetric = SymDef::Cipher {
                    alg: 0x0006,
                    key_bits: 128,
                    mode: 0x0043,
                };
                p.scheme = AsymScheme::Null;
                p.kdf = KdfScheme::Null;
                p.curve = EccCurve::NistP256;
            }
        }
        public
    }

    pub(super) fn ak_public(&self) -> TpmPublic {
        MemoryTpm::public(&self.ak, ObjectAttributes::AK_TEMPLATE, false)
    }

    /// The EK as template L-2 makes it: restricted decryption key, AES-128-CFB, and the
    /// PolicySecret(TPM_RH_ENDORSEMENT) policy.
    pub(super) fn ek_public(&self) -> TpmPublic {
        let attrs = ObjectAttributes(
            ObjectAttributes::FIXED_TPM
                | ObjectAttributes::FIXED_PARENT
                | ObjectAttributes::SENSITIVE_DATA_ORIGIN
                | ObjectAttributes::ADMIN_WITH_POLICY
                | ObjectAttributes::RESTRICTED
                | ObjectAttributes::DECRYPT,
        );
        let mut public = MemoryTpm::public(&self.ek, attrs, true);
        public.auth_policy = keys::EK_POLICY.to_vec();
        public
    }
}

impl Tpm for MemoryTpm {
    fn info(&mut self) -> Result<TpmInfo, TpmError> {
        Ok(TpmInfo {
            manufacturer: "VMEM".into(),
            vendor: "vouch in-memory".into(),
            firmware_version: format!("{:08x}.{:08x}", FIRMWARE >> 32, FIRMWARE & 0xffff_ffff),
            firmware_version_raw: FIRMWARE,
            pcr_banks: vec![HashAlg::Sha1, HashAlg::Sha256],
        })
    }

    fn endorsement_key(&mut self, alg: EkAlg) -> Result<EndorsementKey, TpmError> {
        if alg != EkAlg::EccP256 {
            return Err(TpmError::Memory("only the ECC P-256 EK is modelled"));
        }
        Ok(EndorsementKey {
            alg,
            public: self.ek_public().marshal_tpm2b(),
        })
    }

    fn ek_certificates(&mut self) -> Result<Vec<EkCertificate>, TpmError> {
        Ok(self.certificates.clone())
    }

    fn attestation_key(&mut self) -> Result<AttestationKey, TpmError> {
        Ok(AttestationKey {
            public: self.ak_public().marshal_tpm2b(),
        })
    }

    fn pcr_read(&mut self, selection: &PcrSelection) -> Result<PcrBanks, TpmError> {
        let mut out = PcrBanks::new();
        for (alg, p) in selection.iter() {
            {
                if let Some(v) = self.pcrs.get(&(alg, p)) {
                    out.insert(alg, p, v.clone());
                }
            }
        }
        Ok(out)
    }

    fn pcr_extend(&mut self, pcr: u32, digests: &[(HashAlg, Vec<u8>)]) -> Result<(), TpmError> {
        for (alg, d) in digests {
            if alg.digest_len() != Some(d.len()) {
                return Err(TpmError::Memory("digest size does not match its bank"));
            }
            let slot = self
                .pcrs
                .get_mut(&(*alg, pcr))
                .ok_or(TpmError::Memory("no such PCR or bank"))?;
            *slot = alg
                .extend(slot, d)
                .ok_or(TpmError::Memory("bank not computable"))?;
        }
        Ok(())
    }

    fn quote(&mut self, nonce: &[u8], selection: &PcrSelection) -> Result<Quote, TpmError> {
        if nonce.len() > 64 {
            return Err(TpmError::Memory("qualifying data longer than 64 bytes"));
        }
        let pcrs = self.pcr_read(selection)?;
        let mut select = Vec::new();
        let mut concat = Vec::new();
        for (alg, list) in selection.bank_pcrs() {
            select.push(
                PcrSelect::new(alg, &list).map_err(|_| TpmError::Memory("bad PCR selection"))?,
            );
            for p in list {
                concat.extend_from_slice(pcrs.get(alg, p).unwrap_or_default());
            }
        }
        self.clock += 1;
        let name = self
            .ak_public()
            .name()
            .map_err(|_| TpmError::Memory("AK name"))?;
        let attest = Attest {
            magic: vouch_attest::tpm::attest::TPM_GENERATED_VALUE,
            qualified_signer: name,
            extra_data: nonce.to_vec(),
            clock_info: ClockInfo {
                clock: self.clock,
                reset_count: 0,
                restart_count: 0,
                safe: true,
            },
            firmware_version: FIRMWARE,
            body: AttestBody::Quote(QuoteInfo {
                pcr_select: vouch_attest::tpm::PcrSelection { banks: select },
                pcr_digest: HashAlg::Sha256.hash(&concat).unwrap_or_default(),
            }),
        }
        .marshal();
        let signature = keys::sign_attest(&self.ak, &attest);
        Ok(Quote {
            attest,
            signature,
            pcrs,
        })
    }

    fn activate_credential(
        &mut self,
        ek: EkAlg,
        credential_blob: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, TpmError> {
        if ek != EkAlg::EccP256 {
            return Err(TpmError::Memory("only the ECC P-256 EK is modelled"));
        }
        keys::activate(self, credential_blob, encrypted_secret)
    }

    fn tls_key(&mut self) -> Result<super::TlsKey, TpmError> {
        Ok(super::TlsKey {
            public: keys::tls_public(self).marshal_tpm2b(),
        })
    }

    fn certify_tls_key(
        &mut self,
        qualifying_data: &[u8],
    ) -> Result<super::Certification, TpmError> {
        keys::certify(self, qualifying_data)
    }

    fn sign_tls(&mut self, digest: &[u8]) -> Result<Vec<u8>, TpmError> {
        keys::sign(self, digest)
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
        _secret: &[u8],
        _bank: HashAlg,
        _pcrs: &[u32],
    ) -> Result<crate::volume::systemd_token::SystemdSeal, TpmError> {
        Err(TpmError::Memory("systemd's TPM2 seal is not modelled"))
    }

    fn unseal_systemd(
        &mut self,
        _seal: &crate::volume::systemd_token::SystemdSeal,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, TpmError> {
        Err(TpmError::Memory("systemd's TPM2 seal is not modelled"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vouch_attest::tpm::Signature;

    #[test]
    fn extend_then_read_matches_manual_extend() {
        let mut tpm = MemoryTpm::new();
        let d = vec![7u8; 32];
        tpm.pcr_extend(7, &[(HashAlg::Sha256, d.clone())]).unwrap();
        let sel = PcrSelection::single(HashAlg::Sha256, [7]);
        let got = tpm.pcr_read(&sel).unwrap();
        let want = HashAlg::Sha256.extend(&[0; 32], &d).unwrap();
        assert_eq!(got.get(HashAlg::Sha256, 7), Some(want.as_slice()));
        assert!(tpm
            .pcr_extend(7, &[(HashAlg::Sha256, vec![1; 20])])
            .is_err());
    }

    #[test]
    fn quote_is_a_parseable_tpm_structure_over_the_nonce() {
        let mut tpm = MemoryTpm::new();
        let sel = PcrSelection::single(HashAlg::Sha256, 0..8);
        let q = tpm.quote(b"nonce", &sel).unwrap();
        let attest = Attest::parse(&q.attest).unwrap();
        assert_eq!(attest.extra_data, b"nonce");
        assert!(matches!(attest.body, AttestBody::Quote(_)));
        assert!(matches!(
            Signature::parse(&q.signature).unwrap(),
            Signature::Ecdsa { .. }
        ));
        assert_eq!(q.pcrs.bank(HashAlg::Sha256).map(|b| b.len()), Some(8));
    }
}
