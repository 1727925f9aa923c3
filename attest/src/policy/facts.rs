//! The facts the policy rules read from a log, collected in one pass that decodes only the
//! events the rules use, each with the index of the event that recorded it.
//!
//! Event data is not covered by a quote, only event digests are. A fact read from event data
//! is therefore used only when the data hashes to the event's digest in the authenticated bank
//! (the quoted bank); events whose data does not are listed in [`Facts::unusable`] and their
//! contents ignored, so an edited log cannot claim, say, Secure Boot on.

use crate::alg::HashAlg;
use crate::eventlog::{
    kernel_cmdline, utf16_is, variable_header, DecodeError, Event, EventData, EventLog, EventTag,
    EventType, Guid,
};

/// PCR of Secure Boot policy.
pub const PCR_SECURE_BOOT: u32 = 7;
/// PCR of boot applications.
pub const PCR_BOOT_APPS: u32 = 4;
/// PCR GRUB measures the files it reads into (and the Linux EFI stub its command line and
/// initrd).
pub const PCR_GRUB_FILES: u32 = 9;

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
    /// Files GRUB read (PCR 9 EV_IPL): known by their digests, which the quote covers; the
    /// file name in the event data is not covered.
    pub grub_files: Vec<&'l Event<'a>>,
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

/// The key databases: variable name and the vendor GUID it must have.
const KEY_DBS: [(&str, Guid); 4] = [
    ("PK", Guid::EFI_GLOBAL_VARIABLE),
    ("KEK", Guid::EFI_GLOBAL_VARIABLE),
    ("db", Guid::IMAGE_SECURITY_DATABASE),
    ("dbx", Guid::IMAGE_SECURITY_DATABASE),
];

/// Which facts a caller reads. Events that only feed the others are not decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Needs {
    /// [`Facts::secure_boot`] and [`Facts::key_dbs`] (PCR7 variable events).
    pub secure_boot: bool,
    /// [`Facts::boot_apps`].
    pub boot_apps: bool,
    /// [`Facts::cmdlines`] (EV_IPL).
    pub cmdlines: bool,
    /// [`Facts::grub_files`] (PCR 9 EV_IPL).
    pub grub_files: bool,
    /// [`Facts::stub`] (EV_EVENT_TAG).
    pub stub: bool,
    /// [`Facts::s_crtm`].
    pub s_crtm: bool,
}

impl Needs {
    /// Every fact.
    pub const ALL: Needs = Needs {
        secure_boot: true,
        boot_apps: true,
        cmdlines: true,
        grub_files: true,
        stub: true,
        s_crtm: true,
    };
}

impl<'a, 'l> Facts<'a, 'l> {
    /// Collects every fact of `log`, trusting event data only under `bank` digests.
    pub fn collect(log: &'l EventLog<'a>, bank: HashAlg) -> Facts<'a, 'l> {
        Facts::collect_some(log, bank, Needs::ALL)
    }

    /// Collects the facts `needs` asks for; the other fields stay empty.
    pub fn collect_some(log: &'l EventLog<'a>, bank: HashAlg, needs: Needs) -> Facts<'a, 'l> {
        let mut f = Facts {
            bank,
            secure_boot: None,
            key_dbs: Vec::new(),
            boot_apps: Vec::new(),
            cmdlines: Vec::new(),
            grub_files: Vec::new(),
            s_crtm: Vec::new(),
            stub: Vec::new(),
            unusable: Vec::new(),
        };
        for ev in log.events.iter().filter(|e| e.is_extended()) {
            match ev.event_type {
                EventType::EV_EFI_BOOT_SERVICES_APPLICATION
                    if ev.pcr == PCR_BOOT_APPS && needs.boot_apps =>
                {
                    f.boot_apps.push(ev);
                }
                EventType::EV_EFI_VARIABLE_DRIVER_CONFIG
                    if ev.pcr == PCR_SECURE_BOOT && needs.secure_boot =>
                {
                    f.secure_boot_variable(ev);
                }
                EventType::EV_IPL => {
                    if needs.grub_files && ev.pcr == PCR_GRUB_FILES {
                        f.grub_files.push(ev);
                    }
                    if needs.cmdlines {
                        f.ipl(ev);
                    }
                }
                EventType::EV_EVENT_TAG if needs.stub => {
                    if let Ok(EventData::Tagged { tag: Some(tag), .. }) = ev.decode() {
                        f.stub.push((tag, ev));
                    }
                }
                EventType::EV_S_CRTM_VERSION if needs.s_crtm => f.s_crtm_version(ev),
                _ => {}
            }
        }
        f
    }

    fn unusable(&mut self, ev: &Event<'_>, topic: Topic, decode_error: Option<DecodeError>) {
        self.unusable.push(Unusable {
            event_index: ev.index,
            pcr: ev.pcr,
            topic,
            decode_error,
        });
    }

    /// A PCR7 EV_EFI_VARIABLE_DRIVER_CONFIG event: a key database or SecureBoot. Only the
    /// variable's GUID and name are read (no decoding of the value, no strings built).
    fn secure_boot_variable(&mut self, ev: &'l Event<'a>) {
        let v = match variable_header(ev.data, ev.data_offset) {
            Ok(v) => v,
            Err(source) => {
                let e = DecodeError::Variable {
                    index: ev.index,
                    source,
                };
                return self.unusable(ev, Topic::SecureBoot, Some(e));
            }
        };
        let db = KEY_DBS
            .iter()
            .find(|(name, guid)| v.guid == *guid && utf16_is(v.name, name));
        if let Some((name, _)) = db {
            self.key_dbs.push(KeyDb {
                event: ev,
                name,
                data: v.data,
            });
            return;
        }
        if v.guid != Guid::EFI_GLOBAL_VARIABLE || !utf16_is(v.name, "SecureBoot") {
            return;
        }
        if !authenticated(ev, self.bank, &[ev.data]) {
            return self.unusable(ev, Topic::SecureBoot, None);
        }
        if self.secure_boot.is_none() {
            // SecureBoot: 1 byte, 1 = enabled; empty data reads as disabled.
            self.secure_boot = Some(at(ev, v.data.first() == Some(&1)));
        }
    }

    /// An EV_IPL event: only kernel command lines are kept (and only they are copied).
    fn ipl(&mut self, ev: &Event<'_>) {
        let Some(text) = kernel_cmdline(ev.data, ev.pcr) else {
            return;
        };
        if authenticated(ev, self.bank, &[ev.data, text.as_bytes()]) {
            self.cmdlines.push(at(ev, text.into_owned()));
        } else {
            self.unusable(ev, Topic::Cmdline, None);
        }
    }

    /// An EV_S_CRTM_VERSION event: text, a GUID in registry form, or the data in hex.
    fn s_crtm_version(&mut self, ev: &Event<'_>) {
        let data = match ev.decode() {
            Ok(d) => d,
            Err(e) => return self.unusable(ev, Topic::Scrtm, Some(e)),
        };
        let (value, authentic) = match data {
            EventData::Text { text } => {
                let end = ev.data.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
                let trimmed = ev.data.get(..end).unwrap_or(ev.data);
                (text, authenticated(ev, self.bank, &[ev.data, trimmed]))
            }
            other => {
                let value = match other {
                    EventData::Guid { guid } => guid.to_string(),
                    _ => hex::encode(ev.data),
                };
                (value, authenticated(ev, self.bank, &[ev.data]))
            }
        };
        if authentic {
            self.s_crtm.push(at(ev, value));
        } else {
            self.unusable(ev, Topic::Scrtm, None);
        }
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
