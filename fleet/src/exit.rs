//! Exit codes of `vouch-fleet`, and the one table that maps every outcome and error of every
//! command to them (the README's "Exit codes" list is this table in words):
//!
//! - 0 success / trusted;
//! - 1 evidence rejected: an untrusted verdict, a failed check (`quote verify`, `policy check`,
//!   `ima check`),
//!   a broken audit chain, an escrow release refused by its rule or failed on the device;
//! - 2 bad usage or input: configuration, files, options, unknown devices and policies;
//! - 70 internal error: the registry, writing output, the server's runtime, and no verdict in
//!   time for `attest --wait` (or no answer in time for `escrow release --wait`).
//!
//! Commands return an [`Outcome`] or a [`CliError`]; `main` prints the error once and exits
//! with [`outcome`] or [`code`].

use crate::cli::attest_cmd::AttestCmdError;
use crate::cli::backup::BackupCmdError;
use crate::cli::common::SetupError;
use crate::cli::devices::DevicesError;
use crate::cli::escrow::EscrowCmdError;
use crate::cli::eventlog::EventlogCliError;
use crate::cli::ima::ImaCliError;
use crate::cli::policy::PolicyCliError;
use crate::cli::policy_sign::PolicySignError;
use crate::cli::quote::QuoteError;
use crate::cli::release::ReleaseCliError;
use crate::cli::revoke::RevokeCmdError;
use crate::cli::serve::ServeCmdError;
use crate::cli::{CliError, Outcome};
use vouch_fleet::backup::BackupRunError;
use vouch_fleet::pki::setup::InitError;
use vouch_fleet::registry::RegistryError;
use vouch_fleet::serve::release::ReleaseError;
use vouch_fleet::serve::revoke::RevokeError;
use vouch_fleet::serve::ServeError;

/// Everything checked out.
pub const OK: u8 = 0;
/// The evidence was checked and found wanting (untrusted verdict, failed check, broken audit
/// chain).
pub const REJECTED: u8 = 1;
/// Bad usage or unreadable / malformed input (also what clap uses for usage errors).
pub const INPUT: u8 = 2;
/// Internal error (also: no verdict in time for `attest --wait`).
pub const INTERNAL: u8 = 70;

/// The exit code of a command that ran to the end.
pub fn outcome(o: Outcome) -> u8 {
    match o {
        Outcome::Done => OK,
        Outcome::Rejected => REJECTED,
    }
}

/// The exit code for an error of any command.
pub fn code(e: &CliError) -> u8 {
    match e {
        CliError::Setup(e) => setup(e),
        CliError::Eventlog(e) => eventlog(e),
        CliError::Quote(e) => quote(e),
        CliError::Init(e) => init(e),
        CliError::Serve(e) => match e {
            ServeCmdError::Root => INPUT,
            ServeCmdError::Serve(e) => serve(e),
        },
        CliError::Devices(e) => devices(e),
        CliError::Attest(e) => attest(e),
        CliError::Revoke(e) => revoke(e),
        CliError::Policy(e) => policy(e),
        CliError::Release(e) => release_cmd(e),
        CliError::PolicySign(e) => policy_sign(e),
        CliError::Escrow(e) => escrow(e),
        CliError::Backup(e) => backup(e),
        CliError::Operator(e) => operator(e),
        CliError::Ima(e) => ima(e),
    }
}

fn operator(e: &vouch_fleet::http::operators::OperatorError) -> u8 {
    use vouch_fleet::http::operators::OperatorError as O;
    match e {
        O::Name(_) | O::Exists(_) | O::Unknown(_) => INPUT,
        O::Registry(r) => registry(r),
        O::Ca { .. } | O::Crl { .. } | O::File(_) => INTERNAL,
    }
}

fn ima(e: &ImaCliError) -> u8 {
    use ImaCliError as I;
    match e {
        I::Read { .. }
        | I::Policy { .. }
        | I::Exclude(_)
        | I::Binary { .. }
        | I::Text { .. }
        | I::Tree { .. }
        | I::Initrd { .. } => INPUT,
        I::Encode(_) | I::Write { .. } | I::Json(_) => INTERNAL,
    }
}

