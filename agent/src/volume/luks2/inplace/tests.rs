//! Crash tests: a simulated power cut at every write (the failing write is torn in the
//! middle), then a resume, must end with every plaintext byte encrypted in place.

use std::cell::Cell;

use super::*;
use crate::volume::device::MemDevice;
use crate::volume::luks2::format::Argon2Cost;

/// A device that dies after `budget` writes; the write that dies is half-written.
struct Crashy<'a> {
    inner: &'a mut MemDevice,
    budget: &'a Cell<u64>,
}

impl BlockDevice for Crashy<'_> {
    fn size(&mut self) -> Result<u64, DeviceError> {
        self.inner.size()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), DeviceError> {
        if self.budget.get() == 0 {
            let half = buf.get(..buf.len() / 2).unwrap_or_default();
            self.inner.write_at(offset, half)?;
            return Err(DeviceError::Write {
                offset,
                len: buf.len(),
                source: std::io::Error::other("simulated power cut"),
            });
        }
        self.budget.set(self.budget.get() - 1);
        self.inner.write_at(offset, buf)
    }
    fn sync(&mut self) -> Result<(), DeviceError> {
        self.inner.sync()
    }
}

const SHIFT: u64 = 1 << 20;
const PLAIN: usize = 192 << 10;

fn opts() -> FormatOptions {
    FormatOptions {
        data_offset: SHIFT,
        // Cheap KDFs: this test runs the whole procedure dozens of times.
        secret_iterations: 1,
        digest_iterations: 1,
        recovery_cost: Argon2Cost {
            time: 1,
            memory_kib: 64,
            lanes: 1,
        },
        ..FormatOptions::default()
    }
}

fn secret() -> Zeroizing<Vec<u8>> {
    Zeroizing::new(vec![0x42; 32])
}

fn recovery() -> Zeroizing<Vec<u8>> {
    Zeroizing::new(b"recover".to_vec())
}

