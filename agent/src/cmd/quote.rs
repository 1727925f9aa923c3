//! `vouch-agent quote`: a quote over PCRs with the attestation key, written as the files
//! `tpm2_checkquote` reads (`quote.msg`, `quote.sig`, `quote.pcrs`, `ak.pub.pem`).

use super::{write_file, CmdError};
use crate::cli::QuoteArgs;
use crate::tpm::worker::TpmClient;
use vouch_attest::pcrfile::write_tpm_tools;
use vouch_attest::tpm::{Attest, AttestBody, TpmPublic};

/// Makes the quote and writes the four files into `args.out`.
pub fn run(tpm: &TpmClient, args: &QuoteArgs) -> Result<(), CmdError> {
    let (nonce, sel) = (args.nonce.0.clone(), args.pcrs.clone());
    let (ak, quote) = tpm.call(move |t| Ok((t.attestation_key()?, t.quote(&nonce, &sel)?)))?;
    let decode = |what, detail: String| CmdError::Decode { what, detail };

    let (ak_public, _) =
        TpmPublic::parse(&ak.public).map_err(|e| decode("AK public", e.to_string()))?;
    let pem = ak_public
        .key()
        .and_then(|k| k.to_pem().map_err(Into::into))
        .map_err(|e| decode("AK public", e.to_string()))?;
    // The PCR file must list PCRs in the order the TPM digested them: take it from the quote.
    let attest = Attest::parse(&quote.attest).map_err(|e| decode("TPMS_ATTEST", e.to_string()))?;
    let AttestBody::Quote(info) = &attest.body else {
        return Err(decode("TPMS_ATTEST", "not a quote".into()));
    };
    let pcrs = write_tpm_tools(&info.pcr_select, &quote.pcrs)
        .map_err(|e| decode("PCR values", e.to_string()))?;

    std::fs::create_dir_all(&args.out).map_err(|source| CmdError::Write {
        path: args.out.clone(),
        source,
    })?;
    write_file(&args.out.join("quote.msg"), &quote.attest)?;
    write_file(&args.out.join("quote.sig"), &quote.signature)?;
    write_file(&args.out.join("quote.pcrs"), &pcrs)?;
    write_file(&args.out.join("ak.pub.pem"), pem.as_bytes())?;
    println!("quote written to {}", args.out.display());
    Ok(())
}
