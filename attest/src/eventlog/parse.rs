//! Parsing of both PC Client log layouts into an [`EventLog`] that borrows from the input.
//!
//! Every length field is checked against the bytes that remain before anything is read or
//! allocated, and every failure names the event, the byte offset and the field at fault.
//! Trailing 0x00 or 0xFF padding after the last event is accepted (firmware tables such as
//! Intel TDX's CCEL are padded to their reserved size).

use super::digests::{Digest, DigestList};
use super::log::{AlgorithmSize, Event, EventLog, Format, SpecId};
use super::reader::Reader;
use super::types::EventType;
use crate::alg::HashAlg;

/// Signature of the crypto-agile header event's data.
const SPEC_ID_03: &[u8; 16] = b"Spec ID Event03\0";
/// Signature of a StartupLocality EV_NO_ACTION event's data.
const STARTUP_LOCALITY: &[u8; 16] = b"StartupLocality\0";
/// Size of a TCG_PCR_EVENT header before its event data (pcr, type, SHA-1 digest, size).
const V1_HEADER: usize = 32;

/// Why an event log could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The input holds no bytes.
    #[error("the event log is empty (0 bytes)")]
    Empty,
    /// A field runs past the end of the input.
    #[error(
        "event {index} (starting at byte offset {event_offset}): {field} at byte offset {offset} \
         is truncated: needs {needed} bytes, only {available} left"
    )]
    Truncated {
        /// Index of the event being read.
        index: usize,
        /// Byte offset of that event.
        event_offset: usize,
        /// Which field was cut short.
        field: &'static str,
        /// Byte offset of the field.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the input.
        available: usize,
    },
    /// An event's data size runs past the end of the input.
    #[error(
        "event {index} (starting at byte offset {event_offset}): event data size {size} at byte \
         offset {offset} exceeds the {available} bytes left in the log"
    )]
    DataTooLong {
        /// Index of the event.
        index: usize,
        /// Byte offset of the event.
        event_offset: usize,
        /// Byte offset of the size field.
        offset: usize,
        /// The declared size.
        size: u32,
        /// Bytes left after the size field.
        available: usize,
    },
    /// A TCG_PCR_EVENT2 digest uses an algorithm the Spec ID event does not declare, so its
    /// size is unknown.
    #[error(
        "event {index} (starting at byte offset {event_offset}): digest algorithm {alg:#06x} at \
         byte offset {offset} is not declared in the Spec ID event"
    )]
    UndeclaredAlgorithm {
        /// Index of the event.
        index: usize,
        /// Byte offset of the event.
        event_offset: usize,
        /// Byte offset of the algorithm id.
        offset: usize,
        /// The TPM_ALG_ID found.
        alg: u16,
    },
    /// The Spec ID event declares no algorithms.
    #[error("Spec ID event at byte offset {offset}: numberOfAlgorithms is 0")]
    SpecIdNoAlgorithms {
        /// Byte offset of numberOfAlgorithms.
        offset: usize,
    },
    /// The Spec ID event declares more algorithms than its data can hold.
    #[error(
        "Spec ID event at byte offset {offset}: numberOfAlgorithms {count} needs {needed} bytes, \
         only {available} left in the event data"
    )]
    SpecIdAlgorithmCount {
        /// Byte offset of numberOfAlgorithms.
        offset: usize,
        /// The declared count.
        count: u32,
        /// Bytes the table would need.
        needed: u64,
        /// Bytes left in the event data.
        available: usize,
    },
    /// The Spec ID event gives a known algorithm the wrong digest size.
    #[error(
        "Spec ID event at byte offset {offset}: algorithm {alg} declared with digest size \
         {declared}, but {alg} digests are {expected} bytes"
    )]
    SpecIdDigestSize {
        /// Byte offset of the algorithm entry.
        offset: usize,
        /// The algorithm.
        alg: HashAlg,
        /// The declared size.
        declared: u16,
        /// The algorithm's real size.
        expected: usize,
    },
    /// The Spec ID event declares one algorithm twice.
    #[error("Spec ID event at byte offset {offset}: algorithm {alg} declared twice")]
    SpecIdDuplicateAlgorithm {
        /// Byte offset of the second entry.
        offset: usize,
        /// The algorithm.
        alg: HashAlg,
    },
}

/// Where in the log the parser is, for error reports.
#[derive(Clone, Copy)]
struct At {
    index: usize,
    event_offset: usize,
}

