//! Sealing against a real swtpm: PolicyPCR round trip, boot-state change and reboot, fleet
//! PolicyAuthorize approvals across an update, tpm2-tools as the independent oracle (policy
//! digests from `tpm2_createpolicy`, a Vouch blob unsealed by `tpm2_unseal`), no leaked
//! handles, and unseal timing.

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature as P256Signature, SigningKey};
use rand_core::OsRng;
use std::process::Command;
use std::time::Instant;
use swtpm_tests::Swtpm;
use tss_esapi::constants::Tss2ResponseCodeKind;
use vouch_agent::seal::store::PolicyStore;
use vouch_agent::seal::{blob, SealError, SealPolicy, SealedObject, DEFAULT_POLICY_REF};
use vouch_agent::tpm::esapi::EsapiTpm;
use vouch_agent::tpm::TssError;
use vouch_agent::tpm::{PcrSelection as AgentSelection, Tpm, TpmError};
use vouch_attest::policy_digest::signed::PolicyDraft;
use vouch_attest::policy_digest::{
    fleet_key_public, initial, policy_pcr, SignedPolicy, POLICY_ALG,
};
use vouch_attest::tpm::keys::PublicKey;
use vouch_attest::tpm::{EccCurve, PcrSelection, Signature, TpmPublic};
use vouch_attest::{HashAlg, PcrBanks};

fn pcr7() -> PcrSelection {
    "sha256:7".parse().unwrap()
}

fn read7(agent: &mut EsapiTpm) -> PcrBanks {
    agent
        .pcr_read(&AgentSelection::single(HashAlg::Sha256, [7]))
        .unwrap()
}

/// A "boot" measurement into PCR 7.
fn measure(agent: &mut EsapiTpm, byte: u8) {
    agent
        .pcr_extend(7, &[(HashAlg::Sha256, vec![byte; 32])])
        .unwrap();
}

fn boot_state_error<T>(r: Result<T, TpmError>) -> (String, String) {
    match r {
        Err(TpmError::Policy(vouch_agent::seal::PolicyError::BootStateChanged {
            bound,
            changed,
        })) => (bound, changed),
        Err(e) => panic!("expected a boot-state error, got: {e}"),
        Ok(_) => panic!("expected a boot-state error, the secret was unsealed"),
    }
}

fn fleet_key() -> (SigningKey, TpmPublic) {
    let sk = SigningKey::random(&mut OsRng);
    let key = PublicKey::from_sec1(
        EccCurve::NistP256,
        sk.verifying_key().to_encoded_point(false).as_bytes(),
    )
    .unwrap();
    (sk, fleet_key_public(&key).unwrap())
}

fn ecdsa(sk: &SigningKey, message: &[u8]) -> Signature {
    let sig: P256Signature = sk.sign(message);
    let (r, s) = sig.split_bytes();
    Signature::Ecdsa {
        hash: HashAlg::Sha256,
        r: r.to_vec(),
        s: s.to_vec(),
    }
}

