//! In-memory volume tests: format, reopen, fallbacks and tokens (cryptsetup
//! interoperability is tested in `agent/tests/luks_*.rs`).

use super::*;
use crate::volume::device::MemDevice;

fn cheap() -> FormatOptions {
    FormatOptions {
        recovery_cost: Argon2Cost {
            time: 1,
            memory_kib: 64,
            lanes: 1,
        },
        ..FormatOptions::default()
    }
}

fn secret() -> Zeroizing<Vec<u8>> {
    Zeroizing::new((0..32u8).collect())
}

fn recovery() -> Zeroizing<Vec<u8>> {
    Zeroizing::new(b"correct horse battery staple".to_vec())
}

fn formatted() -> (MemDevice, Zeroizing<Vec<u8>>) {
    let mut dev = MemDevice(vec![0u8; 17 << 20]);
    let (_, key) = format(&mut dev, &secret(), &recovery(), &cheap()).expect("format");
    (dev, key)
}

#[test]
fn format_then_open_with_either_keyslot() {
    let (mut dev, key) = formatted();
    let vol = Luks2Volume::read(&mut dev).expect("read");
    assert!(matches!(vol.health, HeaderHealth::BothValid));
    let a = vol.open(&mut dev, &secret(), None).expect("secret");
    assert_eq!((a.keyslot, a.volume_key.as_slice()), (0, key.as_slice()));
    let b = vol.open(&mut dev, &recovery(), Some(1)).expect("recovery");
    assert_eq!((b.keyslot, b.volume_key.as_slice()), (1, key.as_slice()));
    assert!(matches!(
        vol.open(&mut dev, &recovery(), Some(0)),
        Err(Luks2Error::WrongSecret(0))
    ));
    assert!(matches!(
        vol.open(&mut dev, &Zeroizing::new(b"nope".to_vec()), None),
        Err(Luks2Error::NoKeyslotOpened(ref v)) if v == &[0, 1]
    ));
    assert!(matches!(
        vol.open(&mut dev, &secret(), Some(7)),
        Err(Luks2Error::NoSuchKeyslot(7))
    ));
}

#[test]
fn corrupt_primary_falls_back_to_secondary_without_writing() {
    let (mut dev, key) = formatted();
    dev.0[200] ^= 0xff;
    let before = dev.clone();
    let vol = Luks2Volume::read(&mut dev).expect("read");
    assert!(matches!(vol.health, HeaderHealth::PrimaryCorrupt(_)));
    assert_eq!(
        vol.open(&mut dev, &secret(), None)
            .expect("open")
            .volume_key,
        key
    );
    assert_eq!(dev, before, "reading must not write");
    dev.0[16384 + 5000] ^= 0xff;
    assert!(matches!(
        Luks2Volume::read(&mut dev),
        Err(Luks2Error::BothHeadersCorrupt { .. })
    ));
}

#[test]
fn tokens_are_added_listed_and_checked() {
    let (mut dev, _) = formatted();
    let mut vol = Luks2Volume::read(&mut dev).expect("read");
    let mut fields = super::json::Fields::new();
    fields.insert("pcrs".into(), serde_json::json!([7, 11]));
    let t = token::Token {
        kind: "vouch-tpm2".into(),
        keyslots: vec![0],
        fields,
    };
    assert_eq!(vol.add_token(&mut dev, &t).expect("add"), 0);
    let again = Luks2Volume::read(&mut dev).expect("reread");
    assert_eq!(again.header.seqid, 2);
    assert_eq!(again.tokens(), vec![(0, t.clone())]);
    let missing = token::Token {
        keyslots: vec![3],
        ..t.clone()
    };
    let before = dev.clone();
    assert!(matches!(
        vol.add_token(&mut dev, &missing),
        Err(Luks2Error::Token(token::TokenError::MissingKeyslot(3)))
    ));
    assert_eq!(dev, before, "a refused token must not be written");
    assert_eq!(vol.remove_token(&mut dev, 0).expect("remove"), t);
    assert!(Luks2Volume::read(&mut dev)
        .expect("read")
        .tokens()
        .is_empty());
}

