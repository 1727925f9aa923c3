//! Malformed and unusual input: every file in shared/testdata/eventlogs/edge gives either a
//! correct result or a clean error naming the offset, and truncated or corrupted real logs never
//! panic.

mod eventlog_support;

use eventlog_support::*;
use vouch_attest::eventlog::{EventLog, Format, ParseError};
use vouch_attest::HashAlg;

fn edge(name: &str) -> Vec<u8> {
    let p = eventlogs_dir().join("edge").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn empty_file_is_rejected() {
    let bytes = edge("keylime_mb_binary_bios_measurements-empty.bin");
    assert_eq!(EventLog::parse(&bytes).unwrap_err(), ParseError::Empty);
}

#[test]
fn ascii_garbage_is_rejected_with_offset() {
    let bytes = edge("keylime_mb_binary_bios_measurements-bogus.bin");
    let err = EventLog::parse(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            ParseError::DataTooLong {
                index: 0,
                offset: 28,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("byte offset 28"), "{err}");
}

#[test]
fn lone_startup_locality_event_parses() {
    let bytes = edge("goattest_short_no_action.bin");
    let log = EventLog::parse(&bytes).unwrap();
    assert_eq!(log.format, Format::Tcg12Sha1);
    assert_eq!(log.events.len(), 1);
    assert_eq!(log.startup_locality, Some(3));
    assert!(log.replay().is_empty());
}

#[test]
fn tdx_ccel_log_padded_with_ff_parses() {
    let bytes = edge("goeventlog_ccel_cos113_intel_tdx_padded.bin");
    let log = EventLog::parse(&bytes).unwrap();
    assert_eq!(log.format, Format::CryptoAgile);
    assert_eq!(log.banks(), [HashAlg::Sha384]);
    assert_eq!(log.events.len(), 44);
    assert!(log.trailing_padding > 200_000, "{}", log.trailing_padding);
    let replay = log.replay();
    let pcrs: Vec<u32> = replay
        .bank(HashAlg::Sha384)
        .unwrap()
        .keys()
        .copied()
        .collect();
    assert_eq!(pcrs, [1, 2, 3]); // TDX measurement-register indexes (RTMR0..2 + 1)
    let st = log.boot_state();
    assert_eq!(st.kernel_cmdlines.len(), 1);
}

#[test]
fn minimal_four_bank_log_parses() {
    let bytes = edge("t2t_event.bin");
    let log = EventLog::parse(&bytes).unwrap();
    assert_eq!(
        log.banks(),
        [
            HashAlg::Sha1,
            HashAlg::Sha256,
            HashAlg::Sha384,
            HashAlg::Sha512
        ]
    );
    assert_eq!(log.events.len(), 2);
    let yaml =
        expected_yaml(&eventlogs_dir().join("edge/t2t_event.bin.upstream_tpm2_eventlog.yaml"));
    let replay = log.replay();
    for (alg, pcrs) in yaml {
        for (pcr, v) in pcrs {
            assert_eq!(replay.get(alg, pcr), Some(&v[..]), "{alg} PCR{pcr}");
        }
    }
}

/// The Spec ID event says eventSize 37, but its vendorInfoSize (4) needs 4 more bytes than that:
/// the structure is malformed. Upstream tpm2-tools reads past the event; we reject it.
#[test]
fn spec_id_vendor_info_past_event_size_is_rejected() {
    let bytes = edge("t2t_specid-vendordata.bin");
    let err = EventLog::parse(&bytes).unwrap_err();
    assert_eq!(
        err,
        ParseError::Truncated {
            index: 0,
            event_offset: 0,
            field: "vendorInfo",
            offset: 69,
            needed: 4,
            available: 0
        }
    );
}

#[test]
fn every_unlabeled_log_parses_and_decodes() {
    let files = bins(&eventlogs_dir().join("unlabeled"));
    assert_eq!(files.len(), 13);
    for p in files {
        let bytes = std::fs::read(&p).unwrap();
        let log = EventLog::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(!log.replay().is_empty(), "{}", p.display());
        assert!(log.boot_state().decode_errors.is_empty(), "{}", p.display());
    }
}

/// Every prefix of two real logs (one per layout) and a sweep of single-byte corruptions parse
/// or fail cleanly; whatever parses also replays, decodes, checks and extracts without panic.
#[test]
fn truncations_and_corruptions_never_panic() {
    for name in [
        "t2t_event-sd-boot-fedora37.bin",
        "goattest_windows_gcp_shielded_vm.bin",
    ] {
        let bytes = read_log(name);
        let mut ok = 0;
        let mut err = 0;
        let step = (bytes.len() / 600).max(1);
        let full = EventLog::parse(&bytes).unwrap();
        let boundaries: Vec<usize> = full.events.iter().skip(1).map(|e| e.offset).collect();
        for len in (0..bytes.len()).step_by(step).chain(boundaries) {
            match EventLog::parse(&bytes[..len]) {
                Ok(log) => {
                    ok += 1;
                    exercise(&log);
                }
                Err(e) => {
                    err += 1;
                    assert!(!e.to_string().is_empty());
                }
            }
        }
        assert!(ok > 0 && err > 0, "{name}: {ok} ok, {err} errors");
        for i in (0..bytes.len()).step_by((bytes.len() / 400).max(1)) {
            let mut m = bytes.clone();
            m[i] ^= 0xA5;
            if let Ok(log) = EventLog::parse(&m) {
                exercise(&log);
            }
        }
    }
}

fn exercise(log: &EventLog<'_>) {
    let _ = log.replay();
    let _ = log.boot_state();
    for ev in &log.events {
        let _ = ev.decode();
        let _ = ev.check_digest();
    }
    let _ = serde_json::to_string(log).unwrap();
}

/// A crypto-agile log declaring an algorithm this crate does not know (id 0x7777, 3-byte
/// digests): its digests are parsed by the size the Spec ID event declares, but not replayed.
#[test]
fn unknown_bank_is_parsed_by_declared_size_but_not_replayed() {
    let mut spec = b"Spec ID Event03\0".to_vec();
    spec.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 2]); // class, minor, major, errata, uintn
    spec.extend_from_slice(&2u32.to_le_bytes());
    spec.extend_from_slice(&[0x0B, 0x00, 32, 0]); // sha256, 32
    spec.extend_from_slice(&[0x77, 0x77, 3, 0]); // unknown, 3
    spec.push(0); // vendorInfoSize
    let mut log = Vec::new();
    log.extend_from_slice(&0u32.to_le_bytes());
    log.extend_from_slice(&3u32.to_le_bytes()); // EV_NO_ACTION
    log.extend_from_slice(&[0u8; 20]);
    log.extend_from_slice(&(spec.len() as u32).to_le_bytes());
    log.extend_from_slice(&spec);
    let data = [0u8; 4];
    let sha = HashAlg::Sha256.hash(&data).unwrap();
    log.extend_from_slice(&4u32.to_le_bytes()); // PCR4
    log.extend_from_slice(&4u32.to_le_bytes()); // EV_SEPARATOR
    log.extend_from_slice(&2u32.to_le_bytes());
    log.extend_from_slice(&[0x0B, 0x00]);
    log.extend_from_slice(&sha);
    log.extend_from_slice(&[0x77, 0x77, 0xAA, 0xBB, 0xCC]);
    log.extend_from_slice(&4u32.to_le_bytes());
    log.extend_from_slice(&data);

    let parsed = EventLog::parse(&log).unwrap();
    assert_eq!(parsed.banks(), [HashAlg::Sha256, HashAlg::Unknown(0x7777)]);
    let ev = &parsed.events[1];
    assert_eq!(
        ev.digests.get(HashAlg::Unknown(0x7777)),
        Some(&[0xAA, 0xBB, 0xCC][..])
    );
    let replay = parsed.replay();
    assert!(replay.bank(HashAlg::Unknown(0x7777)).is_none());
    let expected = HashAlg::Sha256.extend(&[0u8; 32], &sha).unwrap();
    assert_eq!(replay.get(HashAlg::Sha256, 4), Some(&expected[..]));
    assert!(matches!(
        ev.check_digest(),
        vouch_attest::eventlog::DigestCheck::Verified { .. }
    ));

    // An event using an algorithm the Spec ID event does not declare is an error with offset.
    let mut bad = log.clone();
    let alg_at = bad.len() - 4 - 4 - 5 - 34; // first digest's algorithm id
    bad[alg_at] = 0x0C; // sha384, undeclared
    let err = EventLog::parse(&bad).unwrap_err();
    assert!(
        matches!(err, ParseError::UndeclaredAlgorithm { alg: 0x000C, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&format!("byte offset {alg_at}")),
        "{err}"
    );
}

/// Found by the event-log fuzz target: an EV_IPL event whose data is a bare GRUB command-line
/// prefix (no text after it) made the digest check panic (`windows(0)`).
#[test]
fn a_bare_grub_prefix_is_checked_without_a_panic() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/eventlog/empty_grub_cmdline.bin");
    let bytes = std::fs::read(&path).unwrap();
    if let Ok(log) = EventLog::parse(&bytes) {
        exercise(&log);
    }
    // The same by construction: a TCG 1.2 log, one EV_IPL (0x0D) in PCR 8 holding only the
    // prefix, its SHA-1 digest over that data.
    let data = b"grub_kernel_cmdline ";
    let mut log = Vec::new();
    log.extend_from_slice(&8u32.to_le_bytes());
    log.extend_from_slice(&0x0Du32.to_le_bytes());
    log.extend_from_slice(&HashAlg::Sha1.hash(data).unwrap());
    log.extend_from_slice(&(data.len() as u32).to_le_bytes());
    log.extend_from_slice(data);
    let parsed = EventLog::parse(&log).unwrap();
    exercise(&parsed);
    assert_eq!(parsed.boot_state().kernel_cmdlines, vec![String::new()]);
}

/// Found by the event-log fuzz target: an event whose digest list names the sha256 bank twice.
/// The full replay extends with both (as TPM2_PCR_Extend does with each digest it is given);
/// `match_quoted`'s replay of the quoted PCRs must do the same, so a log matches its own replay.
#[test]
fn a_repeated_bank_in_a_digest_list_replays_the_same_both_ways() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/eventlog/repeated_digest.bin");
    let bytes = std::fs::read(&path).unwrap();
    let log = EventLog::parse(&bytes).unwrap();
    let replay = log.replay();
    for (bank, pcrs) in replay.banks() {
        let list: Vec<u32> = pcrs.keys().copied().collect();
        let m = vouch_attest::eventlog::match_quoted(&log, &replay, bank, &list).unwrap();
        assert!(m.matched && m.workaround.is_none(), "{m:?}");
    }
}
