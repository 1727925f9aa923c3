//! The entries of a signature database (EFI_SIGNATURE_LIST sequence, UEFI spec "Signature
//! Database"), for the `dbx_contains` rule: every EFI_SIGNATURE_DATA's SignatureData, without
//! its 16-byte SignatureOwner.

use thiserror::Error;

/// Bytes of an EFI_SIGNATURE_LIST header before SignatureHeader: GUID + three u32.
const LIST_HEADER: usize = 28;
/// Bytes of EFI_SIGNATURE_DATA.SignatureOwner.
const OWNER: usize = 16;

/// Why a signature database does not walk as a sequence of EFI_SIGNATURE_LISTs.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SigListError {
    /// A list header is cut short.
    #[error(
        "EFI_SIGNATURE_LIST at byte offset {offset}: header truncated ({available} of 28 bytes)"
    )]
    HeaderTruncated {
        /// Offset of the list in the variable data.
        offset: usize,
        /// Bytes left.
        available: usize,
    },
    /// The sizes in a list header do not add up.
    #[error(
        "EFI_SIGNATURE_LIST at byte offset {offset}: SignatureListSize {list_size}, \
         SignatureHeaderSize {header_size}, SignatureSize {sig_size} do not fit the {available} \
         bytes left"
    )]
    Sizes {
        /// Offset of the list.
        offset: usize,
        /// SignatureListSize.
        list_size: u32,
        /// SignatureHeaderSize.
        header_size: u32,
        /// SignatureSize.
        sig_size: u32,
        /// Bytes left from the list's start.
        available: usize,
    },
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    let b = d.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

/// Every SignatureData in the database, in order, borrowed from `data`.
pub fn entries(data: &[u8]) -> Result<Vec<&[u8]>, SigListError> {
    let mut out = Vec::new();
    let mut offset = 0usize;
    while let Some(rest) = data.get(offset..).filter(|r| !r.is_empty()) {
        let truncated = SigListError::HeaderTruncated {
            offset,
            available: rest.len(),
        };
        let (Some(list_size), Some(header_size), Some(sig_size)) =
            (u32_at(rest, 16), u32_at(rest, 20), u32_at(rest, 24))
        else {
            return Err(truncated);
        };
        let bad = SigListError::Sizes {
            offset,
            list_size,
            header_size,
            sig_size,
            available: rest.len(),
        };
        let list = usize::try_from(list_size)
            .ok()
            .filter(|n| *n >= LIST_HEADER)
            .and_then(|n| rest.get(..n))
            .ok_or_else(|| bad.clone())?;
        let sigs = usize::try_from(header_size)
            .ok()
            .and_then(|h| LIST_HEADER.checked_add(h))
            .and_then(|start| list.get(start..))
            .ok_or_else(|| bad.clone())?;
        let size = usize::try_from(sig_size)
            .ok()
            .filter(|s| *s >= OWNER && (sigs.is_empty() || sigs.len() % s == 0))
            .ok_or_else(|| bad.clone())?;
        for sig in sigs.chunks_exact(size) {
            if let Some(d) = sig.get(OWNER..) {
                out.push(d);
            }
        }
        offset = offset.checked_add(list.len()).ok_or(bad)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{entries, SigListError};

    fn list(sig_size: u32, sigs: &[[u8; 48]]) -> Vec<u8> {
        let mut v = vec![0x26; 16];
        let size = 28 + sigs.len() * 48;
        v.extend_from_slice(&u32::try_from(size).unwrap().to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&sig_size.to_le_bytes());
        for s in sigs {
            v.extend_from_slice(s);
        }
        v
    }

    #[test]
    fn walks_lists_and_strips_owners() {
        let mut a = [0u8; 48];
        a[16..].fill(0xAA);
        let mut b = [0u8; 48];
        b[16..].fill(0xBB);
        let mut data = list(48, &[a, b]);
        data.extend(list(48, &[a]));
        let e = entries(&data).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[1], &[0xBB; 32][..]);
        assert_eq!(entries(&[]).unwrap().len(), 0);
    }

    #[test]
    fn refuses_bad_sizes() {
        let a = [0u8; 48];
        let data = list(40, &[a]);
        assert!(matches!(
            entries(&data),
            Err(SigListError::Sizes { offset: 0, .. })
        ));
        let mut data = list(48, &[a]);
        data.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            entries(&data),
            Err(SigListError::HeaderTruncated {
                offset: 76,
                available: 3
            })
        );
        let mut data = list(48, &[a]);
        data[16] = 0xFF;
        assert!(matches!(entries(&data), Err(SigListError::Sizes { .. })));
    }
}
