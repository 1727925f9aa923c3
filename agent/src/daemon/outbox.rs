//! The outbox: reports the agent made are written to disk before they are published and removed
//! only when the broker acknowledged them (QoS 1 PUBACK), so a report made while offline, or in
//! flight when the connection dropped, is delivered after the next connect.
//!
//! Each entry is one file `<seq>.msg` holding the topic, a newline and the payload; writes go
//! through a temporary file and a rename, so a crash leaves either the whole entry or none.
//!
//! The outbox is bounded ([`Limits`]): when a new entry would exceed the number of entries or
//! bytes, the oldest entries are dropped (the caller logs it). Only the index (sequence number
//! and size of each entry) is kept in memory; payloads are read one at a time when published, so
//! a backlog of any size on disk costs memory per entry, not per byte.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Errors of the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The outbox directory or an entry could not be read or written.
    #[error("outbox {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An entry on disk has no topic line.
    #[error("outbox entry {0} is corrupt (no topic line); it was moved aside")]
    Corrupt(PathBuf),
}

/// One queued report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Sequence number (file name), increasing.
    pub seq: u64,
    /// MQTT topic.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
}

/// How much the outbox keeps before it drops its oldest entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most entries kept.
    pub max_entries: usize,
    /// Most bytes (topic + payload of every entry) kept.
    pub max_bytes: u64,
}

impl Limits {
    /// The daemon's limits: reports answer nonces that expire within minutes, so thousands of
    /// undelivered ones are history, not evidence; boot announcements and escrow deposits are
    /// made again by every new session.
    pub const DEFAULT: Limits = Limits {
        max_entries: 4096,
        max_bytes: 64 << 20,
    };
}

