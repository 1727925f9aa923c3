//! `vouch-agent run`: the long-running agent. Enrolls when it has no device certificate, then
//! keeps a mutual-TLS MQTT session with the broker and answers the fleet's challenges.

pub mod answer;
pub mod mqtt;
pub mod notify;
pub mod outbox;
pub mod ratelimit;
pub mod tls;
