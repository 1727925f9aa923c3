//! Publishing outbox entries in a bounded window: at most [`Delivery::window`] entries are handed
//! to the MQTT client and not yet acknowledged; each PUBACK frees a slot that the next entry
//! (oldest first) fills. A backlog of any size therefore drains at the broker's pace without
//! ever filling the client's request queue, and nothing here waits: a publish the client cannot
//! take now is tried again on the next event.

use super::super::outbox::{Entry, Outbox, OutboxError};
use std::collections::{BTreeSet, HashMap, VecDeque};

/// Why an entry was not handed to the client.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The client cannot take more now: try again later.
    Busy,
    /// The entry can never be sent (e.g. larger than the outgoing packet limit): drop it.
    Unsendable(String),
}

/// Something [`Delivery::fill`] met and skipped, for the caller to log.
#[derive(Debug)]
pub enum Skipped {
    /// The entry could not be read (it left the outbox; a corrupt one was moved aside).
    Unreadable(OutboxError),
    /// The entry was dropped because it can never be sent.
    Dropped { seq: u64, reason: String },
}

/// The outbox with its publishing window.
#[derive(Debug)]
pub struct Delivery {
    outbox: Outbox,
    window: usize,
    /// Entries handed to the client, waiting for their packet id, in order.
    queued: VecDeque<u64>,
    /// Packet id -> outbox entry, waiting for PUBACK.
    inflight: HashMap<u16, u64>,
    /// Every entry in `queued` or `inflight`.
    sent: BTreeSet<u64>,
}

impl Delivery {
    /// Publishes `outbox` with at most `window` entries unacknowledged.
    pub fn new(outbox: Outbox, window: usize) -> Delivery {
        Delivery {
            outbox,
            window: window.max(1),
            queued: VecDeque::new(),
            inflight: HashMap::new(),
            sent: BTreeSet::new(),
        }
    }

    /// Entries on disk (sent or not).
    pub fn backlog(&self) -> usize {
        self.outbox.len()
    }

    /// Entries handed to the client and not yet acknowledged.
    #[cfg(test)]
    pub fn unacked(&self) -> usize {
        self.sent.len()
    }

    /// Queues a message durably; returns the oldest entries the outbox dropped to make room.
    /// Call [`Delivery::fill`] afterwards to publish it.
    pub fn push(&mut self, topic: &str, payload: &[u8]) -> Result<Vec<u64>, OutboxError> {
        let (_, dropped) = self.outbox.push(topic, payload)?;
        Ok(dropped)
    }

    /// Hands entries to `publish`, oldest unsent first, until the window is full, the outbox
    /// has nothing unsent, or `publish` is busy. Returns what was skipped.
    pub fn fill(
        &mut self,
        mut publish: impl FnMut(&Entry) -> Result<(), SendError>,
    ) -> Vec<Skipped> {
        let mut skipped = Vec::new();
        while self.sent.len() < self.window {
            let Some(seq) = self.outbox.seqs().find(|s| !self.sent.contains(s)) else {
                break;
            };
            let entry = match self.outbox.read(seq) {
                Ok(e) => e,
                Err(e) => {
                    skipped.push(Skipped::Unreadable(e));
                    continue;
                }
            };
            match publish(&entry) {
                Ok(()) => {
                    self.queued.push_back(seq);
                    self.sent.insert(seq);
                }
                Err(SendError::Busy) => break,
                Err(SendError::Unsendable(reason)) => {
                    if let Err(e) = self.outbox.remove(seq) {
                        skipped.push(Skipped::Unreadable(e));
                    }
                    skipped.push(Skipped::Dropped { seq, reason });
                }
            }
        }
        skipped
    }

    /// The client wrote a publish with packet id `pkid`.
    pub fn published(&mut self, pkid: u16) {
        // A retransmission after a reconnect reuses its packet id: already tracked.
        if self.inflight.contains_key(&pkid) {
            return;
        }
        if let Some(seq) = self.queued.pop_front() {
            self.inflight.insert(pkid, seq);
        }
    }

    /// The broker acknowledged `pkid`: the entry leaves the outbox (call `fill` to refill).
    pub fn acked(&mut self, pkid: u16) -> Result<(), OutboxError> {
        if let Some(seq) = self.inflight.remove(&pkid) {
            self.sent.remove(&seq);
            self.outbox.remove(seq)?;
        }
        Ok(())
    }

