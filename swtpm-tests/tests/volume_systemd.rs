//! Interop with systemd-cryptenroll's `systemd-tpm2` LUKS2 token (Debian 12: systemd 252), both
//! ways, on swtpm and LUKS2 image files, against systemd's own code:
//!
//! - a volume enrolled by the real `systemd-cryptenroll --tpm2-device=swtpm:...` is adopted by
//!   `vouch-agent volume adopt`: the escrowed recovery passphrase (released by the fleet) opens
//!   its keyslot in cryptsetup, Vouch's unlock path opens Vouch's keyslot, systemd's token is
//!   byte-identical, and systemd's token plugin still unlocks systemd's keyslot;
//! - a volume made by `vouch-agent volume create --systemd-tpm2` (and one given the token later
//!   by `volume enroll-systemd`) is unlocked by libcryptsetup's systemd-tpm2 token plugin
//!   (`cryptsetup open --test-passphrase --token-only`), and systemd-cryptsetup's own TPM2 code
//!   unseals its secret (it then stops at the missing device-mapper).
//!
//! The plugin only talks to `/dev/tpmrm0` (found through `/sys/class/tpmrm`): it runs in a
//! private mount namespace where that node is a FUSE file forwarding to the test's swtpm
//! ([`swtpm_tests::tpm_dev`]).

use std::process::Command;
use swtpm_tests::cli_env::cryptsetup;
use swtpm_tests::cli_env::CliEnv;
use swtpm_tests::tpm_dev::TpmDevice;
use swtpm_tests::{run, Swtpm};

const SYSTEMD_FIELDS: [&str; 8] = [
    "type",
    "keyslots",
    "tpm2-blob",
    "tpm2-pcrs",
    "tpm2-pcr-bank",
    "tpm2-primary-alg",
    "tpm2-policy-hash",
    "tpm2-pin",
];

struct Env<'a>(CliEnv<'a>);

impl<'a> std::ops::Deref for Env<'a> {
    type Target = CliEnv<'a>;
    fn deref(&self) -> &CliEnv<'a> {
        &self.0
    }
}

