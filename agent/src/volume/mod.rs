//! Encrypted volumes: a userspace AES-XTS engine ([`xts`]), block device access
//! ([`device`]) and native LUKS2 volumes ([`luks2`]) that cryptsetup can read and that
//! can read what cryptsetup wrote.
pub mod device;
pub mod luks2;
pub mod xts;
