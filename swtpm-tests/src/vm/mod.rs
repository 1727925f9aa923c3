//! Real measured boot: Vouch's agent inside a qemu VM booted by OVMF with a swtpm TPM.
//!
//! [`prep`] runs `scripts/vm-prep.sh` (packages, the unpacked Debian kernel); [`initramfs`] packs
//! busybox, kernel modules ([`kmod`]), `vouch-agent` and its libraries into a newc archive
//! ([`cpio`]); [`machine`] boots it under qemu with OVMF, tpm-crb and a swtpm, networking only
//! to the host's broker; [`esp`] makes a Secure Boot disk (signed shim, grub, kernel). The firmware measures for real: the guest's event log and PCRs come from
//! OVMF and the kernel's EFI stub, not from a replayed file.

pub mod cpio;
pub mod debian;
pub mod esp;
pub mod initramfs;
pub mod kmod;
pub mod machine;
pub mod prep;
pub mod qga;

pub use machine::{BrokerPorts, Machine, MachineError, Vm};
pub use prep::{prepare, skip, Kernel};
pub use qga::{GuestAgent, GuestOutput};
