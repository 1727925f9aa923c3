//! Command implementations of `vouch-agent`; each takes parsed arguments and a TPM client.

mod pcr;
mod quote;
pub mod seal;
mod tpm_info;
pub mod volume;

use crate::cli::{Cli, Command, PcrCmd, TpmCmd};
use crate::tpm::esapi::EsapiTpm;
use crate::tpm::worker::TpmClient;
use crate::tpm::TpmError;
use std::path::PathBuf;

/// Errors of agent commands.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// A TPM operation failed (or no TPM was reachable).
    #[error(transparent)]
    Tpm(#[from] TpmError),
    /// An output file or directory could not be written.
    #[error("writing {path} failed")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A TPM structure the TPM returned could not be decoded.
    #[error("decoding {what} from the TPM: {detail}")]
    Decode { what: &'static str, detail: String },
    /// The device identity could not be established.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// The daemon stopped.
    #[error(transparent)]
    Daemon(#[from] crate::daemon::DaemonError),
    /// Sealing or unsealing failed above the TPM (files, blob format, signed policies).
    #[error(transparent)]
    Seal(#[from] crate::seal::SealError),
    /// Output could not be serialized.
    #[error("encoding JSON output failed")]
    Json(#[from] serde_json::Error),
    /// A volume command failed.
    #[error(transparent)]
    Volume(Box<volume::VolumeError>),
}

impl From<volume::VolumeError> for CmdError {
    fn from(e: volume::VolumeError) -> Self {
        CmdError::Volume(Box::new(e))
    }
}

fn open_tpm(cli: &Cli) -> Result<TpmClient, CmdError> {
    let tcti = cli.global.tcti.clone();
    let state = cli.global.state_dir.clone();
    Ok(TpmClient::spawn(move || EsapiTpm::open(&tcti, &state))?)
}

/// Runs one command.
pub fn run(cli: Cli) -> Result<(), CmdError> {
    if let Command::Run { config, allow_root } = &cli.command {
        if vouch_host::running_as_root() && !allow_root {
            return Err(crate::daemon::DaemonError::Root.into());
        }
        return Ok(crate::daemon::run(config)?);
    }
    if let Command::Volume(volume::VolumeCmd::Lock { name }) = &cli.command {
        return Ok(volume::unlock::lock(name)?);
    }
    if let Command::Volume(volume::VolumeCmd::Status(args)) = &cli.command {
        if !args.check_unseal {
            return Ok(volume::unlock::status(None, &cli.global.state_dir, args)?);
        }
    }
    let tpm = open_tpm(&cli)?;
    match cli.command {
        Command::Tpm(TpmCmd::Info { json }) => tpm_info::run(&tpm, json),
        Command::Pcr(PcrCmd::Read { pcrs, json }) => pcr::read(&tpm, &pcrs, json),
        Command::Quote(args) => quote::run(&tpm, &args),
        Command::Seal(args) => seal::seal(&tpm, &args),
        Command::Unseal(args) => seal::unseal(&tpm, &cli.global.state_dir, &args),
        Command::Volume(v) => Ok(run_volume(&tpm, &cli.global.state_dir, &v)?),
        Command::Run { .. } => Ok(()),
    }
}

fn run_volume(
    tpm: &TpmClient,
    state_dir: &std::path::Path,
    cmd: &volume::VolumeCmd,
) -> Result<(), volume::VolumeError> {
    match cmd {
        volume::VolumeCmd::Create(a) => volume::create::run(tpm, state_dir, a),
        volume::VolumeCmd::Unlock(a) => volume::unlock::run(tpm, state_dir, a),
        volume::VolumeCmd::Lock { name } => volume::unlock::lock(name),
        volume::VolumeCmd::Status(a) => volume::unlock::status(Some(tpm), state_dir, a),
        volume::VolumeCmd::Reseal(a) => volume::reseal::run(tpm, state_dir, a),
        volume::VolumeCmd::Adopt(a) => volume::adopt::run(tpm, state_dir, a),
        volume::VolumeCmd::EnrollSystemd(a) => volume::adopt::enroll_systemd(tpm, state_dir, a),
    }
}

/// Writes a file, naming it in the error.
pub(crate) fn write_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), CmdError> {
    std::fs::write(path, bytes).map_err(|source| CmdError::Write {
        path: path.to_path_buf(),
        source,
    })
}
