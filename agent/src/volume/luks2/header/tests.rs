//! Binary header round trip and corruption detection.

use super::*;

fn sample() -> BinaryHeader {
    BinaryHeader {
        hdr_size: 16384,
        seqid: 7,
        label: "vouch".into(),
        checksum_alg: "sha256".into(),
        salt: [0x5a; 64],
        uuid: "01234567-89ab-4cde-8f01-23456789abcd".into(),
        subsystem: "".into(),
        hdr_offset: 0,
    }
}

#[test]
fn serialize_then_parse_round_trips() {
    let h = sample();
    let bytes = serialize(&h, HeaderCopy::Primary, "{\"a\":1}").expect("serialize");
    assert_eq!(bytes.len(), 16384);
    assert_eq!(&bytes[..6], b"LUKS\xba\xbe");
    let (back, json) = parse(&bytes, HeaderCopy::Primary, 0).expect("parse");
    assert_eq!(back, h);
    assert_eq!(json, "{\"a\":1}");
}

#[test]
fn every_corrupted_byte_is_detected() {
    let h = sample();
    let bytes = serialize(&h, HeaderCopy::Primary, "{}").expect("serialize");
    for at in [
        0usize, 7, 20, 30, 80, 110, 170, 260, 450, 470, 4096, 4097, 9000, 16383,
    ] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x01;
        assert!(
            parse(&bad, HeaderCopy::Primary, 0).is_err(),
            "flip at {at} undetected"
        );
    }
}

#[test]
fn secondary_must_sit_at_its_offset() {
    let mut h = sample();
    h.hdr_offset = 16384;
    let bytes = serialize(&h, HeaderCopy::Secondary, "{}").expect("serialize");
    assert!(parse(&bytes, HeaderCopy::Secondary, 16384).is_ok());
    assert_eq!(
        parse(&bytes, HeaderCopy::Secondary, 32768).err(),
        Some(HeaderError::HdrOffset {
            offset: 32768,
            claimed: 16384
        })
    );
    assert!(matches!(
        parse(&bytes, HeaderCopy::Primary, 16384),
        Err(HeaderError::Magic { .. })
    ));
}

#[test]
fn truncated_and_oversized_inputs_are_errors() {
    let bytes = serialize(&sample(), HeaderCopy::Primary, "{}").expect("serialize");
    assert!(matches!(
        parse(&bytes[..5000], HeaderCopy::Primary, 0),
        Err(HeaderError::Truncated { .. })
    ));
    assert!(matches!(
        parse(&bytes[..3], HeaderCopy::Primary, 0),
        Err(HeaderError::Truncated { .. })
    ));
    let big = "x".repeat(12288);
    assert!(matches!(
        serialize(&sample(), HeaderCopy::Primary, &big),
        Err(HeaderError::JsonTooLarge { .. })
    ));
    let mut long = sample();
    long.label = "l".repeat(48);
    assert!(matches!(
        serialize(&long, HeaderCopy::Primary, "{}"),
        Err(HeaderError::FieldTooLong { field: "label", .. })
    ));
}
