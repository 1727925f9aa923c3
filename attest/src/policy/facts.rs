//! Facts the policy rules need with the index of the event that recorded them, read from the
//! log where [`BootState`](crate::eventlog::BootState) does not carry an index: the SecureBoot
//! variable, dbx contents, kernel command lines and S-CRTM versions. Only events of the
//! relevant types are decoded.

use crate::eventlog::{EventData, EventLog, EventType, IplKind, UefiVariable, VariableValue};

/// PCR of Secure Boot policy.
pub const PCR_SECURE_BOOT: u32 = 7;

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

/// EV_EFI_VARIABLE_DRIVER_CONFIG variables in PCR7 that decode.
fn driver_config<'a, 'l>(
    log: &'l EventLog<'a>,
) -> impl Iterator<Item = (usize, UefiVariable<'a>)> + 'l {
    log.events
        .iter()
        .filter(|e| {
            e.event_type == EventType::EV_EFI_VARIABLE_DRIVER_CONFIG && e.pcr == PCR_SECURE_BOOT
        })
        .filter_map(|e| match e.decode() {
            Ok(EventData::Variable(v)) => Some((e.index, v)),
            _ => None,
        })
}

/// The first measurement of the SecureBoot variable (the one firmware acts on).
pub fn secure_boot(log: &EventLog<'_>) -> Option<Measured<bool>> {
    driver_config(log).find_map(|(event_index, v)| match v.value {
        Some(VariableValue::SecureBoot(on)) => Some(Measured {
            event_index,
            pcr: PCR_SECURE_BOOT,
            value: on,
        }),
        _ => None,
    })
}

/// Every measurement of the dbx variable's data.
pub fn dbx<'a>(log: &EventLog<'a>) -> Vec<Measured<&'a [u8]>> {
    driver_config(log)
        .filter(|(_, v)| v.name == "dbx")
        .map(|(event_index, v)| Measured {
            event_index,
            pcr: PCR_SECURE_BOOT,
            value: v.data,
        })
        .collect()
}

/// Every kernel command line (EV_IPL read as a command line), in log order.
pub fn kernel_cmdlines(log: &EventLog<'_>) -> Vec<Measured<String>> {
    log.events
        .iter()
        .filter(|e| e.event_type == EventType::EV_IPL)
        .filter_map(|e| match e.decode() {
            Ok(EventData::Ipl {
                ipl: IplKind::KernelCmdline,
                text,
            }) => Some(Measured {
                event_index: e.index,
                pcr: e.pcr,
                value: text,
            }),
            _ => None,
        })
        .collect()
}

/// Every EV_S_CRTM_VERSION as text (a GUID in its registry form), in log order.
pub fn s_crtm_versions(log: &EventLog<'_>) -> Vec<Measured<String>> {
    log.events
        .iter()
        .filter(|e| e.event_type == EventType::EV_S_CRTM_VERSION)
        .map(|e| Measured {
            event_index: e.index,
            pcr: e.pcr,
            value: match e.decode() {
                Ok(EventData::Text { text }) => text,
                Ok(EventData::Guid { guid }) => guid.to_string(),
                _ => hex::encode(e.data),
            },
        })
        .collect()
}
