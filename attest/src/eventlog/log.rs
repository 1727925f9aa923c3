//! The parsed event log: its format, Spec ID header and events, all borrowing from the input.

use super::digests::DigestList;
use super::types::EventType;
use crate::alg::HashAlg;
use serde::Serialize;

/// Which of the two PC Client log layouts the input uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Format {
    /// TCG 1.2 layout: every event is a TCG_PCR_EVENT with one SHA-1 digest.
    #[serde(rename = "tcg1.2-sha1")]
    Tcg12Sha1,
    /// Crypto-agile layout: a TCG_PCR_EVENT holding the "Spec ID Event03", then TCG_PCR_EVENT2s.
    #[serde(rename = "crypto-agile")]
    CryptoAgile,
}

impl Format {
    /// The name used in CLI output: `tcg1.2-sha1` or `crypto-agile`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Tcg12Sha1 => "tcg1.2-sha1",
            Format::CryptoAgile => "crypto-agile",
        }
    }
}

/// One algorithm entry of the Spec ID event (TCG_EfiSpecIdEventAlgorithmSize).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AlgorithmSize {
    /// The bank's algorithm.
    pub alg: HashAlg,
    /// The digest size the log uses for it.
    pub digest_size: u16,
}

/// The "Spec ID Event03" header of a crypto-agile log (TCG_EfiSpecIDEvent).
#[derive(Clone, Debug, Serialize)]
pub struct SpecId<'a> {
    /// platformClass: 0 client, 1 server.
    pub platform_class: u32,
    /// specVersionMinor.
    pub version_minor: u8,
    /// specVersionMajor.
    pub version_major: u8,
    /// specErrata.
    pub errata: u8,
    /// uintnSize: 1 for 32-bit UINTN, 2 for 64-bit.
    pub uintn_size: u8,
    /// The banks the log carries, with their digest sizes, in declared order.
    pub algorithms: Vec<AlgorithmSize>,
    /// vendorInfo bytes.
    #[serde(serialize_with = "super::ser::hex_bytes")]
    pub vendor_info: &'a [u8],
}

/// One event as logged.
#[derive(Clone, Debug, Serialize)]
pub struct Event<'a> {
    /// Position in the log; the first (header) event is 0.
    pub index: usize,
    /// Byte offset of the event's first byte in the log.
    pub offset: usize,
    /// PCR index (0xFFFFFFFF: not extended into any PCR).
    pub pcr: u32,
    /// Event type.
    pub event_type: EventType,
    /// The event's digests, one per bank.
    pub digests: DigestList<'a>,
    /// Byte offset of the event data in the log.
    pub data_offset: usize,
    /// The event data, borrowed from the log.
    #[serde(serialize_with = "super::ser::hex_bytes")]
    pub data: &'a [u8],
}

/// PCR index of events that are listed but extended into no PCR (e.g. Windows WBCL events).
pub const NO_PCR: u32 = 0xFFFF_FFFF;

impl Event<'_> {
    /// True when replay extends this event into a PCR: not EV_NO_ACTION and not PCR 0xFFFFFFFF.
    pub fn is_extended(&self) -> bool {
        self.event_type != EventType::EV_NO_ACTION && self.pcr != NO_PCR
    }
}

/// A parsed TCG PC Client event log.
#[derive(Clone, Debug, Serialize)]
pub struct EventLog<'a> {
    /// The layout of the log.
    pub format: Format,
    /// The Spec ID header of a crypto-agile log.
    pub spec_id: Option<SpecId<'a>>,
    /// Every event, including the header event of a crypto-agile log.
    pub events: Vec<Event<'a>>,
    /// Locality from a StartupLocality EV_NO_ACTION event, if the log has one.
    pub startup_locality: Option<u8>,
    /// True when the log holds an EV_EFI_HCRTM_EVENT.
    pub hcrtm: bool,
    /// Bytes of trailing 0x00 / 0xFF padding after the last event.
    pub trailing_padding: usize,
}

impl EventLog<'_> {
    /// The banks the log carries digests for, in declared order (unknown algorithms included).
    pub fn banks(&self) -> Vec<HashAlg> {
        match &self.spec_id {
            Some(s) => s.algorithms.iter().map(|a| a.alg).collect(),
            None => vec![HashAlg::Sha1],
        }
    }

    /// True when the log carries digests for `alg`.
    pub fn has_bank(&self, alg: HashAlg) -> bool {
        match &self.spec_id {
            Some(s) => s.algorithms.iter().any(|a| a.alg == alg),
            None => alg == HashAlg::Sha1,
        }
    }

    /// The last byte of PCR0's value before the first extend: the StartupLocality event's
    /// locality if there is one, else 4 when the log has an H-CRTM event, else 0.
    pub fn pcr0_start_locality(&self) -> u8 {
        match (self.startup_locality, self.hcrtm) {
            (Some(l), _) => l,
            (None, true) => 4,
            (None, false) => 0,
        }
    }
}
