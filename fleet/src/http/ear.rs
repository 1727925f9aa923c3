//! Signed results for relying parties: each device's latest verdict as an EAT Attestation
//! Result (EAR, draft-ietf-rats-ear), a JWT signed with ES256 (ECDSA P-256, SHA-256), and the
//! verification key as a JWK set at [`JWKS_PATH`].
//!
//! The signing key is `ear-signing.key.pem` in the state directory (PKCS#8 PEM), created on the
//! first start (mode 0600, through vouch-durable) and kept in memory only as the signing key.
//! Claims: `eat_profile` (the EAR profile), `iat`, `exp` ([`LIFETIME_SECS`] later),
//! `ear.verifier-id`, `eat_nonce` when the relying party passed one, and under `submods`, keyed
//! by the device id, `ear.status`, `ear.trustworthiness-vector` and `ear.appraisal-policy-id`,
//! with Vouch's own `vouch.verdict-id`, `vouch.verdict-time` and `vouch.stale`. What the vector
//! says is decided by [`appraise`] from the verdict's reasons.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use serde::Serialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Where the verification keys are served.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// The EAR profile named in every token.
pub const EAR_PROFILE: &str = "tag:github.com,2023:veraison/ear";
/// File name of the signing key in the state directory.
pub const KEY_FILE: &str = "ear-signing.key.pem";
/// Seconds a token stays valid.
pub const LIFETIME_SECS: i64 = 300;

/// The signing key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum EarError {
    /// Reading the key failed.
    #[error("cannot read the EAR signing key {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a P-256 PKCS#8 PEM key.
    #[error("{path} is not a P-256 PKCS#8 PEM private key")]
    Parse { path: PathBuf },
    /// Writing a new key failed.
    #[error("cannot write the EAR signing key")]
    Write(#[source] vouch_durable::Error),
}

/// The ES256 signer and its public key.
pub struct EarSigner {
    key: p256::ecdsa::SigningKey,
    kid: String,
    jwk: Value,
}

impl std::fmt::Debug for EarSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EarSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Trustworthiness claim values of the EAR draft (section "Trustworthiness Claims").
pub mod tier {
    /// No claim can be made.
    pub const NONE: i64 = 0;
    /// Affirming.
    pub const AFFIRMING: i64 = 2;
    /// Contraindicated.
    pub const CONTRAINDICATED: i64 = 96;
}

/// The EAR appraisal of one verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EarAppraisal {
    /// `affirming`, `warning` or `contraindicated`.
    pub status: &'static str,
    /// `instance-identity`.
    pub instance_identity: i64,
    /// `configuration`.
    pub configuration: i64,
    /// `executables`.
    pub executables: i64,
    /// `hardware`.
    pub hardware: i64,
}