/// A directory of queued reports.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    next: u64,
    limits: Limits,
    /// Sequence number -> size on disk, of every entry.
    index: BTreeMap<u64, u64>,
    bytes: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutboxError + '_ {
    move |source| OutboxError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Outbox {
    /// Opens (creating) the outbox in `dir`, dropping the oldest entries beyond `limits`.
    /// Returns the outbox and the number of entries dropped.
    pub fn open(dir: &Path, limits: Limits) -> Result<(Outbox, usize), OutboxError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut index = BTreeMap::new();
        for e in fs::read_dir(dir).map_err(io(dir))? {
            let e = e.map_err(io(dir))?;
            let name = e.file_name();
            if let Some(seq) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".msg"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                let len = e.metadata().map_err(io(&e.path()))?.len();
                index.insert(seq, len);
            }
        }
        let next = index.keys().next_back().map_or(1, |s| s + 1);
        let bytes = index.values().sum();
        let mut o = Outbox {
            dir: dir.to_path_buf(),
            next,
            limits,
            index,
            bytes,
        };
        let dropped = o.trim(None)?;
        Ok((o, dropped.len()))
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.msg"))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Sequence numbers of every entry, oldest first.
    pub fn seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.index.keys().copied()
    }

    /// Drops the oldest entries (never `keep`) until the limits hold; returns what was dropped.
    fn trim(&mut self, keep: Option<u64>) -> Result<Vec<u64>, OutboxError> {
        let mut dropped = Vec::new();
        while self.index.len() > self.limits.max_entries || self.bytes > self.limits.max_bytes {
            let Some(oldest) = self.index.keys().copied().find(|s| Some(*s) != keep) else {
                break;
            };
            self.remove(oldest)?;
            dropped.push(oldest);
        }
        Ok(dropped)
    }

    /// Queues a report durably. Returns its sequence number and the oldest entries dropped to
    /// stay within the limits (a single entry larger than the byte limit is still kept).
    pub fn push(&mut self, topic: &str, payload: &[u8]) -> Result<(u64, Vec<u64>), OutboxError> {
        let seq = self.next;
        self.next += 1;
        let path = self.path(seq);
        let mut data = Vec::with_capacity(topic.len() + 1 + payload.len());
        data.extend_from_slice(topic.as_bytes());
        data.push(b'\n');
        data.extend_from_slice(payload);
        vouch_durable::write(&path, &data, vouch_durable::MODE_PRIVATE)
            .map_err(|e| io(&path)(e.into()))?;
        let len = data.len() as u64;
        self.index.insert(seq, len);
        self.bytes += len;
        let dropped = self.trim(Some(seq))?;
        Ok((seq, dropped))
    }

    /// Reads one entry. A corrupt entry is renamed `.bad`, leaves the index and is reported.
    pub fn read(&mut self, seq: u64) -> Result<Entry, OutboxError> {
        let path = self.path(seq);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) => {
                self.forget(seq);
                return Err(io(&path)(e));
            }
        };
        match data.iter().position(|b| *b == b'\n') {
            Some(nl) => Ok(Entry {
                seq,
                topic: String::from_utf8_lossy(&data[..nl]).into_owned(),
                payload: data[nl + 1..].to_vec(),
            }),
            None => {
                self.forget(seq);
                let bad = path.with_extension("bad");
                fs::rename(&path, &bad).map_err(io(&path))?;
                Err(OutboxError::Corrupt(bad))
            }
        }
    }

    fn forget(&mut self, seq: u64) {
        if let Some(len) = self.index.remove(&seq) {
            self.bytes -= len;
        }
    }

    /// Removes a delivered (or dropped) report; an unknown one is no error.
    pub fn remove(&mut self, seq: u64) -> Result<(), OutboxError> {
        self.forget(seq);
        let path = self.path(seq);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: Limits = Limits {
        max_entries: 1000,
        max_bytes: 1 << 20,
    };

    fn files(dir: &Path) -> usize {
        fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".msg")
            })
            .count()
    }

    #[test]
    fn survives_reopen_and_keeps_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut o, _) = Outbox::open(dir.path(), BIG).unwrap();
        let (a, _) = o.push("devices/x/attestation", b"one").unwrap();
        let (b, _) = o.push("devices/x/attestation", b"two\nlines").unwrap();
        drop(o);
        let (mut o, dropped) = Outbox::open(dir.path(), BIG).unwrap();
        assert_eq!(dropped, 0);
        assert_eq!(o.seqs().collect::<Vec<_>>(), vec![a, b]);
        assert_eq!(o.read(b).unwrap().payload, b"two\nlines");
        assert_eq!(o.read(a).unwrap().topic, "devices/x/attestation");
        o.remove(a).unwrap();
        let (c, _) = o.push("t", b"three").unwrap();
        assert!(c > b);
        assert_eq!(o.seqs().collect::<Vec<_>>(), vec![b, c]);
        assert_eq!(files(dir.path()), 2);
    }

    #[test]
    fn entries_are_written_whole_and_private_with_no_temp_file_left() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (mut o, _) = Outbox::open(dir.path(), BIG).unwrap();
        let (seq, _) = o.push("t", b"payload").unwrap();
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [format!("{seq:020}.msg")]);
        let meta = fs::metadata(dir.path().join(&names[0])).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read(dir.path().join(&names[0])).unwrap(), b"t\npayload");
    }

    #[test]
    fn corrupt_entries_are_moved_aside_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(format!("{:020}.msg", 7)), b"no newline").unwrap();
        let (mut o, _) = Outbox::open(dir.path(), BIG).unwrap();
        assert_eq!(o.len(), 1);
        let e = o.read(7).unwrap_err();
        assert!(e.to_string().contains("corrupt"));
        assert!(o.is_empty());
        assert!(dir.path().join(format!("{:020}.bad", 7)).exists());
    }

    #[test]
    fn a_full_outbox_drops_its_oldest_entries_by_count() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_entries: 3,
            max_bytes: 1 << 20,
        };
        let (mut o, _) = Outbox::open(dir.path(), limits).unwrap();
        let seqs: Vec<u64> = (0..3).map(|_| o.push("t", b"x").unwrap().0).collect();
        let (d, dropped) = o.push("t", b"x").unwrap();
        assert_eq!(dropped, vec![seqs[0]]);
        assert_eq!(o.seqs().collect::<Vec<_>>(), vec![seqs[1], seqs[2], d]);
        assert_eq!(files(dir.path()), 3);
    }

    #[test]
    fn a_full_outbox_drops_its_oldest_entries_by_bytes_but_keeps_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_entries: 100,
            max_bytes: 25,
        };
        let (mut o, _) = Outbox::open(dir.path(), limits).unwrap();
        let (a, _) = o.push("t", &[b'a'; 8]).unwrap(); // 10 bytes on disk
        let (b, _) = o.push("t", &[b'b'; 8]).unwrap();
        let (c, dropped) = o.push("t", &[b'c'; 8]).unwrap();
        assert_eq!(dropped, vec![a]);
        assert_eq!(o.seqs().collect::<Vec<_>>(), vec![b, c]);
        // Larger than the whole limit: everything else goes, the new entry stays.
        let (d, dropped) = o.push("t", &[b'd'; 40]).unwrap();
        assert_eq!(dropped, vec![b, c]);
        assert_eq!(o.seqs().collect::<Vec<_>>(), vec![d]);
    }

    #[test]
    fn opening_an_oversized_backlog_trims_it_to_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        for seq in 1..=50u64 {
            fs::write(dir.path().join(format!("{seq:020}.msg")), b"t\npayload").unwrap();
        }
        let limits = Limits {
            max_entries: 10,
            max_bytes: 1 << 20,
        };
        let (mut o, dropped) = Outbox::open(dir.path(), limits).unwrap();
        assert_eq!(dropped, 40);
        assert_eq!(o.seqs().collect::<Vec<_>>(), (41..=50).collect::<Vec<_>>());
        assert_eq!(files(dir.path()), 10);
        assert_eq!(o.push("t", b"x").unwrap().0, 51);
    }
}
