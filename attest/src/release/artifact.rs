//! Component digests computed from artifacts: the Authenticode SHA-256 of an EFI image (what
//! firmware and shim measure into PCR 4), and the digests a kernel command line has in the log
//! (GRUB's text in PCR 8, the EFI stub's LoadOptions in PCR 9).

use sha2::{Digest, Sha256};
use thiserror::Error;

/// Why an image has no Authenticode digest.
#[derive(Debug, Error)]
pub enum AuthenticodeError {
    /// Not a PE32 or PE32+ image.
    #[error("not a PE/COFF (EFI) image")]
    NotPe(#[source] object::read::Error),
    /// An object file of another kind (ELF, Mach-O, COFF without PE header, ...).
    #[error("a {0} file, not a PE32/PE32+ (EFI) image")]
    OtherKind(String),
    /// A PE32/PE32+ header that does not parse.
    #[error("malformed PE image")]
    Malformed(#[source] object::read::Error),
    /// The section or certificate-table offsets do not fit the file.
    #[error("PE offsets out of range")]
    Offsets(#[source] authenticode::PeOffsetError),
}

/// The Authenticode SHA-256 of a PE32/PE32+ image (checksum, certificate table entry and
/// certificates excluded, as the PE/COFF specification defines it): the digest UEFI firmware
/// and shim extend into PCR 4 for an image they load.
pub fn authenticode_sha256(image: &[u8]) -> Result<[u8; 32], AuthenticodeError> {
    use object::read::pe::{PeFile32, PeFile64};
    let mut hasher = Sha256::new();
    match object::FileKind::parse(image).map_err(AuthenticodeError::NotPe)? {
        object::FileKind::Pe32 => {
            let pe = PeFile32::parse(image).map_err(AuthenticodeError::Malformed)?;
            authenticode::authenticode_digest(&pe, &mut hasher)
        }
        object::FileKind::Pe64 => {
            let pe = PeFile64::parse(image).map_err(AuthenticodeError::Malformed)?;
            authenticode::authenticode_digest(&pe, &mut hasher)
        }
        kind => return Err(AuthenticodeError::OtherKind(format!("{kind:?}"))),
    }
    .map_err(AuthenticodeError::Offsets)?;
    Ok(hasher.finalize().into())
}

/// How a loader hands the kernel its command line (EFI_LOADED_IMAGE LoadOptions), which the
/// Linux EFI stub measures byte for byte into PCR 9.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadOptionsForm {
    /// UTF-16LE without a terminating NUL: GRUB 2.12 (`BOOT_IMAGE=...`), as measured in the
    /// real Ubuntu 24.04 and TDX host logs of the test data.
    Grub,
    /// UTF-16LE with its terminating NUL (two zero bytes): systemd-boot and UEFI boot entries.
    Terminated,
}

/// The SHA-256 the Linux EFI stub measures for `cmdline` handed over in `form`.
pub fn load_options_sha256(cmdline: &str, form: LoadOptionsForm) -> [u8; 32] {
    let mut h = Sha256::new();
    for unit in cmdline.encode_utf16() {
        h.update(unit.to_le_bytes());
    }
    if form == LoadOptionsForm::Terminated {
        h.update([0u8, 0]);
    }
    h.finalize().into()
}

/// The text GRUB measures into PCR 8 (after `kernel_cmdline: `) for a kernel booted with
/// `cmdline` as `/proc/cmdline` shows it: GRUB's `linux PATH ARGS` measures `PATH ARGS` and
/// passes `BOOT_IMAGE=PATH ARGS` to the kernel, so a leading `BOOT_IMAGE=` is dropped.
pub fn grub_cmdline_text(cmdline: &str) -> &str {
    cmdline.strip_prefix("BOOT_IMAGE=").unwrap_or(cmdline)
}
