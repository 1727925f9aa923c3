//! Decoding of event data for the event types operators care about.
//!
//! Decoding is separate from parsing: a log parses (and replays) even when an event's data is
//! not what its type promises; [`Event::decode`] then reports what was wrong and where.

use super::devpath::{self, DevicePathError};
use super::guid::Guid;
use super::log::Event;
use super::reader::Reader;
use super::text::{printable_utf16, printable_utf8};
use super::types::EventType;
use super::variable::{self, UefiVariable, VariableError};
use serde::Serialize;
use std::borrow::Cow;

/// Why an event's data could not be decoded as its type promises.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A UEFI variable event's UEFI_VARIABLE_DATA is malformed.
    #[error("event {index}: malformed UEFI_VARIABLE_DATA")]
    Variable {
        /// Index of the event.
        index: usize,
        /// What was wrong.
        source: VariableError,
    },
    /// An EV_EFI_BOOT_SERVICES_* event's UEFI_IMAGE_LOAD_EVENT header is cut short.
    #[error(
        "event {index}: UEFI_IMAGE_LOAD_EVENT at byte offset {offset} truncated ({available} of \
         32 header bytes)"
    )]
    ImageLoadTruncated {
        /// Index of the event.
        index: usize,
        /// Byte offset of the structure.
        offset: usize,
        /// Bytes present.
        available: usize,
    },
    /// LengthOfDevicePath runs past the event data.
    #[error(
        "event {index}: UEFI_IMAGE_LOAD_EVENT LengthOfDevicePath {len} at byte offset {offset} \
         exceeds the {available} bytes left"
    )]
    ImageLoadPathLength {
        /// Index of the event.
        index: usize,
        /// Byte offset of the length field.
        offset: usize,
        /// Declared length.
        len: u64,
        /// Bytes left.
        available: usize,
    },
    /// The image's device path is malformed.
    #[error("event {index}: malformed device path")]
    DevicePath {
        /// Index of the event.
        index: usize,
        /// What was wrong.
        source: DevicePathError,
    },
}

/// What an EV_IPL string is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IplKind {
    /// A GRUB command (`grub_cmd: ...`).
    GrubCommand,
    /// A kernel command line (GRUB's `kernel_cmdline: ...`, or systemd-boot/stub UTF-16).
    KernelCmdline,
    /// Any other string (file names loaded by GRUB, shim's MokList names, ...).
    Text,
}

/// Decoded event data.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventData<'a> {
    /// The "Spec ID Event03" / "Spec ID Event00" header.
    SpecId {
        /// The signature text.
        signature: String,
    },
    /// A StartupLocality EV_NO_ACTION event.
    StartupLocality {
        /// Locality TPM2_Startup was issued from.
        locality: u8,
    },
    /// Another EV_NO_ACTION event, named by its leading signature text when it has one.
    NoAction {
        /// E.g. `SP800-155 Event3`, `NvIndexInstance`.
        signature: Option<String>,
    },
    /// EV_SEPARATOR: 0 normal, 1 or 0xFFFFFFFF error.
    Separator {
        /// The separator value.
        value: u32,
    },
    /// A string event (EV_EFI_ACTION, EV_ACTION, EV_POST_CODE text, EV_S_CRTM_VERSION, ...).
    Text {
        /// The text.
        text: String,
    },
    /// An EV_IPL string.
    Ipl {
        /// What it is.
        ipl: IplKind,
        /// The text without its `grub_cmd: ` / `kernel_cmdline: ` prefix.
        text: String,
    },
    /// EV_S_CRTM_VERSION holding a GUID.
    Guid {
        /// The GUID.
        guid: Guid,
    },
    /// A UEFI variable event.
    Variable(UefiVariable<'a>),
    /// EV_EFI_BOOT_SERVICES_APPLICATION / _DRIVER, EV_EFI_RUNTIME_SERVICES_DRIVER.
    ImageLoad {
        /// ImageLocationInMemory.
        location: u64,
        /// ImageLengthInMemory.
        length: u64,
        /// ImageLinkTimeAddress.
        link_time_address: u64,
        /// The device path as text.
        device_path: String,
    },
    /// UEFI_PLATFORM_FIRMWARE_BLOB(2) (also EV_POST_CODE's blob form).
    FirmwareBlob {
        /// Description (BLOB2 only).
        description: Option<String>,
        /// BlobBase.
        base: u64,
        /// BlobLength.
        length: u64,
    },
    /// EV_EVENT_TAG holding a TCG_PCClientTaggedEvent (taggedEventID, taggedEventDataSize,
    /// taggedEventData). The Linux EFI stub logs its command line and initrd this way in PCR 9;
    /// the event digest is of the measured object, not of this data.
    Tagged {
        /// taggedEventID.
        id: u32,
        /// What a known id means.
        tag: Option<EventTag>,
        /// taggedEventData as text, when it is printable.
        description: Option<String>,
    },
    /// Data this crate does not interpret.
    Raw,
}

