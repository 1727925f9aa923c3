//! What both Vouch binaries (`vouch-agent`, `vouch-fleet`) need from the process they run in,
//! in one place: log output ([`init_logging`]) and whether the effective user is root
//! ([`running_as_root`]).
#![forbid(unsafe_code)]

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Where and how logs are written (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// journald when the journal is on stderr (systemd sets `JOURNAL_STREAM`), text otherwise.
    Auto,
    /// Human-readable lines on stderr.
    Text,
    /// One JSON object per line on stderr.
    Json,
    /// Native journald protocol with structured fields.
    Journald,
}

impl LogFormat {
    /// `Auto` decided from the environment: journald under systemd's journal, else text.
    pub fn resolve(self, journal_stream: bool) -> LogFormat {
        match self {
            LogFormat::Auto if journal_stream => LogFormat::Journald,
            LogFormat::Auto => LogFormat::Text,
            other => other,
        }
    }
}

/// Installs the global log subscriber: `VOUCH_LOG` sets the filter, else `default_filter`;
/// journald entries carry `identifier` as their syslog identifier and every event field by its
/// own name in capitals, without tracing-journald's default `F_` prefix (`journalctl
/// DEVICE=<id>`; no Vouch field name is one journald reserves), with `TARGET`, `CODE_FILE` and
/// `CODE_LINE`. Text goes to stderr (with colours only on a terminal); journald falls back to
/// text when the journal is unreachable.
pub fn init_logging(format: LogFormat, default_filter: &str, identifier: &str) {
    let filter =
        EnvFilter::try_from_env("VOUCH_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let registry = tracing_subscriber::registry().with(filter);
    let text = || {
        tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
    };
    match format.resolve(std::env::var_os("JOURNAL_STREAM").is_some()) {
        LogFormat::Journald => match tracing_journald::layer() {
            Ok(layer) => registry
                .with(
                    layer
                        .with_syslog_identifier(identifier.to_string())
                        .with_field_prefix(None),
                )
                .init(),
            Err(_) => registry.with(text()).init(),
        },
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .init(),
        LogFormat::Text | LogFormat::Auto => registry.with(text()).init(),
    }
}

/// True when the effective user is root (read from `/proc/self/status`, no libc call needed).
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| effective_uid_is_root(&s))
        .unwrap_or(false)
}

/// Whether a `/proc/PID/status` text names effective uid 0 (the second number of `Uid:`).
fn effective_uid_is_root(status: &str) -> bool {
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .is_some_and(|e| e == "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_uid_is_the_second_of_the_uid_line() {
        assert!(effective_uid_is_root("Name:\tx\nUid:\t1000\t0\t0\t0\n"));
        assert!(!effective_uid_is_root("Uid:\t0\t1000\t0\t0\n"));
        assert!(!effective_uid_is_root("Name:\tx\n"));
    }

    #[test]
    fn auto_is_journald_only_under_the_journal() {
        assert_eq!(LogFormat::Auto.resolve(true), LogFormat::Journald);
        assert_eq!(LogFormat::Auto.resolve(false), LogFormat::Text);
        assert_eq!(LogFormat::Json.resolve(true), LogFormat::Json);
    }
}
