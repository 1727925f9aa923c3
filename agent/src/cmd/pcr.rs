//! `vouch-agent pcr read`.

use super::CmdError;
use crate::tpm::worker::TpmClient;
use crate::tpm::PcrSelection;

/// Reads and prints PCR values, text (tpm2_pcrread style) or JSON.
pub fn read(tpm: &TpmClient, sel: &PcrSelection, json: bool) -> Result<(), CmdError> {
    let s = sel.clone();
    let banks = tpm.call(move |t| t.pcr_read(&s))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&banks.to_json())?);
        return Ok(());
    }
    for (alg, bank) in banks.banks() {
        println!("{alg}:");
        for (pcr, v) in bank {
            println!("  {pcr:>2}: 0x{}", hex::encode_upper(v));
        }
    }
    Ok(())
}
