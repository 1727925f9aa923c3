//! Encrypted volumes: a userspace AES-XTS engine ([`xts`]), block device access
//! ([`device`]) and native LUKS2 volumes ([`luks2`]) that cryptsetup can read and that
//! can read what cryptsetup wrote. [`tpm_token`] holds the Vouch tokens (sealed secret,
//! escrowed recovery), [`systemd_token`] systemd-cryptenroll's `systemd-tpm2` token, [`dm`] maps volumes with device-mapper, [`config`] reads volumes.toml.
pub mod config;
pub mod device;
pub mod dm;
pub mod luks2;
pub mod recovery;
pub mod systemd_token;
pub mod tpm_token;
pub mod xts;
