//! Fuzz target: parse any bytes as a TCG event log; whatever parses is replayed, every event is
//! decoded and digest-checked, the boot state is extracted, everything serializes, and the
//! replay must match itself through `match_quoted` for every computable bank.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vouch_attest::eventlog::{match_quoted, EventLog};

fuzz_target!(|data: &[u8]| {
    let Ok(log) = EventLog::parse(data) else {
        return;
    };
    let replay = log.replay();
    for ev in &log.events {
        let _ = ev.decode();
        let _ = ev.check_digest();
    }
    let _ = log.boot_state();
    let _ = serde_json::to_string(&log);
    for (bank, pcrs) in replay.banks() {
        let list: Vec<u32> = pcrs.keys().copied().collect();
        let m = match_quoted(&log, &replay, bank, &list).expect("own replay is comparable");
        assert!(m.matched && m.workaround.is_none(), "replay does not match itself: {m:?}");
    }
});
