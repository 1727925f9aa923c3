//! The server's IMA appraisal per report (`vouch_fleet::serve::ima`), on the real kraemr VM
//! list sent in reports: the state continues from the registry, a failing entry is named and
//! stays a reason for the rest of the boot, a new boot starts over, missing or unvouched
//! evidence fails closed. (The quoted PCR 10 is given here; `serve_ima.rs` quotes it from a
//! swtpm.)

use std::io::Write;
use vouch_attest::ima::binary::parse_entry;
use vouch_attest::ima::{ReplayState, RuntimePolicy, IMA_PCR};
use vouch_attest::protocol::{AttestationReport, ImaEvidence};
use vouch_attest::HashAlg;
use vouch_fleet::registry::Registry;
use vouch_fleet::serve::ima::{appraise, challenge_offset, ImaSetup};

#[path = "../../testsupport/testdata.rs"]
mod testdata;

struct List {
    bytes: Vec<u8>,
    /// (offset, len) of every entry.
    spans: Vec<(usize, usize)>,
    /// PCR 10 after each entry.
    values: Vec<Vec<u8>>,
}

fn list() -> List {
    let bytes =
        std::fs::read(testdata::ima_dir().join("kraemr_vm_binary_runtime_measurements_sha256"))
            .unwrap();
    let mut spans = Vec::new();
    let mut values = Vec::new();
    let mut s = ReplayState::new(HashAlg::Sha256, IMA_PCR).unwrap();
    let mut off = 0;
    while off < bytes.len() {
        let (e, used) = parse_entry(&bytes[off..], 32).unwrap().unwrap();
        s.extend(&e, used as u64).unwrap();
        spans.push((off, used));
        values.push(s.value.clone());
        off += used;
    }
    List {
        bytes,
        spans,
        values,
    }
}

fn report(l: &List, from: usize, to: usize) -> AttestationReport {
    let start = l.spans.get(from).map_or(l.bytes.len(), |s| s.0);
    let end = if to == 0 {
        start
    } else {
        l.spans[to - 1].0 + l.spans[to - 1].1
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&l.bytes[start..end]).unwrap();
    AttestationReport {
        nonce: vec![0; 32],
        quote: Vec::new(),
        signature: Vec::new(),
        pcrs: serde_json::json!({}),
        eventlog_gz: None,
        eventlog_from: None,
        ima: Some(ImaEvidence {
            offset: start as u64,
            hash_len: 32,
            entries_gz: gz.finish().unwrap(),
            more: false,
        }),
    }
}

fn setup(dir: &std::path::Path, drop_path: Option<&str>) -> ImaSetup {
    let l = list();
    let entries: Vec<_> = l
        .spans
        .iter()
        .map(|(o, _)| parse_entry(&l.bytes[*o..], 32).unwrap().unwrap().0)
        .collect();
    let (mut p, _) = RuntimePolicy::from_entries(&entries);
    p.excludes.push("/root/\\.local/share/nautilus/".into());
    if let Some(d) = drop_path {
        p.digests.remove(d);
    }
    let path = dir.join("runtime-policy.json");
    std::fs::write(&path, p.to_json().unwrap()).unwrap();
    ImaSetup::load(&path)
}

#[test]
fn reports_continue_from_the_registry_and_a_failure_stays_for_the_boot() {
    let dir = tempfile::tempdir().unwrap();
    let l = list();
    let entries_500 = parse_entry(&l.bytes[l.spans[500].0..], 32)
        .unwrap()
        .unwrap()
        .0;
    let setup = setup(dir.path(), Some(&entries_500.name));
    assert!(setup.policy.is_ok());
    let reg = Registry::open(&dir.path().join("state")).unwrap();
    let dev = "d1";
    let mut from = 0;
    let mut reasons_seen = Vec::new();
    for to in [300, 1000, 2500, 4289] {
        let stored = reg.ima_state(dev).unwrap();
        assert_eq!(
            challenge_offset(stored.as_ref(), "boot-1"),
            l.spans[from].0 as u64
        );
        let out = appraise(
            &setup,
            stored.as_ref(),
            "boot-1",
            &report(&l, from, to),
            Some(&l.values[to - 1]),
            &[],
        );
        reasons_seen.push(out.reasons.clone());
        reg.set_ima_state(dev, out.store.as_ref().unwrap()).unwrap();
        from = to;
    }
    assert!(reasons_seen[0].is_empty(), "{:?}", reasons_seen[0]);
    // Entry 500 is not in the policy: named in the report that carried it...
    let r = &reasons_seen[1];
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].check, "ima.not_in_policy");
    assert!(r[0].detail.contains(&entries_500.name), "{r:?}");
    assert!(r[0].detail.contains("(entry 500)"), "{r:?}");
    // ...and in every later one of the same boot.
    for r in &reasons_seen[2..] {
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].check, "ima.earlier");
        assert!(r[0].detail.contains(&entries_500.name));
    }
    let stored = reg.ima_state(dev).unwrap().unwrap();
    assert_eq!(stored.state.entries, 4289);
    assert_eq!(stored.state.offset, l.bytes.len() as u64);
    // A new boot starts over at offset 0 with no earlier failures.
    assert_eq!(challenge_offset(Some(&stored), "boot-2"), 0);
    let out = appraise(
        &setup,
        Some(&stored),
        "boot-2",
        &report(&l, 0, 300),
        Some(&l.values[299]),
        &[],
    );
    assert!(out.reasons.is_empty(), "{:?}", out.reasons);
    assert_eq!(out.store.unwrap().state.entries, 300);
}

