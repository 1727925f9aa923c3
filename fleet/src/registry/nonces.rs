//! Challenge nonces: issued per device with the PCR selection asked for, single-use, and
//! expiring. [`Registry::consume_nonce`] marks a nonce used atomically and names why an answer
//! is refused (`nonce_unknown`, `nonce_used`, `nonce_expired`).

use super::db::{params, RowLock};
use super::{q, Registry, RegistryError};

/// A nonce as issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedNonce {
    /// The device it was sent to.
    pub device_id: String,
    /// The PCR selection asked for (`sha256:0,1,2`).
    pub pcrs: String,
    /// When it was issued (ms since the epoch).
    pub issued_ms: i64,
}

/// Why an answer's nonce was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NonceRefusal {
    /// Never issued, or issued to another device.
    #[error("nonce_unknown")]
    Unknown,
    /// Already answered.
    #[error("nonce_used")]
    Used,
    /// Answered after its lifetime.
    #[error("nonce_expired")]
    Expired,
}

impl NonceRefusal {
    /// The reason name used in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            NonceRefusal::Unknown => "nonce_unknown",
            NonceRefusal::Used => "nonce_used",
            NonceRefusal::Expired => "nonce_expired",
        }
    }
}

/// Rows older than this past their expiry are purged.
const PURGE_AFTER_MS: i64 = 24 * 3600 * 1000;

impl Registry {
    /// Records a nonce sent to `device_id`, valid until `expires_ms`.
    pub fn issue_nonce(
        &self,
        nonce: &[u8],
        device_id: &str,
        pcrs: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<(), RegistryError> {
        self.with(|c| {
            c.exec(
                "INSERT INTO nonces (nonce, device_id, pcrs, issued_ms, expires_ms) \
                 VALUES ($1, $2, $3, $4, $5)",
                params![nonce, device_id, pcrs, now_ms, expires_ms],
            )
            .map_err(q("issue nonce"))
        })?;
        Ok(())
    }

    /// Consumes the nonce of an answer from `device_id`: refused when unknown (or another
    /// device's), already used, or expired; otherwise marked used and returned. An expired
    /// nonce is marked used too, so it can never be accepted later. The row is locked from
    /// reading to marking, so of two processes answering with the same nonce one wins.
    pub fn consume_nonce(
        &mut self,
        nonce: &[u8],
        device_id: &str,
        now_ms: i64,
    ) -> Result<Result<IssuedNonce, NonceRefusal>, RegistryError> {
        let what = "consume nonce";
        self.tx(|tx| {
            let lock = tx.dialect().row_lock(RowLock::Wait);
            let row = tx
                .query_opt(
                    &format!(
                        "SELECT device_id, pcrs, issued_ms, expires_ms, used_ms FROM nonces \
                         WHERE nonce = $1{lock}"
                    ),
                    params![nonce],
                )
                .map_err(q(what))?;
            let Some(row) = row else {
                return Ok(Err(NonceRefusal::Unknown));
            };
            let owner: String = row.get(0).map_err(q(what))?;
            let pcrs: String = row.get(1).map_err(q(what))?;
            let issued_ms: i64 = row.get(2).map_err(q(what))?;
            let expires_ms: i64 = row.get(3).map_err(q(what))?;
            let used_ms: Option<i64> = row.get(4).map_err(q(what))?;
            if owner != device_id {
                return Ok(Err(NonceRefusal::Unknown));
            }
            if used_ms.is_some() {
                return Ok(Err(NonceRefusal::Used));
            }
            tx.exec(
                "UPDATE nonces SET used_ms = $2 WHERE nonce = $1",
                params![nonce, now_ms],
            )
            .map_err(q(what))?;
            if now_ms > expires_ms {
                return Ok(Err(NonceRefusal::Expired));
            }
            Ok(Ok(IssuedNonce {
                device_id: owner,
                pcrs,
                issued_ms,
            }))
        })
    }

    /// Drops nonces that expired more than a day ago (their answers would be `nonce_unknown`
    /// instead of `nonce_expired` from then on).
    pub fn purge_nonces(&self, now_ms: i64) -> Result<usize, RegistryError> {
        let n = self.with(|c| {
            c.exec(
                "DELETE FROM nonces WHERE expires_ms < $1",
                params![now_ms.saturating_sub(PURGE_AFTER_MS)],
            )
            .map_err(q("purge nonces"))
        })?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::registry::testing::{both_backends, TestDb};

    fn nonces_are_single_use_per_device_and_expire(db: &TestDb) {
        let mut reg = db.open();
        reg.issue_nonce(b"n1", "d1", "sha256:0", 1000, 2000)
            .unwrap();
        reg.issue_nonce(b"n2", "d1", "sha256:0", 1000, 2000)
            .unwrap();
        // Never issued, or issued to another device.
        assert_eq!(
            reg.consume_nonce(b"nx", "d1", 1500).unwrap(),
            Err(NonceRefusal::Unknown)
        );
        assert_eq!(
            reg.consume_nonce(b"n1", "d2", 1500).unwrap(),
            Err(NonceRefusal::Unknown)
        );
        let ok = reg.consume_nonce(b"n1", "d1", 1500).unwrap().unwrap();
        assert_eq!(ok.issued_ms, 1000);
        assert_eq!(ok.pcrs, "sha256:0");
        assert_eq!(
            reg.consume_nonce(b"n1", "d1", 1600).unwrap(),
            Err(NonceRefusal::Used)
        );
        // Late: refused, and never accepted afterwards either.
        assert_eq!(
            reg.consume_nonce(b"n2", "d1", 2001).unwrap(),
            Err(NonceRefusal::Expired)
        );
        assert_eq!(
            reg.consume_nonce(b"n2", "d1", 1500).unwrap(),
            Err(NonceRefusal::Used)
        );
        assert_eq!(reg.purge_nonces(2000 + PURGE_AFTER_MS + 1).unwrap(), 2);
    }

    /// Four connections (server processes) answer with the same nonces at once: each nonce is
    /// accepted exactly once.
    fn concurrent_answers_accept_each_nonce_once(db: &TestDb) {
        let reg = db.open();
        let nonces: Vec<Vec<u8>> = (0..50u32).map(|i| i.to_be_bytes().to_vec()).collect();
        for n in &nonces {
            reg.issue_nonce(n, "d1", "sha256:0", 1, 1_000).unwrap();
        }
        let accepted: usize = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let mut reg = db.open();
                        nonces
                            .iter()
                            .filter(|n| reg.consume_nonce(n, "d1", 2).unwrap().is_ok())
                            .count()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        assert_eq!(accepted, nonces.len());
    }

    both_backends!(
        nonces_are_single_use_per_device_and_expire,
        concurrent_answers_accept_each_nonce_once
    );
}
