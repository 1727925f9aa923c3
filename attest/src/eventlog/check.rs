//! Checks of each event's digests against its data, where the spec says the digest is of the
//! data (or of a known part of it).
//!
//! Real firmware gets some of these wrong, so a mismatch is reported, never a parse failure.
//! Events whose digest covers something not in the log (PE images under Authenticode, firmware
//! volumes, files GRUB loaded) are `NotCheckable`.

use super::decode::{EventData, IplKind};
use super::log::Event;
use super::types::EventType;
use crate::alg::HashAlg;
use serde::Serialize;

/// Which preimage a digest was found to cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DigestRule {
    /// The whole event data.
    EventData,
    /// The event data without its trailing NUL bytes (strings measured without terminator).
    EventDataWithoutNul,
    /// Only the VariableData of a UEFI_VARIABLE_DATA: what many firmwares do for
    /// EV_EFI_VARIABLE_BOOT, and what shim does for its own EV_EFI_VARIABLE_AUTHORITY events.
    VariableDataOnly,
    /// The text after GRUB's `grub_cmd: ` / `kernel_cmdline: ` prefix.
    GrubText,
}

/// Result of checking one event's digests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum DigestCheck {
    /// Every computable digest matches the data under `rule`.
    Verified {
        /// What the digests cover.
        rule: DigestRule,
    },
    /// The spec says the digest is of the data, but these banks' digests are not.
    Mismatch {
        /// Banks whose digest matches no accepted preimage.
        banks: Vec<HashAlg>,
    },
    /// The digest is over something the log does not hold.
    NotCheckable,
    /// The event is not extended (EV_NO_ACTION, PCR 0xFFFFFFFF): its digest means nothing.
    NotExtended,
}

impl DigestCheck {
    /// True for [`DigestCheck::Mismatch`].
    pub fn is_mismatch(&self) -> bool {
        matches!(self, DigestCheck::Mismatch { .. })
    }
}

fn trim_nul(d: &[u8]) -> &[u8] {
    let end = d.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
    d.get(..end).unwrap_or(d)
}

/// Banks of `ev` whose digest is not `H(pre)`; digests of unknown algorithms are skipped.
fn failing(ev: &Event<'_>, pre: &[u8]) -> Vec<HashAlg> {
    ev.digests
        .iter()
        .filter(|d| match d.alg.hash(pre) {
            Some(h) => h != d.bytes,
            None => false,
        })
        .map(|d| d.alg)
        .collect()
}

impl Event<'_> {
    /// Checks this event's digests against its data (see the module docs).
    pub fn check_digest(&self) -> DigestCheck {
        if !self.is_extended() {
            return DigestCheck::NotExtended;
        }
        if !self.digests.iter().any(|d| d.alg.digest_len().is_some()) {
            return DigestCheck::NotCheckable;
        }
        let decoded = self.decode().ok();
        let mut candidates: Vec<(DigestRule, &[u8])> = vec![(DigestRule::EventData, self.data)];
        let trimmed = trim_nul(self.data);
        if trimmed.len() != self.data.len() {
            candidates.push((DigestRule::EventDataWithoutNul, trimmed));
        }
        let mut required = matches!(
            self.event_type,
            EventType::EV_SEPARATOR
                | EventType::EV_EFI_ACTION
                | EventType::EV_ACTION
                | EventType::EV_EFI_VARIABLE_DRIVER_CONFIG
                | EventType::EV_EFI_VARIABLE_BOOT
                | EventType::EV_EFI_VARIABLE_BOOT2
                | EventType::EV_EFI_VARIABLE_AUTHORITY
                | EventType::EV_EFI_GPT_EVENT
                | EventType::EV_OMIT_BOOT_DEVICE_EVENTS
        );
        match &decoded {
            Some(EventData::Variable(v)) => {
                candidates.push((DigestRule::VariableDataOnly, v.data));
            }
            Some(EventData::Ipl { ipl, text }) if *ipl != IplKind::Text => {
                // Current GRUB ("grub_cmd: ", "kernel_cmdline: ") and systemd-boot (UTF-16)
                // measure exactly the logged text. Older distribution GRUB patches
                // ("grub_cmd ") hash a preimage that is not in the log.
                required = !self.data.starts_with(b"grub_cmd ")
                    && !self.data.starts_with(b"kernel_cmdline ");
                // An empty text (a bare prefix) is nowhere to find: `windows(0)` would panic.
                let found = (!text.is_empty())
                    .then(|| {
                        self.data
                            .windows(text.len())
                            .position(|w| w == text.as_bytes())
                    })
                    .flatten();
                if let Some(pos) = found {
                    if let Some(t) = self.data.get(pos..pos + text.len()) {
                        candidates.push((DigestRule::GrubText, t));
                    }
                }
            }
            _ => {}
        }
        for (rule, pre) in &candidates {
            if failing(self, pre).is_empty() {
                return DigestCheck::Verified { rule: *rule };
            }
        }
        if required {
            DigestCheck::Mismatch {
                banks: failing(self, self.data),
            }
        } else {
            DigestCheck::NotCheckable
        }
    }
}