/// The tagged events this crate knows (Linux EFI stub, `drivers/firmware/efi/libstub`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventTag {
    /// 0x8F3B22ED: the image's LoadOptions, i.e. the kernel command line (UTF-16); the digest
    /// is of the command line, which the log does not carry.
    LoadOptions,
    /// 0x8F3B22EC: the initrd the stub loaded; the digest is of the initrd.
    Initrd,
}

impl EventTag {
    /// taggedEventID of the EFI stub's LoadOptions measurement.
    pub const LOAD_OPTIONS_ID: u32 = 0x8F3B_22ED;
    /// taggedEventID of the EFI stub's initrd measurement.
    pub const INITRD_ID: u32 = 0x8F3B_22EC;

    /// The tag of a taggedEventID, when known.
    pub fn from_id(id: u32) -> Option<EventTag> {
        match id {
            EventTag::LOAD_OPTIONS_ID => Some(EventTag::LoadOptions),
            EventTag::INITRD_ID => Some(EventTag::Initrd),
            _ => None,
        }
    }

    /// What it measures, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            EventTag::LoadOptions => "kernel command line (EFI stub LoadOptions)",
            EventTag::Initrd => "initrd (EFI stub)",
        }
    }
}

const SPEC_ID: &[u8] = b"Spec ID Event0";
const STARTUP_LOCALITY: &[u8] = b"StartupLocality\0";

impl<'a> Event<'a> {
    /// Decodes the event data according to the event type.
    pub fn decode(&self) -> Result<EventData<'a>, DecodeError> {
        let d = self.data;
        let base = self.data_offset;
        let index = self.index;
        let text = |t: &str| EventData::Text { text: t.to_owned() };
        Ok(match self.event_type {
            EventType::EV_NO_ACTION => no_action(d),
            EventType::EV_SEPARATOR => match <[u8; 4]>::try_from(d) {
                Ok(v) => EventData::Separator {
                    value: u32::from_le_bytes(v),
                },
                Err(_) => printable_utf8(d).map_or(EventData::Raw, text),
            },
            EventType::EV_EFI_ACTION | EventType::EV_ACTION | EventType::EV_EFI_HCRTM_EVENT => {
                printable_utf8(d).map_or(EventData::Raw, text)
            }
            EventType::EV_S_CRTM_VERSION => {
                if let Some(t) = printable_utf16(d) {
                    EventData::Text { text: t }
                } else if let Ok(g) = <[u8; 16]>::try_from(d) {
                    EventData::Guid { guid: Guid(g) }
                } else {
                    printable_utf8(d).map_or(EventData::Raw, text)
                }
            }
            EventType::EV_POST_CODE | EventType::EV_EFI_PLATFORM_FIRMWARE_BLOB => {
                if let Some(t) = printable_utf8(d) {
                    text(t)
                } else {
                    blob(d, false)
                }
            }
            EventType::EV_EFI_PLATFORM_FIRMWARE_BLOB2 | EventType::EV_POST_CODE2 => blob(d, true),
            EventType::EV_EVENT_TAG => {
                tagged(d).unwrap_or_else(|| printable_utf8(d).map_or(EventData::Raw, text))
            }
            EventType::EV_PLATFORM_CONFIG_FLAGS => printable_utf8(d).map_or(EventData::Raw, text),
            EventType::EV_IPL => ipl(d, self.pcr),
            t if t.is_variable_event() => EventData::Variable(
                variable::decode(d, base, t == EventType::EV_EFI_VARIABLE_AUTHORITY)
                    .map_err(|source| DecodeError::Variable { index, source })?,
            ),
            EventType::EV_EFI_BOOT_SERVICES_APPLICATION
            | EventType::EV_EFI_BOOT_SERVICES_DRIVER
            | EventType::EV_EFI_RUNTIME_SERVICES_DRIVER => image_load(d, base, index)?,
            _ => EventData::Raw,
        })
    }
}

