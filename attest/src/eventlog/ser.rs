//! Small serde helpers shared by the event-log result types.

use serde::Serializer;

/// Serializes bytes as a lower-case hex string.
pub(crate) fn hex_bytes<S: Serializer>(bytes: &&[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}

/// Serializes owned bytes as a lower-case hex string.
pub(crate) fn hex_vec<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}
