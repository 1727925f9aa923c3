//! vouch-agent library: the device-side building blocks of Vouch.
#![forbid(unsafe_code)]

pub mod volume;
