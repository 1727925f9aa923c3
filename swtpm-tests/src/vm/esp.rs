//! An EFI system partition image (FAT, made with mtools) that boots the way a Secure Boot
//! Debian machine does: Microsoft-signed shim as the removable-media loader
//! `\EFI\BOOT\BOOTX64.EFI`, Debian-signed grub next to it, a grub.cfg, and the Debian-signed
//! kernel and the test initramfs. Firmware verifies shim against Microsoft's db entry, shim
//! verifies grub and grub (through shim) the kernel; each is measured.

use super::prep::Kernel;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What went wrong making the image.
#[derive(Debug, thiserror::Error)]
pub enum EspError {
    /// Creating the image file failed.
    #[error("creating {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An mtools command could not be run (mtools not installed?).
    #[error("cannot run {program}")]
    Spawn {
        program: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// An mtools command failed.
    #[error("{program} {target}: {stderr}")]
    Mtools {
        program: &'static str,
        target: String,
        stderr: String,
    },
}

fn mtool(program: &'static str, image: &Path, args: &[&str], target: &str) -> Result<(), EspError> {
    let out = Command::new(program)
        .arg("-i")
        .arg(image)
        .args(args)
        .output()
        .map_err(|source| EspError::Spawn { program, source })?;
    if !out.status.success() {
        return Err(EspError::Mtools {
            program,
            target: target.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Writes a 96 MiB FAT32 ESP to `out` booting `kernel` with `initrd` and `cmdline`.
pub fn build(kernel: &Kernel, initrd: &Path, cmdline: &str, out: &Path) -> Result<(), EspError> {
    let create = |source| EspError::Create {
        path: out.to_path_buf(),
        source,
    };
    std::fs::File::create(out)
        .and_then(|f| f.set_len(96 << 20))
        .map_err(create)?;
    mtool("mformat", out, &["-F", "-v", "VOUCHESP", "::"], "::")?;
    for dir in [
        "::/EFI",
        "::/EFI/BOOT",
        "::/EFI/debian",
        "::/boot",
        "::/boot/grub",
    ] {
        mtool("mmd", out, &[dir], dir)?;
    }
    let sb = &kernel.secureboot;
    let grub_cfg = out.with_extension("grub.cfg");
    let cfg = format!("set timeout=0\nlinux /vmlinuz {cmdline}\ninitrd /initrd.cpio\nboot\n");
    std::fs::write(&grub_cfg, cfg).map_err(create)?;
    let files: [(PathBuf, &str); 7] = [
        (
            sb.join("usr/lib/shim/shimx64.efi.signed"),
            "::/EFI/BOOT/BOOTX64.EFI",
        ),
        (
            sb.join("usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"),
            "::/EFI/BOOT/grubx64.efi",
        ),
        (grub_cfg.clone(), "::/EFI/BOOT/grub.cfg"),
        (grub_cfg.clone(), "::/EFI/debian/grub.cfg"),
        (grub_cfg.clone(), "::/boot/grub/grub.cfg"),
        (kernel.image.clone(), "::/vmlinuz"),
        (initrd.to_path_buf(), "::/initrd.cpio"),
    ];
    for (from, to) in &files {
        let from = from.to_string_lossy();
        mtool("mcopy", out, &[from.as_ref(), to], to)?;
    }
    let _ = std::fs::remove_file(&grub_cfg);
    Ok(())
}
