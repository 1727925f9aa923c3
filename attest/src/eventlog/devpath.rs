//! Rendering of UEFI device paths (EFI_DEVICE_PATH_PROTOCOL node chains) as text, in the style
//! of the UEFI "device path to text" protocol for the common node types; other nodes are shown
//! as `Path(type,subtype,hex)`.

use super::guid::Guid;
use super::reader::Reader;
use super::text::utf16_lossy;
use std::fmt::Write as _;

/// Why a device path could not be rendered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DevicePathError {
    /// A node header runs past the end of the path.
    #[error(
        "device path node header at byte offset {offset} is truncated ({available} bytes left)"
    )]
    HeaderTruncated {
        /// Byte offset of the node.
        offset: usize,
        /// Bytes left.
        available: usize,
    },
    /// A node's length is below the 4-byte header or past the end of the path.
    #[error(
        "device path node at byte offset {offset} has length {length}, valid is 4..={available}"
    )]
    NodeLength {
        /// Byte offset of the node.
        offset: usize,
        /// Declared node length.
        length: u16,
        /// Bytes left in the path.
        available: usize,
    },
}

/// Renders the device path in `bytes` (found at absolute offset `base`) as text.
pub fn render(bytes: &[u8], base: usize) -> Result<String, DevicePathError> {
    let mut r = Reader::new(bytes, base);
    let mut out = String::new();
    let mut need_sep = false;
    // Some firmware leaves the path's tail zero-filled instead of ending it with an end node.
    while r.rest().iter().any(|&b| b != 0) {
        let offset = r.offset();
        let available = r.remaining();
        let (ty, sub, len) = match (r.u8(), r.u8(), r.u16()) {
            (Some(t), Some(s), Some(l)) => (t, s, l),
            _ => return Err(DevicePathError::HeaderTruncated { offset, available }),
        };
        let body = usize::from(len)
            .checked_sub(4)
            .and_then(|n| r.take(n))
            .ok_or(DevicePathError::NodeLength {
                offset,
                length: len,
                available,
            })?;
        match (ty, sub) {
            (0x7F, 0xFF) => break,
            (0x7F, _) => {
                out.push(',');
                need_sep = false;
                continue;
            }
            _ => {}
        }
        if need_sep {
            out.push('/');
        }
        node(&mut out, ty, sub, body);
        need_sep = true;
    }
    Ok(out)
}

fn guid_at(b: &[u8], at: usize) -> Option<Guid> {
    b.get(at..at.checked_add(16)?)?.try_into().ok().map(Guid)
}

