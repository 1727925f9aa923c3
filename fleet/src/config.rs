//! The fleet's configuration file (`fleet.toml`): typed, strict (unknown keys are refused), with
//! relative paths resolved against the directory of the file.
//!
//! [`ConfigFile`] is the file as written; [`FleetConfig`] is the checked result the fleet uses.
//! `fleet/fleet.example.toml` documents every key.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use vouch_attest::tpm::PcrSelection;

/// Largest configuration file accepted.
const CONFIG_LIMIT: u64 = 1024 * 1024;

/// A valid policy name (`policies/NAME.toml`, `default_policy`, `device set-policy`):
/// `[A-Za-z0-9._-]{1,64}`, not starting with a dot.
pub fn valid_policy_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than 1 MiB.
    #[error("config file {path} is larger than 1 MiB")]
    TooLarge { path: PathBuf },
    /// The file is not valid TOML for this schema (unknown key, missing key, wrong type).
    #[error("config file {path} is invalid")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    /// A key that must not be empty is empty.
    #[error("config file {path}: key `{key}` must not be empty")]
    Empty { path: PathBuf, key: &'static str },
    /// A key that must be positive is zero.
    #[error("config file {path}: key `{key}` must be greater than 0")]
    Zero { path: PathBuf, key: &'static str },
    /// The challenge jitter is not smaller than the interval.
    #[error(
        "config file {path}: key `challenge.jitter_secs` ({jitter}) must be smaller than \
         `challenge.interval_secs` ({interval})"
    )]
    JitterTooLarge {
        path: PathBuf,
        jitter: u64,
        interval: u64,
    },
    /// A key has a value of the wrong form.
    #[error("config file {path}: key `{key}`: {problem}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        problem: &'static str,
    },
}

/// `fleet.toml` as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `[broker]`
    pub broker: BrokerSection,
    /// `[pki]`
    pub pki: PkiSection,
    /// `[storage]`
    pub storage: StorageSection,
    /// `[challenge]` (optional; defaults apply)
    #[serde(default)]
    pub challenge: ChallengeSection,
    /// `[verdict]` (optional; defaults apply)
    #[serde(default)]
    pub verdict: VerdictSection,
    /// `[http]` (optional; no HTTP server without it)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSection>,
    /// `[liveness]` (optional; defaults apply)
    #[serde(default)]
    pub liveness: LivenessSection,
    /// `[[webhooks]]` (optional, repeatable)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<WebhookSection>,
    /// `[ima]` (optional; absent: IMA is not appraised)
    #[serde(default, skip_serializing_if = "ImaSection::is_off")]
    pub ima: ImaSection,
}

/// `[http]`: the HTTP API, metrics, health endpoints and page of `vouch-fleet serve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Address and port to listen on (a loopback address unless `tls`).
    pub listen: String,
    /// Serve HTTPS with operator client certificates (`vouch-fleet operator add`); then the
    /// address may be any.
    #[serde(default)]
    pub tls: bool,
}

/// `[liveness]`: when a device counts as stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LivenessSection {
    /// A device whose last trusted verdict is older than this many challenge intervals (or
    /// that has none this long after enrolling) is stale.
    pub stale_after_intervals: u32,
}

impl Default for LivenessSection {
    fn default() -> Self {
        LivenessSection {
            stale_after_intervals: 3,
        }
    }
}

/// `[[webhooks]]`: one receiver of event notifications.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    /// The URL the events are POSTed to (`http` or `https`).
    pub url: String,
    /// File holding the HMAC-SHA256 key (its bytes, trailing newline removed; mode 0600).
    pub secret_file: PathBuf,
    /// Events sent (default: all): `verdict_changed`, `revoked`, `stale`.
    #[serde(default = "all_webhook_events")]
    pub events: Vec<String>,
}

/// The events a webhook can receive.
pub const WEBHOOK_EVENTS: [&str; 3] = ["verdict_changed", "revoked", "stale"];

fn all_webhook_events() -> Vec<String> {
    WEBHOOK_EVENTS.iter().map(|e| (*e).to_string()).collect()
}

/// A checked `[[webhooks]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// The URL.
    pub url: String,
    /// The HMAC key file (absolute).
    pub secret_file: PathBuf,
    /// The events it receives.
    pub events: Vec<String>,
}