    /// The broker had no session for us: the client dropped what it had not delivered, so every
    /// entry is unsent again (they are all still on disk).
    pub fn session_lost(&mut self) {
        self.queued.clear();
        self.inflight.clear();
        self.sent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::outbox::Limits;
    use super::*;

    fn delivery(n: usize, window: usize) -> (tempfile::TempDir, Delivery) {
        let dir = tempfile::tempdir().unwrap();
        let (mut o, _) = Outbox::open(dir.path(), Limits::DEFAULT).unwrap();
        for i in 0..n {
            o.push("t", format!("{i}").as_bytes()).unwrap();
        }
        (dir, Delivery::new(o, window))
    }

    /// A fake client: accepts up to `room` publishes, records payloads, assigns packet ids.
    struct Client {
        room: usize,
        sent: Vec<String>,
    }

    impl Client {
        fn publish(&mut self, e: &Entry) -> Result<(), SendError> {
            if self.sent.len() >= self.room {
                return Err(SendError::Busy);
            }
            self.sent
                .push(String::from_utf8(e.payload.clone()).unwrap());
            Ok(())
        }
    }

    #[test]
    fn at_most_a_window_is_unacknowledged_and_acks_refill_it_in_order() {
        let (_d, mut del) = delivery(100, 8);
        let mut c = Client {
            room: usize::MAX,
            sent: vec![],
        };
        assert!(del.fill(|e| c.publish(e)).is_empty());
        assert_eq!(c.sent.len(), 8, "only the window is handed out");
        assert_eq!(del.unacked(), 8);
        for pkid in 1..=8u16 {
            del.published(pkid);
        }
        // Nothing more while the window is full.
        del.fill(|e| c.publish(e));
        assert_eq!(c.sent.len(), 8);
        del.acked(3).unwrap();
        del.fill(|e| c.publish(e));
        assert_eq!(c.sent.len(), 9);
        assert_eq!(c.sent[8], "8");
        assert_eq!(del.backlog(), 99);
        // Drain everything: each ack frees one slot.
        let mut pkid = 9u16;
        del.published(pkid);
        let mut acks: Vec<u16> = (1..=9).filter(|p| *p != 3).collect();
        while let Some(p) = acks.pop() {
            del.acked(p).unwrap();
            del.fill(|e| c.publish(e));
            if del.unacked() > acks.len() {
                pkid += 1;
                del.published(pkid);
                acks.push(pkid);
            }
        }
        assert_eq!(del.backlog(), 0);
        let want: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        assert_eq!(c.sent, want, "each entry sent once, oldest first");
    }

    #[test]
    fn a_busy_client_is_retried_later_and_nothing_is_lost() {
        let (_d, mut del) = delivery(5, 8);
        let mut c = Client {
            room: 2,
            sent: vec![],
        };
        del.fill(|e| c.publish(e));
        assert_eq!(c.sent, vec!["0", "1"]);
        c.room = 10;
        del.fill(|e| c.publish(e));
        assert_eq!(c.sent, vec!["0", "1", "2", "3", "4"]);
    }

    #[test]
    fn a_lost_session_resends_everything_unacknowledged() {
        let (_d, mut del) = delivery(3, 8);
        let mut c = Client {
            room: usize::MAX,
            sent: vec![],
        };
        del.fill(|e| c.publish(e));
        del.published(1);
        del.acked(1).unwrap();
        del.published(2);
        del.session_lost();
        del.fill(|e| c.publish(e));
        assert_eq!(c.sent, vec!["0", "1", "2", "1", "2"]);
    }

    #[test]
    fn retransmissions_keep_their_entry_and_unsendable_entries_are_dropped() {
        let (_d, mut del) = delivery(3, 8);
        let skipped = del.fill(|e| {
            if e.payload == b"1" {
                Err(SendError::Unsendable("too large".into()))
            } else {
                Ok(())
            }
        });
        assert!(matches!(&skipped[..], [Skipped::Dropped { .. }]));
        assert_eq!(del.backlog(), 2);
        del.published(7);
        del.published(7); // retransmission of the same packet
        del.published(8);
        del.acked(8).unwrap();
        assert_eq!(del.backlog(), 1);
        del.acked(7).unwrap();
        assert_eq!(del.backlog(), 0);
    }
}
