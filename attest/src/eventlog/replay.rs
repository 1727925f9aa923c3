//! Replay of an event log into PCR values, exactly as a TPM would compute them.
//!
//! Rules: EV_NO_ACTION events and events for PCR 0xFFFFFFFF are never extended; PCR0 starts at
//! `0x00..0L` where L is the StartupLocality event's locality (or 4 with an H-CRTM event and no
//! StartupLocality event, TPM 2.0 Library Part 1 "H-CRTM"); every other PCR starts at zero.
//! Banks of algorithms this crate cannot compute are parsed but not replayed.
//!
//! The hot loop works on fixed-size buffers: no allocation per event. A SHA-256 extend of a
//! 32-byte digest hashes exactly 64 bytes, so it runs the compression function on that block
//! and the constant padding block directly (see [`super::sha256`]).

use super::log::EventLog;
use super::sha256;
use crate::alg::HashAlg;
use crate::pcrs::PcrBanks;

/// Largest digest of a bank this crate replays (SHA-512).
const MAX_DIGEST: usize = 64;

/// Running PCR values of one bank.
#[derive(Clone, Debug)]
pub(crate) struct Bank {
    alg: HashAlg,
    len: usize,
    pcrs: Vec<(u32, [u8; MAX_DIGEST])>,
}

impl Bank {
    fn new(alg: HashAlg) -> Option<Bank> {
        let len = alg.digest_len().filter(|&l| l <= MAX_DIGEST)?;
        Some(Bank {
            alg,
            len,
            pcrs: Vec::with_capacity(24),
        })
    }

    /// Extends `digest` into `pcr`, starting it at its reset value when first touched.
    fn extend(&mut self, pcr: u32, digest: &[u8], pcr0_locality: u8) {
        let len = self.len;
        let slot = match self.pcrs.iter().position(|(p, _)| *p == pcr) {
            Some(i) => i,
            None => {
                let mut v = [0u8; MAX_DIGEST];
                if pcr == 0 {
                    if let Some(last) = v.get_mut(len.wrapping_sub(1)) {
                        *last = pcr0_locality;
                    }
                }
                self.pcrs.push((pcr, v));
                self.pcrs.len() - 1
            }
        };
        if let Some((_, value)) = self.pcrs.get_mut(slot) {
            if let Some(cur) = value.get_mut(..len) {
                extend_in_place(self.alg, cur, digest);
            }
        }
    }

    /// The replayed value of `pcr`, if an event extended it.
    pub(crate) fn get(&self, pcr: u32) -> Option<&[u8]> {
        self.pcrs
            .iter()
            .find(|(p, _)| *p == pcr)
            .and_then(|(_, v)| v.get(..self.len))
    }

    /// Sets the value of `pcr` (a value longer than the bank's digests is cut to size).
    pub(crate) fn set(&mut self, pcr: u32, value: &[u8]) {
        let mut v = [0u8; MAX_DIGEST];
        let n = value.len().min(self.len);
        if let (Some(dst), Some(src)) = (v.get_mut(..n), value.get(..n)) {
            dst.copy_from_slice(src);
        }
        match self.pcrs.iter_mut().find(|(p, _)| *p == pcr) {
            Some((_, old)) => *old = v,
            None => self.pcrs.push((pcr, v)),
        }
    }
}

/// `cur = H(cur || digest)` without allocating.
fn extend_in_place(alg: HashAlg, cur: &mut [u8], digest: &[u8]) {
    fn run<D: sha2::Digest>(cur: &mut [u8], digest: &[u8]) {
        let mut h = D::new();
        h.update(&*cur);
        h.update(digest);
        let out = h.finalize();
        if out.len() == cur.len() {
            cur.copy_from_slice(&out);
        }
    }
    match alg {
        HashAlg::Sha1 => run::<sha1::Sha1>(cur, digest),
        HashAlg::Sha256 => {
            if let (Ok(c), Ok(d)) = (<&mut [u8; 32]>::try_from(&mut *cur), digest.try_into()) {
                sha256::extend_32(c, d);
            } else {
                run::<sha2::Sha256>(cur, digest);
            }
        }
        HashAlg::Sha384 => run::<sha2::Sha384>(cur, digest),
        HashAlg::Sha512 => run::<sha2::Sha512>(cur, digest),
        HashAlg::Sm3_256 => run::<sm3::Sm3>(cur, digest),
        HashAlg::Unknown(_) => {}
    }
}

/// The value a PCR holds before any extend: zero, all-ones for the DRTM PCRs 17..=22, and
/// `0x00..0L` for PCR0 (see the module docs). `None` for an algorithm of unknown size.
pub fn reset_value(alg: HashAlg, pcr: u32, pcr0_locality: u8) -> Option<Vec<u8>> {
    let len = alg.digest_len()?;
    let mut v = vec![0u8; len];
    match pcr {
        0 => {
            if let Some(last) = v.last_mut() {
                *last = pcr0_locality;
            }
        }
        17..=22 => v.fill(0xFF),
        _ => {}
    }
    Some(v)
}

impl EventLog<'_> {
    /// Replays every bank the log carries that this crate can compute.
    ///
    /// The result holds an entry for every PCR that at least one event extends.
    pub fn replay(&self) -> PcrBanks {
        let banks: Vec<HashAlg> = self.banks();
        self.replay_banks(&banks)
    }

    /// Replays only the given banks (banks the log does not carry, or cannot be computed, are
    /// left out of the result).
    pub fn replay_banks(&self, banks: &[HashAlg]) -> PcrBanks {
        let mut state: Vec<Bank> = banks
            .iter()
            .filter(|a| self.has_bank(**a))
            .filter_map(|a| Bank::new(*a))
            .collect();
        let locality = self.pcr0_start_locality();
        for ev in self.events.iter().filter(|e| e.is_extended()) {
            for d in ev.digests.iter() {
                if let Some(bank) = state.iter_mut().find(|b| b.alg == d.alg) {
                    bank.extend(ev.pcr, d.bytes, locality);
                }
            }
        }
        let mut out = PcrBanks::new();
        for bank in state {
            for (pcr, value) in bank.pcrs {
                if let Some(v) = value.get(..bank.len) {
                    out.insert(bank.alg, pcr, v.to_vec());
                }
            }
        }
        out
    }

    /// Replays one bank for the PCRs in `pcrs` only: events for other PCRs are not hashed.
    /// `None` when the log does not carry the bank or it cannot be computed.
    pub(crate) fn replay_selected(&self, alg: HashAlg, pcrs: &[u32]) -> Option<Bank> {
        if !self.has_bank(alg) {
            return None;
        }
        let mut bank = Bank::new(alg)?;
        let locality = self.pcr0_start_locality();
        for ev in self.events.iter().filter(|e| e.is_extended()) {
            if !pcrs.contains(&ev.pcr) {
                continue;
            }
            // Every digest of the bank, as the full replay does (a malformed list may repeat one).
            for d in ev.digests.iter().filter(|d| d.alg == alg) {
                bank.extend(ev.pcr, d.bytes, locality);
            }
        }
        Some(bank)
    }
}
