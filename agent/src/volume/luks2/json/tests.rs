//! Metadata parsing of cryptsetup's JSON and reference validation.

use super::*;

/// JSON written by cryptsetup 2.6.1 `luksFormat --type luks2 --pbkdf pbkdf2`.
const CRYPTSETUP_JSON: &str = r#"{"keyslots":{"0":{"type":"luks2","key_size":64,"af":{"type":"luks1","stripes":4000,"hash":"sha256"},"area":{"type":"raw","offset":"32768","size":"258048","encryption":"aes-xts-plain64","key_size":64},"kdf":{"type":"pbkdf2","hash":"sha256","iterations":1000,"salt":"6r7dgKGB0tfyzddIsqANF1JKimBRr/CCso4A3OTKCvk="}}},"tokens":{},"segments":{"0":{"type":"crypt","offset":"16777216","size":"dynamic","iv_tweak":"0","encryption":"aes-xts-plain64","sector_size":4096}},"digests":{"0":{"type":"pbkdf2","keyslots":["0"],"segments":["0"],"hash":"sha256","iterations":1000,"salt":"U7fbNvaM6AT2dAMy3u0k6ZKi4iHHDEyzpwxilxXedHI=","digest":"0EFZRd6w38c9ygwW5KPX6BkZfQpS4OfSbrF9MPpyWDg="}},"config":{"json_size":"12288","keyslots_size":"16744448"}}"#;

#[test]
fn parses_cryptsetup_metadata_and_round_trips() {
    let md = Metadata::parse(CRYPTSETUP_JSON, 16384).expect("parse");
    let ks = &md.keyslots[&Id(0)];
    assert_eq!(ks.area.offset, Dec(32768));
    assert_eq!(ks.area.size, Dec(258048));
    assert_eq!(md.segments[&Id(0)].size, SegmentSize::Dynamic);
    assert_eq!(md.segments[&Id(0)].sector_size, Some(4096));
    let again = Metadata::parse(&md.to_json().expect("json"), 16384).expect("reparse");
    assert_eq!(again, md);
}

#[test]
fn unknown_fields_survive_a_rewrite() {
    let json = CRYPTSETUP_JSON.replace(
        r#""config":{"json_size":"12288""#,
        r#""config":{"flags":["allow-discards"],"json_size":"12288""#,
    );
    let md = Metadata::parse(&json, 16384).expect("parse");
    assert!(md.to_json().expect("json").contains("allow-discards"));
}

#[test]
fn broken_references_are_named() {
    let json = CRYPTSETUP_JSON.replace(
        r#""tokens":{}"#,
        r#""tokens":{"0":{"type":"x","keyslots":["5"]}}"#,
    );
    assert!(matches!(
        Metadata::parse(&json, 16384),
        Err(MetadataError::TokenKeyslot {
            token: 0,
            keyslot: 5
        })
    ));
    let json = CRYPTSETUP_JSON.replace(r#""segments":["0"]"#, r#""segments":["3"]"#);
    assert!(matches!(
        Metadata::parse(&json, 16384),
        Err(MetadataError::DigestSegment {
            digest: 0,
            segment: 3
        })
    ));
    assert!(matches!(
        Metadata::parse(CRYPTSETUP_JSON, 32768),
        Err(MetadataError::JsonSize { .. })
    ));
    let json = CRYPTSETUP_JSON.replace(r#""offset":"32768""#, r#""offset":"1024""#);
    assert!(matches!(
        Metadata::parse(&json, 16384),
        Err(MetadataError::KeyslotArea { keyslot: 0, .. })
    ));
    let json = CRYPTSETUP_JSON.replace(r#""offset":"32768""#, r#""offset":"-1""#);
    assert!(matches!(
        Metadata::parse(&json, 16384),
        Err(MetadataError::Parse(_))
    ));
}