#[test]
fn missing_or_unvouched_evidence_and_a_wrong_pcr_fail_closed() {
    let dir = tempfile::tempdir().unwrap();
    let l = list();
    let setup = setup(dir.path(), None);
    let check = |reasons: &[vouch_fleet::serve::verifier::Reason]| {
        reasons.iter().map(|r| r.check.clone()).collect::<Vec<_>>()
    };
    let mut r = report(&l, 0, 10);
    let out = appraise(&setup, None, "b", &r, None, &[]);
    assert_eq!(check(&out.reasons), ["ima.not_evaluated"]);
    assert_eq!(out.store, None);
    let out = appraise(&setup, None, "b", &r, Some(&l.values[3][..]), &[]);
    // The quote saw entry 3's state: entries 0-3 accepted, the rest sent again next time.
    assert!(out.reasons.is_empty(), "{:?}", out.reasons);
    assert_eq!(out.store.unwrap().state.entries, 4);
    let out = appraise(&setup, None, "b", &r, Some(&[9u8; 32][..]), &[]);
    assert_eq!(check(&out.reasons), ["ima.pcr10"]);
    r.ima = None;
    let out = appraise(&setup, None, "b", &r, Some(&l.values[9][..]), &[]);
    assert_eq!(check(&out.reasons), ["ima.missing"]);
    let broken = ImaSetup::load(&dir.path().join("nonexistent.json"));
    let out = appraise(
        &broken,
        None,
        "b",
        &report(&l, 0, 10),
        Some(&l.values[9][..]),
        &[],
    );
    assert_eq!(check(&out.reasons), ["ima.policy"]);
}