/// `[ima]`: runtime integrity, appraised from each device's IMA measurement list.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImaSection {
    /// A Keylime runtime policy (JSON) every device's IMA entries are appraised against; set, the
    /// challenges also quote sha256 PCR 10 and ask for the entries since the last accepted
    /// report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_policy: Option<PathBuf>,
}

impl ImaSection {
    fn is_off(&self) -> bool {
        self.runtime_policy.is_none()
    }
}

/// `[broker]`: where the MQTT broker is and how to reload it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSection {
    /// Host to connect to.
    pub host: String,
    /// TLS port.
    pub port: u16,
    /// Name expected in the broker's certificate.
    pub server_name: String,
    /// Pid file of the broker; when set, the fleet sends it SIGHUP after the CRL changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload_pid_file: Option<PathBuf>,
}

/// `[pki]`: the CA and the fleet's own client identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PkiSection {
    /// CA certificate (PEM).
    pub ca_cert: PathBuf,
    /// CA private key (PEM).
    pub ca_key: PathBuf,
    /// Fleet client certificate (PEM).
    pub client_cert: PathBuf,
    /// Fleet client key (PEM).
    pub client_key: PathBuf,
    /// CRL the broker enforces (PEM).
    pub crl: PathBuf,
}

/// `[storage]`: state and input directories, and where the registry lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// Fleet state (the SQLite registry, the escrow and EAR keys).
    pub state_dir: PathBuf,
    /// EK vendor CA certificates (PEM files).
    pub trust_roots_dir: PathBuf,
    /// Verification policies.
    pub policies_dir: PathBuf,
    /// Approved releases policies reference (default: `releases` beside `policies_dir`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub releases_dir: Option<PathBuf>,
    /// The registry's database engine (default `sqlite`: `registry.db` in `state_dir`).
    #[serde(default)]
    pub backend: StorageBackend,
    /// `backend = "postgres"`: the connection URL (`postgresql://user:password@host/db`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<PostgresUrl>,
    /// `backend = "postgres"`: the most connections one process opens (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<u32>,
}

/// The releases directory when `storage.releases_dir` is unset: `releases` beside the
/// policies directory.
pub fn default_releases_dir(policies_dir: &Path) -> PathBuf {
    policies_dir.with_file_name("releases")
}

/// `[storage] backend`: the registry's database engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// An embedded SQLite file, `registry.db` in the state directory (one server).
    #[default]
    Sqlite,
    /// A PostgreSQL database (fleets with more than one server).
    Postgres,
}

/// A PostgreSQL connection URL. It may hold a password: it is kept in a buffer zeroed on drop
/// and shown (Debug, Display, logs) only with the password removed.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(zeroize::Zeroizing<String>);

impl PostgresUrl {
    /// Checks `url`: a `postgres://` or `postgresql://` URL the client accepts.
    pub fn parse(url: &str) -> Result<PostgresUrl, &'static str> {
        const PROBLEM: &str = "not a postgresql:// connection URL";
        if !(url.starts_with("postgresql://") || url.starts_with("postgres://")) {
            return Err(PROBLEM);
        }
        url.parse::<postgres::Config>().map_err(|_| PROBLEM)?;
        Ok(PostgresUrl(zeroize::Zeroizing::new(url.to_string())))
    }

    /// The client configuration.
    pub fn client_config(&self) -> Result<postgres::Config, postgres::Error> {
        self.0.parse()
    }

    /// The URL without its password (for logs and messages).
    pub fn redacted(&self) -> String {
        let Ok(mut u) = reqwest::Url::parse(&self.0) else {
            return "postgresql://(unparsable URL)".into();
        };
        if u.password().is_some() {
            let _ = u.set_password(Some("REDACTED"));
        }
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "password" {
                    "REDACTED".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        if !pairs.is_empty() {
            u.query_pairs_mut().clear().extend_pairs(pairs);
        }
        u.to_string()
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresUrl({})", self.redacted())
    }
}

impl std::fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for PostgresUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Read unchecked: a TOML error quotes the line it is about, and this line may hold a password.
/// [`FleetConfig::from_file`] checks it with an error of its own.
impl<'de> Deserialize<'de> for PostgresUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(PostgresUrl(zeroize::Zeroizing::new(String::deserialize(
            d,
        )?)))
    }
}

/// Where the registry lives (checked `[storage]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// `registry.db` in the state directory.
    Sqlite,
    /// A PostgreSQL database.
    Postgres {
        /// Connection URL.
        url: PostgresUrl,
        /// Most connections per process.
        pool_size: u32,
    },
}

