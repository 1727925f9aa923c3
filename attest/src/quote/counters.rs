//! Rules for comparing the clock and boot counters of two attestations from the same AK.
//!
//! TPMS_CLOCK_INFO carries `clock` (ms powered since the last TPM2_Clear; it only advances and
//! survives reboots), `resetCount` (TPM Resets, i.e. reboots), `restartCount` (TPM Restarts /
//! resumes since the last reset; zeroed by a reset) and `safe` (NO after an unorderly shutdown:
//! `clock` was restored from a saved value and may repeat values reported before).
//!
//! For keys outside the endorsement and platform hierarchies the TPM obfuscates `resetCount`,
//! `restartCount` and `firmwareVersion` by adding a per-key constant. Differences modulo 2^32
//! are unaffected by that constant, so the rules below compare wrapping differences, which
//! works for obfuscated and plain counters alike. Attestations from different AKs are not
//! comparable: callers must only pass a previous attestation signed by the same AK.
//!
//! Rules, with `dr = reset - prev.reset` and `ds = restart - prev.restart` (mod 2^32; a
//! difference of 2^31 or more counts as going backwards):
//! 1. `dr` backwards: fail (an older attestation is being replayed, or another TPM).
//! 2. `dr > 0`: the machine rebooted; `restartCount` is not compared (a reset zeroes it).
//! 3. `dr == 0` and `ds` backwards: fail.
//! 4. `dr == 0` and `ds > 0`: resumed from hibernation / suspend in the same boot.
//! 5. `dr == 0` and `ds == 0`: same boot cycle; `clock` must not be lower than before.
//! 6. After a reboot or resume, `clock` must not be lower than before when the current
//!    attestation says `safe = YES`; with `safe = NO` a lower clock is allowed (restored after
//!    power loss) and the relation says so.
//!
//! Equal clocks are accepted: two attestations can fall in the same millisecond, and replay is
//! excluded by the nonce, not by the clock.

use super::checks::CheckFailure;
use crate::tpm::attest::Attest;
use serde::Serialize;

/// How the current attestation relates to the previous one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "relation", rename_all = "snake_case")]
pub enum CounterRelation {
    /// Same boot cycle; `clock_advance_ms` since the previous attestation.
    SameBoot {
        /// Milliseconds the clock advanced.
        clock_advance_ms: u64,
    },
    /// Resumed (TPM Restart) `restarts` times since, in the same boot.
    Resumed {
        /// Restarts since the previous attestation.
        restarts: u32,
        /// False when `safe = NO` made the clock incomparable.
        clock_comparable: bool,
    },
    /// Rebooted (TPM Reset) `resets` times since.
    Rebooted {
        /// Resets since the previous attestation.
        resets: u32,
        /// False when `safe = NO` made the clock incomparable.
        clock_comparable: bool,
    },
}

/// Result of comparing two attestations' counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CounterComparison {
    /// The relation found.
    pub relation: CounterRelation,
    /// firmwareVersion differs (a TPM firmware update happened in between).
    pub firmware_changed: bool,
}

fn forward(delta: u32) -> bool {
    delta < 1 << 31
}

/// Compares `current` with `previous` following the module rules.
pub fn compare(previous: &Attest, current: &Attest) -> Result<CounterComparison, CheckFailure> {
    let p = previous.clock_info;
    let c = current.clock_info;
    let firmware_changed = previous.firmware_version != current.firmware_version;
    let dr = c.reset_count.wrapping_sub(p.reset_count);
    let ds = c.restart_count.wrapping_sub(p.restart_count);
    if !forward(dr) {
        return Err(CheckFailure::ResetCountBackwards {
            previous: p.reset_count,
            current: c.reset_count,
        });
    }
    let clock_back = c.clock < p.clock;
    let back = |context| CheckFailure::ClockBackwards {
        previous: p.clock,
        current: c.clock,
        context,
    };
    let relation = if dr > 0 {
        if clock_back && c.safe {
            return Err(back("after a reboot with safe = YES"));
        }
        CounterRelation::Rebooted {
            resets: dr,
            clock_comparable: c.safe,
        }
    } else if !forward(ds) {
        return Err(CheckFailure::RestartCountBackwards {
            previous: p.restart_count,
            current: c.restart_count,
        });
    } else if ds > 0 {
        if clock_back && c.safe {
            return Err(back("after a resume with safe = YES"));
        }
        CounterRelation::Resumed {
            restarts: ds,
            clock_comparable: c.safe,
        }
    } else {
        if clock_back {
            return Err(back("within the same boot cycle"));
        }
        CounterRelation::SameBoot {
            clock_advance_ms: c.clock - p.clock,
        }
    };
    Ok(CounterComparison {
        relation,
        firmware_changed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::attest::{AttestBody, ClockInfo, TPM_GENERATED_VALUE};

    fn at(clock: u64, reset: u32, restart: u32, safe: bool) -> Attest {
        Attest {
            magic: TPM_GENERATED_VALUE,
            qualified_signer: vec![],
            extra_data: vec![],
            clock_info: ClockInfo {
                clock,
                reset_count: reset,
                restart_count: restart,
                safe,
            },
            firmware_version: 1,
            body: AttestBody::Other {
                tag: 0x8019,
                body: vec![],
            },
        }
    }

    #[test]
    fn rules() {
        let base = at(1000, 5, 2, true);
        let rel = |a: &Attest| compare(&base, a).map(|c| c.relation);
        assert_eq!(
            rel(&at(1500, 5, 2, true)),
            Ok(CounterRelation::SameBoot {
                clock_advance_ms: 500
            })
        );
        assert_eq!(
            rel(&at(1000, 5, 2, true)),
            Ok(CounterRelation::SameBoot {
                clock_advance_ms: 0
            })
        );
        assert!(matches!(
            rel(&at(999, 5, 2, false)),
            Err(CheckFailure::ClockBackwards { .. })
        ));
        assert!(matches!(
            rel(&at(2000, 4, 9, true)),
            Err(CheckFailure::ResetCountBackwards { .. })
        ));
        assert!(matches!(
            rel(&at(2000, 5, 1, true)),
            Err(CheckFailure::RestartCountBackwards { .. })
        ));
        assert_eq!(
            rel(&at(2000, 6, 0, true)),
            Ok(CounterRelation::Rebooted {
                resets: 1,
                clock_comparable: true
            })
        );
        assert!(matches!(
            rel(&at(900, 6, 0, true)),
            Err(CheckFailure::ClockBackwards { .. })
        ));
        assert_eq!(
            rel(&at(900, 6, 0, false)),
            Ok(CounterRelation::Rebooted {
                resets: 1,
                clock_comparable: false
            })
        );
        assert_eq!(
            rel(&at(900, 5, 3, false)),
            Ok(CounterRelation::Resumed {
                restarts: 1,
                clock_comparable: false
            })
        );
        assert!(matches!(
            rel(&at(900, 5, 3, true)),
            Err(CheckFailure::ClockBackwards { .. })
        ));
    }

    #[test]
    fn obfuscated_counters_compare_by_wrapping_difference() {
        // An obfuscation offset that makes the plain values wrap around 2^32.
        let off = u32::MAX - 1;
        let prev = at(1000, 5u32.wrapping_add(off), 0u32.wrapping_add(off), true);
        let next = at(2000, 6u32.wrapping_add(off), 0u32.wrapping_add(off), true);
        assert_eq!(
            compare(&prev, &next).map(|c| c.relation),
            Ok(CounterRelation::Rebooted {
                resets: 1,
                clock_comparable: true
            })
        );
        assert!(compare(&next, &prev).is_err());
    }
}
