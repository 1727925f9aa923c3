//! Log output of `vouch-fleet serve`: readable text on a terminal, journald with structured fields
//! under systemd, or JSON lines for collectors (`--log-format`). `VOUCH_LOG` sets the filter
//! (default `info`). The server's own lines are rate-limited before they get here.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Where and how logs are written.
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

/// Installs the global subscriber.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("VOUCH_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let format = match format {
        LogFormat::Auto if std::env::var_os("JOURNAL_STREAM").is_some() => LogFormat::Journald,
        LogFormat::Auto => LogFormat::Text,
        other => other,
    };
    let registry = tracing_subscriber::registry().with(filter);
    let text = || {
        tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
    };
    match format {
        LogFormat::Journald => match tracing_journald::layer() {
            Ok(l) => registry
                .with(l.with_syslog_identifier("vouch-fleet".into()))
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
        _ => registry.with(text()).init(),
    }
}
