//! `vouch-agent volume ...` and `vouch-fleet escrow ...` end to end with a swtpm and the real
//! cryptsetup: create on an image file, cryptsetup reads it and opens keyslot 0 with the
//! unsealed secret, unlock reaches the no-device-mapper error after opening the keyslot, a
//! changed PCR 7 exits 7, escrow release refuses without a trusted verdict and releases with an
//! audited override, the released passphrase opens keyslot 1 in cryptsetup, and reseal makes
//! unlock get past the unseal again.

use std::path::Path;
use swtpm_tests::cli_env::cryptsetup;
use swtpm_tests::cli_env::write_0600;
use swtpm_tests::cli_env::CliEnv;
use swtpm_tests::{run, Swtpm};

struct Env<'a>(CliEnv<'a>);

impl<'a> std::ops::Deref for Env<'a> {
    type Target = CliEnv<'a>;
    fn deref(&self) -> &CliEnv<'a> {
        &self.0
    }
}

/// The unsealed keyslot-0 secret: the sealed blob from the vouch-tpm2 token, unsealed with
/// `vouch-agent unseal`.
fn unsealed_secret(env: &Env<'_>, image: &str) -> Vec<u8> {
    use base64::Engine;
    let mut f = std::fs::File::open(image).unwrap();
    let vol = vouch_agent::volume::luks2::Luks2Volume::read(&mut f).unwrap();
    let (_, t) = vol
        .tokens()
        .into_iter()
        .find(|(_, t)| t.kind == "vouch-tpm2")
        .unwrap();
    let b64 = t.fields["vouch_sealed"].as_str().unwrap();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    std::fs::write(env.p("token.blob"), blob).unwrap();
    let out = env.p("token.secret");
    let o = env.agent(&["unseal", "--in", &env.p("token.blob"), "--out", &out]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    std::fs::read(&out).unwrap()
}

#[test]
fn volume_lifecycle_with_cryptsetup_and_escrow() {
    let tpm = Swtpm::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = Env(CliEnv {
        tpm: &tpm,
        dir: dir.path(),
    });
    let image = env.p("vol.img");
    let fleet_dir = env.p("fleet");

    let o = run("vouch-fleet", &["init", "--dir", &fleet_dir], &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let fleet_cfg = format!("{fleet_dir}/fleet.toml");
    assert!(Path::new(&fleet_cfg).exists());
    let o = run(
        "vouch-fleet",
        &[
            "escrow",
            "keygen",
            "--key",
            &env.p("escrow.pem"),
            "--public",
            &env.p("escrow.pub.pem"),
        ],
        &[],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);

    let o = env.agent(&[
        "volume",
        "create",
        "--device",
        &image,
        "--size",
        &(32u64 << 20).to_string(),
        "--pcrs",
        "sha256:7",
        "--escrow-key",
        &env.p("escrow.pub.pem"),
        "--escrow-out",
        &env.p("escrow.json"),
        "--label",
        "vouchtest",
        "--recovery-kdf-memory",
        "8192",
        "--recovery-kdf-time",
        "1",
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);

    // cryptsetup reads it and shows both tokens.
    let dump = cryptsetup(&["luksDump", &image]);
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.status.success(), "{text}");
    assert!(
        text.contains("vouch-tpm2") && text.contains("vouch-escrow"),
        "{text}"
    );
    assert!(text.contains("vouchtest"));
    let escrow_json = std::fs::read_to_string(env.p("escrow.json")).unwrap();
    let record: serde_json::Value = serde_json::from_str(&escrow_json).unwrap();
    let device_id = record["device_id"].as_str().unwrap().to_string();

    // The unsealed secret opens keyslot 0 in cryptsetup; another secret does not.
    let secret = unsealed_secret(&env, &image);
    assert_eq!(secret.len(), 64);
    write_0600(&env.p("secret.key"), &secret);
    let ok = cryptsetup(&[
        "open",
        "--test-passphrase",
        "--key-slot",
        "0",
        "--key-file",
        &env.p("secret.key"),
        &image,
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let mut wrong = secret.clone();
    wrong[0] ^= 1;
    write_0600(&env.p("wrong.key"), &wrong);
    let bad = cryptsetup(&[
        "open",
        "--test-passphrase",
        "--key-file",
        &env.p("wrong.key"),
        &image,
    ]);
    assert!(!bad.status.success());

    // cryptsetup's volume key is ours.
    let vk = cryptsetup(&[
        "luksDump",
        "--dump-volume-key",
        "--batch-mode",
        "--key-file",
        &env.p("secret.key"),
        &image,
    ]);
    let vk_text = String::from_utf8_lossy(&vk.stdout).to_string();
    assert!(
        vk.status.success(),
        "{}",
        String::from_utf8_lossy(&vk.stderr)
    );
    let theirs: String = vk_text
        .split("MK dump:")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .take_while(|w| w.len() == 2 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .collect();
    let mut f = std::fs::File::open(&image).unwrap();
    let vol = vouch_agent::volume::luks2::Luks2Volume::read(&mut f).unwrap();
    let ours = vol
        .open(&mut f, &zeroize::Zeroizing::new(secret.clone()), Some(0))
        .unwrap();
    assert_eq!(theirs, hex::encode(&*ours.volume_key));

    // Unlock: unseal and keyslot 0 succeed, then the clear no-device-mapper error.
    let has_dm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/mapper/control")
        .is_ok();
    let o = env.agent(&[
        "volume",
        "unlock",
        "--device",
        &image,
        "--name",
        "vouchtest",
    ]);
    eprintln!("{}", o.stderr);
    assert!(o.stderr.contains("unsealed in"), "{}", o.stderr);
    if !has_dm {
        assert_eq!(o.code, 8, "{}", o.stderr);
        assert!(o.stderr.contains("no device-mapper"), "{}", o.stderr);
    }
    let o = env.agent(&[
        "volume",
        "unlock",
        "--device",
        &image,
        "--name",
        "v",
        "--dry-run",
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = env.agent(&[
        "volume",
        "status",
        "--device",
        &image,
        "--json",
        "--check-unseal",
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let st: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(st["unseal"]["ok"], true, "{st}");
    assert_eq!(st["sealed_to"], "PCRs sha256:7");
    assert_eq!(st["recovery_escrowed"], true);
    assert_eq!(st["keyslots"].as_array().unwrap().len(), 2);
    if !has_dm {
        let o = env.agent(&["volume", "lock", "--name", "vouchtest"]);
        assert_eq!(o.code, 8, "{}", o.stderr);
    }

    // Boot state changes: exit 7 naming sha256:7.
    env.extend7("42");
    let o = env.agent(&[
        "volume",
        "unlock",
        "--device",
        &image,
        "--name",
        "vouchtest",
    ]);
    assert_eq!(o.code, 7, "{}", o.stderr);
    assert!(o.stderr.contains("sha256:7"), "{}", o.stderr);

    // Escrow: refused without a verdict, released with an audited override.
    let blob_path = env.p("escrow.json");
    let release = |extra: &[&str]| {
        let mut args = vec![
            "escrow", "release", "--config", &fleet_cfg, &device_id, "--blob", &blob_path, "--key",
        ];
        let key = env.p("escrow.pem");
        args.push(&key);
        args.extend_from_slice(extra);
        run("vouch-fleet", &args, &[])
    };
    let o = release(&[]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("no verdict"), "{}", o.stderr);
    let pass_file = env.p("recovery.txt");
    let o = release(&[
        "--override",
        "--reason",
        "PCR7 changed after firmware update",
        "--out",
        &pass_file,
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = run("vouch-fleet", &["audit", "--config", &fleet_cfg], &[]);
    assert!(
        o.stdout.contains("escrow_release") && o.stdout.contains("OVERRIDE"),
        "{}{}",
        o.stdout,
        o.stderr
    );
    let ok = cryptsetup(&[
        "open",
        "--test-passphrase",
        "--key-slot",
        "1",
        "--key-file",
        &pass_file,
        &image,
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // Reseal to the new PCR 7; unlock gets past the unseal again.
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
        "vouchtest",
        "--dry-run",
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let timing = o
        .stderr
        .lines()
        .find(|l| l.contains("unsealed in"))
        .unwrap()
        .to_string();
    eprintln!("timing after reseal: {timing}");
    let dump = cryptsetup(&["luksDump", &image]);
    assert!(dump.status.success());
    let secret2 = unsealed_secret(&env, &image);
    assert_ne!(secret2, secret);
    write_0600(&env.p("secret2.key"), &secret2);
    let ok = cryptsetup(&[
        "open",
        "--test-passphrase",
        "--key-slot",
        "0",
        "--key-file",
        &env.p("secret2.key"),
        &image,
    ]);
    assert!(ok.status.success());
}
