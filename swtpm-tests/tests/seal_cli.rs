//! `vouch-agent seal/unseal` and `vouch-fleet seal-policy keygen/sign` end to end against a
//! swtpm: exit codes, the boot-state message, stored signed policies and their serials, a
//! foreign key, and signing PCR values replayed from a real event log.

use swtpm_tests::cli_env::CliEnv;
use swtpm_tests::{run, testdata, Output, Swtpm};
use vouch_attest::policy_digest::SignedPolicy;
use vouch_attest::HashAlg;

struct Env<'a>(CliEnv<'a>);

impl<'a> std::ops::Deref for Env<'a> {
    type Target = CliEnv<'a>;
    fn deref(&self) -> &CliEnv<'a> {
        &self.0
    }
}

impl Env<'_> {
    fn fleet(&self, args: &[&str]) -> Output {
        run("vouch-fleet", args, &[])
    }

    /// Current PCR 7 as the JSON `vouch-fleet seal-policy sign --pcr-values` reads.
    fn pcr7_json(&self, name: &str) -> String {
        let out = self.agent(&["pcr", "read", "--pcrs", "sha256:7", "--json"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        std::fs::write(self.p(name), &out.stdout).unwrap();
        self.p(name)
    }

    fn sign(&self, key: &str, values: &str, serial: &str, out: &str) {
        let o = self.fleet(&[
            "seal-policy",
            "sign",
            "--key",
            &self.p(key),
            "--pcrs",
            "sha256:7",
            "--pcr-values",
            values,
            "--serial",
            serial,
            "--out",
            &self.p(out),
        ]);
        assert_eq!(o.code, 0, "{}", o.stderr);
    }

    fn keygen(&self, name: &str) {
        let o = self.fleet(&[
            "seal-policy",
            "keygen",
            "--key",
            &self.p(&format!("{name}.pem")),
            "--public",
            &self.p(&format!("{name}.pub.pem")),
        ]);
        assert_eq!(o.code, 0, "{}", o.stderr);
    }
}

#[test]
fn seal_and_unseal_commands_follow_the_boot_state_and_fleet_approvals() {
    let tpm = Swtpm::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = Env(CliEnv {
        tpm: &tpm,
        dir: dir.path(),
    });
    let secret = b"a 32-byte volume key, honestly!!";
    std::fs::write(env.p("secret"), secret).unwrap();
    env.keygen("fleet");
    env.keygen("rogue");
    env.extend7("01");

    let o = env.agent(&[
        "seal",
        "--in",
        &env.p("secret"),
        "--out",
        &env.p("pcr.blob"),
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = env.agent(&[
        "seal",
        "--in",
        &env.p("secret"),
        "--out",
        &env.p("auth.blob"),
        "--authorized",
        "--policy-key",
        &env.p("fleet.pub.pem"),
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);

    let o = env.agent(&["unseal", "--in", &env.p("pcr.blob")]);
    assert_eq!(
        (o.code, o.stdout.as_bytes()),
        (0, &secret[..]),
        "{}",
        o.stderr
    );
    // No signed policy yet.
    let o = env.agent(&["unseal", "--in", &env.p("auth.blob")]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("--signed-policy"), "{}", o.stderr);
    let now = env.pcr7_json("now.json");
    env.sign("fleet.pem", &now, "10", "s10.json");
    let o = env.agent(&[
        "unseal",
        "--in",
        &env.p("auth.blob"),
        "--signed-policy",
        &env.p("s10.json"),
        "--out",
        &env.p("out"),
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(std::fs::read(env.p("out")).unwrap(), secret);
    // Stored: works without --signed-policy now.
    let o = env.agent(&["unseal", "--in", &env.p("auth.blob")]);
    assert_eq!(
        (o.code, o.stdout.as_bytes()),
        (0, &secret[..]),
        "{}",
        o.stderr
    );

    // The boot state changes.
    env.extend7("02");
    for blob in ["pcr.blob", "auth.blob"] {
        let o = env.agent(&["unseal", "--in", &env.p(blob)]);
        assert_eq!(o.code, 7, "{blob}: {}", o.stderr);
        assert!(
            o.stderr.contains("boot state changed") && o.stderr.contains("sha256:7"),
            "{}",
            o.stderr
        );
        assert!(o.stdout.is_empty());
    }
    // The fleet approves the new state: the authorized blob opens again, no re-sealing.
    let new = env.pcr7_json("new.json");
    env.sign("fleet.pem", &new, "11", "s11.json");
    let o = env.agent(&[
        "unseal",
        "--in",
        &env.p("auth.blob"),
        "--signed-policy",
        &env.p("s11.json"),
    ]);
    assert_eq!(
        (o.code, o.stdout.as_bytes()),
        (0, &secret[..]),
        "{}",
        o.stderr
    );
    // The older approval is refused by the agent, whatever the PCRs.
    let o = env.agent(&[
        "unseal",
        "--in",
        &env.p("auth.blob"),
        "--signed-policy",
        &env.p("s10.json"),
    ]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("older"), "{}", o.stderr);
    // A policy signed by another key.
    env.sign("rogue.pem", &new, "12", "rogue.json");
    let o = env.agent(&[
        "unseal",
        "--in",
        &env.p("auth.blob"),
        "--signed-policy",
        &env.p("rogue.json"),
    ]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("sealed to fleet key"), "{}", o.stderr);
    // Malformed input names the file.
    std::fs::write(env.p("junk.blob"), b"not a blob").unwrap();
    let o = env.agent(&["unseal", "--in", &env.p("junk.blob")]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("junk.blob"), "{}", o.stderr);
    std::fs::write(env.p("big"), [1u8; 129]).unwrap();
    let o = env.agent(&["seal", "--in", &env.p("big"), "--out", &env.p("x")]);
    assert_eq!(o.code, 2, "{}", o.stderr);
}

#[test]
fn the_fleet_signs_pcr_values_replayed_from_a_real_event_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = testdata().join("eventlogs/goattest_coreos36_gce_shielded_nosb.bin");
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let o = run(
        "vouch-fleet",
        &[
            "seal-policy",
            "keygen",
            "--key",
            &p("k.pem"),
            "--public",
            &p("k.pub"),
        ],
        &[],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    // `policy sign` is the same command as `seal-policy sign`.
    let o = run(
        "vouch-fleet",
        &[
            "policy",
            "sign",
            "--key",
            &p("k.pem"),
            "--pcrs",
            "sha256:0,7",
            "--eventlog",
            &log.to_string_lossy(),
            "--out",
            &p("s.json"),
        ],
        &[],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let signed = SignedPolicy::from_json(&std::fs::read(p("s.json")).unwrap()).unwrap();
    let data = std::fs::read(&log).unwrap();
    let replay = vouch_attest::eventlog::parse(&data).unwrap().replay();
    for pcr in [0, 7] {
        assert_eq!(
            signed.draft.values.get(HashAlg::Sha256, pcr),
            replay.get(HashAlg::Sha256, pcr)
        );
    }
    // A bank the log lacks (it has sha1, sha256, sha384) is named.
    let o = run(
        "vouch-fleet",
        &[
            "seal-policy",
            "sign",
            "--key",
            &p("k.pem"),
            "--pcrs",
            "sha512:7",
            "--eventlog",
            &log.to_string_lossy(),
            "--out",
            &p("t.json"),
        ],
        &[],
    );
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("sha512:7"), "{}", o.stderr);
}
