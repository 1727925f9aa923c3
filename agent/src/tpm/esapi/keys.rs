//! Key templates for the tss-esapi backend: storage root key and attestation key.
//!
//! The EK templates come from tss-esapi's implementation of the TCG EK Credential Profile
//! (templates L-1 and L-2); the SRK follows the TCG TPM v2.0 Provisioning Guidance (ECC NIST P-256
//! storage key, AES-128-CFB, persistent handle 0x81000001).

use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::structures::{
    EccPoint, EccScheme, HashScheme, KeyDerivationFunctionScheme, Public, PublicBuilder,
    PublicEccParametersBuilder, SymmetricDefinitionObject,
};

/// Persistent handle of the storage root key.
pub const SRK_HANDLE: u32 = 0x8100_0001;

/// The ECC P-256 SRK template of the TCG provisioning guidance. `noDA` because its auth is empty.
pub fn srk_template() -> tss_esapi::Result<Public> {
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new()
                .with_symmetric(SymmetricDefinitionObject::AES_128_CFB)
                .with_ecc_scheme(EccScheme::Null)
                .with_curve(EccCurve::NistP256)
                .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
                .with_is_decryption_key(true)
                .with_restricted(true)
                .build()?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
}

/// The attestation key: ECC P-256, ECDSA-SHA256, restricted signing, fixedTPM, empty auth, noDA.
pub fn ak_template() -> tss_esapi::Result<Public> {
    ecc_signing_template(true)
}

/// The TLS key: the same but unrestricted, so it can sign TLS handshakes and CSRs (TPM2_Sign with a
/// NULL hashcheck ticket); still fixedTPM, fixedParent and sensitiveDataOrigin, sign only.
pub fn tls_template() -> tss_esapi::Result<Public> {
    ecc_signing_template(false)
}

fn ecc_signing_template(restricted: bool) -> tss_esapi::Result<Public> {
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(restricted)
        .with_sign_encrypt(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new_unrestricted_signing_key(
                EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)),
                EccCurve::NistP256,
            )
            .with_restricted(restricted)
            .build()?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
}

/// The primary key template of systemd's TPM2 seals (systemd 252 `tpm2_make_primary`): a
/// restricted decryption key in the owner hierarchy, fixedTPM, fixedParent,
/// sensitiveDataOrigin, userWithAuth (no noDA), SHA-256 Name, AES-128-CFB, no scheme, empty
/// unique; ECC NIST P-256 with a NULL KDF, or RSA 2048 with the default exponent.
pub fn systemd_primary_template(
    alg: crate::volume::systemd_token::PrimaryAlg,
) -> tss_esapi::Result<Public> {
    use crate::volume::systemd_token::PrimaryAlg;
    use tss_esapi::interface_types::key_bits::RsaKeyBits;
    use tss_esapi::structures::{PublicKeyRsa, PublicRsaParametersBuilder, RsaExponent, RsaScheme};
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()?;
    let builder = PublicBuilder::new()
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs);
    match alg {
        PrimaryAlg::Ecc => builder
            .with_public_algorithm(PublicAlgorithm::Ecc)
            .with_ecc_parameters(
                PublicEccParametersBuilder::new()
                    .with_symmetric(SymmetricDefinitionObject::AES_128_CFB)
                    .with_ecc_scheme(EccScheme::Null)
                    .with_curve(EccCurve::NistP256)
                    .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
                    .with_is_decryption_key(true)
                    .with_restricted(true)
                    .build()?,
            )
            .with_ecc_unique_identifier(EccPoint::default())
            .build(),
        PrimaryAlg::Rsa => builder
            .with_public_algorithm(PublicAlgorithm::Rsa)
            .with_rsa_parameters(
                PublicRsaParametersBuilder::new()
                    .with_symmetric(SymmetricDefinitionObject::AES_128_CFB)
                    .with_scheme(RsaScheme::Null)
                    .with_key_bits(RsaKeyBits::Rsa2048)
                    .with_exponent(RsaExponent::default())
                    .with_is_decryption_key(true)
                    .with_restricted(true)
                    .build()?,
            )
            .with_rsa_unique_identifier(PublicKeyRsa::default())
            .build(),
    }
}