/// A registry failure is internal; a device it does not know was named by the operator.
fn registry(e: &RegistryError) -> u8 {
    match e {
        RegistryError::UnknownDevice(_) => INPUT,
        _ => INTERNAL,
    }
}

fn setup(e: &SetupError) -> u8 {
    match e {
        SetupError::Config(_) => INPUT,
        SetupError::Registry(r) => registry(r),
    }
}

fn eventlog(e: &EventlogCliError) -> u8 {
    use EventlogCliError as E;
    match e {
        E::Read { .. } | E::Parse { .. } => INPUT,
        E::Write(_) | E::Json(_) => INTERNAL,
    }
}

fn quote(e: &QuoteError) -> u8 {
    use QuoteError as Q;
    match e {
        Q::Read { .. }
        | Q::Ak { .. }
        | Q::Attest { .. }
        | Q::Signature { .. }
        | Q::Pcrs { .. }
        | Q::Nonce(_)
        | Q::Eventlog { .. }
        // Reading the `--policy` file (`load_policy`: unreadable or invalid).
        | Q::Policy(_) => INPUT,
        Q::Json(_) => INTERNAL,
    }
}

fn init(e: &InitError) -> u8 {
    use InitError as I;
    match e {
        I::NotEmpty { .. }
        | I::NotADirectory { .. }
        | I::Inspect { .. }
        | I::ZeroPort
        | I::SamePort(_)
        | I::NoDynsecPlugin
        | I::DynsecPlugin(_)
        | I::ServerName(_) => INPUT,
        I::Remove { .. } | I::File(_) | I::Ca(_) | I::Crl(_) | I::Config(_) => INTERNAL,
    }
}

/// `serve`, and loading the fleet CA for `revoke`/`delete`.
fn serve(e: &ServeError) -> u8 {
    match e {
        ServeError::Tls(_) | ServeError::Ca(_) | ServeError::CaDir(_) => INPUT,
        ServeError::Registry(_) | ServeError::Runtime(_) => INTERNAL,
        // A webhook key or the EAR key unreadable, the HTTP address taken.
        ServeError::Http(_) => INPUT,
    }
}

fn devices(e: &DevicesError) -> u8 {
    match e {
        DevicesError::NoDevice(_) | DevicesError::PolicyName(_) | DevicesError::Policy(_) => INPUT,
        // `device set-policy` of an unknown device is input; the others cannot name one.
        DevicesError::Registry(r) => registry(r),
    }
}

fn attest(e: &AttestCmdError) -> u8 {
    use AttestCmdError as A;
    match e {
        A::NoDevice(_) | A::Inactive { .. } => INPUT,
        A::Registry(r) => registry(r),
        A::NoVerdict { .. } => INTERNAL,
    }
}

fn revoke(e: &RevokeCmdError) -> u8 {
    match e {
        // Whatever keeps the CA from loading is in the configuration or the fleet directory.
        RevokeCmdError::Ca(_) => INPUT,
        RevokeCmdError::Revoke(RevokeError::UnknownDevice(_)) => INPUT,
        // Including the registry's own "unknown device", which only a concurrent `delete` can
        // cause once the device was found.
        RevokeCmdError::Revoke(
            RevokeError::Registry(_)
            | RevokeError::Serial { .. }
            | RevokeError::Crl(_)
            | RevokeError::Reload(_),
        ) => INTERNAL,
    }
}

fn policy(e: &PolicyCliError) -> u8 {
    use PolicyCliError as P;
    match e {
        P::Read { .. }
        | P::Policy { .. }
        | P::Releases { .. }
        | P::Merge { .. }
        | P::Eventlog { .. } => INPUT,
        P::Encode(_) | P::Write { .. } | P::Json(_) => INTERNAL,
    }
}

