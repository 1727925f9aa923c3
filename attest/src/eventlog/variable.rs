//! UEFI variable events (UEFI_VARIABLE_DATA) and the values operators care about: SecureBoot,
//! BootOrder, Boot#### load options, signature databases (PK/KEK/db/dbx) and the single
//! signature entries that EV_EFI_VARIABLE_AUTHORITY events record.

use super::devpath;
use super::guid::Guid;
use super::reader::Reader;
use super::text::{printable_utf8, utf16_lossy};
use serde::Serialize;

/// Why a UEFI_VARIABLE_DATA structure could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VariableError {
    /// The fixed header (GUID and two lengths, 32 bytes) is cut short.
    #[error(
        "UEFI_VARIABLE_DATA at byte offset {offset}: header truncated ({available} of 32 bytes)"
    )]
    HeaderTruncated {
        /// Byte offset of the structure.
        offset: usize,
        /// Bytes present.
        available: usize,
    },
    /// UnicodeNameLength runs past the event data.
    #[error(
        "UEFI_VARIABLE_DATA at byte offset {offset}: UnicodeNameLength {chars} needs more than \
         the {available} bytes left"
    )]
    NameLength {
        /// Byte offset of the name.
        offset: usize,
        /// Declared length in UTF-16 characters.
        chars: u64,
        /// Bytes left.
        available: usize,
    },
    /// VariableDataLength runs past the event data.
    #[error(
        "UEFI_VARIABLE_DATA at byte offset {offset}: VariableDataLength {len} exceeds the \
         {available} bytes left"
    )]
    DataLength {
        /// Byte offset of the variable data.
        offset: usize,
        /// Declared length.
        len: u64,
        /// Bytes left.
        available: usize,
    },
}

/// A decoded UEFI_VARIABLE_DATA.
#[derive(Clone, Debug, Serialize)]
pub struct UefiVariable<'a> {
    /// VariableName (the vendor GUID).
    pub guid: Guid,
    /// UnicodeName.
    pub name: String,
    /// VariableData, borrowed from the log.
    #[serde(skip)]
    pub data: &'a [u8],
    /// Length of VariableData.
    pub data_len: usize,
    /// The decoded value, for variables this crate knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<VariableValue>,
}

/// Summary of one EFI_SIGNATURE_LIST.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SignatureList {
    /// SignatureType: `x509`, `sha256` or the GUID.
    pub signature_type: String,
    /// Number of entries.
    pub entries: u32,
}

/// A value decoded from a known variable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VariableValue {
    /// SecureBoot: 1 byte, 1 = enabled; empty data reads as disabled.
    SecureBoot(bool),
    /// BootOrder: the Boot#### numbers in order.
    BootOrder(Vec<String>),
    /// Boot####: an EFI_LOAD_OPTION.
    LoadOption {
        /// Attributes (bit 0: active).
        attributes: u32,
        /// Description.
        description: String,
        /// The first file path, as text (or the reason it could not be rendered).
        device_path: String,
    },
    /// PK, KEK, db, dbx, ...: the signature lists.
    SignatureLists(Vec<SignatureList>),
    /// An EV_EFI_VARIABLE_AUTHORITY entry: one EFI_SIGNATURE_DATA.
    SignatureData {
        /// SignatureOwner; `None` when the firmware logged the bare certificate without it.
        owner: Option<Guid>,
        /// Length of the signature data (e.g. a DER certificate).
        len: usize,
    },
    /// A variable holding text (e.g. shim's SbatLevel).
    Text(String),
}

/// The fields of a UEFI_VARIABLE_DATA, borrowed: VariableName (UTF-16LE) and VariableData.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header<'a> {
    /// VariableName (the vendor GUID).
    pub guid: Guid,
    /// UnicodeName, UTF-16LE as logged.
    pub name: &'a [u8],
    /// VariableData.
    pub data: &'a [u8],
    /// Absolute byte offset of VariableData.
    pub data_offset: usize,
}

/// Reads the UEFI_VARIABLE_DATA at absolute offset `base` without decoding the name or value.
pub(crate) fn header(data: &[u8], base: usize) -> Result<Header<'_>, VariableError> {
    let mut r = Reader::new(data, base);
    let header = |r: &Reader<'_>| VariableError::HeaderTruncated {
        offset: base,
        available: r.remaining().min(data.len()),
    };
    let guid = Guid(r.array::<16>().ok_or_else(|| header(&r))?);
    let chars = r.u64().ok_or_else(|| header(&r))?;
    let len = r.u64().ok_or_else(|| header(&r))?;
    let name_offset = r.offset();
    let name = chars
        .checked_mul(2)
        .and_then(|n| usize::try_from(n).ok())
        .and_then(|n| r.take(n))
        .ok_or(VariableError::NameLength {
            offset: name_offset,
            chars,
            available: r.remaining(),
        })?;
    let data_offset = r.offset();
    let value =
        usize::try_from(len)
            .ok()
            .and_then(|n| r.take(n))
            .ok_or(VariableError::DataLength {
                offset: data_offset,
                len,
                available: r.remaining(),
            })?;
    Ok(Header {
        guid,
        name,
        data: value,
        data_offset,
    })
}

