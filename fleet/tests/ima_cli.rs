//! `vouch-fleet ima check` and `runtime-policy create` end to end: the real IMA lists and the
//! real Keylime policy of `shared/testdata/ima`, a policy built from a file tree, and `ima-sig`
//! signatures made by `evmctl` (ima-evm-utils) with openssl keys, checked against the policy's
//! `verification-keys`. Exit codes: 0 trusted, 1 untrusted, 2 bad input.

use std::path::Path;
use std::process::{Command, Output};
use vouch_attest::ima::{ascii, Entry, FileDigest, Template};
use vouch_attest::HashAlg;

#[path = "../../testsupport/testdata.rs"]
mod testdata;

fn ima(name: &str) -> String {
    testdata::ima_dir()
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn fleet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vouch-fleet"))
        .args(args)
        .output()
        .unwrap()
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// PCR 10 of the VM the kraemr lists come from (`kraemr_vm_pcrs`).
/// `vouch-fleet ima check --policy POLICY --log LIST --json`: its exit code and JSON verdict.
fn check_json(policy: &str, list: &Path) -> (Option<i32>, serde_json::Value, String) {
    let o = fleet(&[
        "ima",
        "check",
        "--policy",
        policy,
        "--log",
        &s(list),
        "--json",
    ]);
    let v = serde_json::from_slice(&o.stdout).unwrap();
    (o.status.code(), v, out(&o))
}

fn kraemr_pcr10() -> String {
    let text = std::fs::read_to_string(ima("kraemr_vm_pcrs")).unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("10"))
        .unwrap();
    line.split("0x").nth(1).unwrap().trim().to_string()
}