fn no_action(d: &[u8]) -> EventData<'static> {
    if d.starts_with(SPEC_ID) {
        let sig = d
            .get(..16)
            .and_then(printable_utf8)
            .unwrap_or("Spec ID Event");
        return EventData::SpecId {
            signature: sig.to_owned(),
        };
    }
    if d.starts_with(STARTUP_LOCALITY) {
        if let Some(&locality) = d.get(STARTUP_LOCALITY.len()) {
            return EventData::StartupLocality { locality };
        }
    }
    let end = d.iter().position(|&c| c == 0).unwrap_or(d.len()).min(32);
    let signature = d.get(..end).and_then(printable_utf8).map(str::to_owned);
    EventData::NoAction { signature }
}

/// A TCG_PCClientTaggedEvent whose size field covers exactly the rest of the data.
fn tagged(d: &[u8]) -> Option<EventData<'static>> {
    let mut r = Reader::new(d, 0);
    let id = r.u32()?;
    let len = usize::try_from(r.u32()?).ok()?;
    let data = r.take(len)?;
    if r.remaining() != 0 {
        return None;
    }
    let end = data.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
    Some(EventData::Tagged {
        id,
        tag: EventTag::from_id(id),
        description: data.get(..end).and_then(printable_utf8).map(str::to_owned),
    })
}

fn blob(d: &[u8], with_description: bool) -> EventData<'static> {
    let mut r = Reader::new(d, 0);
    let description = if with_description {
        let n = r.u8().map(usize::from).unwrap_or(0);
        r.take(n).map(|t| String::from_utf8_lossy(t).into_owned())
    } else {
        None
    };
    match (r.u64(), r.u64()) {
        (Some(base), Some(length)) if r.remaining() == 0 => EventData::FirmwareBlob {
            description,
            base,
            length,
        },
        _ => EventData::Raw,
    }
}

fn ipl(d: &[u8], pcr: u32) -> EventData<'static> {
    match ipl_text(d, pcr) {
        Some((ipl, text)) => EventData::Ipl {
            ipl,
            text: text.into_owned(),
        },
        None => EventData::Raw,
    }
}

/// What EV_IPL data is and its text (without the `grub_cmd: ` / `kernel_cmdline: ` prefix),
/// borrowed when the data is UTF-8; `None` when it is not text ([`EventData::Raw`]).
pub(crate) fn ipl_text(d: &[u8], pcr: u32) -> Option<(IplKind, Cow<'_, str>)> {
    if let Some(t) = printable_utf8(d) {
        for (prefix, ipl) in [
            ("grub_cmd: ", IplKind::GrubCommand),
            ("grub_cmd ", IplKind::GrubCommand),
            ("kernel_cmdline: ", IplKind::KernelCmdline),
            ("kernel_cmdline ", IplKind::KernelCmdline),
            ("grub_kernel_cmdline ", IplKind::KernelCmdline),
        ] {
            if let Some(rest) = t.strip_prefix(prefix) {
                return Some((ipl, Cow::Borrowed(rest)));
            }
        }
        return Some((IplKind::Text, Cow::Borrowed(t)));
    }
    let t = printable_utf16(d)?;
    // systemd-boot / systemd-stub measure the kernel command line as UTF-16 into PCR 8
    // (older releases) or PCR 12.
    let ipl = if pcr == 8 || pcr == 12 {
        IplKind::KernelCmdline
    } else {
        IplKind::Text
    };
    Some((ipl, Cow::Owned(t)))
}

/// The kernel command line an EV_IPL event carries, if it carries one: what [`ipl_text`] reads
/// as [`IplKind::KernelCmdline`]. Data that cannot be one (a GRUB command, a file name) is
/// rejected on its first bytes, without checking or copying the rest.
pub(crate) fn kernel_cmdline(d: &[u8], pcr: u32) -> Option<Cow<'_, str>> {
    // UTF-8 command lines start with one of the prefixes; UTF-16 ones (PCR 8 or 12 only) need
    // a zero second byte to be read as UTF-16 text at all.
    let utf8 = d.starts_with(b"kernel_cmdline") || d.starts_with(b"grub_kernel_cmdline ");
    let utf16 = (pcr == 8 || pcr == 12) && d.get(1) == Some(&0);
    if !utf8 && !utf16 {
        return None;
    }
    match ipl_text(d, pcr)? {
        (IplKind::KernelCmdline, text) => Some(text),
        _ => None,
    }
}

