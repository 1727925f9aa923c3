//! The outbox: reports the agent made are written to disk before they are published and removed
//! only when the broker acknowledged them (QoS 1 PUBACK), so a report made while offline, or in
//! flight when the connection dropped, is delivered after the next connect.
//!
//! Each entry is one file `<seq>.msg` holding the topic, a newline and the payload; writes go
//! through a temporary file and a rename, so a crash leaves either the whole entry or none.

use std::fs;
use std::path::{Path, PathBuf};

/// Errors of the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The outbox directory or an entry could not be read or written.
    #[error("outbox {path}: {source}")]
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

/// A directory of queued reports.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    next: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutboxError + '_ {
    move |source| OutboxError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Outbox {
    /// Opens (creating) the outbox in `dir`.
    pub fn open(dir: &Path) -> Result<Outbox, OutboxError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let next = Outbox::seqs(dir)?.last().map_or(1, |s| s + 1);
        Ok(Outbox {
            dir: dir.to_path_buf(),
            next,
        })
    }

    fn seqs(dir: &Path) -> Result<Vec<u64>, OutboxError> {
        let mut seqs = Vec::new();
        for e in fs::read_dir(dir).map_err(io(dir))? {
            let e = e.map_err(io(dir))?;
            let name = e.file_name();
            if let Some(seq) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".msg"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        Ok(seqs)
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.msg"))
    }

    /// Queues a report durably and returns its sequence number.
    pub fn push(&mut self, topic: &str, payload: &[u8]) -> Result<u64, OutboxError> {
        let seq = self.next;
        self.next += 1;
        let path = self.path(seq);
        let tmp = path.with_extension("tmp");
        let mut data = Vec::with_capacity(topic.len() + 1 + payload.len());
        data.extend_from_slice(topic.as_bytes());
        data.push(b'\n');
        data.extend_from_slice(payload);
        fs::write(&tmp, &data).map_err(io(&tmp))?;
        fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(seq)
    }

    /// Every queued report, oldest first. Corrupt entries are renamed `.bad` and reported.
    pub fn pending(&self) -> Result<Vec<Entry>, OutboxError> {
        let mut out = Vec::new();
        for seq in Outbox::seqs(&self.dir)? {
            let path = self.path(seq);
            let data = fs::read(&path).map_err(io(&path))?;
            match data.iter().position(|b| *b == b'\n') {
                Some(nl) => out.push(Entry {
                    seq,
                    topic: String::from_utf8_lossy(&data[..nl]).into_owned(),
                    payload: data[nl + 1..].to_vec(),
                }),
                None => {
                    let bad = path.with_extension("bad");
                    fs::rename(&path, &bad).map_err(io(&path))?;
                    return Err(OutboxError::Corrupt(bad));
                }
            }
        }
        Ok(out)
    }

    /// Removes a delivered report.
    pub fn remove(&self, seq: u64) -> Result<(), OutboxError> {
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

    #[test]
    fn survives_reopen_and_keeps_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(dir.path()).unwrap();
        let a = o.push("devices/x/attestation", b"one").unwrap();
        let b = o.push("devices/x/attestation", b"two\nlines").unwrap();
        drop(o);
        let mut o = Outbox::open(dir.path()).unwrap();
        let p = o.pending().unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].seq, p[1].seq), (a, b));
        assert_eq!(p[1].payload, b"two\nlines");
        o.remove(a).unwrap();
        let c = o.push("t", b"three").unwrap();
        assert!(c > b);
        let seqs: Vec<u64> = o.pending().unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![b, c]);
    }

    #[test]
    fn corrupt_entries_are_moved_aside_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::open(dir.path()).unwrap();
        fs::write(dir.path().join(format!("{:020}.msg", 7)), b"no newline").unwrap();
        let e = o.pending().unwrap_err();
        assert!(e.to_string().contains("corrupt"));
        assert!(o.pending().unwrap().is_empty());
    }
}
