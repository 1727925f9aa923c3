//! [`TssError`]: a tss-esapi error as the last link of an error chain.
//!
//! `tss_esapi::Error` displays its response code and then returns that same response code as its
//! `source()`, whose own source is the raw code ("Response code value: 0x…"): a chain printer
//! would print the same fact two or three times. [`TpmError`](super::TpmError) holds this wrapper
//! instead, which says everything once and has no source.

use tss_esapi::constants::response_code::Tss2ResponseCode;

/// A tss-esapi error with the response code's meaning and its raw value in one message, and no
/// source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TssError(pub tss_esapi::Error);

impl From<tss_esapi::Error> for TssError {
    fn from(e: tss_esapi::Error) -> Self {
        TssError(e)
    }
}

impl std::fmt::Display for TssError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            tss_esapi::Error::WrapperError(kind) => write!(f, "{kind}"),
            tss_esapi::Error::Tss2Error(rc) => match rc {
                // The raw code's Display is "Response code value: 0x…".
                Tss2ResponseCode::FormatZero(raw) => write!(f, "{rc} ({raw})"),
                Tss2ResponseCode::FormatOne(raw) => write!(f, "{rc} ({raw})"),
                Tss2ResponseCode::Success => write!(f, "{rc}"),
            },
        }
    }
}

/// No source: the message already holds the response code and its raw value.
impl std::error::Error for TssError {}

/// Adapts an error constructor taking a [`TssError`] to `map_err` over a tss-esapi result:
/// `.map_err(tss(TpmError::Quote))`.
pub fn tss<T>(f: impl FnOnce(TssError) -> T) -> impl FnOnce(tss_esapi::Error) -> T {
    move |e| f(TssError(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;
    use tss_esapi::constants::tss::TPM2_RC_SIGNATURE;

    #[test]
    fn one_message_no_source() {
        // A format-one code: TPM_RC_SIGNATURE for parameter 1.
        let e = tss_esapi::Error::Tss2Error(Tss2ResponseCode::from(TPM2_RC_SIGNATURE | 0x140));
        assert!(
            e.source().is_some(),
            "tss-esapi repeats its code as a source"
        );
        let w = TssError(e);
        let text = w.to_string();
        assert!(text.starts_with(&e.to_string()), "{text}");
        assert!(text.contains("0x"), "{text}");
        assert!(w.source().is_none());
    }
}