#[test]
fn the_keylime_policy_rejects_the_keylime_log_naming_the_file() {
    let o = fleet(&[
        "ima",
        "check",
        "--policy",
        &ima("keylime_policy-sha256.json"),
        "--log",
        &ima("keylime_ima-log-sha256"),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let text = out(&o);
    assert!(
        text.contains("FAIL  not_in_policy /data sha256:96d7fae8adb7286a419a88f78c13d35fb782d63df654b7db56f154765698b754 (entry 1)"),
        "{text}"
    );
    let o = fleet(&[
        "ima",
        "check",
        "--policy",
        &ima("keylime_policy-sha256.json"),
        "--log",
        &ima("keylime_ima-log-sha256"),
        "--boot-aggregate",
        "f4845392eca429a4c941a6a07fc32faf843a88c5c3dfa3b9329ab8f4171d9ce3",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["trusted"], false);
    assert_eq!(v["failed"], 1, "the boot aggregate given is accepted: {v}");
    assert_eq!(v["failures"][0]["path"], "/data");
    assert_eq!(v["failures"][0]["rule"], "not_in_policy");
    assert_eq!(
        v["failures"][0]["digest"],
        "sha256:96d7fae8adb7286a419a88f78c13d35fb782d63df654b7db56f154765698b754"
    );
}

#[test]
fn a_policy_created_from_a_known_good_list_trusts_it_and_its_pcr10() {
    let dir = tempfile::tempdir().unwrap();
    let p = s(&dir.path().join("p.json"));
    let bin = ima("kraemr_vm_binary_runtime_measurements_sha256");
    let o = fleet(&[
        "runtime-policy",
        "create",
        "--log",
        &bin,
        "--exclude",
        "/root/\\.local/share/nautilus/",
        "--out",
        &p,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(out(&o).contains("6 violations left out"), "{}", out(&o));
    let pcr10 = kraemr_pcr10();
    // The binary list and the text list of the same boot, against the quoted PCR 10.
    for log in [
        bin.clone(),
        ima("kraemr_vm_ascii_runtime_measurements_sha256"),
    ] {
        let o = fleet(&[
            "ima", "check", "--policy", &p, "--log", &log, "--pcr10", &pcr10,
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", out(&o));
        assert!(
            out(&o).contains("trusted: 4289 entries, 17 excluded"),
            "{}",
            out(&o)
        );
    }
    // Another PCR 10 value: untrusted.
    let wrong = format!("00{}", &pcr10[2..]);
    let o = fleet(&[
        "ima", "check", "--policy", &p, "--log", &bin, "--pcr10", &wrong,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("!= --pcr10"), "{}", out(&o));
}

#[test]
fn bad_input_exits_2_naming_it() {
    let o = fleet(&[
        "ima",
        "check",
        "--policy",
        &ima("keylime_policy-sha256.json"),
        "--log",
        &ima("tss_sml-ima-sig-sha256.bin"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(
        out(&o).contains("IMA entry 9 at byte offset 987: the list ends inside an entry"),
        "{}",
        out(&o)
    );
    let o = fleet(&[
        "ima",
        "check",
        "--policy",
        &ima("kraemr_vm_pcrs"),
        "--log",
        &ima("keylime_ima-log-sha256"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(out(&o).contains("unusable runtime policy"), "{}", out(&o));
    let o = fleet(&["runtime-policy", "create", "--tree", "/nonexistent/x"]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
}

/// An `ima-ng` (or `ima-sig`) entry for `path` with the file's SHA-256, as the kernel logs it.
fn measure(file: &Path, name: &str, sig: Option<&[u8]>) -> Entry {
    let digest = HashAlg::Sha256.hash(&std::fs::read(file).unwrap()).unwrap();
    let d = FileDigest {
        alg: "sha256".into(),
        value: digest,
    };
    match sig {
        None => Entry::measured(Template::ImaNg, d, name, b"", HashAlg::Sha1),
        Some(sig) => Entry::measured(Template::ImaSig, d, name, sig, HashAlg::Sha1),
    }
    .unwrap()
}

fn write_list(path: &Path, entries: &[Entry]) {
    let text: String = entries
        .iter()
        .map(|e| ascii::format_entry(e).unwrap() + "\n")
        .collect();
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_policy_from_a_file_tree_trusts_its_files_and_names_one_that_is_not_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::create_dir_all(root.join("var/log")).unwrap();
    std::fs::write(root.join("usr/bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
    std::fs::write(root.join("usr/bin/other"), b"other").unwrap();
    std::fs::write(root.join("var/log/syslog"), b"changes all the time").unwrap();
    let p = s(&dir.path().join("p.json"));
    let o = fleet(&[
        "runtime-policy",
        "create",
        "--tree",
        &s(&root),
        "--exclude",
        "/var/log/",
        "--out",
        &p,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let policy: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    assert!(policy["digests"]["/usr/bin/tool"].is_array(), "{policy}");
    assert!(
        policy["digests"].get("/var/log/syslog").is_none(),
        "{policy}"
    );

    let list = dir.path().join("list");
    let good = vec![
        measure(&root.join("usr/bin/tool"), "/usr/bin/tool", None),
        measure(&root.join("var/log/syslog"), "/var/log/syslog", None),
    ];
    write_list(&list, &good);
    let o = fleet(&["ima", "check", "--policy", &p, "--log", &s(&list)]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));

    // A binary that is not in the tree runs: untrusted, naming it.
    let intruder = dir.path().join("intruder");
    std::fs::write(&intruder, b"not in the tree").unwrap();
    let mut bad = good.clone();
    bad.push(measure(&intruder, "/tmp/intruder", None));
    // And a file of the tree that changed.
    std::fs::write(root.join("usr/bin/other"), b"changed").unwrap();
    bad.push(measure(&root.join("usr/bin/other"), "/usr/bin/other", None));
    write_list(&list, &bad);
    let (code, v, text) = check_json(&p, &list);
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(v["failed"], 2, "{v}");
    assert_eq!(v["failures"][0]["path"], "/tmp/intruder");
    assert_eq!(v["failures"][0]["rule"], "not_in_policy");
    assert_eq!(v["failures"][0]["index"], 2);
    assert_eq!(v["failures"][1]["path"], "/usr/bin/other");
    assert_eq!(v["failures"][1]["rule"], "digest_not_allowed");
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(o.status.success(), "{cmd:?}: {}", out(&o));
    o.stdout
}

/// Keylime's `verification-keys`: keyring name → JSON string of `{"pubkeys": [base64 DER]}`.
fn verification_keys(spki_ders: &[Vec<u8>]) -> String {
    use base64::Engine;
    let keys: Vec<String> = spki_ders
        .iter()
        .map(|d| base64::engine::general_purpose::STANDARD.encode(d))
        .collect();
    let ring = serde_json::json!({ "pubkeys": keys }).to_string();
    serde_json::json!({ "tenant_keyring": ring }).to_string()
}

#[test]
fn ima_sig_signatures_made_by_evmctl_verify_against_the_policys_keys() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    run(Command::new("openssl").args(["genrsa", "-out", &s(&d("rsa.pem")), "2048"]));
    run(Command::new("openssl").args([
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        &s(&d("ec.pem")),
    ]));
    let mut ders = Vec::new();
    let mut entries = Vec::new();
    for (key, file) in [("rsa.pem", "signed-rsa"), ("ec.pem", "signed-ec")] {
        ders.push(run(Command::new("openssl").args([
            "pkey",
            "-in",
            &s(&d(key)),
            "-pubout",
            "-outform",
            "DER",
        ])));
        std::fs::write(d(file), format!("contents of {file}")).unwrap();
        run(Command::new("evmctl").args([
            "ima_sign",
            "--sigfile",
            "--hashalgo",
            "sha256",
            "--key",
            &s(&d(key)),
            &s(&d(file)),
        ]));
        let sig = std::fs::read(d(&format!("{file}.sig"))).unwrap();
        entries.push(measure(&d(file), &format!("/usr/bin/{file}"), Some(&sig)));
    }
    // A policy with the keys and no digests: the signatures alone make the files trusted.
    let mut policy = vouch_attest::ima::RuntimePolicy::empty();
    policy.verification_keys = verification_keys(&ders);
    let p = d("p.json");
    std::fs::write(&p, policy.to_json().unwrap()).unwrap();
    let list = d("list");
    write_list(&list, &entries);
    let o = fleet(&["ima", "check", "--policy", &s(&p), "--log", &s(&list)]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(out(&o).contains("2 by signature"), "{}", out(&o));

    // The RSA-signed file changed after signing: its signature no longer verifies.
    std::fs::write(d("signed-rsa"), b"tampered").unwrap();
    let sig = std::fs::read(d("signed-rsa.sig")).unwrap();
    entries[0] = measure(&d("signed-rsa"), "/usr/bin/signed-rsa", Some(&sig));
    write_list(&list, &entries);
    let (code, v, text) = check_json(&s(&p), &list);
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(v["failed"], 1, "{v}");
    assert_eq!(v["failures"][0]["path"], "/usr/bin/signed-rsa");
    assert_eq!(v["failures"][0]["rule"], "bad_signature");
    assert!(
        v["failures"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("does not verify"),
        "{v}"
    );

    // Without the EC key, the EC-signed file fails too (no key with its id).
    policy.verification_keys = verification_keys(&ders[..1]);
    std::fs::write(&p, policy.to_json().unwrap()).unwrap();
    let (_, v, _) = check_json(&s(&p), &list);
    assert_eq!(v["failed"], 2, "{v}");
    assert!(v["failures"][1]["detail"]
        .as_str()
        .unwrap()
        .starts_with("no key with id"));
}

#[test]
fn a_key_the_list_shows_loaded_onto_a_checked_keyring_verifies_later_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    run(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &s(&d("k.pem")),
        "-out",
        &s(&d("c.der")),
        "-outform",
        "DER",
        "-subj",
        "/CN=vouch test IMA key",
        "-days",
        "2",
    ]));
    let cert = std::fs::read(d("c.der")).unwrap();
    std::fs::write(d("app"), b"a signed application").unwrap();
    run(Command::new("evmctl").args([
        "ima_sign",
        "--sigfile",
        "--hashalgo",
        "sha256",
        "--key",
        &s(&d("k.pem")),
        &s(&d("app")),
    ]));
    let sig = std::fs::read(d("app.sig")).unwrap();
    // The kernel measures the certificate loaded onto .ima (ima-buf), then the signed file.
    let cert_digest = HashAlg::Sha256.hash(&cert).unwrap();
    let key_entry = Entry::measured(
        Template::ImaBuf,
        FileDigest {
            alg: "sha256".into(),
            value: cert_digest.clone(),
        },
        ".ima",
        &cert,
        HashAlg::Sha1,
    )
    .unwrap();
    let list = d("list");
    write_list(
        &list,
        &[key_entry, measure(&d("app"), "/usr/bin/app", Some(&sig))],
    );
    let check = |policy: &vouch_attest::ima::RuntimePolicy| {
        let p = d("p.json");
        std::fs::write(&p, policy.to_json().unwrap()).unwrap();
        let (code, v, _) = check_json(&s(&p), &list);
        (code, v)
    };
    let mut policy = vouch_attest::ima::RuntimePolicy::empty();
    policy
        .keyrings
        .insert(".ima".into(), vec![hex::encode(&cert_digest)]);
    let (code, v) = check(&policy);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["signed"], 1, "{v}");

    // The key is not allowed on .ima: its entry fails, and the file's signature is not trusted.
    policy.keyrings.clear();
    let (code, v) = check(&policy);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["failures"][0]["path"], ".ima");
    assert_eq!(v["failures"][0]["rule"], "key_not_allowed");
    assert_eq!(v["failures"][1]["path"], "/usr/bin/app");
    assert_eq!(v["failures"][1]["rule"], "not_in_policy");

    // An ignored keyring passes, but its keys are not used either.
    policy.ima.ignored_keyrings = vec!["*".into()];
    let (code, v) = check(&policy);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["failed"], 1, "{v}");
    assert_eq!(v["failures"][0]["path"], "/usr/bin/app");
}

#[test]
fn ima_modsig_entries_parse_and_are_appraised_by_digest() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.ko"), b"a module").unwrap();
    let digest = HashAlg::Sha256
        .hash(&std::fs::read(dir.path().join("m.ko")).unwrap())
        .unwrap();
    let e = Entry::measured(
        Template::ImaModsig,
        FileDigest {
            alg: "sha256".into(),
            value: digest.clone(),
        },
        "/lib/modules/m.ko",
        b"",
        HashAlg::Sha1,
    )
    .unwrap();
    // The binary list form (the text form of ima-modsig is not rebuilt by format_entry).
    let list = dir.path().join("list");
    std::fs::write(&list, vouch_attest::ima::binary::encode_entry(&e)).unwrap();
    let mut policy = vouch_attest::ima::RuntimePolicy::empty();
    let p = dir.path().join("p.json");
    std::fs::write(&p, policy.to_json().unwrap()).unwrap();
    let o = fleet(&["ima", "check", "--policy", &s(&p), "--log", &s(&list)]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        out(&o).contains("not_in_policy /lib/modules/m.ko"),
        "{}",
        out(&o)
    );
    policy.allow("/lib/modules/m.ko", &digest);
    std::fs::write(&p, policy.to_json().unwrap()).unwrap();
    let o = fleet(&["ima", "check", "--policy", &s(&p), "--log", &s(&list)]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
}