fn image_load(d: &[u8], base: usize, index: usize) -> Result<EventData<'static>, DecodeError> {
    let mut r = Reader::new(d, base);
    let truncated = || DecodeError::ImageLoadTruncated {
        index,
        offset: base,
        available: d.len().min(32),
    };
    let location = r.u64().ok_or_else(truncated)?;
    let length = r.u64().ok_or_else(truncated)?;
    let link_time_address = r.u64().ok_or_else(truncated)?;
    let len_offset = r.offset();
    let len = r.u64().ok_or_else(truncated)?;
    let path_base = r.offset();
    let path = usize::try_from(len).ok().and_then(|n| r.take(n)).ok_or(
        DecodeError::ImageLoadPathLength {
            index,
            offset: len_offset,
            len,
            available: r.remaining(),
        },
    )?;
    let device_path = devpath::render(path, path_base)
        .map_err(|source| DecodeError::DevicePath { index, source })?;
    Ok(EventData::ImageLoad {
        location,
        length,
        link_time_address,
        device_path,
    })
}

#[cfg(test)]
#[path = "../../../testsupport/testdata.rs"]
mod testdata;

#[cfg(test)]
mod tests {
    use super::testdata;
    use super::*;
    use crate::eventlog::EventLog;
    use std::path::PathBuf;

    /// Every `.bin` log under shared/testdata/eventlogs (top level and unlabeled/).
    fn real_logs() -> Vec<PathBuf> {
        let dir = testdata::eventlogs_dir();
        let mut out = Vec::new();
        for d in [dir.clone(), dir.join("unlabeled")] {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "bin") {
                    out.push(p);
                }
            }
        }
        out
    }

    fn decoded_cmdline(d: &[u8], pcr: u32) -> Option<String> {
        match ipl(d, pcr) {
            EventData::Ipl {
                ipl: IplKind::KernelCmdline,
                text,
            } => Some(text),
            _ => None,
        }
    }

    #[test]
    fn kernel_cmdline_agrees_with_decode_on_real_logs() {
        let (mut ipl_events, mut cmdlines) = (0, 0);
        for path in real_logs() {
            let bytes = std::fs::read(&path).unwrap();
            let log = EventLog::parse(&bytes).unwrap();
            for ev in log.events.iter() {
                if ev.event_type != EventType::EV_IPL {
                    continue;
                }
                ipl_events += 1;
                let want = match ev.decode() {
                    Ok(EventData::Ipl {
                        ipl: IplKind::KernelCmdline,
                        text,
                    }) => Some(text),
                    _ => None,
                };
                cmdlines += usize::from(want.is_some());
                let got = kernel_cmdline(ev.data, ev.pcr).map(Cow::into_owned);
                assert_eq!(got, want, "{} event {}", path.display(), ev.index);
            }
        }
        assert!(ipl_events > 300, "only {ipl_events} EV_IPL events");
        assert!(cmdlines >= 5, "only {cmdlines} kernel command lines");
    }

    #[test]
    fn kernel_cmdline_agrees_with_decode_on_edge_cases() {
        let utf16 = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
        let cases: Vec<(Vec<u8>, u32)> = vec![
            (b"kernel_cmdline: root=/dev/sda1 ro".to_vec(), 8),
            (b"kernel_cmdline root=x\0\0".to_vec(), 8),
            (b"kernel_cmdline \0".to_vec(), 8),
            (b"kernel_cmdline".to_vec(), 8),
            (b"grub_kernel_cmdline /vmlinuz quiet".to_vec(), 8),
            (b"kernel_cmdline: bad\xff utf8".to_vec(), 8),
            (b"kernel_cmdline: ctl\x01".to_vec(), 8),
            (b"grub_cmd: linux /vmlinuz".to_vec(), 8),
            (b"/boot/vmlinuz".to_vec(), 9),
            (utf16("initrd=x quiet\0"), 12),
            (utf16("initrd=x quiet"), 8),
            (utf16("initrd=x quiet"), 9),
            (utf16("kernel_cmdline: x"), 8),
            (vec![0x41, 0x00, 0x01, 0x00], 12),
            (vec![0x00, 0x00], 12),
            (vec![0x41, 0x00, 0x42], 8),
            (vec![0x41, 0x00, 0x42, 0x00, 0x00], 8),
            (Vec::new(), 8),
        ];
        for (d, pcr) in cases {
            assert_eq!(
                kernel_cmdline(&d, pcr).map(Cow::into_owned),
                decoded_cmdline(&d, pcr),
                "{d:?} PCR{pcr}"
            );
        }
    }
}