/// The EAR appraisal of a verdict: trusted → every claim affirming (status `affirming`, or
/// `warning` when the device is stale); untrusted → status `contraindicated`, and each claim
/// contraindicated when a failed check speaks about it (instance identity: the AK and the
/// quote's signature; hardware: the TPM firmware and S-CRTM version rules; executables: boot
/// applications, initrd, event digests; configuration: Secure Boot variables, kernel command
/// line, PCR values), affirming when the evidence about it verified (identity and hardware
/// stand unless contradicted: the device's EK chained to a trusted vendor CA at enrollment),
/// and `none` when the evidence could not be evaluated.
pub fn appraise(trusted: bool, stale: bool, reasons: &[String]) -> EarAppraisal {
    use tier::*;
    if trusted {
        return EarAppraisal {
            status: if stale { "warning" } else { "affirming" },
            instance_identity: AFFIRMING,
            configuration: AFFIRMING,
            executables: AFFIRMING,
            hardware: AFFIRMING,
        };
    }
    let checks: Vec<&str> = reasons
        .iter()
        .map(|r| super::observe::check_of(r))
        .collect();
    let any = |names: &[&str]| checks.iter().any(|c| names.contains(c));
    let identity = any(&[
        "ak",
        "quote.signature",
        "quote.signature_format",
        "quote.attest_parse",
        "quote.ak_attributes",
        "quote.attest_magic",
        "quote.attest_type",
    ]);
    let hardware = any(&["policy.tpm_firmware_version", "policy.s_crtm_version"]);
    let executables = any(&[
        "policy.boot_application",
        "policy.initrd",
        "policy.event_digest",
    ]);
    let configuration = any(&[
        "policy.secure_boot",
        "policy.pk",
        "policy.kek",
        "policy.db",
        "policy.dbx",
        "policy.dbx_contains",
        "policy.kernel_cmdline",
        "policy.pcr_value",
    ]);
    // Did the evidence about boot state verify at all (a quote, a log that replays to it, a
    // usable policy)? If not, nothing can be said about configuration and executables.
    let unverified = checks.iter().any(|c| {
        c.starts_with("eventlog.")
            || c.starts_with("report.")
            || matches!(
                *c,
                "quote.pcr_coverage" | "quote.pcr_digest" | "quote.selection"
            )
            || *c == "policy.unusable"
            || *c == "policy.evidence"
            || *c == "policy.event_decode"
    }) || identity;
    let claim = |contra: bool| {
        if contra {
            CONTRAINDICATED
        } else if unverified {
            NONE
        } else {
            AFFIRMING
        }
    };
    EarAppraisal {
        status: "contraindicated",
        instance_identity: if identity { CONTRAINDICATED } else { AFFIRMING },
        configuration: claim(configuration),
        executables: claim(executables),
        hardware: if hardware { CONTRAINDICATED } else { AFFIRMING },
    }
}

/// What goes into one token.
#[derive(Debug, Clone)]
pub struct EarInput<'a> {
    /// The device.
    pub device_id: &'a str,
    /// The verdict's id.
    pub verdict_id: i64,
    /// When the verdict was stored (ms since the epoch).
    pub verdict_ms: i64,
    /// The appraisal.
    pub appraisal: &'a EarAppraisal,
    /// The device's policy (`None`: the fleet default).
    pub policy: Option<&'a str>,
    /// The device is stale.
    pub stale: bool,
    /// The relying party's nonce (`eat_nonce`).
    pub nonce: Option<&'a str>,
    /// Now, seconds since the epoch.
    pub now_secs: i64,
}