impl At {
    fn truncated(self, r: &Reader<'_>, field: &'static str, needed: usize) -> ParseError {
        ParseError::Truncated {
            index: self.index,
            event_offset: self.event_offset,
            field,
            offset: r.offset(),
            needed,
            available: r.remaining(),
        }
    }
}

impl<'a> EventLog<'a> {
    /// Parses a TCG PC Client event log in either layout.
    pub fn parse(input: &'a [u8]) -> Result<EventLog<'a>, ParseError> {
        parse(input)
    }
}

/// Parses a TCG PC Client event log in either layout (see [`EventLog::parse`]).
pub fn parse(input: &[u8]) -> Result<EventLog<'_>, ParseError> {
    if input.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut r = Reader::new(input, 0);
    let first = read_v1(&mut r, 0)?;
    let spec_id =
        if first.event_type == EventType::EV_NO_ACTION && first.data.starts_with(SPEC_ID_03) {
            Some(parse_spec_id(first.data, first.offset + V1_HEADER)?)
        } else {
            None
        };
    let mut log = EventLog {
        format: if spec_id.is_some() {
            Format::CryptoAgile
        } else {
            Format::Tcg12Sha1
        },
        spec_id,
        events: Vec::new(),
        startup_locality: None,
        hcrtm: false,
        trailing_padding: 0,
    };
    note(&mut log.hcrtm, &mut log.startup_locality, &first);
    log.events.push(first);
    loop {
        let rest = r.rest();
        if rest.is_empty() {
            break;
        }
        if is_padding(rest) {
            log.trailing_padding = rest.len();
            break;
        }
        let index = log.events.len();
        match &log.spec_id {
            Some(spec) => read_v2(&mut r, index, &spec.algorithms, &mut log.events)?,
            None => log.events.push(read_v1(&mut r, index)?),
        };
        if let Some(ev) = log.events.last() {
            note(&mut log.hcrtm, &mut log.startup_locality, ev);
        }
    }
    Ok(log)
}

/// True when `rest` is all 0x00 or all 0xFF.
fn is_padding(rest: &[u8]) -> bool {
    match rest.first() {
        Some(&b @ (0x00 | 0xFF)) => rest.iter().all(|&x| x == b),
        _ => false,
    }
}

/// Records what replay needs to know about `ev` (StartupLocality, H-CRTM).
fn note(hcrtm: &mut bool, startup_locality: &mut Option<u8>, ev: &Event<'_>) {
    if ev.event_type == EventType::EV_EFI_HCRTM_EVENT {
        *hcrtm = true;
    }
    if ev.event_type == EventType::EV_NO_ACTION
        && startup_locality.is_none()
        && ev.data.starts_with(STARTUP_LOCALITY)
    {
        *startup_locality = ev.data.get(STARTUP_LOCALITY.len()).copied();
    }
}

/// Reads a TCG_PCR_EVENT (SHA-1 layout).
fn read_v1<'a>(r: &mut Reader<'a>, index: usize) -> Result<Event<'a>, ParseError> {
    let at = At {
        index,
        event_offset: r.offset(),
    };
    let pcr = r.u32().ok_or_else(|| at.truncated(r, "pcrIndex", 4))?;
    let ty = r.u32().ok_or_else(|| at.truncated(r, "eventType", 4))?;
    let digest = r
        .take(20)
        .ok_or_else(|| at.truncated(r, "SHA-1 digest", 20))?;
    let (data_offset, data) = read_data(r, at)?;
    Ok(Event {
        index,
        offset: at.event_offset,
        pcr,
        event_type: EventType(ty),
        digests: DigestList::one(Digest {
            alg: HashAlg::Sha1,
            bytes: digest,
        }),
        data_offset,
        data,
    })
}