fn run(cmd: &mut std::process::Command) -> Vec<u8> {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

fn chunk_report(bytes: &[u8], offset: u64) -> AttestationReport {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    AttestationReport {
        nonce: vec![0; 32],
        quote: Vec::new(),
        signature: Vec::new(),
        pcrs: serde_json::json!({}),
        eventlog_gz: None,
        eventlog_from: None,
        ima: Some(ImaEvidence {
            offset,
            hash_len: 20,
            entries_gz: gz.finish().unwrap(),
            more: false,
        }),
    }
}

#[test]
fn a_key_loaded_in_one_report_verifies_a_signature_in_a_later_one() {
    use vouch_attest::ima::binary::encode_entry;
    use vouch_attest::ima::{Entry, FileDigest, Template};
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let s = |p: &std::path::Path| p.to_string_lossy().into_owned();
    run(std::process::Command::new("openssl").args([
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
        "/CN=vouch test",
        "-days",
        "2",
    ]));
    std::fs::write(d("app"), b"signed application").unwrap();
    run(std::process::Command::new("evmctl").args([
        "ima_sign",
        "--sigfile",
        "--hashalgo",
        "sha256",
        "--key",
        &s(&d("k.pem")),
        &s(&d("app")),
    ]));
    let cert = std::fs::read(d("c.der")).unwrap();
    let sig = std::fs::read(d("app.sig")).unwrap();
    let fd = |v: Vec<u8>| FileDigest {
        alg: "sha256".into(),
        value: v,
    };
    let cert_digest = HashAlg::Sha256.hash(&cert).unwrap();
    let key_entry = Entry::measured(
        Template::ImaBuf,
        fd(cert_digest.clone()),
        ".ima",
        &cert,
        HashAlg::Sha1,
    )
    .unwrap();
    let app = HashAlg::Sha256
        .hash(&std::fs::read(d("app")).unwrap())
        .unwrap();
    let app_entry = Entry::measured(
        Template::ImaSig,
        fd(app),
        "/usr/bin/app",
        &sig,
        HashAlg::Sha1,
    )
    .unwrap();
    let mut policy = RuntimePolicy::empty();
    policy
        .keyrings
        .insert(".ima".into(), vec![hex::encode(&cert_digest)]);
    let path = d("p.json");
    std::fs::write(&path, policy.to_json().unwrap()).unwrap();
    let setup = ImaSetup::load(&path);

    let mut pcr = ReplayState::new(HashAlg::Sha256, IMA_PCR).unwrap();
    let first = encode_entry(&key_entry);
    pcr.extend(&key_entry, first.len() as u64).unwrap();
    let out = appraise(
        &setup,
        None,
        "b",
        &chunk_report(&first, 0),
        Some(&pcr.value),
        &[],
    );
    assert!(out.reasons.is_empty(), "{:?}", out.reasons);
    let stored = out.store.unwrap();
    assert_eq!(stored.keys, vec![cert.clone()]);
    // The next report: the signed file only, its key from the earlier report.
    let second = encode_entry(&app_entry);
    pcr.extend(&app_entry, second.len() as u64).unwrap();
    let report = chunk_report(&second, first.len() as u64);
    let out = appraise(&setup, Some(&stored), "b", &report, Some(&pcr.value), &[]);
    assert!(out.reasons.is_empty(), "{:?}", out.reasons);
    // Without the carried key the same report fails naming the file.
    let mut forgot = stored.clone();
    forgot.keys.clear();
    let out = appraise(&setup, Some(&forgot), "b", &report, Some(&pcr.value), &[]);
    assert_eq!(out.reasons.len(), 1, "{:?}", out.reasons);
    assert_eq!(out.reasons[0].check, "ima.not_in_policy");
    assert!(out.reasons[0].detail.contains("/usr/bin/app"));
}

#[test]
fn a_long_list_comes_in_parts_and_is_verified_by_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let l = list();
    let setup = setup(dir.path(), None);
    let last = l.values.last().unwrap().clone();
    let mut r = report(&l, 0, 1500);
    r.ima.as_mut().unwrap().more = true;
    let out = appraise(&setup, None, "b", &r, Some(&last), &[]);
    assert!(out.incomplete);
    let checks: Vec<_> = out.reasons.iter().map(|r| r.check.as_str()).collect();
    assert_eq!(checks, ["ima.incomplete"]);
    let stored = out.store.unwrap();
    assert_eq!(stored.state.entries, 1500);
    let out = appraise(
        &setup,
        Some(&stored),
        "b",
        &report(&l, 1500, 4289),
        Some(&last),
        &[],
    );
    assert!(!out.incomplete);
    assert!(out.reasons.is_empty(), "{:?}", out.reasons);
    assert_eq!(out.store.unwrap().state.entries, 4289);
}

/// The sha256 PCRs of `kraemr_vm_pcrs`.
fn kraemr_pcrs() -> vouch_attest::PcrBanks {
    let text = std::fs::read_to_string(testdata::ima_dir().join("kraemr_vm_pcrs")).unwrap();
    let mut banks = vouch_attest::PcrBanks::new();
    let mut in_sha256 = false;
    for line in text.lines() {
        let t = line.trim();
        if t.ends_with(':') {
            in_sha256 = t == "sha256:";
            continue;
        }
        if let (true, Some((i, v))) = (in_sha256, t.split_once(':')) {
            let v = hex::decode(v.trim().trim_start_matches("0x")).unwrap();
            banks.insert(HashAlg::Sha256, i.trim().parse().unwrap(), v);
        }
    }
    banks
}

#[test]
fn the_boot_aggregate_passes_with_the_quoted_pcrs_0_to_9() {
    let dir = tempfile::tempdir().unwrap();
    let l = list();
    // A policy without boot_aggregate (as one built from a file tree).
    let setup = setup(dir.path(), Some("boot_aggregate"));
    let r = report(&l, 0, 10);
    let out = appraise(&setup, None, "b", &r, Some(&l.values[9][..]), &[]);
    assert_eq!(out.reasons.len(), 1, "{:?}", out.reasons);
    assert_eq!(out.reasons[0].check, "ima.not_in_policy");
    assert!(out.reasons[0].detail.contains("boot_aggregate"));
    // The VM's PCR 0-9 give the list's boot_aggregate.
    let aggregate =
        vouch_attest::ima::replay::boot_aggregate(HashAlg::Sha256, &kraemr_pcrs()).unwrap();
    let out = appraise(&setup, None, "b", &r, Some(&l.values[9][..]), &[aggregate]);
    assert!(out.reasons.is_empty(), "{:?}", out.reasons);
}