fn release_cmd(e: &ReleaseCliError) -> u8 {
    use ReleaseCliError as R;
    match e {
        R::Setup(s) => setup(s),
        R::Name(_)
        | R::Read { .. }
        | R::TooLarge { .. }
        | R::Image { .. }
        | R::Eventlog { .. }
        | R::Deb { .. }
        | R::DebEmpty(_)
        | R::Empty(_)
        | R::Exists(_)
        | R::NoRelease(_)
        | R::Unusable { .. }
        | R::Referenced { .. } => INPUT,
        R::Encode(_)
        | R::Write { .. }
        | R::CreateDir { .. }
        | R::Remove { .. }
        | R::Audit(_)
        | R::Json(_) => INTERNAL,
    }
}

fn policy_sign(e: &PolicySignError) -> u8 {
    use PolicySignError as S;
    match e {
        S::Read { .. }
        | S::Key { .. }
        | S::PcrValues { .. }
        | S::EventLog { .. }
        | S::MissingPcr { .. }
        | S::FleetKey(_)
        | S::Policy(_) => INPUT,
        S::Write { .. } | S::Generate(_) | S::Sign => INTERNAL,
    }
}

/// A refused backup, key or share, a non-empty target or an unusable configuration is input;
/// failing to snapshot, read the fleet's own files or write is internal.
fn backup(e: &BackupCmdError) -> u8 {
    use BackupCmdError as B;
    use BackupRunError as R;
    match e {
        B::Read { .. } | B::Key { .. } | B::Backup { .. } | B::Exists(_) => INPUT,
        B::Registry(r) => registry(r),
        B::File(_) => INTERNAL,
        B::Run(r) => match r {
            R::Config(_)
            | R::Format(_)
            | R::NotEmpty { .. }
            | R::Missing(_)
            | R::NotUtf8(_)
            | R::PostgresRegistry { .. } => INPUT,
            R::File(_) | R::List { .. } | R::Snapshot { .. } | R::Prepare { .. } | R::Toml(_) => {
                INTERNAL
            }
        },
    }
}

fn escrow(e: &EscrowCmdError) -> u8 {
    use EscrowCmdError as E;
    match e {
        // The release rule said no, or the device could not use the passphrase.
        E::DeviceFailed { .. } => REJECTED,
        E::Release(r) => release(r),
        E::Read { .. } | E::Escrow { .. } => INPUT,
        E::Registry(r) => registry(r),
        E::Write { .. } | E::NoAnswer { .. } => INTERNAL,
    }
}

