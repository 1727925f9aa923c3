//! Bad input and faults: corrupt headers, wrong secrets, truncated devices, tokens that
//! name missing keyslots. Every case gives a typed error and writes nothing.

mod luks_common;

use luks_common::*;
use sha2::{Digest, Sha256};
use vouch_agent::volume::device::DeviceError;
use vouch_agent::volume::luks2::header::{self, HeaderCopy, HeaderError};
use vouch_agent::volume::luks2::json::MetadataError;
use vouch_agent::volume::luks2::keyslot::KeyslotError;
use vouch_agent::volume::luks2::read::ReadError;
use vouch_agent::volume::luks2::token::{Token, TokenError};
use vouch_agent::volume::luks2::{format, HeaderHealth, Luks2Error, Luks2Volume};
use zeroize::Zeroizing;

fn file_hash(p: &std::path::Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(p).expect("read")).to_vec()
}

fn vouch_image(dir: &std::path::Path) -> (std::path::PathBuf, Zeroizing<Vec<u8>>) {
    let img = image(dir, "vol.img", 17 << 20);
    let (_, key) =
        format(&mut open_rw(&img), &secret(), &recovery(), &cheap_options()).expect("format");
    (img, key)
}

fn flip(p: &std::path::Path, at: u64) {
    let mut bytes = std::fs::read(p).expect("read");
    bytes[at as usize] ^= 0x40;
    std::fs::write(p, bytes).expect("write");
}

#[test]
fn corrupt_primary_uses_secondary_says_so_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (img, key) = vouch_image(dir.path());
    flip(&img, 4096 + 10); // inside the primary's JSON area
    let before = file_hash(&img);
    let mut dev = open_rw(&img);
    let vol = Luks2Volume::read(&mut dev).expect("secondary header is usable");
    assert!(
        matches!(
            vol.health,
            HeaderHealth::PrimaryCorrupt(ReadError::Header(HeaderError::Checksum { offset: 0 }))
        ),
        "{:?}",
        vol.health
    );
    let opened = vol.open(&mut dev, &secret(), None).expect("open");
    assert_eq!(opened.volume_key, key);
    drop(dev);
    assert_eq!(
        file_hash(&img),
        before,
        "reading and opening must not write"
    );

    // The next header update repairs the primary; cryptsetup then reads it normally.
    let mut dev = open_rw(&img);
    let mut vol = Luks2Volume::read(&mut dev).expect("read");
    vol.add_token(
        &mut dev,
        &Token {
            kind: "vouch-tpm2".into(),
            keyslots: vec![0],
            fields: Default::default(),
        },
    )
    .expect("token");
    let again = Luks2Volume::read(&mut dev).expect("read");
    assert!(
        matches!(again.health, HeaderHealth::BothValid),
        "{:?}",
        again.health
    );
    cryptsetup_ok(&["luksDump", path(&img)]);
}

#[test]
fn corrupt_secondary_is_reported_and_primary_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (img, _) = vouch_image(dir.path());
    flip(&img, 16384 + 300);
    let vol = Luks2Volume::read(&mut open_rw(&img)).expect("primary usable");
    assert!(
        matches!(vol.health, HeaderHealth::SecondaryCorrupt(_)),
        "{:?}",
        vol.health
    );
}

#[test]
fn both_headers_corrupt_is_a_typed_error_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (img, _) = vouch_image(dir.path());
    flip(&img, 0); // primary magic
    flip(&img, 16384 + 5000); // secondary JSON
    let before = file_hash(&img);
    let err = Luks2Volume::read(&mut open_rw(&img)).expect_err("must fail");
    match &err {
        Luks2Error::BothHeadersCorrupt { primary, secondary } => {
            assert!(matches!(
                primary,
                ReadError::Header(HeaderError::Magic { offset: 0, .. })
            ));
            assert!(matches!(
                secondary,
                ReadError::Header(HeaderError::Checksum { offset: 16384 })
            ));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("both LUKS2 headers are unusable"));
    assert_eq!(file_hash(&img), before);
}

#[test]
fn cryptsetup_volume_with_corrupt_primary_opens_from_secondary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = image(dir.path(), "cs.img", 20 << 20);
    let key_file = write_file(dir.path(), "key", b"pass");
    cryptsetup_ok(&[
        "luksFormat",
        "--type",
        "luks2",
        "--batch-mode",
        "--pbkdf",
        "pbkdf2",
        "--pbkdf-force-iterations",
        "1000",
        "--key-file",
        path(&key_file),
        path(&img),
    ]);
    let expected = dumped_volume_key(&img, &key_file);
    flip(&img, 100);
    let before = file_hash(&img);
    let mut dev = open_rw(&img);
    let vol = Luks2Volume::read(&mut dev).expect("read");
    assert!(matches!(vol.health, HeaderHealth::PrimaryCorrupt(_)));
    let opened = vol
        .open(&mut dev, &Zeroizing::new(b"pass".to_vec()), None)
        .expect("open");
    assert_eq!(opened.volume_key.to_vec(), expected);
    drop(dev);
    assert_eq!(file_hash(&img), before);
}

