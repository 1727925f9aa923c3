//! IMA measurement lists from real machines (`shared/testdata/ima`): parsing (binary and text),
//! template hashes (the kernel's own, checked per entry), PCR 10 replay against a real PCR dump,
//! resuming a replay from a saved state, and appraisal against Keylime runtime policies (a real
//! one, and one built from a real log).

use vouch_attest::ima::appraise::{Appraiser, ImaRule};
use vouch_attest::ima::binary::{self, detect_hash_len, parse_entry, Entries, ParseErrorKind};
use vouch_attest::ima::replay::boot_aggregate;
use vouch_attest::ima::{ascii, Entry, ReplayState, RuntimePolicy, IMA_PCR};
use vouch_attest::{HashAlg, PcrBanks};

#[path = "../../testsupport/testdata.rs"]
mod testdata;

fn read(name: &str) -> Vec<u8> {
    let p = testdata::ima_dir().join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn binary_entries(bytes: &[u8]) -> Vec<(u64, Entry)> {
    let len = detect_hash_len(bytes).unwrap().unwrap();
    Entries::new(bytes, len)
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn ascii_entries(name: &str) -> Vec<Entry> {
    let text = String::from_utf8(read(name)).unwrap();
    ascii::parse(&text)
        .map(|r| r.map(|(_, e)| e))
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// The sha256 PCRs of `kraemr_vm_pcrs` (tpm2_pcrread output of the VM the lists come from).
fn kraemr_pcrs() -> PcrBanks {
    let text = String::from_utf8(read("kraemr_vm_pcrs")).unwrap();
    let mut banks = PcrBanks::new();
    let mut bank = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_suffix(':') {
            bank = HashAlg::from_name(name);
            continue;
        }
        if let (Some(b), Some((i, v))) = (bank, t.split_once(':')) {
            let v = v.trim().trim_start_matches("0x");
            banks.insert(b, i.trim().parse().unwrap(), hex::decode(v).unwrap());
        }
    }
    banks
}

fn replay(entries: &[(u64, Entry)], bank: HashAlg) -> ReplayState {
    let mut state = ReplayState::new(bank, IMA_PCR).unwrap();
    for (i, (_, e)) in entries.iter().enumerate() {
        let len = entries
            .get(i + 1)
            .map_or(u64::MAX, |(next, _)| next - state.offset);
        let len = if len == u64::MAX { 0 } else { len };
        state.extend(e, len).unwrap();
    }
    state
}

#[test]
fn kraemr_binary_sha256_list_replays_to_the_quoted_pcr10() {
    let bytes = read("kraemr_vm_binary_runtime_measurements_sha256");
    assert_eq!(detect_hash_len(&bytes).unwrap(), Some(32));
    let entries = binary_entries(&bytes);
    assert_eq!(entries.len(), 4289);
    let violations = entries.iter().filter(|(_, e)| e.is_violation()).count();
    assert_eq!(violations, 6);
    for (off, e) in &entries {
        assert_eq!(
            e.template_hash_ok(),
            Some(true),
            "entry at {off}: {}",
            e.name
        );
    }
    let state = replay(&entries, HashAlg::Sha256);
    let pcrs = kraemr_pcrs();
    assert_eq!(state.value, pcrs.get(HashAlg::Sha256, 10).unwrap());
    assert_eq!(state.entries, 4289);
    // The first entry's boot_aggregate is sha256 over the VM's PCR 0..=9.
    assert_eq!(entries[0].1.name, "boot_aggregate");
    assert_eq!(
        entries[0].1.digest.as_ref().unwrap().value,
        boot_aggregate(HashAlg::Sha256, &pcrs).unwrap()
    );
}

#[test]
fn kraemr_text_list_is_the_binary_list() {
    let bin = binary_entries(&read("kraemr_vm_binary_runtime_measurements_sha256"));
    let text = ascii_entries("kraemr_vm_ascii_runtime_measurements_sha256");
    assert_eq!(bin.len(), text.len());
    for ((_, b), t) in bin.iter().zip(&text) {
        assert_eq!(b, t);
    }
    // The text list replays to the same PCR 10 (offsets do not matter there).
    let mut state = ReplayState::new(HashAlg::Sha256, IMA_PCR).unwrap();
    for e in &text {
        state.extend(e, 0).unwrap();
    }
    assert_eq!(state.value, kraemr_pcrs().get(HashAlg::Sha256, 10).unwrap());
}

#[test]
fn sha1_lists_have_the_kernels_template_hashes() {
    let entries = ascii_entries("rustkeylime_ascii_runtime_measurements");
    assert_eq!(entries.len(), 826);
    for e in &entries {
        assert_eq!(e.template_hash.len(), 20);
        assert_eq!(e.template_hash_ok(), Some(true), "{}", e.name);
    }
    // Six entries and a stray newline byte (the sample was saved with one).
    let bin = read("tss_sml-ima-ng-sha1.bin");
    assert_eq!(detect_hash_len(&bin).unwrap(), Some(20));
    let all: Vec<_> = Entries::new(&bin, 20).collect();
    assert_eq!(all.len(), 7);
    assert_eq!(
        all[6].as_ref().unwrap_err().kind,
        ParseErrorKind::Truncated(1)
    );
    let entries: Vec<(u64, Entry)> = all.into_iter().take(6).map(Result::unwrap).collect();
    assert_eq!(entries[1].1.name, "/init");
    for (_, e) in &entries {
        assert_eq!(e.template_hash_ok(), Some(true), "{}", e.name);
    }
    // The binary encoding round-trips.
    for (_, e) in &entries {
        let enc = binary::encode_entry(e);
        assert_eq!(
            parse_entry(&enc, 20).unwrap().unwrap(),
            (e.clone(), enc.len())
        );
    }
}

#[test]
fn a_truncated_ima_sig_list_fails_at_its_last_entry_with_the_others_intact() {
    let bin = read("tss_sml-ima-sig-sha256.bin");
    let mut ok = Vec::new();
    let mut err = None;
    for r in Entries::new(&bin, 20) {
        match r {
            Ok((_, e)) => ok.push(e),
            Err(e) => err = Some(e),
        }
    }
    let err = err.expect("the sample ends inside an entry");
    assert!(matches!(err.kind, ParseErrorKind::Truncated(_)), "{err:?}");
    assert_eq!(err.index, ok.len() as u64);
    assert_eq!(ok.len(), 9);
    assert_eq!(ok[1].template.name(), "ima-sig");
    assert_eq!(ok[1].name, "/init");
    assert_eq!(ok[1].digest.as_ref().unwrap().alg, "sha256");
    for e in &ok {
        assert_eq!(e.template_hash_ok(), Some(true), "{}", e.name);
    }
}

#[test]
fn parse_entry_asks_for_more_bytes_until_the_entry_is_complete() {
    let bin = read("kraemr_vm_binary_runtime_measurements_sha256");
    let (_, used) = parse_entry(&bin, 32).unwrap().unwrap();
    for cut in 0..used {
        assert_eq!(parse_entry(&bin[..cut], 32).unwrap(), None, "cut {cut}");
    }
}

#[test]
fn a_replay_resumes_from_its_saved_state() {
    let bin = read("kraemr_vm_binary_runtime_measurements_sha256");
    let expected = kraemr_pcrs().get(HashAlg::Sha256, 10).unwrap().to_vec();
    for split in [1usize, 100, 2000, 4288] {
        let mut state = ReplayState::new(HashAlg::Sha256, IMA_PCR).unwrap();
        let mut off = 0usize;
        for _ in 0..split {
            let (e, used) = parse_entry(&bin[off..], 32).unwrap().unwrap();
            state.extend(&e, used as u64).unwrap();
            off += used;
        }
        assert_eq!(state.offset, off as u64);
        // What the registry stores, and what the next report continues from.
        let saved = serde_json::to_string(&state).unwrap();
        let mut resumed: ReplayState = serde_json::from_str(&saved).unwrap();
        for r in Entries::new(&bin[resumed.offset as usize..], 32) {
            let (_, e) = r.unwrap();
            resumed.extend(&e, 0).unwrap();
        }
        assert_eq!(resumed.value, expected, "split at {split}");
        assert_eq!(resumed.entries, 4289);
    }
}

#[test]
fn a_tampered_entry_fails_its_template_hash_naming_its_path() {
    let mut bin = read("kraemr_vm_binary_runtime_measurements_sha256");
    let entries = binary_entries(&bin);
    // Flip a byte of the file digest of entry 1 (/usr/bin/kmod): its template hash no longer
    // covers its data.
    let (off, e) = &entries[1];
    let digest_at = *off as usize + 4 + 32 + 4 + 6 + 4 + 4 + "sha256:\0".len();
    bin[digest_at] ^= 1;
    let (policy, _) = RuntimePolicy::from_entries(entries.iter().map(|(_, e)| e));
    let mut appraiser = Appraiser::new(&policy).unwrap();
    let mut state = ReplayState::new(HashAlg::Sha256, IMA_PCR).unwrap();
    for r in Entries::new(&bin, 32) {
        let (_, e) = r.unwrap();
        appraiser.push(&e, 0, &mut state);
    }
    let v = appraiser.finish();
    let f = v
        .failures
        .iter()
        .find(|f| f.rule == ImaRule::TemplateHash)
        .expect("a template hash failure");
    assert_eq!(f.path, e.name);
    assert_eq!(f.index, 1);
    assert!(!v.trusted);
}

#[test]
fn the_keylime_policy_rejects_the_keylime_log_naming_path_digest_and_rule() {
    let policy = RuntimePolicy::from_json(&read("keylime_policy-sha256.json")).unwrap();
    assert_eq!(policy.digests.len(), 1);
    assert_eq!(policy.ima.log_hash_alg, "sha1");
    let entries = ascii_entries("keylime_ima-log-sha256");
    let mut a = Appraiser::new(&policy).unwrap();
    let mut state = ReplayState::new(HashAlg::Sha256, IMA_PCR).unwrap();
    for e in &entries {
        a.push(e, 0, &mut state);
    }
    let v = a.finish();
    assert!(!v.trusted);
    let data = v.failures.iter().find(|f| f.path == "/data").unwrap();
    assert_eq!(data.rule, ImaRule::NotInPolicy);
    assert_eq!(
        data.digest.as_deref(),
        Some("sha256:96d7fae8adb7286a419a88f78c13d35fb782d63df654b7db56f154765698b754")
    );
    assert_eq!(data.index, 1);

    // With /data allowed and the boot aggregate computed by the verifier, it is trusted.
    let mut allowed = policy.clone();
    allowed.allow("/data", &entries[1].digest.as_ref().unwrap().value);
    let ba = entries[0].digest.as_ref().unwrap().value.clone();
    let mut a = Appraiser::new(&allowed)
        .unwrap()
        .with_boot_aggregates(vec![ba]);
    let mut state = ReplayState::new(HashAlg::Sha256, IMA_PCR).unwrap();
    for e in &entries {
        a.push(e, 0, &mut state);
    }
    let v = a.finish();
    assert!(v.trusted, "{:?}", v.failures);
}

#[test]
fn the_keylime_policy_round_trips_through_json() {
    let policy = RuntimePolicy::from_json(&read("keylime_policy-sha256.json")).unwrap();
    let again = RuntimePolicy::from_json(policy.to_json().unwrap().as_bytes()).unwrap();
    assert_eq!(policy, again);
}

#[test]
fn a_policy_built_from_a_known_good_log_appraises_it() {
    let entries = binary_entries(&read("kraemr_vm_binary_runtime_measurements_sha256"));
    let (mut policy, used) = RuntimePolicy::from_entries(entries.iter().map(|(_, e)| e));
    assert_eq!(
        used,
        4289 - 6,
        "violations are not allowed by a built policy"
    );
    let run = |policy: &RuntimePolicy| {
        let mut a = Appraiser::new(policy).unwrap();
        let mut s = ReplayState::new(HashAlg::Sha256, IMA_PCR).unwrap();
        for (_, e) in &entries {
            a.push(e, 0, &mut s);
        }
        a.finish()
    };
    // The six violations (a database written while measured) fail, named.
    let v = run(&policy);
    assert_eq!(v.failed, 6);
    assert!(v
        .failures
        .iter()
        .all(|f| f.rule == ImaRule::Violation
            && f.path == "/root/.local/share/nautilus/tags/meta.db"));
    // Excluding that directory makes the log trusted.
    policy
        .excludes
        .push("/root/\\.local/share/nautilus/".into());
    let v = run(&policy);
    assert!(v.trusted, "{:?}", v.failures);
    // Six violations and the other files of that directory.
    assert_eq!(v.excluded, 17);

    // A changed digest fails as digest_not_allowed, a missing path as not_in_policy.
    let kmod = &entries[1].1;
    policy
        .digests
        .insert(kmod.name.clone(), vec!["00".repeat(32)]);
    let ld = &entries[2].1;
    policy.digests.remove(&ld.name);
    let v = run(&policy);
    assert!(!v.trusted);
    let rule_of = |path: &str| {
        v.failures
            .iter()
            .filter(|f| f.path == path)
            .map(|f| f.rule)
            .collect::<Vec<_>>()
    };
    assert!(rule_of(&kmod.name)
        .iter()
        .all(|r| *r == ImaRule::DigestNotAllowed));
    assert!(!rule_of(&kmod.name).is_empty());
    assert!(rule_of(&ld.name).iter().all(|r| *r == ImaRule::NotInPolicy));
    assert!(!rule_of(&ld.name).is_empty());
}

#[test]
fn unusable_policies_are_refused_with_the_reason() {
    let bad = |text: &str| {
        vouch_attest::errors::chain(&RuntimePolicy::from_json(text.as_bytes()).unwrap_err())
    };
    assert!(bad(r#"{"meta": {"version": 2}}"#).contains("meta.version 2"));
    let e = bad(r#"{"meta": {"version": 1}, "excludes": ["(unclosed"]}"#);
    assert!(e.contains("(unclosed"), "{e}");
    assert!(bad(r#"{"meta": {"version": 1}, "digests": {"/a": ["xyz"]}}"#).contains("/a"));
    assert!(bad(r#"{"meta": {"version": 1}, "ima": {"dm_policy": {}}}"#).contains("dm_policy"));
    assert!(
        bad(r#"{"meta": {"version": 1}, "verification-keys": "[1]"}"#)
            .contains("verification-keys")
    );
    assert!(bad(r#"{"meta": {"version": 1}, "digestz": {}}"#).contains("runtime policy"));
}

#[test]
fn the_decoder_gives_the_same_entries_fed_in_any_pieces() {
    let bin = read("kraemr_vm_binary_runtime_measurements_sha256");
    let whole = binary_entries(&bin);
    for piece in [1usize, 7, 4096] {
        let mut d = binary::Decoder::new(None);
        let mut got = Vec::new();
        for chunk in bin.chunks(piece) {
            d.feed(chunk);
            while let Some(x) = d.next_entry().unwrap() {
                got.push((x.offset, x.entry));
            }
            // Never more than one entry's bytes are held.
            assert!(d.pending() < 64 * 1024);
        }
        d.finish().unwrap();
        assert_eq!(d.hash_len(), Some(32));
        assert_eq!(got, whole, "pieces of {piece}");
    }
    // A list cut inside an entry is reported at that entry.
    let mut d = binary::Decoder::new(Some(32));
    d.feed(&bin[..bin.len() - 3]);
    let mut n = 0;
    while d.next_entry().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 4288);
    let e = d.finish().unwrap_err();
    assert_eq!(e.index, 4288);
}

#[test]
fn text_lines_print_back_as_the_kernel_wrote_them() {
    let text = String::from_utf8(read("kraemr_vm_ascii_runtime_measurements_sha256")).unwrap();
    for line in text.lines().take(500) {
        let e = ascii::parse_line(line).unwrap().unwrap();
        assert_eq!(ascii::format_entry(&e).unwrap(), line);
    }
    // A built entry is what the kernel logs: the real list's first file entry rebuilt.
    let first = ascii::parse_line(text.lines().nth(1).unwrap())
        .unwrap()
        .unwrap();
    let built = Entry::measured(
        first.template.clone(),
        first.digest.clone().unwrap(),
        &first.name,
        b"",
        HashAlg::Sha256,
    )
    .unwrap();
    assert_eq!(built, first);
}

mod increment {
    use super::*;
    use vouch_attest::ima::increment::{appraise_increment, IncrementFailure};

    /// The kraemr list as (offset, len) of every entry, and the PCR 10 after each entry.
    fn layout(bin: &[u8]) -> (Vec<(usize, usize)>, Vec<Vec<u8>>) {
        let mut spans = Vec::new();
        let mut values = Vec::new();
        let mut off = 0;
        let mut s = ReplayState::new(HashAlg::Sha256, IMA_PCR).unwrap();
        while off < bin.len() {
            let (e, used) = parse_entry(&bin[off..], 32).unwrap().unwrap();
            s.extend(&e, used as u64).unwrap();
            spans.push((off, used));
            values.push(s.value.clone());
            off += used;
        }
        (spans, values)
    }

    fn policy() -> RuntimePolicy {
        let entries = binary_entries(&read("kraemr_vm_binary_runtime_measurements_sha256"));
        let (mut p, _) = RuntimePolicy::from_entries(entries.iter().map(|(_, e)| e));
        p.excludes.push("/root/\\.local/share/nautilus/".into());
        p
    }

    #[test]
    fn reports_of_a_few_entries_each_continue_to_the_quoted_pcr10() {
        let bin = read("kraemr_vm_binary_runtime_measurements_sha256");
        let (spans, values) = layout(&bin);
        let policy = policy();
        let mut state = ReplayState::new(HashAlg::Sha256, IMA_PCR).unwrap();
        let mut i = 0;
        let mut reports = 0;
        while i < spans.len() {
            // 1 to 700 entries a report; the quote is taken after the last one.
            let n = (1 + (i * 7919) % 700).min(spans.len() - i);
            let (start, _) = spans[i];
            let (last, len) = spans[i + n - 1];
            let bytes = &bin[start..last + len];
            // What the registry stores between reports.
            let stored: ReplayState =
                serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
            let out = appraise_increment(
                &stored,
                start as u64,
                bytes,
                32,
                &values[i + n - 1],
                false,
                Appraiser::new(&policy).unwrap(),
            );
            assert!(out.trusted(), "report at entry {i}: {:?}", out.failures);
            assert_eq!(out.accepted, n as u64);
            state = out.state;
            i += n;
            reports += 1;
        }
        assert!(reports > 10);
        assert_eq!(state.entries, 4289);
        assert_eq!(state.offset, bin.len() as u64);
        assert_eq!(state.value, kraemr_pcrs().get(HashAlg::Sha256, 10).unwrap());
    }

    #[test]
    fn a_quote_that_lags_the_list_accepts_the_prefix_it_covers() {
        let bin = read("kraemr_vm_binary_runtime_measurements_sha256");
        let (spans, values) = layout(&bin);
        let start = ReplayState::new(HashAlg::Sha256, IMA_PCR).unwrap();
        let end = spans[99].0 + spans[99].1;
        // 100 entries sent, the quote saw 95 of them.
        let out = appraise_increment(
            &start,
            0,
            &bin[..end],
            32,
            &values[94],
            false,
            Appraiser::new(&policy()).unwrap(),
        );
        assert!(out.trusted(), "{:?}", out.failures);
        assert_eq!(out.accepted, 95);
        assert_eq!(out.state.entries, 95);
        assert_eq!(out.state.offset, spans[95].0 as u64);
        // No entries sent and the quote is where the state is: trusted, nothing accepted.
        let out2 = appraise_increment(
            &out.state,
            out.state.offset,
            &[],
            32,
            &values[94],
            false,
            Appraiser::new(&policy()).unwrap(),
        );
        assert!(out2.trusted());
        assert_eq!(out2.state, out.state);
    }

    #[test]
    fn a_wrong_offset_or_pcr_leaves_the_state_and_says_why() {
        let bin = read("kraemr_vm_binary_runtime_measurements_sha256");
        let (spans, values) = layout(&bin);
        let start = ReplayState::new(HashAlg::Sha256, IMA_PCR).unwrap();
        let end = spans[9].0 + spans[9].1;
        let p = policy();
        let out = appraise_increment(
            &start,
            7,
            &bin[..end],
            32,
            &values[9],
            false,
            Appraiser::new(&p).unwrap(),
        );
        assert_eq!(
            out.failures,
            vec![IncrementFailure::Offset {
                expected: 0,
                got: 7
            }]
        );
        assert_eq!(out.state, start);
        let out = appraise_increment(
            &start,
            0,
            &bin[..end],
            32,
            &[1; 32],
            false,
            Appraiser::new(&p).unwrap(),
        );
        assert!(matches!(
            out.failures[..],
            [IncrementFailure::Pcr { entries: 10, .. }]
        ));
        assert_eq!(out.state, start);
        assert!(!out.trusted());
    }

    #[test]
    fn an_entry_not_in_the_policy_is_named_in_the_reports_verdict() {
        let bin = read("kraemr_vm_binary_runtime_measurements_sha256");
        let (spans, values) = layout(&bin);
        let mut p = policy();
        let victim = binary_entries(&bin)[5].1.name.clone();
        p.digests.remove(&victim);
        let end = spans[9].0 + spans[9].1;
        let start = ReplayState::new(HashAlg::Sha256, IMA_PCR).unwrap();
        let out = appraise_increment(
            &start,
            0,
            &bin[..end],
            32,
            &values[9],
            false,
            Appraiser::new(&p).unwrap(),
        );
        assert!(!out.trusted());
        assert!(out.failures.is_empty());
        assert_eq!(out.verdict.failures.len(), 1);
        assert_eq!(out.verdict.failures[0].path, victim);
        assert_eq!(out.verdict.failures[0].index, 5);
        assert_eq!(out.verdict.failures[0].rule, ImaRule::NotInPolicy);
        // The PCR matched: the state advances (the verdict is what says untrusted).
        assert_eq!(out.state.entries, 10);
    }
}

mod incomplete {
    use super::*;
    use vouch_attest::ima::increment::{appraise_increment, IncrementFailure};

    #[test]
    fn a_long_list_in_parts_is_accepted_provisionally_then_verified() {
        let bin = read("kraemr_vm_binary_runtime_measurements_sha256");
        let entries = binary_entries(&bin);
        let (policy, _) = RuntimePolicy::from_entries(entries.iter().map(|(_, e)| e));
        let mut policy = policy;
        policy
            .excludes
            .push("/root/\\.local/share/nautilus/".into());
        let quoted = kraemr_pcrs().get(HashAlg::Sha256, 10).unwrap().to_vec();
        let cut = entries[2000].0 as usize;
        let start = ReplayState::new(HashAlg::Sha256, IMA_PCR).unwrap();
        // The first part: more follows, nothing matches the quote yet.
        let a = appraise_increment(
            &start,
            0,
            &bin[..cut],
            32,
            &quoted,
            true,
            Appraiser::new(&policy).unwrap(),
        );
        assert_eq!(
            a.failures,
            vec![IncrementFailure::Incomplete {
                pcr: 10,
                entries: 2000
            }]
        );
        assert!(a.verdict.trusted);
        assert_eq!(a.state.entries, 2000);
        // The rest reaches the quoted value: all of it verified.
        let b = appraise_increment(
            &a.state,
            cut as u64,
            &bin[cut..],
            32,
            &quoted,
            false,
            Appraiser::new(&policy).unwrap(),
        );
        assert!(b.trusted(), "{:?}", b.failures);
        assert_eq!(b.state.entries, 4289);
        // Without `more`, the first part alone is a PCR failure and nothing is accepted.
        let c = appraise_increment(
            &start,
            0,
            &bin[..cut],
            32,
            &quoted,
            false,
            Appraiser::new(&policy).unwrap(),
        );
        assert!(matches!(c.failures[..], [IncrementFailure::Pcr { .. }]));
        assert_eq!(c.state, start);
        // A forged rest never reaches the quote.
        let mut forged = bin[cut..].to_vec();
        let n = forged.len();
        forged.truncate(n - entries.last().map_or(0, |(o, _)| bin.len() - *o as usize));
        let d = appraise_increment(
            &a.state,
            cut as u64,
            &forged,
            32,
            &quoted,
            false,
            Appraiser::new(&policy).unwrap(),
        );
        assert!(matches!(d.failures[..], [IncrementFailure::Pcr { .. }]));
    }
}

#[test]
fn an_increment_outcome_serializes_with_every_failure_kind() {
    use vouch_attest::ima::increment::appraise_increment;
    let start = ReplayState::new(HashAlg::Sha256, IMA_PCR).unwrap();
    let policy = RuntimePolicy::empty();
    for (offset, bytes, more) in [
        (0u64, &b"\x0a\x00\x00\x00junk"[..], false),
        (5, &b""[..], false),
        (0, &b""[..], true),
    ] {
        let out = appraise_increment(
            &start,
            offset,
            bytes,
            20,
            &[1; 32],
            more,
            Appraiser::new(&policy).unwrap(),
        );
        assert!(!out.failures.is_empty());
        let json = serde_json::to_string(&out).unwrap();
        assert!(json.contains("failures"), "{json}");
    }
}
