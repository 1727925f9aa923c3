//! TPM2_Quote on a swtpm straight through tss-esapi, without the agent's `EsapiTpm` around it,
//! to show what the agent's quote path adds: the bare command with a password session, the same
//! inside a null-auth HMAC session (`execute_with_nullauth_session`, as the agent runs it), and
//! TPM2_PCR_Read of the same PCRs (the agent reads them after quoting).

use super::stats::{Samples, Summary};
use std::str::FromStr;
use std::time::Instant;
use tss_esapi::handles::ObjectHandle;
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    Data, PcrSelectionList, PcrSelectionListBuilder, PcrSlot, SignatureScheme,
};
use tss_esapi::tcti_ldr::{NetworkTPMConfig, TctiNameConf};
use tss_esapi::Context;

/// A raw timing failed.
#[derive(Debug, thiserror::Error)]
pub enum RawQuoteError {
    /// The swtpm could not be reached.
    #[error("connecting to the swtpm on port {port}")]
    Connect {
        port: u16,
        #[source]
        source: tss_esapi::Error,
    },
    /// The key template or PCR selection was refused by tss-esapi.
    #[error("building the AK template or PCR selection")]
    Template(#[source] tss_esapi::Error),
    /// TPM2_CreatePrimary of the AK failed.
    #[error("creating the primary AK")]
    CreatePrimary(#[source] tss_esapi::Error),
    /// A timed command failed.
    #[error("{what}")]
    Command {
        what: &'static str,
        #[source]
        source: tss_esapi::Error,
    },
}

/// Timings of the raw commands.
#[derive(Debug, Clone, Copy)]
pub struct RawQuote {
    /// TPM2_Quote, password session, AK already loaded.
    pub quote_password: Summary,
    /// TPM2_Quote inside `execute_with_nullauth_session` (StartAuthSession + Quote + flush).
    pub quote_nullauth: Summary,
    /// TPM2_PCR_Read of the quoted PCRs.
    pub pcr_read: Summary,
}

fn selection() -> tss_esapi::Result<PcrSelectionList> {
    let slots = [
        PcrSlot::Slot0,
        PcrSlot::Slot1,
        PcrSlot::Slot2,
        PcrSlot::Slot3,
        PcrSlot::Slot4,
        PcrSlot::Slot5,
        PcrSlot::Slot6,
        PcrSlot::Slot7,
    ];
    PcrSelectionListBuilder::new()
        .with_selection(HashingAlgorithm::Sha256, &slots)
        .build()
}

fn summary(s: &Samples) -> Summary {
    s.summary().unwrap_or(Summary {
        count: 0,
        p50_ms: f64::NAN,
        p90_ms: f64::NAN,
        p99_ms: f64::NAN,
        max_ms: f64::NAN,
    })
}

/// Times each command `rounds` times on the swtpm listening on 127.0.0.1:`port` (no other
/// client may hold it). The primary AK is flushed at the end.
pub fn measure(port: u16, rounds: u32) -> Result<RawQuote, RawQuoteError> {
    let connect = |source| RawQuoteError::Connect { port, source };
    let conf =
        NetworkTPMConfig::from_str(&format!("host=127.0.0.1,port={port}")).map_err(connect)?;
    let mut ctx = Context::new(TctiNameConf::Swtpm(conf)).map_err(connect)?;
    let template = vouch_agent::tpm::esapi::keys::ak_template().map_err(RawQuoteError::Template)?;
    let list = selection().map_err(RawQuoteError::Template)?;
    let ak = ctx
        .execute_with_nullauth_session(|c| {
            c.create_primary(Hierarchy::Owner, template, None, None, None, None)
        })
        .map_err(RawQuoteError::CreatePrimary)?
        .key_handle;
    let result = timed(&mut ctx, ak, &list, rounds.max(1));
    let _ = ctx.flush_context(ObjectHandle::from(ak));
    result
}

fn timed(
    ctx: &mut Context,
    ak: tss_esapi::handles::KeyHandle,
    list: &PcrSelectionList,
    rounds: u32,
) -> Result<RawQuote, RawQuoteError> {
    let cmd = |what| move |source| RawQuoteError::Command { what, source };
    let data = || Data::try_from(rand::random::<[u8; 32]>().to_vec());
    let (mut password, mut nullauth, mut read) = (Samples::new(), Samples::new(), Samples::new());
    for _ in 0..rounds {
        let d = data().map_err(cmd("nonce"))?;
        ctx.set_sessions((Some(AuthSession::Password), None, None));
        let t = Instant::now();
        ctx.quote(ak, d, SignatureScheme::Null, list.clone())
            .map_err(cmd("TPM2_Quote (password session)"))?;
        password.push(t.elapsed());
        ctx.clear_sessions();
        let d = data().map_err(cmd("nonce"))?;
        let t = Instant::now();
        ctx.execute_with_nullauth_session(|c| c.quote(ak, d, SignatureScheme::Null, list.clone()))
            .map_err(cmd("TPM2_Quote (null-auth session)"))?;
        nullauth.push(t.elapsed());
        let t = Instant::now();
        ctx.execute_without_session(|c| c.pcr_read(list.clone()))
            .map_err(cmd("TPM2_PCR_Read"))?;
        read.push(t.elapsed());
    }
    Ok(RawQuote {
        quote_password: summary(&password),
        quote_nullauth: summary(&nullauth),
        pcr_read: summary(&read),
    })
}
