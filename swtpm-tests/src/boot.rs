//! "Booting" a test swtpm: extend the digests of a real firmware event log into its PCRs, as the
//! firmware did on the machine the log came from, so that quotes and the log agree.

use crate::swtpm::{HarnessError, Swtpm};
use vouch_agent::tpm::esapi::EsapiTpm;
use vouch_agent::tpm::Tpm;
use vouch_attest::errors::chain;
use vouch_attest::eventlog::EventLog;
use vouch_attest::HashAlg;

impl Swtpm {
    /// Extends every event of `log` that a TPM would (not EV_NO_ACTION, PCR < 24) into this swtpm's
    /// sha1 and sha256 banks, with the log's own digests. Logs that start PCR0 at locality 3 or 4
    /// (StartupLocality / H-CRTM) cannot be reproduced by extends and are refused.
    pub fn boot_from_log(&self, log: &[u8]) -> Result<usize, HarnessError> {
        let parsed = EventLog::parse(log)
            .map_err(|e| HarnessError::Setup(format!("event log: {}", chain(&e))))?;
        if parsed.startup_locality.is_some() || parsed.hcrtm {
            return Err(HarnessError::Setup(
                "this log starts PCR0 at a locality an extend cannot reproduce".into(),
            ));
        }
        let tcti = self
            .tcti()
            .parse()
            .map_err(|e| HarnessError::Setup(format!("tcti: {}", chain(&e))))?;
        let state = self.dir().join("boot-state");
        let mut tpm = EsapiTpm::open(&tcti, &state)
            .map_err(|e| HarnessError::Setup(format!("open swtpm: {}", chain(&e))))?;
        let mut count = 0;
        for ev in parsed
            .events
            .iter()
            .filter(|e| e.is_extended() && e.pcr < 24)
        {
            let digests: Vec<(HashAlg, Vec<u8>)> = ev
                .digests
                .iter()
                .filter(|d| matches!(d.alg, HashAlg::Sha1 | HashAlg::Sha256))
                .map(|d| (d.alg, d.bytes.to_vec()))
                .collect();
            if digests.is_empty() {
                continue;
            }
            tpm.pcr_extend(ev.pcr, &digests).map_err(|e| {
                HarnessError::Setup(format!("extend event {}: {}", ev.index, chain(&e)))
            })?;
            count += 1;
        }
        Ok(count)
    }
}

impl Swtpm {
    /// The agent's tss-esapi backend on this swtpm, with `state` as its state directory.
    pub fn open_esapi(&self, state: &std::path::Path) -> Result<EsapiTpm, HarnessError> {
        let tcti = self
            .tcti()
            .parse()
            .map_err(|e| HarnessError::Setup(format!("tcti: {}", chain(&e))))?;
        EsapiTpm::open(&tcti, state)
            .map_err(|e| HarnessError::Setup(format!("open swtpm: {}", chain(&e))))
    }

    /// Runs a tpm2-tools command against this swtpm and panics with its stderr if it fails.
    pub fn tpm2(&self, args: &[&str]) -> std::process::Output {
        let (prog, rest) = args.split_first().expect("a tpm2-tools command");
        let out = std::process::Command::new(prog)
            .args(rest)
            .env("TPM2TOOLS_TCTI", self.tcti())
            .env("TSS2_LOG", "all+none")
            .output()
            .unwrap_or_else(|e| panic!("{prog} is installed (tpm2-tools): {e}"));
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Transient objects and loaded sessions left in the TPM (`tpm2_getcap`): a leak check.
    pub fn leftovers(&self) -> usize {
        ["handles-transient", "handles-loaded-session"]
            .iter()
            .map(|cap| {
                String::from_utf8_lossy(&self.tpm2(&["tpm2_getcap", cap]).stdout)
                    .lines()
                    .filter(|l| l.trim_start().starts_with("- 0x"))
                    .count()
            })
            .sum()
    }
}

impl Swtpm {
    /// Runs `vouch-agent --tcti <this swtpm> --state-dir STATE ARGS`.
    pub fn agent(&self, state: &std::path::Path, args: &[&str]) -> crate::Output {
        let tcti = self.tcti();
        let state = state.to_string_lossy();
        let mut all = vec!["--tcti", &tcti, "--state-dir", &state];
        all.extend_from_slice(args);
        crate::run("vouch-agent", &all, &[])
    }
}
