//! `vouch-fleet init` and the PKI API checked with OpenSSL as the independent oracle:
//! certificate chains, the CRL's content, file modes, and refusal of bad input.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use vouch_fleet::config::FleetConfig;
use vouch_fleet::pki::ca::CaError;
use vouch_fleet::pki::crl::{crl_next_update, CrlError};
use vouch_fleet::pki::device::DeviceError;
use vouch_fleet::pki::setup::{init_fleet, InitError, InitOptions};
use vouch_fleet::pki::{issue_device_certificate, load_ca, revoke, DevicePublicKey, Validity};

fn init(dir: &Path) {
    init_fleet(&InitOptions {
        dir: dir.to_path_buf(),
        broker_port: 18883,
        enroll_port: 18884,
        dynsec_plugin: None,
        server_names: vec!["broker.example.org".into(), "10.1.2.3".into()],
        force: false,
    })
    .unwrap();
}

fn openssl(args: &[&str], cwd: &Path) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("openssl must be installed")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn device_key() -> rcgen::KeyPair {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

#[test]
fn openssl_accepts_every_certificate_and_sees_revocations() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fleet");
    init(&dir);

    // Modes: directory 0700, keys 0600, public files 0644.
    assert_eq!(mode(&dir), 0o700);
    for key in [
        "ca.key",
        "server.key",
        "fleet.key",
        "claim.key",
        "fleet.toml",
    ] {
        assert_eq!(mode(&dir.join(key)), 0o600, "{key}");
    }
    for public in [
        "ca.crt",
        "server.crt",
        "fleet.crt",
        "claim.crt",
        "crl.pem",
        "acl",
    ] {
        assert_eq!(mode(&dir.join(public)), 0o644, "{public}");
    }

    let out = openssl(
        &[
            "verify",
            "-CAfile",
            "ca.crt",
            "-purpose",
            "sslserver",
            "server.crt",
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", text(&out));
    for client in ["fleet.crt", "claim.crt"] {
        let out = openssl(
            &[
                "verify",
                "-CAfile",
                "ca.crt",
                "-purpose",
                "sslclient",
                client,
            ],
            &dir,
        );
        assert!(out.status.success(), "{client}: {}", text(&out));
    }
    let out = openssl(
        &[
            "x509",
            "-in",
            "server.crt",
            "-noout",
            "-ext",
            "subjectAltName",
        ],
        &dir,
    );
    let sans = text(&out);
    for want in [
        "DNS:localhost",
        "IP Address:127.0.0.1",
        "DNS:broker.example.org",
        "IP Address:10.1.2.3",
    ] {
        assert!(sans.contains(want), "{want} missing in {sans}");
    }
    let out = openssl(
        &["x509", "-in", "ca.crt", "-noout", "-subject", "-text"],
        &dir,
    );
    let ca_text = text(&out);
    assert!(ca_text.contains("CN = Vouch Fleet CA"), "{ca_text}");
    assert!(ca_text.contains("ASN1 OID: prime256v1"), "{ca_text}");
    assert!(ca_text.contains("CA:TRUE"), "{ca_text}");

    // A device certificate from an SPKI and one from a CSR, both for keys the fleet never held.
    let ca = load_ca(&dir).unwrap();
    let k1 = device_key();
    let by_spki = issue_device_certificate(
        &ca,
        "dev-spki",
        DevicePublicKey::Spki(&k1.public_key_der()),
        Validity::days_from_now(365),
    )
    .unwrap();
    let k2 = device_key();
    let mut csr_params = rcgen::CertificateParams::default();
    csr_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "whatever-the-device-asks");
    let csr = csr_params.serialize_request(&k2).unwrap();
    let by_csr = issue_device_certificate(
        &ca,
        "dev-csr",
        DevicePublicKey::Csr(csr.der()),
        Validity::days_from_now(365),
    )
    .unwrap();
    for (issued, key, cn) in [(&by_spki, &k1, "dev-spki"), (&by_csr, &k2, "dev-csr")] {
        let cert = write(&dir, &format!("{cn}.crt"), &issued.pem);
        let cert = cert.to_str().unwrap();
        let out = openssl(
            &["verify", "-CAfile", "ca.crt", "-purpose", "sslclient", cert],
            &dir,
        );
        assert!(out.status.success(), "{cn}: {}", text(&out));
        let out = openssl(
            &[
                "x509", "-in", cert, "-noout", "-subject", "-serial", "-pubkey",
            ],
            &dir,
        );
        let t = text(&out);
        assert!(t.contains(&format!("CN = {cn}")), "{t}");
        let serial_line = format!("serial={}", issued.serial.to_string().to_uppercase());
        assert!(t.contains(&serial_line), "{serial_line} not in {t}");
        // The certified key is the device's.
        assert!(t.contains(key.public_key_pem().trim()), "{t}");
        assert_eq!(issued.serial.as_bytes().len(), 16);
    }
    assert_ne!(by_spki.serial, by_csr.serial);

    // Revoke the SPKI device: the CRL lists it, OpenSSL's CRL check refuses it and still
    // accepts the other.
    let crl = revoke(&ca, &by_spki.serial).unwrap();
    assert_eq!(crl.revoked, [by_spki.serial]);
    assert_eq!(crl.number, 2);
    let out = openssl(&["crl", "-in", "crl.pem", "-noout", "-text"], &dir);
    let crl_text = text(&out);
    let upper = by_spki.serial.to_string().to_uppercase();
    assert!(
        crl_text.contains(&format!("Serial Number: {upper}")),
        "{crl_text}"
    );
    assert!(!crl_text.contains(&by_csr.serial.to_string().to_uppercase()));
    assert!(
        crl_text.contains("Issuer: CN = Vouch Fleet CA"),
        "{crl_text}"
    );
    let out = openssl(
        &["crl", "-in", "crl.pem", "-noout", "-CAfile", "ca.crt"],
        &dir,
    );
    assert!(text(&out).contains("verify OK"), "{}", text(&out));
    let check = |cert: &str| {
        openssl(
            &[
                "verify",
                "-crl_check",
                "-CAfile",
                "ca.crt",
                "-CRLfile",
                "crl.pem",
                cert,
            ],
            &dir,
        )
    };
    let out = check("dev-spki.crt");
    assert!(!out.status.success());
    assert!(text(&out).contains("certificate revoked"), "{}", text(&out));
    let out = check("dev-csr.crt");
    assert!(out.status.success(), "{}", text(&out));

    // Revoking again changes nothing but the CRL number; unknown serials are refused.
    let again = revoke(&ca, &by_spki.serial).unwrap();
    assert_eq!(again.revoked, [by_spki.serial]);
    assert_eq!(again.number, 3);
    let stranger = vouch_fleet::pki::Serial::random().unwrap();
    assert!(matches!(
        revoke(&ca, &stranger),
        Err(CrlError::UnknownSerial { .. })
    ));
    let next = crl_next_update(ca.paths()).unwrap();
    let days = (next - time::OffsetDateTime::now_utc()).whole_days();
    assert!((29..=30).contains(&days), "nextUpdate in {days} days");

    // The generated fleet.toml loads and points at the files just written.
    let cfg = FleetConfig::load(&dir.join("fleet.toml")).unwrap();
    let canon = dir.canonicalize().unwrap();
    assert_eq!(cfg.ca_cert, canon.join("ca.crt"));
    assert_eq!(cfg.broker_port, 18883);
    for p in [
        &cfg.ca_cert,
        &cfg.ca_key,
        &cfg.client_cert,
        &cfg.client_key,
        &cfg.crl,
    ] {
        assert!(p.is_file(), "{}", p.display());
    }
    for d in [&cfg.state_dir, &cfg.trust_roots_dir, &cfg.policies_dir] {
        assert!(d.is_dir(), "{}", d.display());
        assert_eq!(mode(d), 0o700);
    }
}

#[test]
fn bad_device_input_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fleet");
    init(&dir);
    let ca = load_ca(&dir).unwrap();
    let v = Validity::days_from_now(1);
    let key = device_key();
    let spki = key.public_key_der();

    let err = issue_device_certificate(&ca, "a/b", DevicePublicKey::Spki(&spki), v).unwrap_err();
    assert!(matches!(err, DeviceError::DeviceId { .. }), "{err}");
    // The message names the refused id, its cause says why.
    let msg = vouch_attest::errors::chain(&err);
    assert!(
        msg.contains("\"a/b\" refused") && msg.contains("'/'"),
        "{msg}"
    );
    let err =
        issue_device_certificate(&ca, "vouch-fleet", DevicePublicKey::Spki(&spki), v).unwrap_err();
    assert!(
        vouch_attest::errors::chain(&err).contains("reserved"),
        "{err}"
    );

    for bad in [
        &spki[..spki.len() - 1],
        &[][..],
        &[0x30, 0x82, 0xff, 0xff][..],
    ] {
        let err = issue_device_certificate(&ca, "d", DevicePublicKey::Spki(bad), v).unwrap_err();
        assert!(matches!(err, DeviceError::Spki(_)), "{err}");
    }
    let huge = vec![0u8; 20_000];
    let err = issue_device_certificate(&ca, "d", DevicePublicKey::Csr(&huge), v).unwrap_err();
    assert!(
        matches!(err, DeviceError::InputTooLarge { len: 20_000 }),
        "{err}"
    );

    // A CSR whose signature does not verify (one bit of the signature flipped).
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap();
    let mut der = csr.der().to_vec();
    let last = der.len() - 1;
    der[last] ^= 1;
    let err = issue_device_certificate(&ca, "d", DevicePublicKey::Csr(&der), v).unwrap_err();
    assert!(matches!(err, DeviceError::Csr(_)), "{err}");
    // A validity that ends before it starts.
    let backwards = Validity {
        not_before: v.not_after,
        not_after: v.not_before,
    };
    let err =
        issue_device_certificate(&ca, "d", DevicePublicKey::Spki(&spki), backwards).unwrap_err();
    assert!(
        matches!(err, DeviceError::Issue(CaError::EmptyValidity { .. })),
        "{err}"
    );
    // Every refusal left the issued index with only init's three certificates.
    let issued = vouch_fleet::pki::crl::issued_serials(ca.paths()).unwrap();
    assert_eq!(issued.len(), 3);
}

