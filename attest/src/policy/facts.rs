//! The facts the policy rules read from a log, collected in one pass that decodes only the
//! events the rules use, each with the index of the event that recorded it.
//!
//! Event data is not covered by a quote, only event digests are. A fact read from event data
//! is therefore used only when the data hashes to the event's digest in the authenticated bank
//! (the quoted bank); events whose data does not are listed in [`Facts::unverified`] and their
//! contents ignored, so an edited log cannot claim, say, Secure Boot on.

use crate::alg::HashAlg;
use crate::eventlog::{
    DecodeError, Event, EventData, EventLog, EventTag, EventType, Guid, IplKind, UefiVariable,
    VariableValue,
};

/// PCR of Secure Boot policy.
pub const PCR_SECURE_BOOT: u32 = 7;
/// PCR of boot applications.
pub const PCR_BOOT_APPS: u32 = 4;

/// A fact and where it was measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Measured<T> {
    /// Index of the event.
    pub event_index: usize,
    /// PCR it was extended into.
    pub pcr: u32,
    /// The fact.
    pub value: T,
}

/// Which rule family an unverifiable or undecodable event concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topic {
    /// PCR7 EV_EFI_VARIABLE_DRIVER_CONFIG (SecureBoot, PK, KEK, db, dbx).
    SecureBoot,
    /// EV_IPL (kernel command lines).
    Cmdline,
    /// EV_S_CRTM_VERSION.
    Scrtm,
}

/// An event whose data the rules cannot use.
#[derive(Clone, Debug)]
pub struct Unusable {
    /// Index of the event.
    pub event_index: usize,
    /// Its PCR.
    pub pcr: u32,
    /// The rules it concerns.
    pub topic: Topic,
    /// `None`: the data does not hash to the event's digest; `Some`: it does not decode.
    pub decode_error: Option<DecodeError>,
}

/// A PK / KEK / db / dbx measurement.
#[derive(Debug)]
pub struct KeyDb<'a, 'l> {
    /// The event.
    pub event: &'l Event<'a>,
    /// The variable name.
    pub name: &'static str,
    /// VariableData.
    pub data: &'a [u8],
}

impl KeyDb<'_, '_> {
    /// SHA-256 of the measured UEFI_VARIABLE_DATA, or `None` when the event data does not
    /// hash to its `bank` digest. With the sha256 bank authenticated this is the event's own
    /// digest: no hashing, and no need to trust the data.
    pub fn sha256(&self, bank: HashAlg) -> Option<Vec<u8>> {
        if bank == HashAlg::Sha256 {
            return self.event.digests.get(bank).map(<[u8]>::to_vec);
        }
        self.data_authenticated(bank)
            .then(|| HashAlg::Sha256.hash(self.event.data))
            .flatten()
    }

    /// True when the event data hashes to the event's `bank` digest.
    pub fn data_authenticated(&self, bank: HashAlg) -> bool {
        authenticated(self.event, bank, &[self.event.data])
    }
}

/// Facts from one log.
#[derive(Debug)]
pub struct Facts<'a, 'l> {
    /// The bank whose digests authenticate event data.
    pub bank: HashAlg,
    /// The first SecureBoot measurement (the one firmware acts on).
    pub secure_boot: Option<Measured<bool>>,
    /// PK / KEK / db / dbx measurements, in log order, not yet authenticated (see
    /// [`KeyDb::sha256`]).
    pub key_dbs: Vec<KeyDb<'a, 'l>>,
    /// Boot applications (PCR4).
    pub boot_apps: Vec<&'l Event<'a>>,
    /// Kernel command lines.
    pub cmdlines: Vec<Measured<String>>,
    /// S-CRTM versions (text, a GUID in registry form, or the data in hex).
    pub s_crtm: Vec<Measured<String>>,
    /// Objects the Linux EFI stub measured (EV_EVENT_TAG: command line, initrd), known only by
    /// their digests, which the quote covers.
    pub stub: Vec<(EventTag, &'l Event<'a>)>,
    /// Events of interest whose data could not be used.
    pub unusable: Vec<Unusable>,
}

fn at<T>(ev: &Event<'_>, value: T) -> Measured<T> {
    Measured {
        event_index: ev.index,
        pcr: ev.pcr,
        value,
    }
}

/// True when `H_bank(pre)` equals the event's `bank` digest for one of `pres`.
fn authenticated(ev: &Event<'_>, bank: HashAlg, pres: &[&[u8]]) -> bool {
    let Some(d) = ev.digests.get(bank) else {
        return false;
    };
    pres.iter()
        .any(|p| bank.hash(p).is_some_and(|h| h.as_slice() == d))
}