/// Default `[storage] pool_size`.
pub const DEFAULT_POOL_SIZE: u32 = 4;

/// `[challenge]`: how often devices are challenged and how long a nonce lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeSection {
    /// Seconds between challenges of one device.
    pub interval_secs: u64,
    /// Random extra delay, 0 to this many seconds (must be below the interval).
    pub jitter_secs: u64,
    /// Seconds a challenge nonce stays acceptable.
    pub nonce_lifetime_secs: u64,
    /// PCRs every challenge asks for (default `sha256:0-9`: firmware, boot loader and kernel
    /// command line, so policies can rely on the events of PCRs 8 and 9 too).
    #[serde(default = "default_challenge_pcrs")]
    pub pcrs: String,
}

fn default_challenge_pcrs() -> String {
    "sha256:0-9".into()
}

impl Default for ChallengeSection {
    fn default() -> Self {
        ChallengeSection {
            interval_secs: 300,
            jitter_secs: 30,
            nonce_lifetime_secs: 120,
            pcrs: default_challenge_pcrs(),
        }
    }
}

/// `[verdict]`: what happens on an untrusted verdict.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerdictSection {
    /// Revoke a device's certificate when it is found untrusted (default: false). A policy's own
    /// `revoke_on_untrusted` also triggers revocation for the devices it applies to.
    pub revoke_on_untrusted: bool,
    /// Policy (a `NAME.toml` in the policies directory) for devices without an assigned one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_policy: Option<String>,
}

impl ConfigFile {
    /// The configuration `vouch-fleet init` writes: paths relative to the fleet directory.
    pub fn for_new_fleet(broker_port: u16) -> Self {
        ConfigFile {
            broker: BrokerSection {
                host: "localhost".into(),
                port: broker_port,
                server_name: "localhost".into(),
                reload_pid_file: Some("mosquitto.pid".into()),
            },
            pki: PkiSection {
                ca_cert: "ca.crt".into(),
                ca_key: "ca.key".into(),
                client_cert: "fleet.crt".into(),
                client_key: "fleet.key".into(),
                crl: "crl.pem".into(),
            },
            storage: StorageSection {
                state_dir: "state".into(),
                trust_roots_dir: "trust-roots".into(),
                policies_dir: "policies".into(),
                releases_dir: Some("releases".into()),
                backend: StorageBackend::Sqlite,
                url: None,
                pool_size: None,
            },
            challenge: ChallengeSection::default(),
            verdict: VerdictSection::default(),
            http: None,
            liveness: LivenessSection::default(),
            webhooks: Vec::new(),
            ima: ImaSection::default(),
        }
    }

    /// The file's TOML text.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }
}

/// The checked configuration, paths absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// The file it was loaded from.
    pub source: PathBuf,
    /// Broker host.
    pub broker_host: String,
    /// Broker TLS port.
    pub broker_port: u16,
    /// Name expected in the broker's certificate.
    pub broker_server_name: String,
    /// Broker pid file to SIGHUP after a CRL change, if any.
    pub broker_reload_pid_file: Option<PathBuf>,
    /// CA certificate.
    pub ca_cert: PathBuf,
    /// CA key.
    pub ca_key: PathBuf,
    /// Fleet client certificate.
    pub client_cert: PathBuf,
    /// Fleet client key.
    pub client_key: PathBuf,
    /// CRL.
    pub crl: PathBuf,
    /// State directory.
    pub state_dir: PathBuf,
    /// Where the registry lives.
    pub storage: Storage,
    /// EK vendor CA certificates directory.
    pub trust_roots_dir: PathBuf,
    /// Policies directory.
    pub policies_dir: PathBuf,
    /// Approved releases directory.
    pub releases_dir: PathBuf,
    /// Challenge interval.
    pub challenge_interval: Duration,
    /// Maximum random extra delay per challenge.
    pub challenge_jitter: Duration,
    /// Nonce lifetime.
    pub nonce_lifetime: Duration,
    /// Revoke on an untrusted verdict.
    pub revoke_on_untrusted: bool,
    /// Policy for devices without an assigned one.
    pub default_policy: Option<String>,
    /// PCR selection every challenge asks for (`sha256:0-9`).
    pub challenge_pcrs: PcrSelection,
    /// `[http] listen`: where the HTTP API listens, if anywhere.
    pub http_listen: Option<std::net::SocketAddr>,
    /// `[http] tls`: HTTPS with operator client certificates.
    pub http_tls: bool,
    /// `[liveness] stale_after_intervals`.
    pub stale_after_intervals: u32,
    /// `[[webhooks]]`.
    pub webhooks: Vec<WebhookConfig>,
    /// The Keylime runtime policy IMA entries are appraised against (`[ima] runtime_policy`).
    pub ima_runtime_policy: Option<PathBuf>,
}