#[test]
fn load_ca_refuses_a_foreign_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fleet");
    init(&dir);
    std::fs::copy(dir.join("fleet.key"), dir.join("ca.key")).unwrap();
    let err = load_ca(&dir).unwrap_err();
    assert!(matches!(err, CaError::KeyMismatch { .. }), "{err}");
    std::fs::write(dir.join("ca.crt"), "not a certificate").unwrap();
    let err = load_ca(&dir).unwrap_err();
    assert!(matches!(err, CaError::ParseCert { .. }), "{err}");
    assert!(err.to_string().contains("ca.crt"), "{err}");
    // The fleet's leaf certificate is not a CA.
    std::fs::copy(dir.join("fleet.crt"), dir.join("ca.crt")).unwrap();
    let err = load_ca(&dir).unwrap_err();
    assert!(matches!(err, CaError::NotCa { .. }), "{err}");
}

#[test]
fn init_rules_on_existing_directories_and_bad_options() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fleet");
    let opts = |force| InitOptions {
        dir: dir.clone(),
        broker_port: 18883,
        enroll_port: 18884,
        dynsec_plugin: None,
        server_names: vec![],
        force,
    };
    // An existing empty directory is fine.
    std::fs::create_dir(&dir).unwrap();
    init_fleet(&opts(false)).unwrap();
    let old_ca = std::fs::read_to_string(dir.join("ca.crt")).unwrap();
    assert!(matches!(
        init_fleet(&opts(false)),
        Err(InitError::NotEmpty { .. })
    ));
    assert_eq!(std::fs::read_to_string(dir.join("ca.crt")).unwrap(), old_ca);
    init_fleet(&opts(true)).unwrap();
    assert_ne!(std::fs::read_to_string(dir.join("ca.crt")).unwrap(), old_ca);
    // The old CA's index is gone: only the new CA's three certificates are listed.
    let ca = load_ca(&dir).unwrap();
    assert_eq!(
        vouch_fleet::pki::crl::issued_serials(ca.paths())
            .unwrap()
            .len(),
        3
    );

    let file = tmp.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let err = init_fleet(&InitOptions {
        dir: file,
        ..opts(true)
    })
    .unwrap_err();
    assert!(matches!(err, InitError::NotADirectory { .. }), "{err}");
    let err = init_fleet(&InitOptions {
        dir: tmp.path().join("other"),
        server_names: vec!["bad name".into()],
        ..opts(false)
    })
    .unwrap_err();
    assert!(
        vouch_attest::errors::chain(&err).contains("bad name"),
        "{err}"
    );
    assert!(!tmp.path().join("other").exists());
}