fn key_db_name(v: &UefiVariable<'_>) -> Option<&'static str> {
    let global = v.guid == Guid::EFI_GLOBAL_VARIABLE;
    let secdb = v.guid == Guid::IMAGE_SECURITY_DATABASE;
    match v.name.as_str() {
        "PK" if global => Some("PK"),
        "KEK" if global => Some("KEK"),
        "db" if secdb => Some("db"),
        "dbx" if secdb => Some("dbx"),
        _ => None,
    }
}

impl<'a, 'l> Facts<'a, 'l> {
    /// Collects the facts of `log`, trusting event data only under `bank` digests.
    pub fn collect(log: &'l EventLog<'a>, bank: HashAlg) -> Facts<'a, 'l> {
        let mut f = Facts {
            bank,
            secure_boot: None,
            key_dbs: Vec::new(),
            boot_apps: Vec::new(),
            cmdlines: Vec::new(),
            s_crtm: Vec::new(),
            stub: Vec::new(),
            unusable: Vec::new(),
        };
        for ev in log.events.iter().filter(|e| e.is_extended()) {
            let topic = match ev.event_type {
                EventType::EV_EFI_BOOT_SERVICES_APPLICATION if ev.pcr == PCR_BOOT_APPS => {
                    f.boot_apps.push(ev);
                    continue;
                }
                EventType::EV_EFI_VARIABLE_DRIVER_CONFIG if ev.pcr == PCR_SECURE_BOOT => {
                    Topic::SecureBoot
                }
                EventType::EV_IPL => Topic::Cmdline,
                EventType::EV_EVENT_TAG => {
                    if let Ok(EventData::Tagged { tag: Some(tag), .. }) = ev.decode() {
                        f.stub.push((tag, ev));
                    }
                    continue;
                }
                EventType::EV_S_CRTM_VERSION => Topic::Scrtm,
                _ => continue,
            };
            let unusable = |decode_error| Unusable {
                event_index: ev.index,
                pcr: ev.pcr,
                topic,
                decode_error,
            };
            let data = match ev.decode() {
                Ok(d) => d,
                Err(e) => {
                    f.unusable.push(unusable(Some(e)));
                    continue;
                }
            };
            match data {
                EventData::Variable(v) => {
                    let sb = matches!(v.value, Some(VariableValue::SecureBoot(_)));
                    let db = key_db_name(&v);
                    if !sb && db.is_none() {
                        continue;
                    }
                    if let Some(name) = db {
                        f.key_dbs.push(KeyDb {
                            event: ev,
                            name,
                            data: v.data,
                        });
                    } else if !authenticated(ev, bank, &[ev.data]) {
                        f.unusable.push(unusable(None));
                    } else if let (Some(VariableValue::SecureBoot(on)), None) =
                        (v.value, &f.secure_boot)
                    {
                        f.secure_boot = Some(at(ev, on));
                    }
                }
                EventData::Ipl {
                    ipl: IplKind::KernelCmdline,
                    text,
                } => {
                    if authenticated(ev, bank, &[ev.data, text.as_bytes()]) {
                        f.cmdlines.push(at(ev, text));
                    } else {
                        f.unusable.push(unusable(None));
                    }
                }
                EventData::Text { text } if topic == Topic::Scrtm => {
                    let end = ev.data.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
                    let trimmed = ev.data.get(..end).unwrap_or(ev.data);
                    if authenticated(ev, bank, &[ev.data, trimmed]) {
                        f.s_crtm.push(at(ev, text));
                    } else {
                        f.unusable.push(unusable(None));
                    }
                }
                other if topic == Topic::Scrtm => {
                    // A GUID in registry form; anything else as hex.
                    let value = match other {
                        EventData::Guid { guid } => guid.to_string(),
                        _ => hex::encode(ev.data),
                    };
                    if authenticated(ev, bank, &[ev.data]) {
                        f.s_crtm.push(at(ev, value));
                    } else {
                        f.unusable.push(unusable(None));
                    }
                }
                _ => {}
            }
        }
        f
    }
}

/// The bank a log-only check trusts: sha256 when the log has it, else the first bank this crate
/// computes.
pub fn preferred_bank(log: &EventLog<'_>) -> Option<HashAlg> {
    let banks = log.banks();
    if banks.contains(&HashAlg::Sha256) {
        return Some(HashAlg::Sha256);
    }
    banks.into_iter().find(|b| b.digest_len().is_some())
}