fn plaintext() -> Vec<u8> {
    (0..PLAIN as u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

fn fresh() -> MemDevice {
    let mut d = plaintext();
    d.resize(PLAIN + SHIFT as usize, 0);
    MemDevice(d)
}

/// `encrypt_existing` with the test secret, recovery passphrase, options and 64 KiB chunks.
fn run<D: BlockDevice, J: BlockDevice>(
    dev: &mut D,
    journal: &mut J,
) -> Result<(Luks2Volume, Zeroizing<Vec<u8>>), InplaceError> {
    encrypt_existing(dev, journal, &secret(), &recovery(), &opts(), 64 << 10)
}

fn check_result(dev: &mut MemDevice) {
    let vol = Luks2Volume::read(dev).expect("finished volume reads");
    let key = vol.open(dev, &secret(), None).expect("opens").volume_key;
    let rec = vol.open(dev, &recovery(), Some(1)).expect("recovery opens");
    assert_eq!(rec.volume_key, key);
    let seg = vol.data_segment(&key).expect("segment");
    let mut data = vec![0u8; PLAIN];
    seg.read(dev, 0, &mut data).expect("decrypt");
    assert!(data == plaintext(), "plaintext not preserved");
}

#[test]
fn uninterrupted_run_encrypts_everything() {
    let mut dev = fresh();
    let mut journal = MemDevice(vec![0u8; SHIFT as usize + 2 * RECORD_SIZE]);
    run(&mut dev, &mut journal).expect("encrypt");
    check_result(&mut dev);
    assert_ne!(&dev.0[SHIFT as usize..][..4096], &plaintext()[..4096]);
    // Running again on a finished journal changes nothing.
    let before = dev.clone();
    run(&mut dev, &mut journal).expect("rerun");
    assert_eq!(dev, before);
}

#[test]
fn power_cut_at_every_write_then_resume_loses_nothing() {
    let mut crashes = 0;
    // Budgets 0, 1, 2, ...: a power cut at every write until a run completes.
    for budget in 0..1000u64 {
        let mut dev = fresh();
        let mut journal = MemDevice(vec![0u8; SHIFT as usize + 2 * RECORD_SIZE]);
        let cell = Cell::new(budget);
        let first = {
            let mut d = Crashy {
                inner: &mut dev,
                budget: &cell,
            };
            let mut j = Crashy {
                inner: &mut journal,
                budget: &cell,
            };
            run(&mut d, &mut j)
        };
        if first.is_err() {
            crashes += 1;
            // A wrong secret on resume is refused before anything is written.
            if matches!(read_record(&mut journal, SHIFT), Ok(Some(_))) {
                let before = dev.clone();
                let wrong = Zeroizing::new(vec![0u8; 32]);
                assert!(matches!(
                    encrypt_existing(
                        &mut dev,
                        &mut journal,
                        &wrong,
                        &recovery(),
                        &opts(),
                        64 << 10
                    ),
                    Err(InplaceError::Journal(_))
                ));
                assert_eq!(dev, before);
            }
            run(&mut dev, &mut journal)
                .unwrap_or_else(|e| panic!("resume after crash at write {budget}: {e}"));
        }
        check_result(&mut dev);
        if first.is_ok() {
            break;
        }
    }
    assert!(crashes > 20, "only {crashes} crash points exercised");
}

#[test]
fn bad_parameters_are_refused() {
    let mut dev = fresh();
    let mut journal = MemDevice(vec![0u8; SHIFT as usize + 2 * RECORD_SIZE]);
    assert!(matches!(
        encrypt_existing(
            &mut dev,
            &mut journal,
            &secret(),
            &recovery(),
            &opts(),
            SHIFT + 4096
        ),
        Err(InplaceError::Chunk { .. })
    ));
    let no_offset = FormatOptions {
        data_offset: 0,
        ..opts()
    };
    assert!(matches!(
        encrypt_existing(
            &mut dev,
            &mut journal,
            &secret(),
            &recovery(),
            &no_offset,
            4096
        ),
        Err(InplaceError::NoDataOffset)
    ));
    let mut odd = MemDevice(vec![0u8; SHIFT as usize + 100]);
    assert!(matches!(
        encrypt_existing(
            &mut odd,
            &mut journal,
            &secret(),
            &recovery(),
            &opts(),
            4096
        ),
        Err(InplaceError::DeviceSize { .. })
    ));
}

/// Stops after `budget` device writes: an interrupted job whose journal holds progress.
fn interrupted(budget: u64) -> (MemDevice, MemDevice) {
    let mut dev = fresh();
    let mut journal = MemDevice(vec![0u8; SHIFT as usize + 2 * RECORD_SIZE]);
    let cell = Cell::new(budget);
    let mut d = Crashy {
        inner: &mut dev,
        budget: &cell,
    };
    let r = run(&mut d, &mut journal);
    assert!(r.is_err(), "the job must be interrupted");
    (dev, journal)
}

#[test]
fn journal_of_another_device_of_the_same_size_is_refused() {
    let (_, mut journal) = interrupted(1);
    let record = read_record(&mut journal, SHIFT).unwrap().unwrap();
    assert!(
        record.seq > 0 && record.done_from < PLAIN as u64,
        "{record:?}"
    );
    // Another device of the same size, with other data.
    let mut other = MemDevice(
        plaintext()
            .iter()
            .map(|b| b ^ 0x5a)
            .chain(std::iter::repeat_n(0, SHIFT as usize))
            .collect(),
    );
    let before = other.clone();
    let err = run(&mut other, &mut journal).unwrap_err();
    assert!(
        matches!(err, InplaceError::ForeignDevice { offset, len: 4096 }
            if offset == record.done_from + SHIFT),
        "{err}"
    );
    assert_eq!(other, before, "a foreign device must be left untouched");
}

#[test]
fn journal_of_a_finished_job_is_refused_on_another_device() {
    let mut dev = fresh();
    let mut journal = MemDevice(vec![0u8; SHIFT as usize + 2 * RECORD_SIZE]);
    run(&mut dev, &mut journal).expect("encrypt");
    let mut other = fresh();
    let before = other.clone();
    let err = run(&mut other, &mut journal).unwrap_err();
    assert!(
        matches!(err, InplaceError::ForeignDevice { offset: SHIFT, .. }),
        "{err}"
    );
    assert_eq!(other, before);
}

#[test]
fn version_1_records_are_refused_not_taken_for_a_fresh_journal() {
    let (mut dev, mut journal) = interrupted(2);
    // Rewrite the newest record in the version-1 layout (33-byte body, no fingerprint).
    let r = read_record(&mut journal, SHIFT).unwrap().unwrap();
    let mut body = RECORD_MAGIC_V1.to_vec();
    body.extend_from_slice(&r.seq.to_be_bytes());
    body.extend_from_slice(&r.device_size.to_be_bytes());
    body.extend_from_slice(&r.done_from.to_be_bytes());
    body.push(0);
    let sum = Sha256::digest(&body);
    body.extend_from_slice(&sum);
    body.resize(RECORD_SIZE, 0);
    for slot in 0..2u64 {
        journal
            .write_at(SHIFT + slot * RECORD_SIZE as u64, &body)
            .unwrap();
    }
    let before = dev.clone();
    let err = run(&mut dev, &mut journal).unwrap_err();
    assert!(matches!(err, InplaceError::OldJournal), "{err}");
    assert_eq!(dev, before);
}
