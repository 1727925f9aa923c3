//! The boot state an operator asks about, extracted from a parsed log: Secure Boot on/off, the
//! Secure Boot key databases, the authorities that verified each boot application, the boot
//! applications' digests and the kernel command lines.

use super::decode::{DecodeError, EventData, EventTag, IplKind};
use super::guid::Guid;
use super::log::EventLog;
use super::types::EventType;
use super::variable::{UefiVariable, VariableValue};
use crate::alg::HashAlg;
use serde::Serialize;
use std::collections::BTreeMap;

/// PCR holding Secure Boot policy and authorities.
const PCR_SECURE_BOOT: u32 = 7;
/// PCR holding boot application images.
const PCR_BOOT_APPS: u32 = 4;

/// A Secure Boot key database variable (PK, KEK, db, dbx, dbt, dbr) as measured into PCR7.
#[derive(Clone, Debug, Serialize)]
pub struct KeyDatabase {
    /// Index of the event.
    pub event_index: usize,
    /// Variable name.
    pub name: String,
    /// Length of the variable data.
    pub data_len: usize,
    /// SHA-256 of the variable data, hex.
    pub data_sha256: String,
}

/// An EV_EFI_VARIABLE_AUTHORITY event: the db (or shim MokList/vendor) entry that verified an
/// image.
#[derive(Clone, Debug, Serialize)]
pub struct Authority {
    /// Index of the event.
    pub event_index: usize,
    /// Database variable name (`db`, `MokList`, `Shim`, `SbatLevel`, ...).
    pub variable: String,
    /// Vendor GUID of that variable.
    pub guid: Guid,
    /// SignatureOwner of the entry, when the firmware logged an EFI_SIGNATURE_DATA.
    pub owner: Option<Guid>,
    /// Length of the logged data.
    pub data_len: usize,
    /// SHA-256 of the logged data (the certificate entry), hex.
    pub data_sha256: String,
}

/// An EV_EFI_BOOT_SERVICES_APPLICATION event in PCR4.
#[derive(Clone, Debug, Serialize)]
pub struct BootApplication {
    /// Index of the event.
    pub event_index: usize,
    /// The image's device path as text (empty when the firmware logged none).
    pub device_path: String,
    /// Authenticode digests per bank, hex.
    pub digests: BTreeMap<String, String>,
    /// Indexes into [`BootState::authorities`] of the authorities logged since the previous
    /// image load: the ones that verified this image.
    pub authorities: Vec<usize>,
}

/// An object the Linux EFI stub measured (an EV_EVENT_TAG event): the log carries only its
/// digests.
#[derive(Clone, Debug, Serialize)]
pub struct StubMeasurement {
    /// Index of the event.
    pub event_index: usize,
    /// PCR it was extended into (9).
    pub pcr: u32,
    /// What was measured.
    pub tag: EventTag,
    /// Digests of the object per bank, hex.
    pub digests: BTreeMap<String, String>,
}

/// Boot state extracted from a log.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BootState {
    /// SecureBoot variable as measured into PCR7; `None` when the log has none.
    pub secure_boot: Option<bool>,
    /// PK / KEK / db / dbx / dbt / dbr as measured into PCR7, in log order.
    pub key_databases: Vec<KeyDatabase>,
    /// Every authority event in PCR7, in log order.
    pub authorities: Vec<Authority>,
    /// Boot applications in load order.
    pub boot_applications: Vec<BootApplication>,
    /// Kernel command lines (GRUB `kernel_cmdline`, systemd-boot load options), in log order.
    pub kernel_cmdlines: Vec<String>,
    /// Command lines and initrds measured by the Linux EFI stub, by digest, in log order.
    pub efi_stub: Vec<StubMeasurement>,
    /// Events whose data could not be decoded as their type promises.
    #[serde(serialize_with = "errors_as_text")]
    pub decode_errors: Vec<DecodeError>,
}

fn errors_as_text<S: serde::Serializer>(errs: &[DecodeError], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(errs.iter().map(ToString::to_string))
}

fn sha256_hex(data: &[u8]) -> String {
    HashAlg::Sha256
        .hash(data)
        .map(hex::encode)
        .unwrap_or_default()
}

impl EventLog<'_> {
    /// Extracts the boot state (see [`BootState`]). Undecodable events are listed in
    /// `decode_errors` and otherwise skipped.
    pub fn boot_state(&self) -> BootState {
        let mut st = BootState::default();
        let mut pending: Vec<usize> = Vec::new();
        for ev in &self.events {
            let data = match ev.decode() {
                Ok(d) => d,
                Err(e) => {
                    st.decode_errors.push(e);
                    continue;
                }
            };
            match (ev.event_type, data) {
                (EventType::EV_EFI_VARIABLE_DRIVER_CONFIG, EventData::Variable(v))
                    if ev.pcr == PCR_SECURE_BOOT =>
                {
                    driver_config(&mut st, ev.index, &v);
                }
                (EventType::EV_EFI_VARIABLE_AUTHORITY, EventData::Variable(v))
                    if ev.pcr == PCR_SECURE_BOOT =>
                {
                    let owner = match v.value {
                        Some(VariableValue::SignatureData { owner, .. }) => owner,
                        _ => None,
                    };
                    pending.push(st.authorities.len());
                    st.authorities.push(Authority {
                        event_index: ev.index,
                        variable: v.name,
                        guid: v.guid,
                        owner,
                        data_len: v.data.len(),
                        data_sha256: sha256_hex(v.data),
                    });
                }
                (EventType::EV_EFI_BOOT_SERVICES_APPLICATION, d) if ev.pcr == PCR_BOOT_APPS => {
                    let device_path = match d {
                        EventData::ImageLoad { device_path, .. } => device_path,
                        _ => String::new(),
                    };
                    st.boot_applications.push(BootApplication {
                        event_index: ev.index,
                        device_path,
                        digests: ev
                            .digests
                            .iter()
                            .map(|d| (d.alg.name(), hex::encode(d.bytes)))
                            .collect(),
                        authorities: std::mem::take(&mut pending),
                    });
                }
                (EventType::EV_EFI_BOOT_SERVICES_DRIVER, _) => pending.clear(),
                (
                    EventType::EV_IPL,
                    EventData::Ipl {
                        ipl: IplKind::KernelCmdline,
                        text,
                    },
                ) => st.kernel_cmdlines.push(text),
                (EventType::EV_EVENT_TAG, EventData::Tagged { tag: Some(tag), .. }) => {
                    st.efi_stub.push(StubMeasurement {
                        event_index: ev.index,
                        pcr: ev.pcr,
                        tag,
                        digests: ev
                            .digests
                            .iter()
                            .map(|d| (d.alg.name(), hex::encode(d.bytes)))
                            .collect(),
                    })
                }
                _ => {}
            }
        }
        st
    }
}

fn driver_config(st: &mut BootState, index: usize, v: &UefiVariable<'_>) {
    if let Some(VariableValue::SecureBoot(on)) = v.value {
        if st.secure_boot.is_none() {
            st.secure_boot = Some(on);
        }
        return;
    }
    let global = v.guid == Guid::EFI_GLOBAL_VARIABLE;
    let secdb = v.guid == Guid::IMAGE_SECURITY_DATABASE;
    let is_key_db = match v.name.as_str() {
        "PK" | "KEK" => global,
        "db" | "dbx" | "dbt" | "dbr" => secdb,
        _ => false,
    };
    if is_key_db {
        st.key_databases.push(KeyDatabase {
            event_index: index,
            name: v.name.clone(),
            data_len: v.data.len(),
            data_sha256: sha256_hex(v.data),
        });
    }
}
