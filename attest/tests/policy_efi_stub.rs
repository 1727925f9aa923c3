//! The Linux EFI stub's PCR 9 measurements (EV_EVENT_TAG: kernel command line as LoadOptions,
//! initrd) on a real log: decoded, listed in the boot state, recorded into a policy by digest,
//! and a different command line or initrd is untrusted with the event named.

mod eventlog_support;

use eventlog_support::eventlogs_dir;
use vouch_attest::alg::HashAlg;
use vouch_attest::eventlog::{EventData, EventLog, EventTag, EventType};
use vouch_attest::policy::{evaluate, Evidence, HexBytes, Policy, Rule, Verdict};

fn log_bytes() -> Vec<u8> {
    std::fs::read(eventlogs_dir().join("gtt_gdc-host.bin")).unwrap()
}

fn verdict(policy: &Policy, log: &EventLog<'_>, bank: HashAlg) -> Verdict {
    let replay = log.replay();
    evaluate(
        policy,
        &Evidence {
            log,
            bank,
            pcrs: &replay,
            firmware_version: None,
        },
    )
}

/// (index, tag, sha256) of the log's tagged events.
fn tagged(log: &EventLog<'_>) -> Vec<(usize, EventTag, Vec<u8>)> {
    log.events
        .iter()
        .filter(|e| e.event_type == EventType::EV_EVENT_TAG)
        .filter_map(|e| match e.decode().unwrap() {
            EventData::Tagged { tag: Some(t), .. } => {
                Some((e.index, t, e.digests.get(HashAlg::Sha256)?.to_vec()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn tagged_events_decode_with_their_descriptions() {
    let bytes = log_bytes();
    let log = EventLog::parse(&bytes).unwrap();
    let mut seen = Vec::new();
    for e in log
        .events
        .iter()
        .filter(|e| e.event_type == EventType::EV_EVENT_TAG)
    {
        assert_eq!(e.pcr, 9);
        match e.decode().unwrap() {
            EventData::Tagged {
                id,
                tag,
                description,
            } => seen.push((id, tag, description)),
            other => panic!("event {}: {other:?}", e.index),
        }
    }
    assert_eq!(
        seen,
        vec![
            (
                EventTag::LOAD_OPTIONS_ID,
                Some(EventTag::LoadOptions),
                Some("LOADED_IMAGE::LoadOptions".to_owned())
            ),
            (
                EventTag::INITRD_ID,
                Some(EventTag::Initrd),
                Some("Linux initrd".to_owned())
            ),
        ]
    );
    let st = log.boot_state();
    let tags: Vec<EventTag> = st.efi_stub.iter().map(|m| m.tag).collect();
    assert_eq!(tags, vec![EventTag::LoadOptions, EventTag::Initrd]);
    assert!(st.efi_stub.iter().all(|m| m.digests.contains_key("sha256")));
}

#[test]
fn recorded_digests_trust_the_boot_and_another_cmdline_or_initrd_is_named() {
    let bytes = log_bytes();
    let log = EventLog::parse(&bytes).unwrap();
    let stub = tagged(&log);
    assert_eq!(stub.len(), 2, "{stub:?}");
    let policy = Policy::record(&log, &log.replay());
    let c = policy.kernel_cmdline.clone().unwrap();
    assert_eq!(
        c.load_options_sha256,
        Some(vec![HexBytes(stub[0].2.clone())])
    );
    assert_eq!(
        policy.initrd.clone().unwrap().sha256,
        vec![HexBytes(stub[1].2.clone())]
    );
    let text = policy.to_toml().unwrap();
    assert!(text.contains("load_options_sha256"), "{text}");
    assert_eq!(Policy::from_toml(&text).unwrap(), policy);
    assert!(verdict(&policy, &log, HashAlg::Sha256).trusted);

    // Only the stub rules: another allowed digest than the one measured.
    let mut other = Policy::empty();
    let mut cmdline = c.clone();
    cmdline.exact.clear();
    cmdline.load_options_sha256 = Some(vec![HexBytes(vec![0x11; 32])]);
    other.kernel_cmdline = Some(cmdline);
    other.initrd = Some(vouch_attest::policy::InitrdPolicy {
        sha256: vec![HexBytes(vec![0x22; 32])],
    });
    let v = verdict(&other, &log, HashAlg::Sha256);
    assert!(!v.trusted);
    let rules: Vec<(Rule, Option<usize>, Option<u32>)> = v
        .failures
        .iter()
        .filter(|f| f.rule != Rule::KernelCmdline || f.event_index == Some(stub[0].0))
        .map(|f| (f.rule, f.event_index, f.pcr))
        .collect();
    assert!(
        rules.contains(&(Rule::KernelCmdline, Some(stub[0].0), Some(9))),
        "{:#?}",
        v.failures
    );
    assert!(
        rules.contains(&(Rule::Initrd, Some(stub[1].0), Some(9))),
        "{:#?}",
        v.failures
    );
    let text = v
        .failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        text.contains("kernel command line (EFI stub LoadOptions)"),
        "{text}"
    );
    assert!(text.contains(&hex::encode(&stub[0].2)), "{text}");

    // A log whose trusted bank is not sha256 cannot satisfy the digest rules.
    let v = verdict(&policy, &log, HashAlg::Sha1);
    assert!(v
        .failures
        .iter()
        .any(|f| f.rule == Rule::Initrd && f.detail.contains("authenticated bank is sha1")));
}

#[test]
fn digest_lists_are_length_checked() {
    let bad = "version = 1\n[initrd]\nsha256 = [\"abcd\"]\n";
    let err = Policy::from_toml(bad).unwrap_err().to_string();
    assert!(err.contains("initrd.sha256[0]"), "{err}");
    let bad = "version = 1\n[kernel_cmdline]\nload_options_sha256 = [\"abcd\"]\n";
    let err = Policy::from_toml(bad).unwrap_err().to_string();
    assert!(
        err.contains("kernel_cmdline.load_options_sha256[0]"),
        "{err}"
    );
}
