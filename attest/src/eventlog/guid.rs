//! EFI GUIDs as found in event data (mixed-endian on the wire) and the few the decoder names.

use serde::{Serialize, Serializer};
use std::fmt;

/// An EFI_GUID in its on-the-wire byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// EFI_GLOBAL_VARIABLE: SecureBoot, PK, KEK, BootOrder, Boot####.
    pub const EFI_GLOBAL_VARIABLE: Guid = Guid::from_fields(
        0x8be4_df61,
        0x93ca,
        0x11d2,
        [0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c],
    );
    /// EFI_IMAGE_SECURITY_DATABASE_GUID: db, dbx, dbt, dbr.
    pub const IMAGE_SECURITY_DATABASE: Guid = Guid::from_fields(
        0xd719_b2cb,
        0x3d3a,
        0x4596,
        [0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f],
    );
    /// EFI_CERT_X509_GUID: signature list entries holding DER X.509 certificates.
    pub const CERT_X509: Guid = Guid::from_fields(
        0xa5c0_59a1,
        0x94e4,
        0x4aa7,
        [0x87, 0xb5, 0xab, 0x15, 0x5c, 0x2b, 0xf0, 0x72],
    );
    /// EFI_CERT_SHA256_GUID: signature list entries holding SHA-256 image hashes.
    pub const CERT_SHA256: Guid = Guid::from_fields(
        0xc1c4_1626,
        0x504c,
        0x4092,
        [0xac, 0xa9, 0x41, 0xf9, 0x36, 0x93, 0x43, 0x28],
    );

    /// Builds a GUID from its textual fields (stored little-endian like EFI does).
    pub const fn from_fields(a: u32, b: u16, c: u16, d: [u8; 8]) -> Guid {
        let a = a.to_le_bytes();
        let b = b.to_le_bytes();
        let c = c.to_le_bytes();
        Guid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5],
            d[6], d[7],
        ])
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = &self.0;
        let a = u32::from_le_bytes([g[0], g[1], g[2], g[3]]);
        let b = u16::from_le_bytes([g[4], g[5]]);
        let c = u16::from_le_bytes([g[6], g[7]]);
        write!(
            f,
            "{a:08x}-{b:04x}-{c:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

impl Serialize for Guid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::Guid;

    #[test]
    fn renders_mixed_endian() {
        assert_eq!(
            Guid::EFI_GLOBAL_VARIABLE.to_string(),
            "8be4df61-93ca-11d2-aa0d-00e098032b8c"
        );
        assert_eq!(Guid::EFI_GLOBAL_VARIABLE.0[0], 0x61);
    }
}
