//! Encrypted volumes: a userspace AES-XTS engine and native LUKS2 volumes.
pub mod xts;