#[test]
fn wrong_secret_and_wrong_keyslot_are_typed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (img, _) = vouch_image(dir.path());
    let mut dev = open_rw(&img);
    let vol = Luks2Volume::read(&mut dev).expect("read");
    let wrong = Zeroizing::new(vec![0u8; 32]);
    assert!(matches!(
        vol.open(&mut dev, &wrong, Some(0)),
        Err(Luks2Error::WrongSecret(0))
    ));
    assert!(matches!(
        vol.open(&mut dev, &wrong, None),
        Err(Luks2Error::NoKeyslotOpened(ref v)) if v == &[0, 1]
    ));
    assert!(matches!(
        vol.open(&mut dev, &wrong, Some(9)),
        Err(Luks2Error::NoSuchKeyslot(9))
    ));
}

#[test]
fn truncated_devices_give_typed_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (img, key) = vouch_image(dir.path());
    let full = std::fs::read(&img).expect("read");

    // Headers intact, keyslot areas cut off.
    let cut = write_file(dir.path(), "cut.img", &full[..100_000]);
    let mut dev = open_rw(&cut);
    let vol = Luks2Volume::read(&mut dev).expect("headers fit");
    let err = vol
        .open(&mut dev, &recovery(), Some(1))
        .expect_err("area missing");
    assert!(
        matches!(
            err,
            Luks2Error::Unlock {
                keyslot: 1,
                source: KeyslotError::Read(DeviceError::BeyondEnd {
                    offset: 290_816,
                    ..
                })
            }
        ),
        "{err:?}"
    );
    // Data segment empty: reading a sector is refused.
    let seg = vol.data_segment(&key).expect("segment");
    let mut buf = vec![0u8; 4096];
    assert!(seg.read(&mut dev, 0, &mut buf).is_err());

    // Not even the primary header fits.
    let tiny = write_file(dir.path(), "tiny.img", &full[..10_000]);
    let err = Luks2Volume::read(&mut open_rw(&tiny)).expect_err("too short");
    assert!(
        matches!(
            err,
            Luks2Error::BothHeadersCorrupt {
                primary: ReadError::Device(DeviceError::BeyondEnd { .. }),
                ..
            }
        ),
        "{err:?}"
    );
}

/// Rewrites both header copies with edited JSON (valid checksums, bad references).
fn rewrite_json(img: &std::path::Path, edit: impl Fn(&mut serde_json::Value)) {
    let mut bytes = std::fs::read(img).expect("read");
    for (copy, offset) in [
        (HeaderCopy::Primary, 0usize),
        (HeaderCopy::Secondary, 16384),
    ] {
        let (hdr, json) =
            header::parse(&bytes[offset..offset + 16384], copy, offset as u64).expect("parse");
        let mut v: serde_json::Value = serde_json::from_str(&json).expect("json");
        edit(&mut v);
        let out = header::serialize(&hdr, copy, &v.to_string()).expect("serialize");
        bytes[offset..offset + 16384].copy_from_slice(&out);
    }
    std::fs::write(img, bytes).expect("write");
}

#[test]
fn token_naming_a_missing_keyslot_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (img, _) = vouch_image(dir.path());

    // Through the API: refused, nothing written.
    let before = file_hash(&img);
    let mut dev = open_rw(&img);
    let mut vol = Luks2Volume::read(&mut dev).expect("read");
    let err = vol
        .add_token(
            &mut dev,
            &Token {
                kind: "vouch-tpm2".into(),
                keyslots: vec![5],
                fields: Default::default(),
            },
        )
        .expect_err("missing keyslot");
    assert!(
        matches!(err, Luks2Error::Token(TokenError::MissingKeyslot(5))),
        "{err:?}"
    );
    assert!(vol.tokens().is_empty());
    drop(dev);
    assert_eq!(file_hash(&img), before);

    // On disk (checksums valid): both copies rejected with the reason; cryptsetup
    // rejects the header too.
    rewrite_json(&img, |v| {
        v["tokens"] = serde_json::json!({"0": {"type": "vouch-tpm2", "keyslots": ["5"]}});
    });
    let err = Luks2Volume::read(&mut open_rw(&img)).expect_err("bad token");
    assert!(
        matches!(
            err,
            Luks2Error::BothHeadersCorrupt {
                primary: ReadError::Metadata(MetadataError::TokenKeyslot {
                    token: 0,
                    keyslot: 5
                }),
                secondary: ReadError::Metadata(MetadataError::TokenKeyslot {
                    token: 0,
                    keyslot: 5
                }),
            }
        ),
        "{err:?}"
    );
    assert!(!cryptsetup(&["luksDump", path(&img)]).status.success());
}

#[test]
fn interrupted_update_uses_the_newer_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (img, _) = vouch_image(dir.path());
    let old = std::fs::read(&img).expect("read");
    let mut dev = open_rw(&img);
    let mut vol = Luks2Volume::read(&mut dev).expect("read");
    vol.add_token(
        &mut dev,
        &Token {
            kind: "vouch-tpm2".into(),
            keyslots: vec![0],
            fields: Default::default(),
        },
    )
    .expect("token");
    drop(dev);
    // Simulate a crash after the secondary was written: put the old primary back.
    let mut bytes = std::fs::read(&img).expect("read");
    bytes[..16384].copy_from_slice(&old[..16384]);
    std::fs::write(&img, bytes).expect("write");
    let vol = Luks2Volume::read(&mut open_rw(&img)).expect("read");
    assert!(matches!(
        vol.health,
        HeaderHealth::Diverged {
            primary_seqid: 1,
            secondary_seqid: 2
        }
    ));
    assert_eq!(vol.tokens().len(), 1);
}