#[test]
fn cli_init_refuses_overwrite_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fleet");
    let bin = env!("CARGO_BIN_EXE_vouch-fleet");
    let run = |extra: &[&str]| {
        Command::new(bin)
            .args([
                "init",
                "--dir",
                dir.to_str().unwrap(),
                "--broker-port",
                "18884",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("mosquitto -c"), "{}", text(&out));
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.contains("--force") && msg.contains("not empty"),
        "{msg}"
    );
    let out = run(&["--force", "--server-name", "fleet.example"]);
    assert!(out.status.success(), "{}", text(&out));
    let conf = std::fs::read_to_string(dir.join("mosquitto.conf")).unwrap();
    assert!(
        conf.lines().any(|l| l == "listener 18884 127.0.0.1"),
        "{conf}"
    );
}

/// `init --postgres-url` creates the schema in the database and writes `[storage] backend =
/// "postgres"` into a 0600 fleet.toml; a database that cannot be reached fails init, named
/// without its password.
#[test]
fn cli_init_writes_a_postgres_storage_section() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fleet");
    let bin = env!("CARGO_BIN_EXE_vouch-fleet");
    let cluster = swtpm_tests::postgres::PgCluster::shared();
    let url = cluster.database().unwrap();
    let init = |dir: &Path, url: &str| {
        Command::new(bin)
            .args([
                "init",
                "--dir",
                dir.to_str().unwrap(),
                "--broker-port",
                "18885",
            ])
            .env("VOUCH_FLEET_POSTGRES_URL", url)
            .output()
            .unwrap()
    };
    let out = init(&dir, &url);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("registry: PostgreSQL at postgresql://vouch@"),
        "{}",
        text(&out)
    );
    let toml = dir.join("fleet.toml");
    assert_eq!(mode(&toml), 0o600);
    let cfg = vouch_fleet::config::FleetConfig::load(&toml).unwrap();
    assert!(matches!(
        cfg.storage,
        vouch_fleet::config::Storage::Postgres { .. }
    ));
    let reg = vouch_fleet::registry::Registry::for_config(&cfg).unwrap();
    assert!(reg.devices().unwrap().is_empty());
    assert!(!dir.join("state").join("registry.db").exists());
    // The commands work on it.
    let out = Command::new(bin)
        .args(["devices", "--config", toml.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // A server that is not there: init fails and names it without the password.
    let dir2 = tmp.path().join("fleet2");
    let gone = format!(
        "postgresql://vouch:pw-s3cret@%2Fnonexistent%2Fsocket:{}/vouch",
        cluster.port()
    );
    let out = init(&dir2, &gone);
    assert!(!out.status.success(), "{}", text(&out));
    let msg = text(&out);
    assert!(
        msg.contains("cannot open the registry database postgresql://vouch:REDACTED@"),
        "{msg}"
    );
    assert!(!msg.contains("pw-s3cret"), "{msg}");
    assert!(!dir2.exists());
}