impl FleetConfig {
    /// Loads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        use std::io::Read;
        let read_err = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let mut text = String::new();
        file.take(CONFIG_LIMIT + 1)
            .read_to_string(&mut text)
            .map_err(read_err)?;
        if text.len() as u64 > CONFIG_LIMIT {
            return Err(ConfigError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        Self::from_toml(&text, path)
    }

    /// Parses and checks `text` as if read from `path` (relative paths resolve against its
    /// directory).
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|source| {
            // A TOML error quotes its line; a line with a URL's credentials (`user:password@`)
            // is not quoted.
            let line = source.span().map(|span| {
                let start = text[..span.start.min(text.len())]
                    .rfind('\n')
                    .map_or(0, |i| i + 1);
                let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
                &text[start..end]
            });
            if line.is_some_and(|l| l.contains("://") && l.contains('@')) {
                return ConfigError::Invalid {
                    path: path.to_path_buf(),
                    key: "storage.url",
                    problem: "not a valid TOML string (the line is not shown: it may hold a \
                              password)",
                };
            }
            ConfigError::Parse {
                path: path.to_path_buf(),
                source,
            }
        })?;
        Self::from_file(file, path)
    }

    /// Checks a parsed file and resolves its paths against `path`'s directory.
    pub fn from_file(file: ConfigFile, path: &Path) -> Result<Self, ConfigError> {
        let p = || path.to_path_buf();
        for (key, value) in [
            ("broker.host", &file.broker.host),
            ("broker.server_name", &file.broker.server_name),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::Empty { path: p(), key });
            }
        }
        for (key, value) in [
            ("pki.ca_cert", &file.pki.ca_cert),
            ("pki.ca_key", &file.pki.ca_key),
            ("pki.client_cert", &file.pki.client_cert),
            ("pki.client_key", &file.pki.client_key),
            ("pki.crl", &file.pki.crl),
            ("storage.state_dir", &file.storage.state_dir),
            ("storage.trust_roots_dir", &file.storage.trust_roots_dir),
            ("storage.policies_dir", &file.storage.policies_dir),
        ] {
            if value.as_os_str().is_empty() {
                return Err(ConfigError::Empty { path: p(), key });
            }
        }
        if file
            .storage
            .releases_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return Err(ConfigError::Empty {
                path: p(),
                key: "storage.releases_dir",
            });
        }
        if file
            .broker
            .reload_pid_file
            .as_ref()
            .is_some_and(|f| f.as_os_str().is_empty())
        {
            return Err(ConfigError::Empty {
                path: p(),
                key: "broker.reload_pid_file",
            });
        }
        let zero_checks = [
            ("broker.port", u64::from(file.broker.port)),
            ("challenge.interval_secs", file.challenge.interval_secs),
            (
                "challenge.nonce_lifetime_secs",
                file.challenge.nonce_lifetime_secs,
            ),
        ];
        for (key, value) in zero_checks {
            if value == 0 {
                return Err(ConfigError::Zero { path: p(), key });
            }
        }
        let c = &file.challenge;
        // Parsed here, once, by vouch-attest's one parser; the agents receive it typed.
        let Ok(challenge_pcrs) = c.pcrs.parse::<PcrSelection>() else {
            return Err(ConfigError::Invalid {
                path: p(),
                key: "challenge.pcrs",
                problem: "not a PCR selection like sha256:0-9 (no spaces)",
            });
        };
        if let Some(name) = &file.verdict.default_policy {
            if !valid_policy_name(name) {
                return Err(ConfigError::Invalid {
                    path: p(),
                    key: "verdict.default_policy",
                    problem: "not a policy name ([A-Za-z0-9._-], at most 64)",
                });
            }
        }
        if c.jitter_secs >= c.interval_secs {
            return Err(ConfigError::JitterTooLarge {
                path: p(),
                jitter: c.jitter_secs,
                interval: c.interval_secs,
            });
        }
        let http_listen = match &file.http {
            None => None,
            Some(h) => {
                let Ok(addr) = h.listen.parse::<std::net::SocketAddr>() else {
                    return Err(ConfigError::Invalid {
                        path: p(),
                        key: "http.listen",
                        problem: "not an address and port like 127.0.0.1:8480",
                    });
                };
                if !addr.ip().is_loopback() && !h.tls {
                    return Err(ConfigError::Invalid {
                        path: p(),
                        key: "http.listen",
                        problem: "must be a loopback address (127.0.0.1 or ::1) unless \
                                  `http.tls = true`",
                    });
                }
                Some(addr)
            }
        };
        if file.liveness.stale_after_intervals == 0 {
            return Err(ConfigError::Zero {
                path: p(),
                key: "liveness.stale_after_intervals",
            });
        }
        for w in &file.webhooks {
            if !(w.url.starts_with("http://") || w.url.starts_with("https://"))
                || reqwest::Url::parse(&w.url).is_err()
            {
                return Err(ConfigError::Invalid {
                    path: p(),
                    key: "webhooks.url",
                    problem: "not an http:// or https:// URL",
                });
            }
            if w.secret_file.as_os_str().is_empty() {
                return Err(ConfigError::Empty {
                    path: p(),
                    key: "webhooks.secret_file",
                });
            }
            if w.events.is_empty()
                || w.events
                    .iter()
                    .any(|e| !WEBHOOK_EVENTS.contains(&e.as_str()))
            {
                return Err(ConfigError::Invalid {
                    path: p(),
                    key: "webhooks.events",
                    problem: "a non-empty list of verdict_changed, revoked, stale",
                });
            }
        }
        let st = &file.storage;
        let storage = match (st.backend, &st.url) {
            (StorageBackend::Sqlite, None) if st.pool_size.is_none() => Storage::Sqlite,
            (StorageBackend::Sqlite, _) => {
                return Err(ConfigError::Invalid {
                    path: p(),
                    key: "storage.url",
                    problem: "`url` and `pool_size` are for `backend = \"postgres\"`",
                })
            }
            (StorageBackend::Postgres, None) => {
                return Err(ConfigError::Invalid {
                    path: p(),
                    key: "storage.url",
                    problem: "`backend = \"postgres\"` needs a postgresql:// connection URL",
                })
            }
            (StorageBackend::Postgres, Some(url)) => Storage::Postgres {
                url: PostgresUrl::parse(&url.0).map_err(|problem| ConfigError::Invalid {
                    path: p(),
                    key: "storage.url",
                    problem,
                })?,
                pool_size: match st.pool_size.unwrap_or(DEFAULT_POOL_SIZE) {
                    0 => {
                        return Err(ConfigError::Zero {
                            path: p(),
                            key: "storage.pool_size",
                        })
                    }
                    n => n,
                },
            },
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let abs = |rel: &Path| base.join(rel);
        Ok(FleetConfig {
            source: p(),
            broker_host: file.broker.host.clone(),
            broker_port: file.broker.port,
            broker_server_name: file.broker.server_name.clone(),
            broker_reload_pid_file: file.broker.reload_pid_file.as_deref().map(abs),
            ca_cert: abs(&file.pki.ca_cert),
            ca_key: abs(&file.pki.ca_key),
            client_cert: abs(&file.pki.client_cert),
            client_key: abs(&file.pki.client_key),
            crl: abs(&file.pki.crl),
            state_dir: abs(&file.storage.state_dir),
            storage,
            trust_roots_dir: abs(&file.storage.trust_roots_dir),
            policies_dir: abs(&file.storage.policies_dir),
            releases_dir: abs(file
                .storage
                .releases_dir
                .clone()
                .unwrap_or_else(|| default_releases_dir(&file.storage.policies_dir))
                .as_path()),
            challenge_interval: Duration::from_secs(c.interval_secs),
            challenge_jitter: Duration::from_secs(c.jitter_secs),
            nonce_lifetime: Duration::from_secs(c.nonce_lifetime_secs),
            revoke_on_untrusted: file.verdict.revoke_on_untrusted,
            default_policy: file.verdict.default_policy.clone(),
            challenge_pcrs,
            http_listen,
            http_tls: file.http.as_ref().is_some_and(|h| h.tls),
            stale_after_intervals: file.liveness.stale_after_intervals,
            webhooks: file
                .webhooks
                .iter()
                .map(|w| WebhookConfig {
                    url: w.url.clone(),
                    secret_file: abs(&w.secret_file),
                    events: w.events.clone(),
                })
                .collect(),
            ima_runtime_policy: file.ima.runtime_policy.as_deref().map(abs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fleet.example.toml")
    }

    #[test]
    fn example_file_loads_with_every_key() {
        let path = example_path();
        let cfg = FleetConfig::load(&path).unwrap();
        let base = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(cfg.broker_host, "localhost");
        assert_eq!(cfg.broker_port, 8883);
        assert_eq!(cfg.broker_server_name, "localhost");
        assert_eq!(cfg.broker_reload_pid_file, Some(base.join("mosquitto.pid")));
        assert_eq!(cfg.ca_cert, base.join("ca.crt"));
        assert_eq!(cfg.ca_key, base.join("ca.key"));
        assert_eq!(cfg.client_cert, base.join("fleet.crt"));
        assert_eq!(cfg.client_key, base.join("fleet.key"));
        assert_eq!(cfg.crl, base.join("crl.pem"));
        assert_eq!(cfg.state_dir, base.join("state"));
        assert_eq!(cfg.trust_roots_dir, base.join("trust-roots"));
        assert_eq!(cfg.policies_dir, base.join("policies"));
        assert_eq!(cfg.challenge_interval, Duration::from_secs(300));
        assert_eq!(cfg.challenge_jitter, Duration::from_secs(30));
        assert_eq!(cfg.nonce_lifetime, Duration::from_secs(120));
        assert!(!cfg.revoke_on_untrusted);
        assert_eq!(cfg.storage, Storage::Sqlite);
        // Every key of the schema appears in the example: it round-trips to the same file.
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed: ConfigFile = toml::from_str(&text).unwrap();
        let reparsed: toml::Table = toml::from_str(&parsed.to_toml().unwrap()).unwrap();
        let original: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(reparsed, original);
    }

    #[test]
    fn a_challenge_selection_agents_cannot_parse_is_refused() {
        // The fleet sends `challenge.pcrs` to every agent as written; with a space after the
        // comma it used to pass here and then fail in every agent.
        let example = std::fs::read_to_string(example_path()).unwrap();
        let path = Path::new("/etc/vouch/fleet.toml");
        for bad in ["sha256:0, 7", "sha256: 0-9", "sha256:0-9 "] {
            let text = example.replace("pcrs = \"sha256:0-9\"", &format!("pcrs = \"{bad}\""));
            assert_ne!(text, example);
            assert!(
                matches!(
                    FleetConfig::from_toml(&text, path),
                    Err(ConfigError::Invalid {
                        key: "challenge.pcrs",
                        ..
                    })
                ),
                "{bad:?} accepted"
            );
        }
        let text = example.replace("pcrs = \"sha256:0-9\"", "pcrs = \"sha256:0,7+sha1:0\"");
        assert!(FleetConfig::from_toml(&text, path).is_ok());
    }

    #[test]
    fn unknown_key_is_refused_by_name() {
        let text = std::fs::read_to_string(example_path())
            .unwrap()
            .replace("jitter_secs = 30", "jitter_secs = 30\njiter_secs = 3");
        let path = Path::new("/etc/vouch/fleet.toml");
        let err = FleetConfig::from_toml(&text, path).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }));
        let msg = vouch_attest::errors::chain(&err);
        assert!(msg.contains("jiter_secs"), "{msg}");
        assert!(msg.contains("/etc/vouch/fleet.toml"), "{msg}");
    }

    #[test]
    fn missing_and_bad_values_name_their_key() {
        let text = std::fs::read_to_string(example_path()).unwrap();
        let path = Path::new("/x/fleet.toml");
        let no_crl = text.replace("crl = \"crl.pem\"", "");
        let msg = vouch_attest::errors::chain(&FleetConfig::from_toml(&no_crl, path).unwrap_err());
        assert!(msg.contains("crl"), "{msg}");
        let zero = text.replace("interval_secs = 300", "interval_secs = 0");
        let err = FleetConfig::from_toml(&zero, path).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Zero {
                    key: "challenge.interval_secs",
                    ..
                }
            ),
            "{err}"
        );
        let jitter = text.replace("jitter_secs = 30", "jitter_secs = 300");
        let err = FleetConfig::from_toml(&jitter, path).unwrap_err();
        assert!(
            matches!(err, ConfigError::JitterTooLarge { jitter: 300, .. }),
            "{err}"
        );
        let empty = text.replace("host = \"localhost\"", "host = \"\"");
        let err = FleetConfig::from_toml(&empty, path).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Empty {
                    key: "broker.host",
                    ..
                }
            ),
            "{err}"
        );
        let port = text.replace("port = 8883", "port = 70000");
        let msg = vouch_attest::errors::chain(&FleetConfig::from_toml(&port, path).unwrap_err());
        assert!(msg.contains("port") || msg.contains("70000"), "{msg}");
    }

    #[test]
    fn storage_backend_is_sqlite_by_default_or_postgres_with_a_url() {
        let base = "[broker]\nhost = \"h\"\nport = 1\nserver_name = \"h\"\n\
                    [pki]\nca_cert = \"a\"\nca_key = \"k\"\nclient_cert = \"c\"\n\
                    client_key = \"ck\"\ncrl = \"crl\"\n\
                    [storage]\nstate_dir = \"s\"\ntrust_roots_dir = \"t\"\npolicies_dir = \"p\"\n";
        let load =
            |extra: &str| FleetConfig::from_toml(&format!("{base}{extra}"), Path::new("/d/f"));
        assert_eq!(load("").unwrap().storage, Storage::Sqlite);
        assert_eq!(
            load("backend = \"sqlite\"\n").unwrap().storage,
            Storage::Sqlite
        );
        let url = "postgresql://vouch:s3cret@db.example:5433/fleet?sslmode=disable&password=other";
        let cfg = load(&format!("backend = \"postgres\"\nurl = \"{url}\"\n")).unwrap();
        let Storage::Postgres {
            url: got,
            pool_size,
        } = &cfg.storage
        else {
            panic!("{:?}", cfg.storage);
        };
        assert_eq!(*pool_size, DEFAULT_POOL_SIZE);
        // The password is never shown: not by Debug (of the whole configuration), Display or
        // in the redacted form; the client configuration has it.
        for shown in [format!("{cfg:?}"), got.to_string(), got.redacted()] {
            assert!(
                !shown.contains("s3cret") && !shown.contains("other"),
                "{shown}"
            );
            assert!(shown.contains("db.example:5433/fleet"), "{shown}");
        }
        assert_eq!(
            got.client_config().unwrap().get_password(),
            Some(&b"other"[..])
        );
        let cfg = load(&format!(
            "backend = \"postgres\"\nurl = \"{url}\"\npool_size = 9\n"
        ))
        .unwrap();
        assert!(matches!(
            cfg.storage,
            Storage::Postgres { pool_size: 9, .. }
        ));

        // The example's commented PostgreSQL lines are valid.
        let example = std::fs::read_to_string(example_path())
            .unwrap()
            .replace("backend = \"sqlite\"", "backend = \"postgres\"")
            .replace("# url = \"postgresql", "url = \"postgresql")
            .replace("# pool_size = ", "pool_size = ");
        let cfg = FleetConfig::from_toml(&example, &example_path()).unwrap();
        assert!(matches!(
            cfg.storage,
            Storage::Postgres { pool_size: 4, .. }
        ));

        let problem = |extra: &str| match load(extra) {
            Err(e) => vouch_attest::errors::chain(&e),
            Ok(c) => panic!("{extra} accepted: {c:?}"),
        };
        let e = problem("backend = \"postgres\"\n");
        assert!(
            e.contains("storage.url") && e.contains("needs a postgresql://"),
            "{e}"
        );
        let e = problem(&format!("url = \"{url}\"\n"));
        assert!(
            e.contains("storage.url") && e.contains("for `backend"),
            "{e}"
        );
        let e = problem(&format!(
            "backend = \"postgres\"\nurl = \"{url}\"\npool_size = 0\n"
        ));
        assert!(e.contains("storage.pool_size"), "{e}");
        let e = problem("backend = \"mysql\"\n");
        assert!(e.contains("mysql"), "{e}");
        // A URL line that is not even TOML is not quoted in the error.
        let e = problem("backend = \"postgres\"\nurl = \"postgresql://u:pw-x\"y@h/db\"\n");
        assert!(e.contains("storage.url") && !e.contains("pw-x"), "{e}");
        let e = problem("backend = \"postgres\"\nurl = \"mysql://u:pw@h/db\"\n");
        assert!(
            e.contains("not a postgresql:// connection URL") && !e.contains("pw"),
            "{e}"
        );
        let e = problem("backend = \"postgres\"\nurl = \"postgresql://h/db\"\nuser = \"x\"\n");
        assert!(e.contains("user"), "{e}");
    }

    #[test]
    fn optional_sections_default_and_absolute_paths_stay() {
        let text = "[broker]\nhost = \"h\"\nport = 1\nserver_name = \"h\"\n\
                    [pki]\nca_cert = \"/abs/ca.crt\"\nca_key = \"k\"\nclient_cert = \"c\"\n\
                    client_key = \"ck\"\ncrl = \"crl\"\n\
                    [storage]\nstate_dir = \"s\"\ntrust_roots_dir = \"t\"\npolicies_dir = \"p\"\n";
        let cfg = FleetConfig::from_toml(text, Path::new("/d/fleet.toml")).unwrap();
        assert_eq!(cfg.ca_cert, PathBuf::from("/abs/ca.crt"));
        assert_eq!(cfg.ca_key, PathBuf::from("/d/k"));
        assert_eq!(cfg.broker_reload_pid_file, None);
        assert_eq!(cfg.challenge_interval, Duration::from_secs(300));
        assert!(!cfg.revoke_on_untrusted);
    }

    #[test]
    fn generated_config_loads() {
        let text = ConfigFile::for_new_fleet(18883).to_toml().unwrap();
        let cfg = FleetConfig::from_toml(&text, Path::new("/srv/f/fleet.toml")).unwrap();
        assert_eq!(cfg.broker_port, 18883);
        assert_eq!(cfg.crl, PathBuf::from("/srv/f/crl.pem"));
        assert_eq!(
            cfg.broker_reload_pid_file,
            Some(PathBuf::from("/srv/f/mosquitto.pid"))
        );
    }

    #[test]
    fn http_liveness_and_webhook_keys_are_checked() {
        let text = std::fs::read_to_string(example_path()).unwrap();
        let path = Path::new("/x/fleet.toml");
        let cfg = FleetConfig::from_toml(&text, path).unwrap();
        assert_eq!(cfg.http_listen, Some("127.0.0.1:8480".parse().unwrap()));
        assert!(!cfg.http_tls);
        assert_eq!(cfg.stale_after_intervals, 3);
        let remote = text.replace("listen = \"127.0.0.1:8480\"", "listen = \"0.0.0.0:8480\"");
        let err = FleetConfig::from_toml(&remote, path).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    key: "http.listen",
                    ..
                }
            ),
            "{err}"
        );
        let remote_tls = remote.replace("tls = false", "tls = true");
        assert!(FleetConfig::from_toml(&remote_tls, path).unwrap().http_tls);
        let bad = text.replace("listen = \"127.0.0.1:8480\"", "listen = \"localhost\"");
        assert!(FleetConfig::from_toml(&bad, path).is_err());
        let zero = text.replace("stale_after_intervals = 3", "stale_after_intervals = 0");
        assert!(matches!(
            FleetConfig::from_toml(&zero, path).unwrap_err(),
            ConfigError::Zero {
                key: "liveness.stale_after_intervals",
                ..
            }
        ));
        let hook = |url: &str, events: &str| {
            format!("{text}\n[[webhooks]]\nurl = \"{url}\"\nsecret_file = \"k\"\n{events}")
        };
        let ok = FleetConfig::from_toml(&hook("https://h.example/x", ""), path).unwrap();
        assert_eq!(ok.webhooks[0].secret_file, PathBuf::from("/x/k"));
        assert_eq!(ok.webhooks[0].events.len(), 3);
        for (url, events, key) in [
            ("ftp://h/x", "", "webhooks.url"),
            ("https://", "", "webhooks.url"),
            ("https://h/x", "events = [\"verdict\"]", "webhooks.events"),
            ("https://h/x", "events = []", "webhooks.events"),
        ] {
            let err = FleetConfig::from_toml(&hook(url, events), path).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { key: k, .. } if *k == key),
                "{url} {events}: {err}"
            );
        }
    }

    #[test]
    fn unreadable_file_names_the_path() {
        let err = FleetConfig::load(Path::new("/nonexistent/fleet.toml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/fleet.toml"));
    }
}
