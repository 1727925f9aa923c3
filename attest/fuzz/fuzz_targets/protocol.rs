//! Fuzz target: every MQTT message type (what a peer or the broker can send), and escrow
//! records, decoded from any bytes; whatever decodes must encode and decode back to an equal
//! message. An escrow delivery that decodes must be refused cleanly by `unwrap` with a wrong
//! key, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::{de::DeserializeOwned, Serialize};
use std::fmt::Debug;
use vouch_attest::escrow::EscrowRecord;
use vouch_attest::escrow_delivery;
use vouch_attest::protocol::{
    decode, encode, Alert, AttestChallenge, AttestationReport, BootAnnouncement, EnrollMessage,
    EnrollResponse, EscrowDeposit, EscrowRelease, RecoveryResult,
};

fn round_trip<T: DeserializeOwned + Serialize + PartialEq + Debug>(what: &'static str, data: &[u8]) {
    if let Ok(m) = decode::<T>(what, data) {
        let again: T = decode(what, &encode(&m)).expect("an encoded message decodes");
        assert_eq!(m, again);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<EnrollMessage>("enroll", data);
    round_trip::<EnrollResponse>("enroll response", data);
    round_trip::<AttestChallenge>("challenge", data);
    round_trip::<AttestationReport>("report", data);
    round_trip::<BootAnnouncement>("boot", data);
    round_trip::<Alert>("alert", data);
    round_trip::<EscrowDeposit>("escrow deposit", data);
    round_trip::<RecoveryResult>("recovery result", data);
    if let Ok(r) = decode::<EscrowRelease>("escrow release", data) {
        assert!(escrow_delivery::unwrap(&r, &[7u8; 32], "device").is_err());
        assert_eq!(decode::<EscrowRelease>("escrow release", &encode(&r)).unwrap(), r);
    }
    if let Ok(rec) = EscrowRecord::parse(data) {
        let _ = rec.blob_bytes();
    }
});