#[test]
fn data_round_trips_through_the_segment() {
    let (mut dev, key) = formatted();
    let vol = Luks2Volume::read(&mut dev).expect("read");
    let seg = vol.data_segment(&key).expect("segment");
    assert_eq!(seg.sectors(17 << 20), 256);
    let plain: Vec<u8> = (0..8192u32).map(|i| (i % 253) as u8).collect();
    let mut buf = plain.clone();
    seg.write(&mut dev, 3, &mut buf).expect("write");
    assert_ne!(&dev.0[(16 << 20) + 3 * 4096..][..8192], plain.as_slice());
    let mut back = vec![0u8; 8192];
    seg.read(&mut dev, 3, &mut back).expect("read");
    assert_eq!(back, plain);
    assert!(matches!(
        seg.read(&mut dev, 255, &mut back),
        Err(SegmentError::OutOfSegment { .. })
    ));
}

#[test]
fn truncated_device_gives_a_typed_error() {
    let (dev, _) = formatted();
    let mut short = MemDevice(dev.0[..40000].to_vec());
    let vol = Luks2Volume::read(&mut short).expect("headers fit");
    assert!(matches!(
        vol.open(&mut short, &secret(), Some(0)),
        Err(Luks2Error::Unlock {
            keyslot: 0,
            source: KeyslotError::Read(DeviceError::BeyondEnd { .. })
        })
    ));
}

#[test]
fn short_secret_is_refused() {
    let mut dev = MemDevice(vec![0u8; 17 << 20]);
    assert!(matches!(
        format(
            &mut dev,
            &Zeroizing::new(vec![1u8; 8]),
            &recovery(),
            &cheap()
        ),
        Err(FormatError::SecretTooShort(8))
    ));
}

#[test]
fn added_keyslots_take_free_ids_and_areas_and_open() {
    use super::add::{add_keyslot, free_area, AddKeyslotError};
    use super::hash::LuksHash;
    use super::kdf::Kdf;
    let (mut dev, key) = formatted();
    let mut vol = Luks2Volume::read(&mut dev).expect("read");
    let kdf = Kdf::Pbkdf2 {
        hash: LuksHash::Sha512,
        iterations: 1000,
    };
    let hdr = vol.header.hdr_size;
    let mut md = vol.metadata.clone();
    // Keyslot 0 removed: its id and area are the first free ones.
    let slot0 = md.keyslots.remove(&json::Id(0)).expect("keyslot 0");
    let new_secret = Zeroizing::new(vec![7u8; 32]);
    let id = add_keyslot(&mut md, &mut dev, hdr, &key, &new_secret, kdf).expect("add");
    assert_eq!(id, 0);
    assert_eq!(md.keyslots[&json::Id(0)].area.offset, slot0.area.offset);
    // The next goes after the last area, at id 2.
    let id = add_keyslot(&mut md, &mut dev, hdr, &key, &recovery(), kdf).expect("add");
    assert_eq!(id, 2);
    let ends: Vec<u64> = md
        .keyslots
        .values()
        .map(|k| k.area.offset.0 + k.area.size.0)
        .collect();
    assert_eq!(md.keyslots[&json::Id(2)].area.offset.0, ends[1]);
    vol.commit(&mut dev, md).expect("write");
    let vol = Luks2Volume::read(&mut dev).expect("reread");
    let opened = vol.open(&mut dev, &new_secret, Some(0)).expect("open 0");
    assert_eq!(opened.volume_key.as_slice(), key.as_slice());
    assert!(vol.open(&mut dev, &recovery(), Some(2)).is_ok());
    // A wrong volume key matches no digest; a full keyslots area has no room.
    let mut md = vol.metadata.clone();
    let wrong = Zeroizing::new(vec![0u8; key.len()]);
    assert!(matches!(
        add_keyslot(&mut md, &mut dev, hdr, &wrong, &recovery(), kdf),
        Err(AddKeyslotError::NoDigest)
    ));
    md.config.keyslots_size = json::Dec(ends[1] + 4096 - 2 * hdr);
    assert_eq!(free_area(&md, hdr, 258_048), None);
    assert!(matches!(
        add_keyslot(&mut md, &mut dev, hdr, &key, &recovery(), kdf),
        Err(AddKeyslotError::NoSpace { .. })
    ));
}