/// Appends the text of one node.
fn node(out: &mut String, ty: u8, sub: u8, b: &[u8]) {
    let mut r = Reader::new(b, 0);
    let written = match (ty, sub) {
        (0x01, 0x01) => r.u8().zip(r.u8()).map(|(func, dev)| {
            let _ = write!(out, "Pci({dev:#x},{func:#x})");
        }),
        (0x01, 0x04) | (0x03, 0x0A) | (0x04, 0x03) => guid_at(b, 0).map(|g| {
            let kind = match ty {
                0x01 => "VenHw",
                0x03 => "VenMsg",
                _ => "VenMedia",
            };
            let _ = write!(out, "{kind}({g})");
        }),
        (0x01, 0x05) => r.u32().map(|c| {
            let _ = write!(out, "Ctrl({c:#x})");
        }),
        (0x02, 0x01) => r.u32().zip(r.u32()).map(|(hid, uid)| {
            let _ = match hid {
                0x0A03_41D0 => write!(out, "PciRoot({uid:#x})"),
                0x0A08_41D0 => write!(out, "PcieRoot({uid:#x})"),
                _ => write!(out, "Acpi({hid:#010x},{uid:#x})"),
            };
        }),
        (0x03, 0x01) => r.u8().zip(r.u8()).zip(r.u16()).map(|((p, s), lun)| {
            let p = if p == 0 { "Primary" } else { "Secondary" };
            let s = if s == 0 { "Master" } else { "Slave" };
            let _ = write!(out, "Ata({p},{s},{lun:#x})");
        }),
        (0x03, 0x02) => r.u16().zip(r.u16()).map(|(pun, lun)| {
            let _ = write!(out, "Scsi({pun:#x},{lun:#x})");
        }),
        (0x03, 0x05) => r.u8().zip(r.u8()).map(|(port, iface)| {
            let _ = write!(out, "USB({port:#x},{iface:#x})");
        }),
        (0x03, 0x0B) => r.take(32).zip(r.u8()).map(|(mac, if_type)| {
            let n = if if_type == 0 || if_type == 1 { 6 } else { 32 };
            let mac = mac.get(..n).unwrap_or(mac);
            let _ = write!(out, "MAC({},{if_type:#x})", hex::encode(mac));
        }),
        (0x03, 0x0C) => r.array::<4>().zip(r.array::<4>()).map(|(local, remote)| {
            let [a, b2, c, d] = remote;
            let [e, f, g, h] = local;
            let _ = write!(out, "IPv4({a}.{b2}.{c}.{d},{e}.{f}.{g}.{h})");
        }),
        (0x03, 0x0D) => {
            out.push_str("IPv6()");
            Some(())
        }
        (0x03, 0x12) => r.u16().zip(r.u16()).zip(r.u16()).map(|((hba, pm), lun)| {
            let _ = write!(out, "Sata({hba:#x},{pm:#x},{lun:#x})");
        }),
        (0x03, 0x17) => r.u32().zip(r.take(8)).map(|(nsid, eui)| {
            let _ = write!(out, "NVMe({nsid:#x},{})", hex::encode_upper(eui));
        }),
        (0x03, 0x18) => {
            let _ = write!(out, "Uri({})", String::from_utf8_lossy(b));
            Some(())
        }
        (0x03, 0x1D) => r.u8().map(|slot| {
            let _ = write!(out, "eMMC({slot:#x})");
        }),
        (0x04, 0x01) => hd(out, &mut r),
        (0x04, 0x02) => r.u32().zip(r.u64()).zip(r.u64()).map(|((e, start), size)| {
            let _ = write!(out, "CDROM({e:#x},{start:#x},{size:#x})");
        }),
        (0x04, 0x04) => {
            out.push_str(&utf16_lossy(b));
            Some(())
        }
        (0x04, 0x05) => guid_at(b, 0).map(|g| {
            let _ = write!(out, "Media({g})");
        }),
        (0x04, 0x06) => guid_at(b, 0).map(|g| {
            let _ = write!(out, "FvFile({g})");
        }),
        (0x04, 0x07) => guid_at(b, 0).map(|g| {
            let _ = write!(out, "Fv({g})");
        }),
        (0x04, 0x08) => r.u32().and(r.u64().zip(r.u64())).map(|(s, e)| {
            let _ = write!(out, "Offset({s:#x},{e:#x})");
        }),
        (0x05, 0x01) => r.u16().zip(r.u16()).map(|(dev_type, _status)| {
            let desc = String::from_utf8_lossy(r.rest());
            let desc = desc.trim_end_matches('\0');
            let _ = write!(out, "BBS({dev_type:#x},{desc})");
        }),
        _ => None,
    };
    if written.is_none() {
        let _ = write!(out, "Path({ty},{sub},{})", hex::encode(b));
    }
}

/// Hard drive media node: `HD(partition,GPT|MBR,signature,start,size)`.
fn hd(out: &mut String, r: &mut Reader<'_>) -> Option<()> {
    let part = r.u32()?;
    let start = r.u64()?;
    let size = r.u64()?;
    let sig = r.array::<16>()?;
    let format = r.u8()?;
    let sig_type = r.u8()?;
    let (fmt_name, sig_text) = match (format, sig_type) {
        (0x02, 0x02) => ("GPT", Guid(sig).to_string()),
        (0x01, 0x01) => {
            let [a, b, c, d, ..] = sig;
            ("MBR", format!("{:#010x}", u32::from_le_bytes([a, b, c, d])))
        }
        _ => ("Unknown", hex::encode(sig)),
    };
    let _ = write!(out, "HD({part},{fmt_name},{sig_text},{start:#x},{size:#x})");
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(ty: u8, sub: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![ty, sub];
        v.extend_from_slice(&((body.len() + 4) as u16).to_le_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn renders_pci_file_and_end() {
        let mut p = n(0x02, 0x01, &[0xD0, 0x41, 0x03, 0x0A, 0, 0, 0, 0]);
        p.extend(n(0x01, 0x01, &[0x00, 0x1F]));
        let file: Vec<u8> = "\\EFI\\a.efi\0"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        p.extend(n(0x04, 0x04, &file));
        p.extend(n(0x7F, 0xFF, &[]));
        assert_eq!(
            render(&p, 0).unwrap(),
            "PciRoot(0x0)/Pci(0x1f,0x0)/\\EFI\\a.efi"
        );
    }

    #[test]
    fn rejects_bad_node_lengths() {
        assert_eq!(
            render(&[0x04, 0x04, 2, 0], 10),
            Err(DevicePathError::NodeLength {
                offset: 10,
                length: 2,
                available: 4
            })
        );
        assert!(matches!(
            render(&[0x04, 0x04, 0xFF, 0], 0),
            Err(DevicePathError::NodeLength { .. })
        ));
        assert!(matches!(
            render(&[0x04], 0),
            Err(DevicePathError::HeaderTruncated { .. })
        ));
    }
}