/// Reads a TCG_PCR_EVENT2 (crypto-agile layout) with the banks declared in the Spec ID event,
/// appending it to `events`. The digests are written into the appended event in place: building
/// the ~200-byte event first and moving it in costs more than the rest of the parse.
fn read_v2<'a>(
    r: &mut Reader<'a>,
    index: usize,
    algs: &[AlgorithmSize],
    events: &mut Vec<Event<'a>>,
) -> Result<(), ParseError> {
    let at = At {
        index,
        event_offset: r.offset(),
    };
    let pcr = r.u32().ok_or_else(|| at.truncated(r, "pcrIndex", 4))?;
    let ty = r.u32().ok_or_else(|| at.truncated(r, "eventType", 4))?;
    let count = r.u32().ok_or_else(|| at.truncated(r, "digest count", 4))?;
    events.push(Event {
        index,
        offset: at.event_offset,
        pcr,
        event_type: EventType(ty),
        digests: DigestList::new(),
        data_offset: 0,
        data: &[],
    });
    let Some(ev) = events.last_mut() else {
        return Ok(());
    };
    for _ in 0..count {
        let alg_offset = r.offset();
        let id = r
            .u16()
            .ok_or_else(|| at.truncated(r, "digest algorithm id", 2))?;
        let size = algs
            .iter()
            .find(|a| a.alg.id() == id)
            .map(|a| usize::from(a.digest_size))
            .ok_or(ParseError::UndeclaredAlgorithm {
                index,
                event_offset: at.event_offset,
                offset: alg_offset,
                alg: id,
            })?;
        let bytes = r
            .take(size)
            .ok_or_else(|| at.truncated(r, "digest", size))?;
        ev.digests.push(Digest {
            alg: HashAlg::from_id(id),
            bytes,
        });
    }
    (ev.data_offset, ev.data) = read_data(r, at)?;
    Ok(())
}

/// Reads an event's u32 data size and the data it announces, with the data's byte offset.
fn read_data<'a>(r: &mut Reader<'a>, at: At) -> Result<(usize, &'a [u8]), ParseError> {
    let size_offset = r.offset();
    let size = r.u32().ok_or_else(|| at.truncated(r, "eventSize", 4))?;
    let available = r.remaining();
    let data_offset = r.offset();
    usize::try_from(size)
        .ok()
        .and_then(|n| r.take(n))
        .map(|d| (data_offset, d))
        .ok_or(ParseError::DataTooLong {
            index: at.index,
            event_offset: at.event_offset,
            offset: size_offset,
            size,
            available,
        })
}

/// Parses the TCG_EfiSpecIDEvent found in the first event's data at absolute offset `base`.
fn parse_spec_id(data: &[u8], base: usize) -> Result<SpecId<'_>, ParseError> {
    let at = At {
        index: 0,
        event_offset: 0,
    };
    let mut r = Reader::new(data, base);
    r.take(SPEC_ID_03.len())
        .ok_or_else(|| at.truncated(&r, "Spec ID signature", 16))?;
    let platform_class = r
        .u32()
        .ok_or_else(|| at.truncated(&r, "platformClass", 4))?;
    let [version_minor, version_major, errata, uintn_size] = r
        .array::<4>()
        .ok_or_else(|| at.truncated(&r, "Spec ID version fields", 4))?;
    let count_offset = r.offset();
    let count = r
        .u32()
        .ok_or_else(|| at.truncated(&r, "numberOfAlgorithms", 4))?;
    if count == 0 {
        return Err(ParseError::SpecIdNoAlgorithms {
            offset: count_offset,
        });
    }
    let needed = u64::from(count) * 4;
    if needed > r.remaining() as u64 {
        return Err(ParseError::SpecIdAlgorithmCount {
            offset: count_offset,
            count,
            needed,
            available: r.remaining(),
        });
    }
    let mut algorithms: Vec<AlgorithmSize> = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let entry_offset = r.offset();
        let id = r.u16().ok_or_else(|| at.truncated(&r, "algorithmId", 2))?;
        let digest_size = r.u16().ok_or_else(|| at.truncated(&r, "digestSize", 2))?;
        let alg = HashAlg::from_id(id);
        if let Some(expected) = alg.digest_len() {
            if expected != usize::from(digest_size) {
                return Err(ParseError::SpecIdDigestSize {
                    offset: entry_offset,
                    alg,
                    declared: digest_size,
                    expected,
                });
            }
        }
        if algorithms.iter().any(|a| a.alg == alg) {
            return Err(ParseError::SpecIdDuplicateAlgorithm {
                offset: entry_offset,
                alg,
            });
        }
        algorithms.push(AlgorithmSize { alg, digest_size });
    }
    let vendor_size = r
        .u8()
        .ok_or_else(|| at.truncated(&r, "vendorInfoSize", 1))?;
    let vendor_info = r
        .take(usize::from(vendor_size))
        .ok_or_else(|| at.truncated(&r, "vendorInfo", usize::from(vendor_size)))?;
    Ok(SpecId {
        platform_class,
        version_minor,
        version_major,
        errata,
        uintn_size,
        algorithms,
        vendor_info,
    })
}
