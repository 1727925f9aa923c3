//! Volumes Vouch writes, checked by cryptsetup 2.6: header dump, isLuks, both keyslots,
//! volume key, tokens, and data that cryptsetup decrypts offline.

mod luks_common;

use luks_common::*;
use vouch_agent::volume::luks2::token::Token;
use vouch_agent::volume::luks2::{format, FormatOptions, Luks2Volume};

#[test]
fn cryptsetup_accepts_vouch_header_keyslots_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = image(dir.path(), "vol.img", 20 << 20);
    let (_, key) =
        format(&mut open_rw(&img), &secret(), &recovery(), &cheap_options()).expect("format");
    let secret_file = write_file(dir.path(), "secret", &secret());
    let recovery_file = write_file(dir.path(), "recovery", &recovery());
    let wrong_file = write_file(dir.path(), "wrong", b"not the secret at all, 32 bytes!");

    assert!(cryptsetup(&["isLuks", "--type", "luks2", path(&img)])
        .status
        .success());
    let dump = cryptsetup_ok(&["luksDump", path(&img)]);
    assert!(
        dump.lines()
            .any(|l| l.starts_with("Label:") && l.ends_with("vouch-test")),
        "{dump}"
    );
    assert!(dump.contains("sector: 4096 [bytes]"), "{dump}");
    let json: serde_json::Value = serde_json::from_str(&cryptsetup_ok(&[
        "luksDump",
        "--dump-json-metadata",
        path(&img),
    ]))
    .expect("cryptsetup JSON");
    assert_eq!(json["keyslots"]["0"]["kdf"]["type"], "pbkdf2");
    assert_eq!(json["keyslots"]["1"]["kdf"]["type"], "argon2id");
    assert_eq!(json["keyslots"]["1"]["area"]["offset"], "290816");
    assert_eq!(json["segments"]["0"]["offset"], "16777216");
    assert_eq!(json["config"]["keyslots_size"], "16744448");

    for (file, slot) in [(&secret_file, "0"), (&recovery_file, "1")] {
        cryptsetup_ok(&[
            "open",
            "--test-passphrase",
            "--key-slot",
            slot,
            "--key-file",
            path(file),
            path(&img),
        ]);
    }
    cryptsetup_ok(&[
        "open",
        "--test-passphrase",
        "--key-file",
        path(&recovery_file),
        path(&img),
    ]);
    for slot in ["0", "1"] {
        let out = cryptsetup(&[
            "open",
            "--test-passphrase",
            "--key-slot",
            slot,
            "--key-file",
            path(&wrong_file),
            path(&img),
        ]);
        assert!(
            !out.status.success(),
            "wrong secret accepted by keyslot {slot}"
        );
    }
    // The recovery passphrase must not open the secret keyslot and vice versa.
    assert!(!cryptsetup(&[
        "open",
        "--test-passphrase",
        "--key-slot",
        "0",
        "--key-file",
        path(&recovery_file),
        path(&img),
    ])
    .status
    .success());
    assert_eq!(dumped_volume_key(&img, &secret_file), key.to_vec());
    assert_eq!(dumped_volume_key(&img, &recovery_file), key.to_vec());
}

#[test]
fn cryptsetup_sees_vouch_tokens_and_vouch_sees_imported_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = image(dir.path(), "vol.img", 20 << 20);
    let mut dev = open_rw(&img);
    let (mut vol, _) = format(&mut dev, &secret(), &recovery(), &cheap_options()).expect("format");
    let mut fields = vouch_agent::volume::luks2::json::Fields::new();
    fields.insert("pcrs".into(), serde_json::json!([0, 7]));
    fields.insert("sealed".into(), serde_json::json!("AAECAw=="));
    let tok = Token {
        kind: "vouch-tpm2".into(),
        keyslots: vec![0],
        fields,
    };
    assert_eq!(vol.add_token(&mut dev, &tok).expect("add token"), 0);

    let exported: serde_json::Value = serde_json::from_str(&cryptsetup_ok(&[
        "token",
        "export",
        "--token-id",
        "0",
        path(&img),
    ]))
    .expect("exported token JSON");
    assert_eq!(exported["type"], "vouch-tpm2");
    assert_eq!(exported["keyslots"], serde_json::json!(["0"]));
    assert_eq!(exported["pcrs"], serde_json::json!([0, 7]));
    assert!(cryptsetup_ok(&["luksDump", path(&img)]).contains("vouch-tpm2"));

    let import = write_file(
        dir.path(),
        "tok.json",
        br#"{"type":"other-unlocker","keyslots":["1"],"note":"from cryptsetup"}"#,
    );
    cryptsetup_ok(&[
        "token",
        "import",
        "--json-file",
        path(&import),
        "--token-id",
        "3",
        path(&img),
    ]);
    let reread = Luks2Volume::read(&mut open_rw(&img)).expect("read after import");
    let tokens = reread.tokens();
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[0], (0, tok));
    assert_eq!(tokens[1].0, 3);
    assert_eq!(tokens[1].1.kind, "other-unlocker");
    assert_eq!(tokens[1].1.fields["note"], "from cryptsetup");
    assert!(matches!(
        reread.health,
        vouch_agent::volume::luks2::HeaderHealth::BothValid
    ));
}