fn approve(sk: &SigningKey, key: &TpmPublic, serial: u64, values: &PcrBanks) -> SignedPolicy {
    let d = PolicyDraft::new(
        serial,
        pcr7(),
        values,
        DEFAULT_POLICY_REF.to_vec(),
        key.clone(),
    )
    .unwrap();
    let (a, s) = (
        ecdsa(sk, &d.approval_message()),
        ecdsa(sk, &d.statement().unwrap()),
    );
    d.finish(a, s).unwrap()
}

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn pcr_sealed_secret_survives_reboot_but_not_a_changed_boot_state() {
    let mut tpm = Swtpm::start().unwrap();
    let state = tpm.dir().join("agent");
    let secret = b"0123456789abcdef0123456789abcdef".to_vec();
    let blob_bytes = {
        let mut agent = tpm.open_esapi(&state).unwrap();
        measure(&mut agent, 1);
        measure(&mut agent, 2);
        let policy = SealPolicy::Pcr {
            selection: pcr7(),
            values: None,
        };
        let sealed = agent.seal(&secret, &policy).unwrap();
        let mut times = Vec::new();
        for _ in 0..15 {
            let t = Instant::now();
            assert_eq!(*agent.unseal(&sealed, None).unwrap(), secret);
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        eprintln!(
            "unseal (salted policy session + PolicyPCR + load + unseal + flush): median {:.2} ms",
            median_ms(times)
        );
        // Something else gets measured: the TPM refuses (TPM_RC_POLICY_FAIL), the agent says
        // which bound PCR changed.
        measure(&mut agent, 3);
        let (bound, changed) = boot_state_error(agent.unseal(&sealed, None));
        assert_eq!((bound.as_str(), changed.as_str()), ("sha256:7", "sha256:7"));
        blob::encode(&sealed)
    };
    assert_eq!(tpm.leftovers(), 0, "no transient object or session left");

    // Reboot: PCRs reset. Until the boot measurements are replayed the state differs.
    tpm.restart().unwrap();
    let sealed = blob::decode(&blob_bytes).unwrap();
    let mut agent = tpm.open_esapi(&state).unwrap();
    boot_state_error(agent.unseal(&sealed, None));
    measure(&mut agent, 1);
    boot_state_error(agent.unseal(&sealed, None));
    measure(&mut agent, 2);
    assert_eq!(*agent.unseal(&sealed, None).unwrap(), secret);
    drop(agent);
    assert_eq!(tpm.leftovers(), 0, "no transient object or session left");
}

#[test]
fn fleet_approvals_unlock_across_an_update_without_resealing() {
    let tpm = Swtpm::start().unwrap();
    let state = tpm.dir().join("agent");
    let store = PolicyStore::new(&state);
    let (sk, key) = fleet_key();
    let (other_sk, other_key) = fleet_key();
    {
        let mut agent = tpm.open_esapi(&state).unwrap();
        measure(&mut agent, 1);
        let sealed = agent
            .seal(
                b"disk key",
                &SealPolicy::Authorized {
                    key: key.clone(),
                    policy_ref: DEFAULT_POLICY_REF.to_vec(),
                },
            )
            .unwrap();
        let sealed: SealedObject = blob::decode(&blob::encode(&sealed)).unwrap();
        let old = approve(&sk, &key, 1, &read7(&mut agent));
        store.offer(&old).unwrap();
        let mut times = Vec::new();
        for _ in 0..10 {
            let t = Instant::now();
            assert_eq!(*agent.unseal(&sealed, Some(&old)).unwrap(), b"disk key");
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        eprintln!(
            "authorized unseal (+ LoadExternal, VerifySignature, PolicyAuthorize): median {:.2} ms",
            median_ms(times)
        );

        // The fleet signs the PCR 7 value of the coming update (computed off-device).
        let next = HashAlg::Sha256
            .extend(read7(&mut agent).get(HashAlg::Sha256, 7).unwrap(), &[9; 32])
            .unwrap();
        let mut values = PcrBanks::new();
        values.insert(HashAlg::Sha256, 7, next);
        let new = approve(&sk, &key, 2, &values);
        measure(&mut agent, 9); // the update
        let (_, changed) = boot_state_error(agent.unseal(&sealed, Some(&old)));
        assert_eq!(changed, "sha256:7");
        assert_eq!(*agent.unseal(&sealed, Some(&new)).unwrap(), b"disk key");
        store.offer(&new).unwrap();

        // The agent refuses to go back to the older approval.
        assert!(matches!(
            store.offer(&old),
            Err(SealError::OlderPolicy { given: 1, held: 2 })
        ));
        let name = key.name().unwrap();
        assert_eq!(
            store.newest(&name, DEFAULT_POLICY_REF).unwrap().as_ref(),
            Some(&new)
        );

        // Approved by another key: the agent refuses it by name...
        let foreign = approve(&other_sk, &other_key, 3, &read7(&mut agent));
        assert!(matches!(
            agent.unseal(&sealed, Some(&foreign)),
            Err(TpmError::Policy(
                vouch_agent::seal::PolicyError::AuthorizationKey { .. }
            ))
        ));
        // ...and a forgery that claims the fleet key is refused by TPM2_VerifySignature.
        let mut forged = new.clone();
        forged.approval_signature = ecdsa(&other_sk, &new.draft.approval_message());
        match agent.unseal(&sealed, Some(&forged)) {
            Err(TpmError::ApprovalRefused(TssError(tss_esapi::Error::Tss2Error(rc)))) => {
                assert_eq!(rc.kind(), Some(Tss2ResponseCodeKind::Signature));
            }
            Err(e) => panic!("expected the TPM to refuse the signature, got: {e}"),
            Ok(_) => panic!("a forged approval unsealed the secret"),
        }
        // Still fine with the genuine one after all those failures.
        assert_eq!(*agent.unseal(&sealed, Some(&new)).unwrap(), b"disk key");
    }
    assert_eq!(tpm.leftovers(), 0, "no transient object or session left");
}

#[test]
fn tpm2_tools_agree_on_policy_digests_and_unseal_a_vouch_blob() {
    let tpm = Swtpm::start().unwrap();
    let state = tpm.dir().join("agent");
    let dir = tpm.dir().to_path_buf();
    let secret = b"sealed by vouch, opened by tpm2-tools".to_vec();
    let (sealed, values) = {
        let mut agent = tpm.open_esapi(&state).unwrap();
        measure(&mut agent, 0x17);
        let sealed = agent
            .seal(
                &secret,
                &SealPolicy::Pcr {
                    selection: pcr7(),
                    values: None,
                },
            )
            .unwrap();
        (sealed, read7(&mut agent))
    };
    let ours = policy_pcr(POLICY_ALG, &initial(POLICY_ALG).unwrap(), &pcr7(), &values).unwrap();
    assert_eq!(sealed.auth_policy, ours);
    // tpm2_createpolicy with the TPM's current PCRs (trial session in swtpm)...
    let live = dir.join("live.digest");
    let out = Command::new("tpm2_createpolicy")
        .args(["--policy-pcr", "-l", "sha256:7", "-L"])
        .arg(&live)
        .env("TPM2TOOLS_TCTI", tpm.tcti())
        .env("TSS2_LOG", "all+none")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&live).unwrap(), ours);
    // ...and from a PCR value file (two PCRs, values we choose, none of them in the TPM).
    let two = "sha256:0,7"
        .parse::<vouch_attest::tpm::PcrSelection>()
        .unwrap();
    let mut chosen = PcrBanks::new();
    chosen.insert(HashAlg::Sha256, 0, vec![0xa5; 32]);
    chosen.insert(HashAlg::Sha256, 7, vec![0x5a; 32]);
    std::fs::write(dir.join("pcrs.raw"), [[0xa5u8; 32], [0x5a; 32]].concat()).unwrap();
    let offline = dir.join("offline.digest");
    let out = Command::new("tpm2_createpolicy")
        .args(["--policy-pcr", "-l", "sha256:0,7", "-f"])
        .arg(dir.join("pcrs.raw"))
        .arg("-L")
        .arg(&offline)
        .env("TPM2TOOLS_TCTI", tpm.tcti())
        .env("TSS2_LOG", "all+none")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&offline).unwrap(),
        policy_pcr(POLICY_ALG, &initial(POLICY_ALG).unwrap(), &two, &chosen).unwrap()
    );

    // tpm2-tools load the blob's TPM2B_PUBLIC / TPM2B_PRIVATE and unseal with PolicyPCR.
    std::fs::write(dir.join("seal.pub"), &sealed.public).unwrap();
    std::fs::write(dir.join("seal.priv"), &sealed.private).unwrap();
    let s = |p: &str| dir.join(p).to_string_lossy().into_owned();
    tpm.tpm2(&[
        "tpm2_load",
        "-C",
        "0x81000001",
        "-u",
        &s("seal.pub"),
        "-r",
        &s("seal.priv"),
        "-c",
        &s("seal.ctx"),
    ]);
    let out = tpm.tpm2(&["tpm2_unseal", "-c", &s("seal.ctx"), "-p", "pcr:sha256:7"]);
    assert_eq!(out.stdout, secret);
    // tpm2-tools leave their object and policy session loaded (no resource manager): flush.
    tpm.tpm2(&["tpm2_flushcontext", "-t"]);
    tpm.tpm2(&["tpm2_flushcontext", "-l"]);
    assert_eq!(tpm.leftovers(), 0);
}
