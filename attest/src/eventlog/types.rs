//! TCG PC Client event types (PC Client Platform Firmware Profile, "Event Types") and their names.

use serde::{Serialize, Serializer};
use std::fmt;

/// An event type (TCG_EVENTTYPE). Unknown values are kept as they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventType(pub u32);

macro_rules! event_types {
    ($($name:ident = $value:expr),* $(,)?) => {
        impl EventType {
            $(
                #[doc = concat!("`", stringify!($name), "` (", stringify!($value), ").")]
                pub const $name: EventType = EventType($value);
            )*

            /// The spec name (`EV_...`), or `None` for a value no spec defines.
            pub fn known_name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

event_types! {
    EV_PREBOOT_CERT = 0x0000_0000,
    EV_POST_CODE = 0x0000_0001,
    EV_UNUSED = 0x0000_0002,
    EV_NO_ACTION = 0x0000_0003,
    EV_SEPARATOR = 0x0000_0004,
    EV_ACTION = 0x0000_0005,
    EV_EVENT_TAG = 0x0000_0006,
    EV_S_CRTM_CONTENTS = 0x0000_0007,
    EV_S_CRTM_VERSION = 0x0000_0008,
    EV_CPU_MICROCODE = 0x0000_0009,
    EV_PLATFORM_CONFIG_FLAGS = 0x0000_000A,
    EV_TABLE_OF_DEVICES = 0x0000_000B,
    EV_COMPACT_HASH = 0x0000_000C,
    EV_IPL = 0x0000_000D,
    EV_IPL_PARTITION_DATA = 0x0000_000E,
    EV_NONHOST_CODE = 0x0000_000F,
    EV_NONHOST_CONFIG = 0x0000_0010,
    EV_NONHOST_INFO = 0x0000_0011,
    EV_OMIT_BOOT_DEVICE_EVENTS = 0x0000_0012,
    EV_POST_CODE2 = 0x0000_0013,
    EV_EFI_EVENT_BASE = 0x8000_0000,
    EV_EFI_VARIABLE_DRIVER_CONFIG = 0x8000_0001,
    EV_EFI_VARIABLE_BOOT = 0x8000_0002,
    EV_EFI_BOOT_SERVICES_APPLICATION = 0x8000_0003,
    EV_EFI_BOOT_SERVICES_DRIVER = 0x8000_0004,
    EV_EFI_RUNTIME_SERVICES_DRIVER = 0x8000_0005,
    EV_EFI_GPT_EVENT = 0x8000_0006,
    EV_EFI_ACTION = 0x8000_0007,
    EV_EFI_PLATFORM_FIRMWARE_BLOB = 0x8000_0008,
    EV_EFI_HANDOFF_TABLES = 0x8000_0009,
    EV_EFI_PLATFORM_FIRMWARE_BLOB2 = 0x8000_000A,
    EV_EFI_HANDOFF_TABLES2 = 0x8000_000B,
    EV_EFI_VARIABLE_BOOT2 = 0x8000_000C,
    EV_EFI_GPT_EVENT2 = 0x8000_000D,
    EV_EFI_HCRTM_EVENT = 0x8000_0010,
    EV_EFI_VARIABLE_AUTHORITY = 0x8000_00E0,
    EV_EFI_SPDM_FIRMWARE_BLOB = 0x8000_00E1,
    EV_EFI_SPDM_FIRMWARE_CONFIG = 0x8000_00E2,
    EV_EFI_SPDM_DEVICE_POLICY = 0x8000_00E3,
    EV_EFI_SPDM_DEVICE_AUTHORITY = 0x8000_00E4,
}

impl EventType {
    /// The spec name, or `EV_UNKNOWN_0x........` for a value no spec defines.
    pub fn name(self) -> String {
        match self.known_name() {
            Some(n) => n.to_owned(),
            None => format!("EV_UNKNOWN_{:#010x}", self.0),
        }
    }

    /// True for the UEFI variable events whose data is a UEFI_VARIABLE_DATA structure.
    pub fn is_variable_event(self) -> bool {
        matches!(
            self,
            EventType::EV_EFI_VARIABLE_DRIVER_CONFIG
                | EventType::EV_EFI_VARIABLE_BOOT
                | EventType::EV_EFI_VARIABLE_BOOT2
                | EventType::EV_EFI_VARIABLE_AUTHORITY
        )
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.known_name() {
            Some(n) => f.write_str(n),
            None => write!(f, "EV_UNKNOWN_{:#010x}", self.0),
        }
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::EventType;

    #[test]
    fn names_known_and_unknown_types() {
        assert_eq!(EventType(0x8000_00E0).name(), "EV_EFI_VARIABLE_AUTHORITY");
        assert_eq!(EventType(0x0D).to_string(), "EV_IPL");
        assert_eq!(EventType(0x1234).name(), "EV_UNKNOWN_0x00001234");
        assert!(EventType::EV_EFI_VARIABLE_BOOT2.is_variable_event());
        assert!(!EventType::EV_IPL.is_variable_event());
    }
}
