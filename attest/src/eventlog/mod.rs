//! TCG PC Client event logs: parsing, replay, event decoding, digest checks, boot state and
//! matching against quoted PCR values.
//!
//! Both layouts are handled: the TCG 1.2 SHA-1 layout (TCG_PCR_EVENT) and the crypto-agile
//! layout (a "Spec ID Event03" header, then TCG_PCR_EVENT2 with any declared banks). Parsing
//! borrows from the input and allocates one vector of events; replay works on fixed buffers.
//!
//! ```text
//! let log = EventLog::parse(&bytes)?;   // structure only, no hashing
//! let pcrs = log.replay();              // PcrBanks for every computable bank
//! let state = log.boot_state();         // Secure Boot, keys, boot applications, cmdlines
//! ```

mod bootstate;
mod check;
mod decode;
mod devpath;
mod digests;
mod guid;
mod log;
mod matching;
mod parse;
mod reader;
mod replay;
mod ser;
mod sha256;
mod text;
mod types;
mod variable;

pub use bootstate::{Authority, BootApplication, BootState, KeyDatabase, StubMeasurement};
pub use check::{DigestCheck, DigestRule};
pub use decode::{DecodeError, EventData, EventTag, IplKind};
pub use devpath::DevicePathError;
pub use digests::{Digest, DigestList};
pub use guid::Guid;
pub use log::{AlgorithmSize, Event, EventLog, Format, SpecId, NO_PCR};
pub use matching::{match_quoted, LogMatch, MatchError, PcrMismatch, Workaround};
pub use parse::{parse, ParseError};
pub use replay::reset_value;
pub use types::EventType;
pub use variable::{SignatureList, UefiVariable, VariableError, VariableValue};

pub(crate) use decode::kernel_cmdline;
pub(crate) use text::utf16_is;
pub(crate) use variable::header as variable_header;
