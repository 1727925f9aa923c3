//! The union of two policies' allowed components: what a policy referencing releases allows
//! ([`crate::release::effective`]), and what `policy record --merge` records from several
//! golden boots. One function, [`union`], makes that decision for both.
//!
//! A section absent from one side takes the other side's (absent means "not stated", and a
//! release or golden boot that states it adds the rule); lists present on both sides are
//! unioned (each value once, in order). `secure_boot.required` holds when both require it;
//! `kernel_cmdline.required` when either does; `min_tpm_version` is the lower of the two.
//! `version`, `description`, `releases`, `revoke_on_untrusted` and `[pcrs]` are `into`'s:
//! pinned PCR values cannot be unioned (a PCR has one value per boot), so a caller merging
//! boots clears them.

use super::format::{
    BootAppPolicy, CmdlinePolicy, FirmwarePolicy, GrubFilePolicy, InitrdPolicy, Policy,
    SecureBootPolicy,
};
use crate::alg::HashAlg;
use thiserror::Error;

/// Why two policies' components cannot be unioned.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MergeError {
    /// The two list boot application digests of different banks.
    #[error("boot_applications: one lists {a} digests, the other {b} digests")]
    BootAppBank {
        /// The bank of the first.
        a: HashAlg,
        /// The bank of the second.
        b: HashAlg,
    },
}

fn extend_unique<T: PartialEq + Clone>(into: &mut Vec<T>, from: &[T]) {
    for v in from {
        if !into.contains(v) {
            into.push(v.clone());
        }
    }
}

fn union_opt_list<T: PartialEq + Clone>(into: &mut Option<Vec<T>>, from: Option<&Vec<T>>) {
    match (into.as_mut(), from) {
        (_, None) => {}
        (None, Some(f)) => *into = Some(f.clone()),
        (Some(i), Some(f)) => extend_unique(i, f),
    }
}

/// Merges `from` into `into` section by section with `merge_both` when both have it.
fn section<T: Clone>(into: &mut Option<T>, from: Option<&T>, merge_both: impl FnOnce(&mut T, &T)) {
    match (into.as_mut(), from) {
        (_, None) => {}
        (None, Some(f)) => *into = Some(f.clone()),
        (Some(i), Some(f)) => merge_both(i, f),
    }
}

/// Adds `from`'s allowed components to `into` (see the module documentation).
pub fn union(into: &mut Policy, from: &Policy) -> Result<(), MergeError> {
    if let (Some(a), Some(b)) = (&into.boot_applications, &from.boot_applications) {
        if a.bank != b.bank {
            return Err(MergeError::BootAppBank {
                a: a.bank,
                b: b.bank,
            });
        }
    }
    section(
        &mut into.secure_boot,
        from.secure_boot.as_ref(),
        |i: &mut SecureBootPolicy, f| {
            i.required = i.required && f.required;
            union_opt_list(&mut i.pk, f.pk.as_ref());
            union_opt_list(&mut i.kek, f.kek.as_ref());
            union_opt_list(&mut i.db, f.db.as_ref());
            union_opt_list(&mut i.dbx, f.dbx.as_ref());
            union_opt_list(&mut i.dbx_contains, f.dbx_contains.as_ref());
        },
    );
    section(
        &mut into.boot_applications,
        from.boot_applications.as_ref(),
        |i: &mut BootAppPolicy, f| extend_unique(&mut i.allowed, &f.allowed),
    );
    section(
        &mut into.kernel_cmdline,
        from.kernel_cmdline.as_ref(),
        |i: &mut CmdlinePolicy, f| {
            i.required = i.required || f.required;
            extend_unique(&mut i.exact, &f.exact);
            extend_unique(&mut i.prefix, &f.prefix);
            union_opt_list(&mut i.load_options_sha256, f.load_options_sha256.as_ref());
        },
    );
    section(
        &mut into.initrd,
        from.initrd.as_ref(),
        |i: &mut InitrdPolicy, f| extend_unique(&mut i.sha256, &f.sha256),
    );
    section(
        &mut into.grub_files,
        from.grub_files.as_ref(),
        |i: &mut GrubFilePolicy, f| extend_unique(&mut i.sha256, &f.sha256),
    );
    section(
        &mut into.firmware,
        from.firmware.as_ref(),
        |i: &mut FirmwarePolicy, f| {
            i.min_tpm_version = match (i.min_tpm_version, f.min_tpm_version) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            union_opt_list(&mut i.s_crtm_versions, f.s_crtm_versions.as_ref());
        },
    );
    Ok(())
}
