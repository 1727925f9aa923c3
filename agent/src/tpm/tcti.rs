//! TCTI selection: which TPM the agent talks to, parsed from `--tcti` / `VOUCH_TCTI` / config.
//!
//! Accepted forms (tpm2-tools conventions):
//! - `device:/dev/tpmrm0` (default; `device` alone means `/dev/tpmrm0`)
//! - `swtpm:host=127.0.0.1,port=2321` (TCP; the control channel is port + 1)
//! - `swtpm:path=/run/swtpm/sock` (unix socket; control channel at `<path>.ctrl`)
//! - `tabrmd:` or `tabrmd:bus_name=com.intel.tss2.Tabrmd,bus_type=system`
//!
//! tss-esapi 7.7 can only reach swtpm over TCP, so a unix-socket swtpm is reached through a small
//! loopback relay ([`crate::tpm::relay`]) that this module's caller starts.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Default TCTI in production: the kernel's resource-managed TPM device.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";

/// A parsed TCTI specification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tcti {
    /// A TPM character device, normally `/dev/tpmrm0`.
    Device(PathBuf),
    /// swtpm over TCP: data port `port`, control port `port + 1`.
    SwtpmTcp { host: String, port: u16 },
    /// swtpm over a unix socket: data at `path`, control at `<path>.ctrl`.
    SwtpmUnix(PathBuf),
    /// The tpm2-abrmd resource manager on D-Bus.
    Tabrmd { bus_name: String, bus_type: String },
}

/// Why a TCTI string could not be understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TctiParseError {
    /// The part before `:` is not a supported TCTI.
    #[error("unknown TCTI {0:?} (expected device, swtpm or tabrmd)")]
    UnknownKind(String),
    /// A `key=value` option is malformed or not known for this TCTI.
    #[error("bad option {option:?} for TCTI {kind}")]
    BadOption { kind: &'static str, option: String },
    /// The swtpm port is not a number in 1..=65534.
    #[error("bad swtpm port {0:?}")]
    BadPort(String),
}

impl FromStr for Tcti {
    type Err = TctiParseError;

    fn from_str(s: &str) -> Result<Tcti, TctiParseError> {
        let (kind, conf) = s.split_once(':').unwrap_or((s, ""));
        match kind {
            "device" => Ok(Tcti::Device(PathBuf::from(if conf.is_empty() {
                "/dev/tpmrm0"
            } else {
                conf
            }))),
            "swtpm" | "mssim" if conf.starts_with("path=") => {
                Ok(Tcti::SwtpmUnix(PathBuf::from(&conf["path=".len()..])))
            }
            "swtpm" => parse_swtpm_tcp(conf),
            "tabrmd" => parse_tabrmd(conf),
            other => Err(TctiParseError::UnknownKind(other.to_string())),
        }
    }
}

fn options(conf: &str) -> impl Iterator<Item = (&str, &str)> {
    conf.split(',')
        .filter(|o| !o.is_empty())
        .map(|o| o.split_once('=').unwrap_or((o, "")))
}

fn parse_swtpm_tcp(conf: &str) -> Result<Tcti, TctiParseError> {
    let mut host = "localhost".to_string();
    let mut port = 2321u16;
    for (k, v) in options(conf) {
        match k {
            "host" if !v.is_empty() => host = v.to_string(),
            "port" => {
                port = v
                    .parse()
                    .ok()
                    .filter(|p| (1..u16::MAX).contains(p))
                    .ok_or_else(|| TctiParseError::BadPort(v.to_string()))?
            }
            _ => {
                return Err(TctiParseError::BadOption {
                    kind: "swtpm",
                    option: format!("{k}={v}"),
                })
            }
        }
    }
    Ok(Tcti::SwtpmTcp { host, port })
}

fn parse_tabrmd(conf: &str) -> Result<Tcti, TctiParseError> {
    let mut bus_name = "com.intel.tss2.Tabrmd".to_string();
    let mut bus_type = "system".to_string();
    for (k, v) in options(conf) {
        match (k, v) {
            ("bus_name", v) if !v.is_empty() => bus_name = v.to_string(),
            ("bus_type", "system" | "session") => bus_type = v.to_string(),
            _ => {
                return Err(TctiParseError::BadOption {
                    kind: "tabrmd",
                    option: format!("{k}={v}"),
                })
            }
        }
    }
    Ok(Tcti::Tabrmd { bus_name, bus_type })
}

impl fmt::Display for Tcti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tcti::Device(p) => write!(f, "device:{}", p.display()),
            Tcti::SwtpmTcp { host, port } => write!(f, "swtpm:host={host},port={port}"),
            Tcti::SwtpmUnix(p) => write!(f, "swtpm:path={}", p.display()),
            Tcti::Tabrmd { bus_name, bus_type } => {
                write!(f, "tabrmd:bus_name={bus_name},bus_type={bus_type}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_supported_forms() {
        assert_eq!(
            "device:/dev/tpm0".parse(),
            Ok(Tcti::Device("/dev/tpm0".into()))
        );
        assert_eq!("device".parse(), Ok(Tcti::Device("/dev/tpmrm0".into())));
        assert_eq!(
            "swtpm:host=127.0.0.1,port=4000".parse(),
            Ok(Tcti::SwtpmTcp {
                host: "127.0.0.1".into(),
                port: 4000
            })
        );
        assert_eq!(
            "swtpm:path=/tmp/s".parse(),
            Ok(Tcti::SwtpmUnix("/tmp/s".into()))
        );
        assert_eq!(
            "tabrmd:".parse(),
            Ok(Tcti::Tabrmd {
                bus_name: "com.intel.tss2.Tabrmd".into(),
                bus_type: "system".into()
            })
        );
        let t: Tcti = "swtpm:port=5000".parse().unwrap();
        assert_eq!(t.to_string(), "swtpm:host=localhost,port=5000");
    }

    #[test]
    fn rejects_bad_specs_with_a_reason() {
        assert_eq!(
            "tpm:x".parse::<Tcti>(),
            Err(TctiParseError::UnknownKind("tpm".into()))
        );
        assert_eq!(
            "swtpm:port=65535".parse::<Tcti>(),
            Err(TctiParseError::BadPort("65535".into()))
        );
        assert!(matches!(
            "swtpm:colour=red".parse::<Tcti>(),
            Err(TctiParseError::BadOption { .. })
        ));
        assert!(matches!(
            "tabrmd:bus_type=weird".parse::<Tcti>(),
            Err(TctiParseError::BadOption { .. })
        ));
    }
}