impl EarSigner {
    /// Loads `<state_dir>/ear-signing.key.pem`, creating it (0600) when missing.
    pub fn load_or_create(state_dir: &Path) -> Result<EarSigner, EarError> {
        let path = state_dir.join(KEY_FILE);
        let secret = match std::fs::read(&path) {
            Ok(bytes) => {
                let text = zeroize::Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned());
                drop(zeroize::Zeroizing::new(bytes));
                p256::SecretKey::from_pkcs8_pem(&text)
                    .map_err(|_| EarError::Parse { path: path.clone() })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
                let pem = secret
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|_| EarError::Parse { path: path.clone() })?;
                vouch_durable::write(&path, pem.as_bytes(), 0o600).map_err(EarError::Write)?;
                secret
            }
            Err(source) => return Err(EarError::Read { path, source }),
        };
        Ok(EarSigner::new(&secret))
    }

    /// A signer for `secret`.
    pub fn new(secret: &p256::SecretKey) -> EarSigner {
        let key = p256::ecdsa::SigningKey::from(secret);
        let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
            &secret.public_key(),
            false,
        );
        let x = B64.encode(point.x().map(|x| x.to_vec()).unwrap_or_default());
        let y = B64.encode(point.y().map(|y| y.to_vec()).unwrap_or_default());
        // RFC 7638 thumbprint: the required members in lexicographic order, no spaces.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = B64.encode(ring::digest::digest(
            &ring::digest::SHA256,
            canonical.as_bytes(),
        ));
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "x": x, "y": y,
            "use": "sig", "alg": "ES256", "kid": kid,
        });
        EarSigner { key, kid, jwk }
    }

    /// The JWK set of the verification key.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }

    /// The key id (`kid`).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The claims of one token.
    pub fn claims(input: &EarInput<'_>) -> Value {
        let a = input.appraisal;
        let mut submod = json!({
            "ear.status": a.status,
            "ear.trustworthiness-vector": {
                "instance-identity": a.instance_identity,
                "configuration": a.configuration,
                "executables": a.executables,
                "hardware": a.hardware,
            },
            "ear.appraisal-policy-id": match input.policy {
                Some(p) => format!("vouch:policy:{p}"),
                None => "vouch:policy:fleet-default".to_string(),
            },
            "vouch.verdict-id": input.verdict_id,
            "vouch.verdict-time": input.verdict_ms / 1000,
            "vouch.stale": input.stale,
        });
        if let Value::Object(m) = &mut submod {
            m.retain(|_, v| !v.is_null());
        }
        let mut claims = json!({
            "eat_profile": EAR_PROFILE,
            "iat": input.now_secs,
            "exp": input.now_secs.saturating_add(LIFETIME_SECS),
            "ear.verifier-id": {
                "developer": "vouch",
                "build": concat!("vouch-fleet ", env!("CARGO_PKG_VERSION")),
            },
            "submods": { input.device_id: submod },
        });
        if let (Some(n), Value::Object(m)) = (input.nonce, &mut claims) {
            m.insert("eat_nonce".into(), Value::String(n.to_owned()));
        }
        claims
    }

    /// The signed token (compact JWS, ES256).
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({ "alg": "ES256", "typ": "JWT", "kid": self.kid });
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig: p256::ecdsa::Signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", B64.encode(sig.to_bytes()))
    }
}

/// A relying party's nonce: 8 to 88 characters of base64url (the EAT `eat_nonce` is 8 to 64
/// bytes).
pub fn valid_nonce(n: &str) -> bool {
    (8..=88).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier as _;

    #[test]
    fn vector_follows_the_failed_checks() {
        let ok = appraise(true, false, &[]);
        assert_eq!(
            (ok.status, ok.configuration),
            ("affirming", tier::AFFIRMING)
        );
        assert_eq!(appraise(true, true, &[]).status, "warning");
        let sb = appraise(false, false, &["policy.secure_boot: off (event 4)".into()]);
        assert_eq!(sb.status, "contraindicated");
        assert_eq!(sb.configuration, tier::CONTRAINDICATED);
        assert_eq!(sb.executables, tier::AFFIRMING);
        assert_eq!(sb.instance_identity, tier::AFFIRMING);
        let sig = appraise(false, false, &["quote.signature: bad".into()]);
        assert_eq!(sig.instance_identity, tier::CONTRAINDICATED);
        assert_eq!(sig.configuration, tier::NONE);
        let log = appraise(false, false, &["eventlog.pcr7: differs".into()]);
        assert_eq!(
            (log.configuration, log.executables),
            (tier::NONE, tier::NONE)
        );
    }

    #[test]
    fn token_verifies_with_the_published_key() {
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let s = EarSigner::new(&secret);
        let a = appraise(true, false, &[]);
        let claims = EarSigner::claims(&EarInput {
            device_id: "d1",
            verdict_id: 3,
            verdict_ms: 5000,
            appraisal: &a,
            policy: None,
            stale: false,
            nonce: Some("abcdefgh"),
            now_secs: 10,
        });
        let t = s.sign(&claims);
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let sig = p256::ecdsa::Signature::from_slice(&B64.decode(parts[2]).unwrap()).unwrap();
        let vk = p256::ecdsa::VerifyingKey::from(secret.public_key());
        vk.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .unwrap();
        let body: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(body["eat_nonce"], "abcdefgh");
        assert_eq!(body["submods"]["d1"]["ear.status"], "affirming");
        assert!(valid_nonce("abcdefgh") && !valid_nonce("short") && !valid_nonce("a b c d e f"));
    }
}