impl Env<'_> {
    fn swtpm_device(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.tpm.port())
    }

    /// Escrow key pair of a fresh fleet (`vouch-fleet init` + `escrow keygen`).
    fn fleet(&self) -> String {
        let fleet_dir = self.p("fleet");
        let o = run("vouch-fleet", &["init", "--dir", &fleet_dir], &[]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        let o = run(
            "vouch-fleet",
            &[
                "escrow",
                "keygen",
                "--key",
                &self.p("escrow.pem"),
                "--public",
                &self.p("escrow.pub.pem"),
            ],
            &[],
        );
        assert_eq!(o.code, 0, "{}", o.stderr);
        format!("{fleet_dir}/fleet.toml")
    }
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn token_export(image: &str, id: u32) -> String {
    let o = cryptsetup(&["token", "export", "--token-id", &id.to_string(), image]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn metadata(image: &str) -> serde_json::Value {
    let o = cryptsetup(&["luksDump", "--dump-json-metadata", image]);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The field names of a token as cryptsetup prints them, in order.
fn field_order(json: &str) -> Vec<String> {
    // serde_json's map sorts keys: read the order from the text.
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut keys: Vec<(usize, String)> = v
        .as_object()
        .unwrap()
        .keys()
        .map(|k| (json.find(&format!("\"{k}\":")).unwrap(), k.clone()))
        .collect();
    keys.sort();
    keys.into_iter().map(|(_, k)| k).collect()
}

/// libcryptsetup's systemd-tpm2 plugin unlocking the volume by itself (no passphrase given).
fn systemd_plugin_unlock(dev: &TpmDevice, image: &str) -> std::process::Output {
    dev.command(
        "cryptsetup",
        &[
            "open",
            "--test-passphrase",
            "--token-only",
            "--token-type",
            "systemd-tpm2",
            "-v",
            image,
        ],
    )
    .output()
    .expect("unshare and cryptsetup are installed")
}

fn luks_format_with_password(env: &Env<'_>, image: &str) {
    std::fs::write(env.p("password"), "correct horse").unwrap();
    let f = std::fs::File::create(image).unwrap();
    f.set_len(32 << 20).unwrap();
    let o = cryptsetup(&[
        "luksFormat",
        "--batch-mode",
        "--type",
        "luks2",
        "--pbkdf",
        "pbkdf2",
        "--pbkdf-force-iterations",
        "1000",
        "--key-file",
        &env.p("password"),
        image,
    ]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn systemd_enrolled_volume_is_adopted_and_keeps_systemds_token() {
    let tpm = Swtpm::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = Env(CliEnv {
        tpm: &tpm,
        dir: dir.path(),
    });
    let fleet_cfg = env.fleet();
    let image = env.p("sd.img");
    luks_format_with_password(&env, &image);

    // The real systemd-cryptenroll enrolls the TPM against this swtpm.
    let o = Command::new("systemd-cryptenroll")
        .arg(format!("--tpm2-device={}", env.swtpm_device()))
        .args(["--tpm2-pcrs=7", &image])
        .env("PASSWORD", "correct horse")
        .output()
        .expect("systemd-cryptenroll is installed");
    assert!(o.status.success(), "{}", text(&o));
    let before = token_export(&image, 0);
    assert_eq!(field_order(&before), SYSTEMD_FIELDS, "{before}");
    let systemd_keyslot = metadata(&image)["tokens"]["0"]["keyslots"][0]
        .as_str()
        .unwrap()
        .to_string();
    let keyslot_before = metadata(&image)["keyslots"][&systemd_keyslot].clone();
    std::fs::copy(&image, env.p("sd-unadopted.img")).unwrap();

    let o = env.agent(&[
        "volume",
        "adopt",
        "--device",
        &image,
        "--pcrs",
        "sha256:7",
        "--escrow-key",
        &env.p("escrow.pub.pem"),
        "--escrow-out",
        &env.p("escrow.json"),
        "--recovery-kdf-memory",
        "8192",
        "--recovery-kdf-time",
        "1",
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    eprintln!("{}", o.stderr.trim());

    // systemd's token and keyslot are untouched, byte for byte.
    assert_eq!(token_export(&image, 0), before);
    let md = metadata(&image);
    assert_eq!(md["keyslots"][&systemd_keyslot], keyslot_before);
    let slot_of = |kind: &str| -> String {
        md["tokens"]
            .as_object()
            .unwrap()
            .values()
            .find(|t| t["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} token: {md}"))["keyslots"][0]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (vouch_slot, recovery_slot) = (slot_of("vouch-tpm2"), slot_of("vouch-escrow"));
    assert!(vouch_slot != systemd_keyslot && recovery_slot != systemd_keyslot);
    assert_eq!(md["keyslots"][&recovery_slot]["kdf"]["type"], "argon2id");

    // The original passphrase still opens its keyslot.
    let o = cryptsetup(&[
        "open",
        "--test-passphrase",
        "--key-file",
        &env.p("password"),
        "--key-slot",
        "0",
        &image,
    ]);
    assert!(o.status.success(), "{}", text(&o));

    // The escrowed recovery passphrase, released by the fleet, opens the recovery keyslot.
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.p("escrow.json")).unwrap()).unwrap();
    let device_id = record["device_id"].as_str().unwrap();
    let pass_file = env.p("recovery.txt");
    let o = run(
        "vouch-fleet",
        &[
            "escrow",
            "release",
            "--config",
            &fleet_cfg,
            device_id,
            "--blob",
            &env.p("escrow.json"),
            "--key",
            &env.p("escrow.pem"),
            "--override",
            "--reason",
            "adopted from systemd-cryptenroll",
            "--out",
            &pass_file,
        ],
        &[],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = cryptsetup(&[
        "open",
        "--test-passphrase",
        "--key-slot",
        &recovery_slot,
        "--key-file",
        &pass_file,
        &image,
    ]);
    assert!(o.status.success(), "{}", text(&o));

    // Vouch's unlock path: unseal and open Vouch's keyslot.
    let o = env.agent(&[
        "volume",
        "unlock",
        "--device",
        &image,
        "--name",
        "adopted",
        "--dry-run",
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stderr.contains(&format!("keyslot {vouch_slot} opened")),
        "{}",
        o.stderr
    );
    let o = env.agent(&[
        "volume",
        "adopt",
        "--device",
        &image,
        "--escrow-key",
        &env.p("escrow.pub.pem"),
    ]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains("already has a vouch-tpm2 token"),
        "{}",
        o.stderr
    );

    // systemd's own code still unlocks systemd's keyslot through systemd's token.
    let dev = TpmDevice::start(tpm.port()).unwrap();
    let o = systemd_plugin_unlock(&dev, &image);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("Key slot {systemd_keyslot} unlocked")),
        "{}",
        text(&o)
    );

    // A changed PCR 7: adopting refuses with the boot-state exit code, naming the PCRs, and
    // systemd's plugin refuses too.
    tpm.tpm2(&["tpm2_pcrextend", &format!("7:sha256={}", "42".repeat(32))]);
    let o = env.agent(&[
        "volume",
        "adopt",
        "--device",
        &env.p("sd-unadopted.img"),
        "--escrow-key",
        &env.p("escrow.pub.pem"),
    ]);
    assert_eq!(o.code, 7, "{}", o.stderr);
    assert!(o.stderr.contains("sha256:7"), "{}", o.stderr);
    let o = systemd_plugin_unlock(&dev, &image);
    assert!(!o.status.success(), "{}", text(&o));
    drop(dev);

    // Vouch's side recovers as for its own volumes: the fleet-released passphrase opens the
    // recovery keyslot and re-seals Vouch's keyslot (its id, not 0) to the new PCR 7.
    let o = env.agent(&[
        "volume",
        "unlock",
        "--device",
        &image,
        "--name",
        "adopted",
        "--dry-run",
    ]);
    assert_eq!(o.code, 7, "{}", o.stderr);
    let o = env.agent(&[
        "volume",
        "reseal",
        "--device",
        &image,
        "--recovery-file",
        &pass_file,
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = env.agent(&[
        "volume",
        "unlock",
        "--device",
        &image,
        "--name",
        "adopted",
        "--dry-run",
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stderr.contains(&format!("keyslot {vouch_slot} opened")),
        "{}",
        o.stderr
    );
    assert_eq!(token_export(&image, 0), before);
}

#[test]
fn vouch_volume_with_systemd_token_is_unlocked_by_systemd() {
    let tpm = Swtpm::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = Env(CliEnv {
        tpm: &tpm,
        dir: dir.path(),
    });
    env.fleet();
    let created = env.p("created.img");
    let enrolled = env.p("enrolled.img");
    let create = |image: &str, extra: &[&str]| {
        let mut args = vec![
            "volume",
            "create",
            "--device",
            image,
            "--size",
            "33554432",
            "--pcrs",
            "sha256:7",
            "--escrow-key",
        ];
        let key = env.p("escrow.pub.pem");
        args.push(&key);
        args.extend_from_slice(&["--recovery-kdf-memory", "8192", "--recovery-kdf-time", "1"]);
        args.extend_from_slice(extra);
        let o = env.agent(&args);
        assert_eq!(o.code, 0, "{}", o.stderr);
    };
    create(&created, &["--systemd-tpm2", "sha256:7"]);
    create(&enrolled, &[]);
    let o = env.agent(&[
        "volume",
        "enroll-systemd",
        "--device",
        &enrolled,
        "--systemd-pcrs",
        "sha256:7",
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);

    for image in [&created, &enrolled] {
        // The token as systemd-cryptenroll writes it: same fields, same order, same forms.
        let md = metadata(image);
        let (id, token) = md["tokens"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(_, t)| t["type"] == "systemd-tpm2")
            .unwrap();
        let json = token_export(image, id.parse().unwrap());
        assert_eq!(field_order(&json), SYSTEMD_FIELDS, "{json}");
        assert_eq!(token["tpm2-pcrs"], serde_json::json!([7]));
        assert_eq!(token["tpm2-pcr-bank"], "sha256");
        assert_eq!(token["tpm2-primary-alg"], "ecc");
        assert_eq!(token["tpm2-pin"], false);
        let slot = token["keyslots"][0].as_str().unwrap();
        assert_eq!(md["keyslots"][slot]["kdf"]["type"], "pbkdf2");
        assert_eq!(md["keyslots"][slot]["kdf"]["hash"], "sha512");

        // libcryptsetup's systemd-tpm2 plugin (systemd 252's code) unseals it on the swtpm and
        // the passphrase it makes opens the keyslot.
        let dev = TpmDevice::start(tpm.port()).unwrap();
        let o = systemd_plugin_unlock(&dev, image);
        assert!(o.status.success(), "{}", text(&o));
        assert!(
            text(&o).contains(&format!("Key slot {slot} unlocked")),
            "{}",
            text(&o)
        );
        drop(dev);

        // systemd-cryptsetup's own TPM2 code (crypttab tpm2-device=) unseals the secret with
        // the token's policy hash; activating then needs device-mapper, which is not here.
        let o = Command::new("/lib/systemd/systemd-cryptsetup")
            .args(["attach", "vouch-systemd", image, "-"])
            .arg(format!(
                "tpm2-device={},headless=1",
                env.swtpm_device().replace(',', "\\,")
            ))
            .env("SYSTEMD_LOG_LEVEL", "debug")
            .output()
            .expect("systemd-cryptsetup is installed");
        let out = text(&o);
        if o.status.success() {
            // A machine with device-mapper mapped it: remove the mapping again.
            let _ = Command::new("/lib/systemd/systemd-cryptsetup")
                .args(["detach", "vouch-systemd"])
                .output();
        }
        // systemd 252 leaves its HMAC session loaded; with no resource manager between it
        // and the swtpm, flush it as /dev/tpmrm0 would.
        tpm.tpm2(&["tpm2_flushcontext", "--loaded-session"]);
        assert!(out.contains("Completed TPM2 key unsealing"), "{out}");
        assert!(
            out.contains(&format!("[keyslot {slot}] using passphrase")),
            "{out}"
        );
    }

    // The PCR policy is real: after PCR 7 changes, systemd's plugin cannot unlock.
    tpm.tpm2(&["tpm2_pcrextend", &format!("7:sha256={}", "42".repeat(32))]);
    let dev = TpmDevice::start(tpm.port()).unwrap();
    let o = systemd_plugin_unlock(&dev, &created);
    assert!(!o.status.success(), "{}", text(&o));
}