/// Decodes a UEFI_VARIABLE_DATA found at absolute offset `base`. `authority` selects the
/// EV_EFI_VARIABLE_AUTHORITY reading of the data (one signature entry, not a list).
pub fn decode(
    data: &[u8],
    base: usize,
    authority: bool,
) -> Result<UefiVariable<'_>, VariableError> {
    let h = header(data, base)?;
    let name = utf16_lossy(h.name);
    let value = value_of(h.guid, &name, h.data, h.data_offset, authority);
    Ok(UefiVariable {
        guid: h.guid,
        name,
        data: h.data,
        data_len: h.data.len(),
        value,
    })
}

fn value_of(
    guid: Guid,
    name: &str,
    d: &[u8],
    base: usize,
    authority: bool,
) -> Option<VariableValue> {
    if authority {
        let is_db = matches!(name, "db" | "vendor_db" | "MokList" | "MokListX" | "dbx");
        // A DER certificate starts with SEQUENCE (0x30) and a long-form length (0x82): some
        // firmware logs the certificate itself instead of an EFI_SIGNATURE_DATA.
        if is_db && d.starts_with(&[0x30, 0x82]) {
            return Some(VariableValue::SignatureData {
                owner: None,
                len: d.len(),
            });
        }
        return match (d.get(..16), d.get(16..)) {
            (Some(owner), Some(rest)) if is_db => Some(VariableValue::SignatureData {
                owner: <[u8; 16]>::try_from(owner).ok().map(Guid),
                len: rest.len(),
            }),
            _ => printable_utf8(d).map(|t| VariableValue::Text(t.to_owned())),
        };
    }
    let global = guid == Guid::EFI_GLOBAL_VARIABLE;
    match name {
        "SecureBoot" if global => Some(VariableValue::SecureBoot(d.first() == Some(&1))),
        "BootOrder" if global => Some(VariableValue::BootOrder(
            d.chunks_exact(2)
                .map(|c| format!("Boot{:04X}", u16::from_le_bytes([c[0], c[1]])))
                .collect(),
        )),
        n if global && is_boot_option(n) => load_option(d, base),
        "PK" | "KEK" | "db" | "dbx" | "dbt" | "dbr" | "MokList" | "MokListX" => {
            signature_lists(d).map(VariableValue::SignatureLists)
        }
        _ => printable_utf8(d).map(|t| VariableValue::Text(t.to_owned())),
    }
}

fn is_boot_option(name: &str) -> bool {
    name.len() == 8
        && name.starts_with("Boot")
        && name
            .get(4..)
            .is_some_and(|h| h.chars().all(|c| c.is_ascii_hexdigit()))
}

/// EFI_LOAD_OPTION: attributes, FilePathListLength, NUL-terminated UTF-16 description, paths.
fn load_option(d: &[u8], base: usize) -> Option<VariableValue> {
    let mut r = Reader::new(d, base);
    let attributes = r.u32()?;
    let path_len = usize::from(r.u16()?);
    let rest = r.rest();
    let desc_units = rest.chunks_exact(2).position(|c| c == [0, 0])?;
    let desc_bytes = rest.get(..desc_units * 2)?;
    r.take(desc_units * 2 + 2)?;
    let path_base = r.offset();
    let path = r.take(path_len)?;
    let device_path = match devpath::render(path, path_base) {
        Ok(t) => t,
        Err(e) => format!("<{e}>"),
    };
    Some(VariableValue::LoadOption {
        attributes,
        description: utf16_lossy(desc_bytes),
        device_path,
    })
}

/// Walks EFI_SIGNATURE_LISTs; `None` if the structure does not add up.
fn signature_lists(d: &[u8]) -> Option<Vec<SignatureList>> {
    let mut r = Reader::new(d, 0);
    let mut out = Vec::new();
    while r.remaining() > 0 {
        let ty = Guid(r.array::<16>()?);
        let list_size = usize::try_from(r.u32()?).ok()?;
        let header_size = usize::try_from(r.u32()?).ok()?;
        let sig_size = usize::try_from(r.u32()?).ok()?;
        let body = list_size.checked_sub(28)?;
        r.take(body)?;
        let sigs = body.checked_sub(header_size)?;
        let entries = u32::try_from(sigs.checked_div(sig_size).unwrap_or(0)).ok()?;
        let signature_type = if ty == Guid::CERT_X509 {
            "x509".to_owned()
        } else if ty == Guid::CERT_SHA256 {
            "sha256".to_owned()
        } else {
            ty.to_string()
        };
        out.push(SignatureList {
            signature_type,
            entries,
        });
    }
    Some(out)
}
