//! The TPM worker: one dedicated thread owns the [`Tpm`] implementation and serves requests from a
//! channel, so blocking TPM calls never run on an async runtime's threads and the `&mut` access
//! tss-esapi needs is naturally serialized.

use super::{Tpm, TpmError};
use std::sync::mpsc;
use std::thread;

type Job = Box<dyn FnOnce(&mut dyn Tpm) + Send>;

/// A cheap, cloneable handle to the TPM worker thread.
#[derive(Clone)]
pub struct TpmClient {
    jobs: mpsc::Sender<Job>,
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
        thread::Builder::new()
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
        ready_rx.recv().map_err(|_| TpmError::WorkerGone)??;
        Ok(TpmClient { jobs })
    }

    /// Runs `f` on the worker thread with the TPM and waits for its result.
    pub fn call<R, F>(&self, f: F) -> Result<R, TpmError>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Tpm) -> Result<R, TpmError> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(move |tpm| {
                let _ = tx.send(f(tpm));
            }))
            .map_err(|_| TpmError::WorkerGone)?;
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

    #[test]
    fn open_errors_are_returned_not_panicked() {
        let r = TpmClient::spawn(|| -> Result<MemoryTpm, TpmError> {
            Err(TpmError::Memory("refused"))
        });
        assert!(matches!(r, Err(TpmError::Memory("refused"))));
    }
}
