//! The TPM worker: one dedicated thread owns the [`Tpm`] implementation and serves requests from a
//! channel, so blocking TPM calls never run on an async runtime's threads and the `&mut` access
//! tss-esapi needs is naturally serialized.
//!
//! When the last [`TpmClient`] goes, the worker is told to stop and is joined: the TPM (for
//! tss-esapi, `Esys_Finalize` and the TCTI's teardown in C) is dropped before the client's drop
//! returns. Otherwise a one-shot command could return from `main` while the worker still tears
//! the ESYS context down, and the C libraries' exit handlers would race it (seen as "double free
//! or corruption" and segmentation faults under load).

use super::{Tpm, TpmError};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

type Job = Box<dyn FnOnce(&mut dyn Tpm) + Send>;

/// A cheap, cloneable handle to the TPM worker thread.
#[derive(Clone)]
pub struct TpmClient {
    inner: Arc<Inner>,
}

/// The channel to the worker and the worker's handle; dropped with the last client.
struct Inner {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    worker: Mutex<Option<thread::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the worker's loop; then wait until it has dropped the TPM.
        drop(
            self.jobs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
        );
        let worker = self
            .worker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(w) = worker {
            // A job that dropped the last client would run on the worker itself: it cannot
            // wait for itself, and it is about to finish anyway.
            if w.thread().id() != thread::current().id() {
                let _ = w.join();
            }
        }
    }
}

