//! Liveness: the one decision whether a device is `stale` (its last trusted verdict is older
//! than `[liveness] stale_after_intervals` challenge intervals, or it has had none that long
//! since it enrolled). The server's alerting, `/metrics`, the API, the page and `vouch-fleet
//! devices` all ask [`Liveness::is_stale`].

use crate::config::FleetConfig;
use crate::registry::{Device, Registry, RegistryError};
use std::collections::HashMap;

/// The staleness rule of one configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// Milliseconds without a trusted verdict after which an active device is stale.
    pub stale_after_ms: i64,
}

impl Liveness {
    /// The rule of `cfg`: `stale_after_intervals` × the challenge interval.
    pub fn of(cfg: &FleetConfig) -> Liveness {
        let interval = i64::try_from(cfg.challenge_interval.as_millis()).unwrap_or(i64::MAX);
        Liveness {
            stale_after_ms: interval.saturating_mul(i64::from(cfg.stale_after_intervals)),
        }
    }

    /// True when `device` is active and its newest trusted verdict (`last_trusted_ms`, or its
    /// enrollment when it has none since) lies more than the limit before `now_ms`. Revoked and
    /// deleted devices are never stale: nobody expects them to answer.
    pub fn is_stale(&self, device: &Device, last_trusted_ms: Option<i64>, now_ms: i64) -> bool {
        if !device.status.is_active() {
            return false;
        }
        let since = last_trusted_ms
            .unwrap_or(device.enrolled_ms)
            .max(device.enrolled_ms);
        now_ms.saturating_sub(since) > self.stale_after_ms
    }

    /// Every device with whether it is stale now.
    pub fn devices(
        &self,
        reg: &Registry,
        now_ms: i64,
    ) -> Result<Vec<(Device, bool)>, RegistryError> {
        let trusted: HashMap<String, i64> = reg.last_trusted_ms()?;
        Ok(reg
            .devices()?
            .into_iter()
            .map(|d| {
                let stale = self.is_stale(&d, trusted.get(&d.id).copied(), now_ms);
                (d, stale)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::DeviceStatus;

    fn device(status: DeviceStatus, enrolled_ms: i64) -> Device {
        Device {
            id: "d".into(),
            status,
            ek_public: None,
            ak_public: None,
            tls_public: None,
            cert_serial: None,
            enrolled_ms,
            updated_ms: enrolled_ms,
            last_attest: None,
            last_boot_id: None,
        }
    }

    #[test]
    fn stale_after_the_limit_without_a_trusted_verdict() {
        let l = Liveness {
            stale_after_ms: 900,
        };
        let d = device(DeviceStatus::Trusted, 1000);
        assert!(!l.is_stale(&d, Some(5000), 5900));
        assert!(l.is_stale(&d, Some(5000), 5901));
        // Never trusted: counted from enrollment.
        let e = device(DeviceStatus::Enrolled, 1000);
        assert!(!l.is_stale(&e, None, 1900));
        assert!(l.is_stale(&e, None, 1901));
        // Re-enrolled after the last trusted verdict: counted from the new enrollment.
        let r = device(DeviceStatus::Untrusted, 8000);
        assert!(!l.is_stale(&r, Some(100), 8500));
        // Revoked and deleted devices are not expected to answer.
        for s in [DeviceStatus::Revoked, DeviceStatus::Deleted] {
            assert!(!l.is_stale(&device(s, 0), None, 1_000_000));
        }
    }
}
