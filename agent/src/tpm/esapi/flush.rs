//! The one place transient TPM objects and sessions are flushed.
//!
//! A raw swtpm (no resource manager) has three object and three session slots and does not flush
//! them when a client goes away, so every transient object or session this backend loads must be
//! flushed on every path. [`Flush`] does that on drop: it holds the TPM exclusively while the
//! handle is alive (reach the TPM through it: it dereferences to [`EsapiTpm`]) and flushes the
//! handle when it goes out of scope, on success, on `?` and on a panic alike. Guards nest (an
//! object loaded through another guard borrows that guard) and drop innermost first.

use super::EsapiTpm;
use std::ops::{Deref, DerefMut};
use tss_esapi::handles::{KeyHandle, ObjectHandle, SessionHandle};
use tss_esapi::interface_types::session_handles::AuthSession;

/// A handle that can be flushed: a loaded object or a started session.
pub(super) trait Transient: Copy {
    /// The handle as TPM2_FlushContext takes it.
    fn object(self) -> ObjectHandle;
}

impl Transient for KeyHandle {
    fn object(self) -> ObjectHandle {
        ObjectHandle::from(self)
    }
}

impl Transient for AuthSession {
    fn object(self) -> ObjectHandle {
        ObjectHandle::from(SessionHandle::from(self))
    }
}

/// A transient object or session of `tpm`, flushed when this guard drops.
#[must_use = "dropping the guard flushes the handle at once"]
pub(super) struct Flush<'a, H: Transient> {
    tpm: &'a mut EsapiTpm,
    handle: H,
}

impl<'a, H: Transient> Flush<'a, H> {
    /// Takes charge of `handle`, just loaded or started on `tpm`.
    pub(super) fn new(tpm: &'a mut EsapiTpm, handle: H) -> Self {
        Flush { tpm, handle }
    }

    /// The handle, to pass to TPM commands while the guard lives.
    pub(super) fn handle(&self) -> H {
        self.handle
    }
}

impl<H: Transient> Deref for Flush<'_, H> {
    type Target = EsapiTpm;

    fn deref(&self) -> &EsapiTpm {
        self.tpm
    }
}

impl<H: Transient> DerefMut for Flush<'_, H> {
    fn deref_mut(&mut self) -> &mut EsapiTpm {
        self.tpm
    }
}

impl<H: Transient> Drop for Flush<'_, H> {
    fn drop(&mut self) {
        let handle = self.handle.object();
        if let Err(e) = self.tpm.ctx.flush_context(handle) {
            // Nothing to do about it here; the next open against a raw swtpm flushes leftovers.
            tracing::debug!(?handle, error = %e, "cannot flush transient TPM handle");
        }
    }
}