impl TpmClient {
    /// Starts the worker thread and builds the TPM inside it with `open`; returns once `open`
    /// succeeded (or with its error).
    pub fn spawn<T, F>(open: F) -> Result<TpmClient, TpmError>
    where
        T: Tpm + 'static,
        F: FnOnce() -> Result<T, TpmError> + Send + 'static,
    {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let worker = thread::Builder::new()
            .name("vouch-tpm".into())
            .spawn(move || {
                let mut tpm = match open() {
                    Ok(t) => {
                        let _ = ready_tx.send(Ok(()));
                        t
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                for job in rx {
                    job(&mut tpm);
                }
            })
            .map_err(|_| TpmError::WorkerGone)?;
        let ready = ready_rx.recv().map_err(|_| TpmError::WorkerGone);
        if !matches!(ready, Ok(Ok(()))) {
            let _ = worker.join();
        } else {
            return Ok(TpmClient {
                inner: Arc::new(Inner {
                    jobs: Mutex::new(Some(jobs)),
                    worker: Mutex::new(Some(worker)),
                }),
            });
        }
        ready??;
        Err(TpmError::WorkerGone)
    }

    /// Runs `f` on the worker thread with the TPM and waits for its result.
    pub fn call<R, F>(&self, f: F) -> Result<R, TpmError>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Tpm) -> Result<R, TpmError> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |tpm| {
            let _ = tx.send(f(tpm));
        });
        let sent = match &*self
            .inner
            .jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            Some(jobs) => jobs.send(job).is_ok(),
            None => false,
        };
        if !sent {
            return Err(TpmError::WorkerGone);
        }
        rx.recv().map_err(|_| TpmError::WorkerGone)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::memory::MemoryTpm;
    use crate::tpm::PcrSelection;
    use vouch_attest::HashAlg;

    #[test]
    fn calls_run_on_the_worker_thread_in_order() {
        let client = TpmClient::spawn(|| Ok(MemoryTpm::new())).unwrap();
        let other = client.clone();
        let name = client
            .call(|_| Ok(std::thread::current().name().map(str::to_string)))
            .unwrap();
        assert_eq!(name.as_deref(), Some("vouch-tpm"));
        other
            .call(|t| t.pcr_extend(3, &[(HashAlg::Sha256, vec![1; 32])]))
            .unwrap();
        let sel = PcrSelection::single(HashAlg::Sha256, [3]);
        let v = client.call(move |t| t.pcr_read(&sel)).unwrap();
        assert_ne!(v.get(HashAlg::Sha256, 3), Some(&[0u8; 32][..]));
    }

    /// A TPM whose drop (like `Esys_Finalize`) takes a while and leaves a mark when done.
    struct SlowToClose {
        inner: MemoryTpm,
        closed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }

    impl Tpm for SlowToClose {
        fn info(&mut self) -> Result<crate::tpm::TpmInfo, TpmError> {
            self.inner.info()
        }
        fn endorsement_key(
            &mut self,
            alg: crate::tpm::EkAlg,
        ) -> Result<crate::tpm::EndorsementKey, TpmError> {
            self.inner.endorsement_key(alg)
        }
        fn ek_certificates(&mut self) -> Result<Vec<crate::tpm::EkCertificate>, TpmError> {
            self.inner.ek_certificates()
        }
        fn attestation_key(&mut self) -> Result<crate::tpm::AttestationKey, TpmError> {
            self.inner.attestation_key()
        }
        fn pcr_read(&mut self, s: &PcrSelection) -> Result<vouch_attest::PcrBanks, TpmError> {
            self.inner.pcr_read(s)
        }
        fn pcr_extend(&mut self, pcr: u32, d: &[(HashAlg, Vec<u8>)]) -> Result<(), TpmError> {
            self.inner.pcr_extend(pcr, d)
        }
        fn seal_systemd(
            &mut self,
            secret: &[u8],
            bank: HashAlg,
            pcrs: &[u32],
        ) -> Result<crate::volume::systemd_token::SystemdSeal, TpmError> {
            self.inner.seal_systemd(secret, bank, pcrs)
        }
        fn unseal_systemd(
            &mut self,
            seal: &crate::volume::systemd_token::SystemdSeal,
        ) -> Result<zeroize::Zeroizing<Vec<u8>>, TpmError> {
            self.inner.unseal_systemd(seal)
        }
        fn quote(&mut self, n: &[u8], s: &PcrSelection) -> Result<crate::tpm::Quote, TpmError> {
            self.inner.quote(n, s)
        }
        fn activate_credential(
            &mut self,
            ek: crate::tpm::EkAlg,
            blob: &[u8],
            secret: &[u8],
        ) -> Result<zeroize::Zeroizing<Vec<u8>>, TpmError> {
            self.inner.activate_credential(ek, blob, secret)
        }
        fn tls_key(&mut self) -> Result<crate::tpm::TlsKey, TpmError> {
            self.inner.tls_key()
        }
        fn certify_tls_key(&mut self, q: &[u8]) -> Result<crate::tpm::Certification, TpmError> {
            self.inner.certify_tls_key(q)
        }
        fn sign_tls(&mut self, digest: &[u8]) -> Result<Vec<u8>, TpmError> {
            self.inner.sign_tls(digest)
        }
        fn seal(
            &mut self,
            secret: &[u8],
            policy: &crate::seal::SealPolicy,
        ) -> Result<crate::seal::SealedObject, TpmError> {
            self.inner.seal(secret, policy)
        }
        fn unseal(
            &mut self,
            sealed: &crate::seal::SealedObject,
            auth: Option<&vouch_attest::policy_digest::SignedPolicy>,
        ) -> Result<zeroize::Zeroizing<Vec<u8>>, TpmError> {
            self.inner.unseal(sealed, auth)
        }
    }

    impl Drop for SlowToClose {
        fn drop(&mut self) {
            std::thread::sleep(std::time::Duration::from_millis(200));
            self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// The last client's drop returns only once the worker has dropped the TPM, so a command
    /// never returns from `main` while the ESYS context is being torn down.
    #[test]
    fn dropping_the_last_client_waits_for_the_tpm_to_close() {
        let closed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&closed);
        let client = TpmClient::spawn(move || {
            Ok(SlowToClose {
                inner: MemoryTpm::new(),
                closed: flag,
            })
        })
        .unwrap();
        let other = client.clone();
        client.call(|t| t.info().map(|_| ())).unwrap();
        drop(client);
        // Another client still holds the worker: the TPM is open.
        assert!(!closed.load(std::sync::atomic::Ordering::SeqCst));
        drop(other);
        assert!(closed.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[test]
    fn open_errors_are_returned_not_panicked() {
        let r = TpmClient::spawn(|| -> Result<MemoryTpm, TpmError> {
            Err(TpmError::Memory("refused"))
        });
        assert!(matches!(r, Err(TpmError::Memory("refused"))));
    }
}