/// Vouch formats a detached header (data at offset 0 of a separate file), encrypts data
/// with its engine, and cryptsetup decrypts the data file offline.
fn detached_vouch_data_decrypts_with_cryptsetup(sector_size: u32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let hdr = image(dir.path(), "hdr.img", 0);
    let data = image(dir.path(), "data.img", 4 << 20);
    let opts = FormatOptions {
        data_offset: 0,
        sector_size,
        ..cheap_options()
    };
    let mut hdr_dev = open_rw(&hdr);
    let (vol, key) = format(&mut hdr_dev, &secret(), &recovery(), &opts).expect("format");
    let plain = pattern(4 << 20, u64::from(sector_size));
    let mut buf = plain.clone();
    let seg = vol.data_segment(&key).expect("segment");
    let mut data_dev = open_rw(&data);
    seg.write(&mut data_dev, 0, &mut buf).expect("encrypt data");
    assert_ne!(std::fs::read(&data).expect("read"), plain);

    let secret_file = write_file(dir.path(), "secret", &secret());
    cryptsetup_ok(&[
        "reencrypt",
        "--decrypt",
        "--batch-mode",
        "--force-offline-reencrypt",
        "--header",
        path(&hdr),
        "--key-file",
        path(&secret_file),
        path(&data),
    ]);
    assert!(
        std::fs::read(&data).expect("read") == plain,
        "cryptsetup decrypted other bytes"
    );
}

#[test]
fn vouch_data_decrypts_with_cryptsetup_4096() {
    detached_vouch_data_decrypts_with_cryptsetup(4096);
}

#[test]
fn vouch_data_decrypts_with_cryptsetup_512() {
    detached_vouch_data_decrypts_with_cryptsetup(512);
}

/// Data in an attached-header Vouch volume: the segment is cut out and cryptsetup,
/// given a detached header carrying Vouch's volume key, decrypts it.
#[test]
fn attached_vouch_volume_data_decrypts_with_cryptsetup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = image(dir.path(), "vol.img", (16 << 20) + (2 << 20));
    let mut dev = open_rw(&img);
    let (vol, key) = format(&mut dev, &secret(), &recovery(), &cheap_options()).expect("format");
    let plain = pattern(2 << 20, 99);
    let mut buf = plain.clone();
    vol.data_segment(&key)
        .expect("segment")
        .write(&mut dev, 0, &mut buf)
        .expect("write");
    drop(dev);

    let all = std::fs::read(&img).expect("read image");
    let data = write_file(dir.path(), "data.img", &all[16 << 20..]);
    let vk = write_file(dir.path(), "vk", &key);
    let pass = write_file(dir.path(), "pass", b"pw");
    let det = image(dir.path(), "det.hdr", 16 << 20);
    cryptsetup_ok(&[
        "luksFormat",
        "--type",
        "luks2",
        "--batch-mode",
        "--header",
        path(&det),
        "--volume-key-file",
        path(&vk),
        "--key-size",
        "512",
        "--cipher",
        "aes-xts-plain64",
        "--sector-size",
        "4096",
        "--pbkdf",
        "pbkdf2",
        "--pbkdf-force-iterations",
        "1000",
        "--key-file",
        path(&pass),
        path(&data),
    ]);
    cryptsetup_ok(&[
        "reencrypt",
        "--decrypt",
        "--batch-mode",
        "--force-offline-reencrypt",
        "--header",
        path(&det),
        "--key-file",
        path(&pass),
        path(&data),
    ]);
    assert!(
        std::fs::read(&data).expect("read") == plain,
        "cryptsetup decrypted other bytes"
    );
}
