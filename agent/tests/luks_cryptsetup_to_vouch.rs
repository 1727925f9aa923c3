//! Volumes cryptsetup 2.6 makes, opened by Vouch: pbkdf2, argon2id and argon2i keyslots,
//! 256- and 512-bit keys, 512- and 4096-byte sectors, and data cryptsetup encrypted.

mod luks_common;

use luks_common::*;
use vouch_agent::volume::luks2::Luks2Volume;
use zeroize::Zeroizing;

fn luks_format(img: &std::path::Path, key_file: &std::path::Path, extra: &[&str]) {
    let mut args = vec![
        "luksFormat",
        "--type",
        "luks2",
        "--batch-mode",
        "--key-file",
        path(key_file),
    ];
    args.extend_from_slice(extra);
    args.push(path(img));
    cryptsetup_ok(&args);
}

fn opens_with_key_file(extra: &[&str], key_bits: usize, sector: u32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = image(dir.path(), "cs.img", 20 << 20);
    let pass = b"cryptsetup passphrase".to_vec();
    let key_file = write_file(dir.path(), "key", &pass);
    luks_format(&img, &key_file, extra);
    let expected = dumped_volume_key(&img, &key_file);
    assert_eq!(expected.len() * 8, key_bits);

    let mut dev = open_rw(&img);
    let vol = Luks2Volume::read(&mut dev).expect("read cryptsetup header");
    let opened = vol
        .open(&mut dev, &Zeroizing::new(pass.clone()), None)
        .expect("open with key file contents");
    assert_eq!(opened.keyslot, 0);
    assert_eq!(opened.volume_key.to_vec(), expected);
    let seg = vol.data_segment(&opened.volume_key).expect("segment");
    assert_eq!(seg.sector_size, sector);
    let wrong = vol.open(&mut dev, &Zeroizing::new(b"wrong".to_vec()), None);
    assert!(
        matches!(wrong, Err(vouch_agent::volume::luks2::Luks2Error::NoKeyslotOpened(ref v)) if v == &[0]),
        "{wrong:?}"
    );
}

#[test]
fn pbkdf2_keyslot_512_bit_key_4096_sectors() {
    opens_with_key_file(
        &[
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--sector-size",
            "4096",
        ],
        512,
        4096,
    );
}

#[test]
fn pbkdf2_sha512_keyslot_256_bit_key_512_sectors() {
    opens_with_key_file(
        &[
            "--pbkdf",
            "pbkdf2",
            "--hash",
            "sha512",
            "--pbkdf-force-iterations",
            "1000",
            "--key-size",
            "256",
            "--sector-size",
            "512",
        ],
        256,
        512,
    );
}

#[test]
fn argon2id_keyslot() {
    opens_with_key_file(
        &[
            "--pbkdf",
            "argon2id",
            "--pbkdf-force-iterations",
            "4",
            "--pbkdf-memory",
            "8192",
            "--pbkdf-parallel",
            "2",
        ],
        512,
        4096,
    );
}

#[test]
fn argon2i_keyslot_512_sectors() {
    opens_with_key_file(
        &[
            "--pbkdf",
            "argon2i",
            "--pbkdf-force-iterations",
            "4",
            "--pbkdf-memory",
            "8192",
            "--pbkdf-parallel",
            "1",
            "--sector-size",
            "512",
        ],
        512,
        512,
    );
}

#[test]
fn second_keyslot_added_by_cryptsetup_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = image(dir.path(), "cs.img", 20 << 20);
    let key_file = write_file(dir.path(), "key", b"first");
    let new_file = write_file(dir.path(), "new", b"second passphrase");
    luks_format(
        &img,
        &key_file,
        &["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"],
    );
    cryptsetup_ok(&[
        "luksAddKey",
        "--batch-mode",
        "--pbkdf",
        "pbkdf2",
        "--pbkdf-force-iterations",
        "1000",
        "--key-file",
        path(&key_file),
        "--new-keyfile",
        path(&new_file),
        path(&img),
    ]);
    let mut dev = open_rw(&img);
    let vol = Luks2Volume::read(&mut dev).expect("read");
    let opened = vol
        .open(
            &mut dev,
            &Zeroizing::new(b"second passphrase".to_vec()),
            None,
        )
        .expect("open");
    assert_eq!(opened.keyslot, 1);
    assert_eq!(
        opened.volume_key.to_vec(),
        dumped_volume_key(&img, &key_file)
    );
}

/// cryptsetup encrypts existing plaintext in place (offline reencryption with a
/// reduced device size); Vouch's engine must read the same plaintext back.
fn cryptsetup_encrypted_data_decrypts_with_vouch(sector: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = pattern(40 << 20, 7);
    let img = write_file(dir.path(), "plain.img", &plain);
    let key_file = write_file(dir.path(), "key", b"encrypt me");
    cryptsetup_ok(&[
        "reencrypt",
        "--encrypt",
        "--type",
        "luks2",
        "--batch-mode",
        "--force-offline-reencrypt",
        "--reduce-device-size",
        "32M",
        "--sector-size",
        sector,
        "--pbkdf",
        "pbkdf2",
        "--pbkdf-force-iterations",
        "1000",
        "--key-file",
        path(&key_file),
        path(&img),
    ]);
    let mut dev = open_rw(&img);
    let vol = Luks2Volume::read(&mut dev).expect("read");
    let opened = vol
        .open(&mut dev, &Zeroizing::new(b"encrypt me".to_vec()), None)
        .expect("open");
    let seg = vol.data_segment(&opened.volume_key).expect("segment");
    assert_eq!(seg.sector_size.to_string(), sector);
    // The device lost 32 MiB at its end; what remains of the plaintext (8 MiB) now sits
    // encrypted in the data segment, which starts at 16 MiB.
    let kept = 8 << 20;
    let mut buf = vec![0u8; kept];
    seg.read(&mut dev, 0, &mut buf).expect("decrypt");
    assert!(
        buf == plain[..kept],
        "decrypted data differs from the original plaintext"
    );
}

#[test]
fn cryptsetup_encrypted_data_decrypts_with_vouch_4096() {
    cryptsetup_encrypted_data_decrypts_with_vouch("4096");
}

#[test]
fn cryptsetup_encrypted_data_decrypts_with_vouch_512() {
    cryptsetup_encrypted_data_decrypts_with_vouch("512");
}
