//! Exit codes of `vouch-agent` (documented in the README and the man page of the unit).

/// Success.
pub const OK: u8 = 0;
/// The command ran but its check failed (e.g. a verdict or comparison said no).
pub const FAILED: u8 = 1;
/// Bad usage or bad input (also what clap uses for usage errors).
pub const USAGE: u8 = 2;
/// No TPM could be reached through the configured TCTI.
pub const NO_TPM: u8 = 3;
/// The TPM refused or failed an operation.
pub const TPM: u8 = 4;
/// Reading or writing files (state directory, output) failed.
pub const IO: u8 = 5;
/// The configuration file is missing or invalid.
pub const CONFIG: u8 = 6;
/// Unsealing refused: a PCR the secret is bound to holds another value (the boot state changed).
pub const BOOT_STATE: u8 = 7;
/// No device-mapper on this machine (`/dev/mapper/control` missing): a volume cannot be mapped.
pub const NO_DEVICE_MAPPER: u8 = 8;
/// A bug: something that should not happen.
pub const INTERNAL: u8 = 70;