fn release(e: &ReleaseError) -> u8 {
    use ReleaseError as R;
    match e {
        // The release rule said no.
        R::Refused { .. } => REJECTED,
        R::Read { .. }
        | R::Escrow { .. }
        | R::OtherDevice { .. }
        | R::OtherVolume { .. }
        | R::NoRecord { .. }
        | R::StoredRecord { .. } => INPUT,
        R::Registry(r) => registry(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use vouch_attest::eventlog::ParseError;

    fn io() -> std::io::Error {
        std::io::Error::from(std::io::ErrorKind::NotFound)
    }

    fn path() -> PathBuf {
        PathBuf::from("/x")
    }

    fn json() -> serde_json::Error {
        serde_json::from_str::<u8>("x").unwrap_err()
    }

    fn query() -> RegistryError {
        RegistryError::Corrupt {
            what: "device",
            detail: "x".into(),
        }
    }

    fn unknown() -> RegistryError {
        RegistryError::UnknownDevice("d".into())
    }

    fn file_error() -> vouch_fleet::pki::files::FileError {
        vouch_fleet::pki::files::FileError::CreateDir {
            path: path(),
            source: io(),
        }
    }

    fn ca_error() -> vouch_fleet::pki::ca::CaError {
        vouch_fleet::pki::ca::CaError::File(file_error())
    }

    fn policy_error() -> vouch_attest::policy::PolicyError {
        vouch_attest::policy::PolicyError::Version { found: 9 }
    }

    fn pcr_file_error() -> vouch_attest::pcrfile::PcrFileError {
        vouch_attest::pcrfile::PcrFileError::Truncated {
            field: "count",
            offset: 0,
            len: 0,
        }
    }

    fn escrow_error() -> vouch_attest::escrow::EscrowError {
        vouch_attest::escrow::EscrowError::Random
    }

    /// Every kind of error of every command, with the code the README gives it (and each
    /// command gave it before the table).
    fn table() -> Vec<(CliError, u8)> {
        use CliError as C;
        let mut t: Vec<(CliError, u8)> = vec![
            // Setting up from --config (every registry command, `serve`).
            (
                C::Setup(SetupError::Config(
                    vouch_fleet::config::ConfigError::TooLarge { path: path() },
                )),
                INPUT,
            ),
            (C::Setup(SetupError::Registry(query())), INTERNAL),
        ];
        // eventlog
        t.extend([
            (
                C::Eventlog(EventlogCliError::Read {
                    path: path(),
                    source: io(),
                }),
                INPUT,
            ),
            (
                C::Eventlog(EventlogCliError::Parse {
                    path: path(),
                    source: ParseError::Empty,
                }),
                INPUT,
            ),
            (C::Eventlog(EventlogCliError::Write(io())), INTERNAL),
            (C::Eventlog(EventlogCliError::Json(json())), INTERNAL),
        ]);
        // quote verify
        t.extend([
            (
                C::Quote(QuoteError::Read {
                    flag: "ak",
                    path: path(),
                    source: io(),
                }),
                INPUT,
            ),
            (
                C::Quote(QuoteError::Ak {
                    path: path(),
                    source: vouch_attest::quote::AkError::PemNotText,
                }),
                INPUT,
            ),
            (
                C::Quote(QuoteError::Attest {
                    flag: "quote",
                    path: path(),
                    source: vouch_attest::tpm::AttestError::InvalidSafe {
                        value: 2,
                        offset: 0,
                    },
                }),
                INPUT,
            ),
            (
                C::Quote(QuoteError::Signature {
                    path: path(),
                    source: vouch_attest::tpm::SignatureError::UnsupportedAlgorithm(0),
                }),
                INPUT,
            ),
            (
                C::Quote(QuoteError::Pcrs {
                    path: path(),
                    source: pcr_file_error(),
                }),
                INPUT,
            ),
            (
                C::Quote(QuoteError::Nonce(hex::FromHexError::OddLength)),
                INPUT,
            ),
            (
                C::Quote(QuoteError::Eventlog {
                    path: path(),
                    source: ParseError::Empty,
                }),
                INPUT,
            ),
            (
                C::Quote(QuoteError::Policy(PolicyCliError::Policy {
                    path: path(),
                    source: policy_error(),
                })),
                INPUT,
            ),
            (C::Quote(QuoteError::Json(json())), INTERNAL),
        ]);
        // init
        t.extend([
            (C::Init(InitError::NotEmpty { dir: path() }), INPUT),
            (C::Init(InitError::NotADirectory { dir: path() }), INPUT),
            (C::Init(InitError::ZeroPort), INPUT),
            (C::Init(InitError::SamePort(1)), INPUT),
            (C::Init(InitError::NoDynsecPlugin), INPUT),
            (C::Init(InitError::DynsecPlugin(path())), INPUT),
            (C::Init(InitError::ServerName(ca_error())), INPUT),
            (C::Init(InitError::File(file_error())), INTERNAL),
            (C::Init(InitError::Ca(ca_error())), INTERNAL),
            (
                C::Init(InitError::Crl(vouch_fleet::pki::crl::CrlError::CrlNumber {
                    path: path(),
                })),
                INTERNAL,
            ),
        ]);
        // serve
        t.extend([
            (C::Serve(ServeCmdError::Root), INPUT),
            (
                C::Serve(ServeCmdError::Serve(ServeError::CaDir(path()))),
                INPUT,
            ),
            (
                C::Serve(ServeCmdError::Serve(ServeError::Ca(ca_error()))),
                INPUT,
            ),
            (
                C::Serve(ServeCmdError::Serve(ServeError::Tls(
                    vouch_fleet::serve::mqtt::TlsError::Config(rustls::Error::General("x".into())),
                ))),
                INPUT,
            ),
            (
                C::Serve(ServeCmdError::Serve(ServeError::Registry(query()))),
                INTERNAL,
            ),
            (
                C::Serve(ServeCmdError::Serve(ServeError::Runtime(io()))),
                INTERNAL,
            ),
        ]);
        // devices, device show|set-policy, audit
        t.extend([
            (C::Devices(DevicesError::NoDevice("d".into())), INPUT),
            (C::Devices(DevicesError::PolicyName("a/b".into())), INPUT),
            (
                C::Devices(DevicesError::Policy("/x.toml: bad".into())),
                INPUT,
            ),
            (C::Devices(DevicesError::Registry(unknown())), INPUT),
            (C::Devices(DevicesError::Registry(query())), INTERNAL),
        ]);
        // attest
        t.extend([
            (C::Attest(AttestCmdError::NoDevice("d".into())), INPUT),
            (
                C::Attest(AttestCmdError::Inactive {
                    id: "d".into(),
                    status: vouch_fleet::registry::DeviceStatus::Revoked,
                }),
                INPUT,
            ),
            (C::Attest(AttestCmdError::Registry(query())), INTERNAL),
            (
                C::Attest(AttestCmdError::NoVerdict {
                    id: "d".into(),
                    secs: 1,
                }),
                INTERNAL,
            ),
        ]);
        // revoke, delete
        t.extend([
            (
                C::Revoke(RevokeCmdError::Ca(ServeError::CaDir(path()))),
                INPUT,
            ),
            (
                C::Revoke(RevokeCmdError::Ca(ServeError::Ca(ca_error()))),
                INPUT,
            ),
            (
                C::Revoke(RevokeCmdError::Revoke(RevokeError::UnknownDevice(
                    "d".into(),
                ))),
                INPUT,
            ),
            (
                C::Revoke(RevokeCmdError::Revoke(RevokeError::Registry(query()))),
                INTERNAL,
            ),
            (
                C::Revoke(RevokeCmdError::Revoke(RevokeError::Registry(unknown()))),
                INTERNAL,
            ),
            (
                C::Revoke(RevokeCmdError::Revoke(RevokeError::Serial {
                    id: "d".into(),
                    serial: "zz".into(),
                })),
                INTERNAL,
            ),
            (
                C::Revoke(RevokeCmdError::Revoke(RevokeError::Reload(
                    vouch_fleet::pki::broker::BrokerError::BadPid { path: path() },
                ))),
                INTERNAL,
            ),
        ]);
        // ima check, runtime-policy create
        {
            use vouch_attest::ima::ascii::{AsciiError, AsciiErrorKind};
            use vouch_attest::ima::binary::{ParseError as ImaParseError, ParseErrorKind};
            use vouch_attest::ima::PolicyError as RtPolicyError;
            use ImaCliError as I;
            let rt = || RtPolicyError::Version(2);
            t.extend([
                (
                    C::Ima(I::Read {
                        flag: "log",
                        path: path(),
                        source: io(),
                    }),
                    INPUT,
                ),
                (
                    C::Ima(I::Policy {
                        path: path(),
                        source: rt(),
                    }),
                    INPUT,
                ),
                (C::Ima(I::Exclude(rt())), INPUT),
                (
                    C::Ima(I::Binary {
                        path: path(),
                        source: ImaParseError {
                            index: 3,
                            offset: 300,
                            kind: ParseErrorKind::Truncated(5),
                        },
                    }),
                    INPUT,
                ),
                (
                    C::Ima(I::Text {
                        path: path(),
                        source: AsciiError {
                            line: 3,
                            kind: AsciiErrorKind::Missing,
                        },
                    }),
                    INPUT,
                ),
                (
                    C::Ima(I::Tree {
                        path: path(),
                        source: io(),
                    }),
                    INPUT,
                ),
                (
                    C::Ima(I::Initrd {
                        path: path(),
                        source: vouch_fleet::initramfs::InitramfsError::NoArchive { len: 0 },
                    }),
                    INPUT,
                ),
                (C::Ima(I::Encode(rt())), INTERNAL),
                (
                    C::Ima(I::Write {
                        path: path(),
                        source: io(),
                    }),
                    INTERNAL,
                ),
                (C::Ima(I::Json(json())), INTERNAL),
            ]);
        }
        // policy check|record
        t.extend([
            (
                C::Policy(PolicyCliError::Read {
                    flag: "eventlog",
                    path: path(),
                    source: io(),
                }),
                INPUT,
            ),
            (
                C::Policy(PolicyCliError::Policy {
                    path: path(),
                    source: policy_error(),
                }),
                INPUT,
            ),
            (
                C::Policy(PolicyCliError::Eventlog {
                    path: path(),
                    source: ParseError::Empty,
                }),
                INPUT,
            ),
            (C::Policy(PolicyCliError::Encode(policy_error())), INTERNAL),
            (
                C::Policy(PolicyCliError::Write {
                    path: path(),
                    source: io(),
                }),
                INTERNAL,
            ),
            (C::Policy(PolicyCliError::Json(json())), INTERNAL),
        ]);
        // seal-policy keygen|sign, policy sign
        t.extend([
            (
                C::PolicySign(PolicySignError::Read {
                    path: path(),
                    source: io(),
                }),
                INPUT,
            ),
            (
                C::PolicySign(PolicySignError::Key {
                    path: path(),
                    detail: "x".into(),
                }),
                INPUT,
            ),
            (
                C::PolicySign(PolicySignError::PcrValues {
                    path: path(),
                    source: pcr_file_error(),
                }),
                INPUT,
            ),
            (
                C::PolicySign(PolicySignError::EventLog {
                    path: path(),
                    source: ParseError::Empty,
                }),
                INPUT,
            ),
            (
                C::PolicySign(PolicySignError::MissingPcr {
                    path: path(),
                    bank: vouch_attest::HashAlg::Sha256,
                    pcr: 7,
                }),
                INPUT,
            ),
            (
                C::PolicySign(PolicySignError::FleetKey(
                    vouch_attest::policy_digest::PolicyDigestError::KeyType,
                )),
                INPUT,
            ),
            (
                C::PolicySign(PolicySignError::Policy(
                    vouch_attest::policy_digest::SignedPolicyError::Format("x".into()),
                )),
                INPUT,
            ),
            (
                C::PolicySign(PolicySignError::Write {
                    path: path(),
                    source: io(),
                }),
                INTERNAL,
            ),
            (
                C::PolicySign(PolicySignError::Generate("x".into())),
                INTERNAL,
            ),
            (C::PolicySign(PolicySignError::Sign), INTERNAL),
        ]);
        // escrow keygen|release
        t.extend([
            (
                C::Escrow(EscrowCmdError::Release(ReleaseError::Refused {
                    id: "d".into(),
                    source: vouch_attest::escrow_release::ReleaseRefusal::NoVerdict,
                })),
                REJECTED,
            ),
            (
                C::Escrow(EscrowCmdError::DeviceFailed {
                    id: 1,
                    result: "error: x".into(),
                }),
                REJECTED,
            ),
            (
                C::Escrow(EscrowCmdError::Read {
                    path: path(),
                    source: io(),
                }),
                INPUT,
            ),
            (
                C::Escrow(EscrowCmdError::Escrow {
                    path: path(),
                    source: escrow_error(),
                }),
                INPUT,
            ),
            (
                C::Escrow(EscrowCmdError::Release(ReleaseError::OtherDevice {
                    record: "a".into(),
                    given: "b".into(),
                })),
                INPUT,
            ),
            (
                C::Escrow(EscrowCmdError::Release(ReleaseError::OtherVolume {
                    record: "a".into(),
                    given: "b".into(),
                })),
                INPUT,
            ),
            (
                C::Escrow(EscrowCmdError::Release(ReleaseError::NoRecord {
                    id: "d".into(),
                    volume: "v".into(),
                    known: String::new(),
                })),
                INPUT,
            ),
            (
                C::Escrow(EscrowCmdError::Release(ReleaseError::StoredRecord {
                    volume: "v".into(),
                    source: escrow_error(),
                })),
                INPUT,
            ),
            (C::Escrow(EscrowCmdError::Registry(query())), INTERNAL),
            (
                C::Escrow(EscrowCmdError::Write {
                    path: path(),
                    source: io(),
                }),
                INTERNAL,
            ),
            (
                C::Escrow(EscrowCmdError::NoAnswer { id: 1, secs: 1 }),
                INTERNAL,
            ),
        ]);
        // backup, backup keygen|verify, restore
        {
            use vouch_attest::backup::BackupError;
            use vouch_fleet::backup::BackupRunError as R;
            let b = C::Backup;
            t.extend([
                (
                    b(BackupCmdError::Read {
                        path: path(),
                        source: io(),
                    }),
                    INPUT,
                ),
                (
                    b(BackupCmdError::Key {
                        path: path(),
                        source: BackupError::MixedShares,
                    }),
                    INPUT,
                ),
                (
                    b(BackupCmdError::Backup {
                        path: path(),
                        source: BackupError::Truncated {
                            len: 1,
                            expected: 2,
                        },
                    }),
                    INPUT,
                ),
                (b(BackupCmdError::Exists(path())), INPUT),
                (b(BackupCmdError::File(file_error())), INTERNAL),
                (b(BackupCmdError::Registry(query())), INTERNAL),
                (b(BackupCmdError::Run(R::NotEmpty { dir: path() })), INPUT),
                (
                    b(BackupCmdError::Run(R::PostgresRegistry {
                        location: "postgresql://vouch@db/vouch".into(),
                    })),
                    INPUT,
                ),
                (
                    b(BackupCmdError::Run(R::Missing("registry snapshot"))),
                    INPUT,
                ),
                (b(BackupCmdError::Run(R::Format(BackupError::Open))), INPUT),
                (b(BackupCmdError::Run(R::NotUtf8(path()))), INPUT),
                (
                    b(BackupCmdError::Run(R::List {
                        path: path(),
                        source: io(),
                    })),
                    INTERNAL,
                ),
                (
                    b(BackupCmdError::Run(R::Prepare {
                        dir: path(),
                        source: io(),
                    })),
                    INTERNAL,
                ),
                (
                    b(BackupCmdError::Run(R::Snapshot {
                        path: path(),
                        source: rusqlite::Error::InvalidQuery,
                    })),
                    INTERNAL,
                ),
                (b(BackupCmdError::Run(R::File(file_error()))), INTERNAL),
            ]);
        }
        t
    }

    #[test]
    fn every_command_error_has_its_readme_code() {
        for (e, want) in table() {
            assert_eq!(code(&e), want, "{e:?}");
        }
    }

    #[test]
    fn outcomes_are_ok_and_rejected() {
        assert_eq!(outcome(Outcome::Done), OK);
        assert_eq!(outcome(Outcome::Rejected), REJECTED);
        assert_eq!(Outcome::of(true), Outcome::Done);
        assert_eq!(Outcome::of(false), Outcome::Rejected);
    }

    /// `main` prints the chain once: no message of a command error repeats its source's.
    #[test]
    fn no_message_repeats_its_source() {
        for (e, _) in table() {
            let mut messages = vec![e.to_string()];
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                messages.push(c.to_string());
                cause = c.source();
            }
            for (i, m) in messages.iter().enumerate() {
                for later in &messages[i + 1..] {
                    assert!(
                        !m.contains(later.as_str()),
                        "{e:?}: {m:?} repeats {later:?}"
                    );
                }
            }
            assert_eq!(vouch_attest::errors::chain(&e), messages.join(": "));
        }
    }
}
