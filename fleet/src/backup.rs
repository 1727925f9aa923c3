//! Fleet backups (`vouch-fleet backup` / `restore`): what goes into one, and how a fleet
//! directory is rebuilt from it. The file format and the key shares are
//! [`vouch_attest::backup`].
//!
//! A backup holds, all read into memory and encrypted there (nothing in clear reaches the disk):
//! - `registry.db`: a consistent snapshot of the registry, taken with SQLite's online backup API
//!   into an in-memory database while `serve` keeps writing, then serialized;
//! - `fleet/<path>`: every regular file of the fleet directory (the one holding the
//!   configuration): CA, broker and client keys and certificates, CRL state (`issued`,
//!   `revoked`, `crlnumber`), broker configuration and ACL, `fleet.toml`, the escrow key
//!   (`state/escrow.key.pem`), seal-policy keys, policies, trust roots. Left out: the live
//!   registry files (the snapshot replaces them), `mosquitto.pid` and the broker's
//!   persistence directory `broker/` (queued messages, re-created empty);
//! - `ext/<key>/<path>`: what a configuration key (`ca_key`, `state_dir`, ...) names outside the
//!   fleet directory (e.g. a packaged CA key in /etc/vouch).
//!
//! [`restore`] writes the files into a new directory, points `fleet.toml` at it (absolute paths
//! of the old directory and external paths become relative ones), optionally on new broker
//! ports, and writes a new `mosquitto.conf` for the new directory and ports.

use crate::config::{ConfigError, ConfigFile, FleetConfig};
use crate::pki::broker::{render_mosquitto_conf, BrokerSettings};
use crate::pki::files::{self, FileError};
use crate::pki::layout::FleetPaths;
use crate::registry::DB_FILE;
use rusqlite::{Connection, DatabaseName, OpenFlags};
use std::path::{Component, Path, PathBuf};
use vouch_attest::backup::{Contents, Entry, Manifest, FORMAT};
use zeroize::Zeroizing;

/// Largest single file taken into a backup.
pub const MAX_FILE: u64 = 256 << 20;
/// The entry holding the registry snapshot.
pub const REGISTRY_ENTRY: &str = "registry.db";
const DIR_PREFIX: &str = "fleet/";
const EXT_PREFIX: &str = "ext/";

/// Why making or restoring a backup failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupRunError {
    /// The configuration could not be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file could not be read or written.
    #[error(transparent)]
    File(#[from] FileError),
    /// A directory could not be listed.
    #[error("cannot list {path}")]
    List {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The registry is in PostgreSQL: its backup is the database's own (`pg_dump`).
    #[error(
        "the registry is in PostgreSQL ({location}); vouch-fleet backup only snapshots an SQLite \
         registry: back the database up with pg_dump (fleet/README.md, \"Registry on \
         PostgreSQL\") and keep the fleet directory's files with your file backups"
    )]
    PostgresRegistry {
        /// The connection URL without its password.
        location: String,
    },
    /// The registry snapshot failed.
    #[error("registry snapshot of {path} failed")]
    Snapshot {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// A file name is not valid UTF-8 (backups name files in UTF-8).
    #[error("{0} has a name that is not UTF-8")]
    NotUtf8(PathBuf),
    /// The backup's format is not usable.
    #[error(transparent)]
    Format(#[from] vouch_attest::backup::BackupError),
    /// The target directory holds files.
    #[error("{dir} already exists and is not empty; pass --force to restore over it")]
    NotEmpty { dir: PathBuf },
    /// The target directory could not be inspected or cleared.
    #[error("cannot prepare {dir}")]
    Prepare {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The backup has no configuration file or no registry.
    #[error("the backup holds no {0}")]
    Missing(&'static str),
    /// The restored configuration could not be written back as TOML.
    #[error("cannot write the restored configuration")]
    Toml(#[from] toml::ser::Error),
}

/// The configuration keys naming files or directories, and the name each gets in a restored
/// fleet directory when it lay outside the old one.
const PATH_KEYS: &[(&str, &str, bool)] = &[
    ("ca_cert", "ca.crt", false),
    ("ca_key", "ca.key", false),
    ("client_cert", "fleet.crt", false),
    ("client_key", "fleet.key", false),
    ("crl", "crl.pem", false),
    ("state_dir", "state", true),
    ("trust_roots_dir", "trust-roots", true),
    ("policies_dir", "policies", true),
    ("releases_dir", "releases", true),
];

fn config_path(cfg: &FleetConfig, key: &str) -> PathBuf {
    match key {
        "ca_cert" => cfg.ca_cert.clone(),
        "ca_key" => cfg.ca_key.clone(),
        "client_cert" => cfg.client_cert.clone(),
        "client_key" => cfg.client_key.clone(),
        "crl" => cfg.crl.clone(),
        "state_dir" => cfg.state_dir.clone(),
        "trust_roots_dir" => cfg.trust_roots_dir.clone(),
        "releases_dir" => cfg.releases_dir.clone(),
        _ => cfg.policies_dir.clone(),
    }
}

fn file_path_mut<'a>(file: &'a mut ConfigFile, key: &str) -> &'a mut PathBuf {
    match key {
        "ca_cert" => &mut file.pki.ca_cert,
        "ca_key" => &mut file.pki.ca_key,
        "client_cert" => &mut file.pki.client_cert,
        "client_key" => &mut file.pki.client_key,
        "crl" => &mut file.pki.crl,
        "state_dir" => &mut file.storage.state_dir,
        "trust_roots_dir" => &mut file.storage.trust_roots_dir,
        "releases_dir" => {
            let default = crate::config::default_releases_dir(&file.storage.policies_dir);
            file.storage.releases_dir.get_or_insert(default)
        }
        _ => &mut file.storage.policies_dir,
    }
}

/// A snapshot of the registry database at `db` (SQLite online backup into memory, then
/// serialized): consistent while other connections write.
pub fn snapshot_registry(db: &Path) -> Result<Zeroizing<Vec<u8>>, BackupRunError> {
    let err = |source| BackupRunError::Snapshot {
        path: db.to_path_buf(),
        source,
    };
    let src = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    src.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(err)?;
    let mut mem = Connection::open_in_memory().map_err(err)?;
    {
        let b = rusqlite::backup::Backup::new(&src, &mut mem).map_err(err)?;
        // All pages in one step (SQLite treats the huge count as "all"): the copy is one read
        // transaction, so it is consistent while `serve` writes.
        b.run_to_completion(i32::MAX, std::time::Duration::from_millis(50), None)
            .map_err(err)?;
    }
    let data = mem.serialize(DatabaseName::Main).map_err(err)?;
    Ok(Zeroizing::new(data.to_vec()))
}

fn utf8(path: &Path) -> Result<&str, BackupRunError> {
    path.to_str()
        .ok_or_else(|| BackupRunError::NotUtf8(path.to_path_buf()))
}

/// Every regular file under `root` (relative `/`-joined names), skipping `skip(relative)`.
fn walk(
    root: &Path,
    skip: &dyn Fn(&Path) -> bool,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<(), BackupRunError> {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let list_err = |source| BackupRunError::List {
            path: dir.clone(),
            source,
        };
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map_err(list_err)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(list_err)?;
        names.sort();
        for name in names {
            let r = rel.join(&name);
            if skip(&r) {
                continue;
            }
            let full = root.join(&r);
            let meta = std::fs::symlink_metadata(&full).map_err(|source| BackupRunError::List {
                path: full.clone(),
                source,
            })?;
            if meta.is_dir() {
                stack.push(r);
            } else if meta.is_file() {
                out.push((utf8(&r)?.to_string(), full));
            }
        }
    }
    Ok(())
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o600)
}

/// Refuses a fleet whose registry is in PostgreSQL: a backup holds an SQLite snapshot, and a
/// PostgreSQL database is backed up (and replicated) with PostgreSQL's own tools.
pub fn require_sqlite(cfg: &FleetConfig) -> Result<(), BackupRunError> {
    match &cfg.storage {
        crate::config::Storage::Sqlite => Ok(()),
        crate::config::Storage::Postgres { url, .. } => Err(BackupRunError::PostgresRegistry {
            location: url.redacted(),
        }),
    }
}

/// What [`collect`] gathered: the manifest (sizes and hashes still to fill in) and the data.
#[derive(Debug)]
pub struct Collected {
    /// The manifest.
    pub manifest: Manifest,
    /// Each entry's bytes, in manifest order.
    pub data: Vec<Zeroizing<Vec<u8>>>,
}

/// Reads everything a backup of the fleet configured by `config` holds into memory. `ca_key`
/// overrides where the CA key is read from (a systemd credential of the backup service).
pub fn collect(config: &Path, ca_key: Option<&Path>) -> Result<Collected, BackupRunError> {
    let mut cfg = FleetConfig::load(config)?;
    require_sqlite(&cfg)?;
    if let Some(k) = ca_key {
        cfg.ca_key = k.to_path_buf();
    }
    let dir = cfg
        .source
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let dir = std::fs::canonicalize(&dir).map_err(|source| BackupRunError::List {
        path: dir.clone(),
        source,
    })?;
    let db = cfg.state_dir.join(DB_FILE);
    let live_db: Vec<PathBuf> = ["", "-wal", "-shm", "-journal"]
        .iter()
        .map(|s| PathBuf::from(format!("{}{s}", db.display())))
        .collect();
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let live_db: Vec<PathBuf> = live_db
        .iter()
        .map(|p| {
            p.parent()
                .map(|d| canon(d).join(p.file_name().unwrap_or_default()))
                .unwrap_or_else(|| p.clone())
        })
        .collect();
    let skip = |rel: &Path| {
        rel == Path::new("mosquitto.pid")
            || rel == Path::new("broker")
            || live_db.iter().any(|l| *l == dir.join(rel))
    };
    let mut files = Vec::new();
    walk(&dir, &skip, &mut files)?;
    let mut names: Vec<(String, PathBuf)> = files
        .into_iter()
        .map(|(n, p)| (format!("{DIR_PREFIX}{n}"), p))
        .collect();
    let mut external = std::collections::BTreeMap::new();
    for &(key, _, is_dir) in PATH_KEYS {
        let p = canon(&config_path(&cfg, key));
        if p.starts_with(&dir) {
            continue;
        }
        external.insert(key.to_string(), utf8(&p)?.to_string());
        if is_dir {
            let mut inner = Vec::new();
            if p.is_dir() {
                walk(
                    &p,
                    &|r: &Path| live_db.iter().any(|l| *l == p.join(r)),
                    &mut inner,
                )?;
            }
            names.extend(
                inner
                    .into_iter()
                    .map(|(n, f)| (format!("{EXT_PREFIX}{key}/{n}"), f)),
            );
        } else {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| key.to_string());
            names.push((format!("{EXT_PREFIX}{key}/{name}"), p));
        }
    }
    let mut entries = Vec::with_capacity(names.len() + 1);
    let mut data = Vec::with_capacity(names.len() + 1);
    entries.push(Entry {
        name: REGISTRY_ENTRY.into(),
        size: 0,
        sha256: String::new(),
        mode: 0o600,
    });
    data.push(snapshot_registry(&db)?);
    let mut skipped = Vec::new();
    for (name, path) in names {
        let bytes = match files::read_bounded(&path, MAX_FILE) {
            Ok(b) => Zeroizing::new(b),
            // Only files of the fleet directory may be left out, and only when unreadable.
            Err(FileError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::PermissionDenied
                    && name.starts_with(DIR_PREFIX) =>
            {
                skipped.push(utf8(&path)?.to_string());
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        entries.push(Entry {
            name,
            size: 0,
            sha256: String::new(),
            mode: mode_of(&path),
        });
        data.push(bytes);
    }
    let config_name = cfg
        .source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "fleet.toml".into());
    Ok(Collected {
        manifest: Manifest {
            format: FORMAT.into(),
            created_ms: crate::registry::now_ms(),
            source_dir: utf8(&dir)?.to_string(),
            made_by: format!("vouch-fleet {}", env!("CARGO_PKG_VERSION")),
            config: config_name,
            external,
            skipped,
            entries,
        },
        data,
    })
}

/// Options of [`restore`].
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The new fleet directory.
    pub dir: PathBuf,
    /// New device listener port (default: the old one).
    pub broker_port: Option<u16>,
    /// New enrollment listener port (default: the old one).
    pub enroll_port: Option<u16>,
    /// Restore into a non-empty directory (its files are removed first).
    pub force: bool,
}

/// What [`restore`] wrote.
#[derive(Debug)]
pub struct Restored {
    /// The restored configuration file.
    pub config: PathBuf,
    /// Files written.
    pub files: usize,
    /// The broker ports of the restored `mosquitto.conf`, if it has one.
    pub ports: Option<(u16, u16)>,
}

fn prepare(dir: &Path, force: bool) -> Result<(), BackupRunError> {
    let err = |source| BackupRunError::Prepare {
        dir: dir.to_path_buf(),
        source,
    };
    match std::fs::read_dir(dir) {
        Ok(mut it) => {
            if it.next().is_some() {
                if !force {
                    return Err(BackupRunError::NotEmpty {
                        dir: dir.to_path_buf(),
                    });
                }
                for e in std::fs::read_dir(dir).map_err(err)? {
                    let p = e.map_err(err)?.path();
                    if std::fs::symlink_metadata(&p).map_err(err)?.is_dir() {
                        std::fs::remove_dir_all(&p).map_err(err)?;
                    } else {
                        std::fs::remove_file(&p).map_err(err)?;
                    }
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    Ok(files::create_private_dir(dir)?)
}

fn write_entry(path: &Path, data: &[u8], mode: u32) -> Result<(), BackupRunError> {
    if let Some(parent) = path.parent() {
        if !parent.is_dir() {
            files::create_private_dir(parent)?;
        }
    }
    Ok(files::write_atomic(path, data, mode & 0o777)?)
}

/// `p` relative to `old` when it lies inside it (a lexical check).
fn inside(p: &Path, old: &Path) -> Option<PathBuf> {
    let rel = p.strip_prefix(old).ok()?;
    rel.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| rel.to_path_buf())
}

/// The settings of an old `mosquitto.conf` that are not about the directory: the dynsec plugin,
/// `user root`, the two listener ports.
fn old_broker_settings(conf: &str) -> (Option<PathBuf>, bool, Vec<u16>) {
    let mut plugin = None;
    let mut root = false;
    let mut ports = Vec::new();
    for line in conf.lines() {
        let mut w = line.split_whitespace();
        match (w.next(), w.next()) {
            (Some("plugin"), Some(p)) => plugin = Some(PathBuf::from(p)),
            (Some("user"), Some("root")) => root = true,
            (Some("listener"), Some(p)) => ports.extend(p.parse::<u16>().ok()),
            _ => {}
        }
    }
    (plugin, root, ports)
}

/// Rebuilds a fleet directory from a decrypted backup.
pub fn restore(contents: &Contents, opts: &RestoreOptions) -> Result<Restored, BackupRunError> {
    let m = &contents.manifest;
    let config_entry = format!("{DIR_PREFIX}{}", m.config);
    let config_text = contents
        .by_name(&config_entry)
        .ok_or(BackupRunError::Missing("configuration file"))?;
    let registry = contents
        .by_name(REGISTRY_ENTRY)
        .ok_or(BackupRunError::Missing("registry snapshot"))?;
    let config_path = opts.dir.join(&m.config);
    let mut file: ConfigFile =
        toml::from_str(&String::from_utf8_lossy(config_text)).map_err(|source| {
            ConfigError::Parse {
                path: config_path.clone(),
                source,
            }
        })?;
    prepare(&opts.dir, opts.force)?;
    let dir = std::fs::canonicalize(&opts.dir).map_err(|source| BackupRunError::Prepare {
        dir: opts.dir.clone(),
        source,
    })?;
    let old = PathBuf::from(&m.source_dir);
    let mut written = 0;
    // The fleet directory's own files, then what lay outside it.
    for (i, e) in m.entries.iter().enumerate() {
        if let Some(rel) = e.name.strip_prefix(DIR_PREFIX) {
            write_entry(&dir.join(rel), contents.data(i), e.mode)?;
            written += 1;
        }
    }
    for &(key, new_name, is_dir) in PATH_KEYS {
        let target = file_path_mut(&mut file, key);
        if m.external.contains_key(key) {
            let prefix = format!("{EXT_PREFIX}{key}/");
            for (i, e) in m.entries.iter().enumerate() {
                if let Some(rest) = e.name.strip_prefix(&prefix) {
                    // A file key holds one file: it takes the standard name.
                    let rel = if is_dir {
                        dir.join(new_name).join(rest)
                    } else {
                        dir.join(new_name)
                    };
                    write_entry(&rel, contents.data(i), e.mode)?;
                    written += 1;
                }
            }
            *target = PathBuf::from(new_name);
        } else if target.is_absolute() {
            if let Some(rel) = inside(target, &old) {
                *target = rel;
            }
        }
    }
    if let Some(pid) = file.broker.reload_pid_file.as_mut() {
        if let Some(rel) = inside(pid, &old) {
            *pid = rel;
        }
    }
    // The old broker configuration: its ports and plugin, re-rendered for the new directory.
    let paths = FleetPaths::new(&dir);
    let mut ports = None;
    let conf_path = paths.mosquitto_conf();
    if let Ok(old_conf) = std::fs::read_to_string(&conf_path) {
        let (plugin, run_as_root, old_ports) = old_broker_settings(&old_conf);
        if let Some(dynsec_plugin) = plugin {
            let port = opts
                .broker_port
                .or(old_ports.first().copied())
                .unwrap_or(file.broker.port);
            let enroll_port = opts
                .enroll_port
                .or(old_ports.get(1).copied())
                .unwrap_or(port);
            let settings = BrokerSettings {
                port,
                enroll_port,
                dynsec_plugin,
                run_as_root,
            };
            files::write_atomic(
                &conf_path,
                render_mosquitto_conf(&paths, &settings).as_bytes(),
                0o644,
            )?;
            files::create_private_dir(&paths.broker_dir())?;
            ports = Some((port, enroll_port));
        }
    }
    if let Some(p) = opts.broker_port {
        file.broker.port = p;
    }
    files::write_atomic(&config_path, file.to_toml()?.as_bytes(), 0o600)?;
    let cfg = FleetConfig::load(&config_path)?;
    files::create_private_dir(&cfg.state_dir)?;
    files::write_atomic(&cfg.state_dir.join(DB_FILE), registry, 0o600)?;
    Ok(Restored {
        config: config_path,
        files: written + 1,
        ports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{AuditKind, Registry};
    use vouch_attest::backup::{build_payload, open, parse_payload, seal};

    /// A fleet directory with its CA key and state directory elsewhere (as a packaged layout
    /// has them), the broker configuration of `init`, and a registry with audit rows.
    fn fleet(root: &Path) -> PathBuf {
        let dir = root.join("fleet");
        let ext = root.join("elsewhere");
        std::fs::create_dir_all(dir.join("policies")).unwrap();
        std::fs::create_dir_all(ext.join("state")).unwrap();
        let mut file = ConfigFile::for_new_fleet(18883);
        file.pki.ca_key = ext.join("fleet-ca.key");
        file.storage.state_dir = ext.join("state");
        file.pki.crl = dir.join("crl.pem");
        std::fs::write(dir.join("fleet.toml"), file.to_toml().unwrap()).unwrap();
        std::fs::write(ext.join("fleet-ca.key"), b"CA KEY").unwrap();
        std::fs::write(ext.join("state/escrow.key.pem"), b"ESCROW KEY").unwrap();
        std::fs::write(dir.join("policies/a.toml"), b"policy").unwrap();
        std::fs::write(dir.join("crl.pem"), b"crl").unwrap();
        std::fs::write(dir.join("mosquitto.pid"), b"1").unwrap();
        std::fs::create_dir_all(dir.join("broker")).unwrap();
        std::fs::write(dir.join("broker/mosquitto.db"), b"queued").unwrap();
        let conf = render_mosquitto_conf(
            &FleetPaths::new(&dir),
            &BrokerSettings {
                port: 18883,
                enroll_port: 18884,
                dynsec_plugin: "/usr/lib/plugin.so".into(),
                run_as_root: true,
            },
        );
        std::fs::write(dir.join("mosquitto.conf"), conf).unwrap();
        let mut reg = Registry::open(&ext.join("state")).unwrap();
        for i in 0..5 {
            reg.audit(AuditKind::Backup, None, &format!("row {i}"), i)
                .unwrap();
        }
        dir.join("fleet.toml")
    }

    #[test]
    fn collect_and_restore_move_every_path_into_the_new_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let config = fleet(tmp.path());
        let mut c = collect(&config, None).unwrap();
        let names: Vec<&str> = c.manifest.entries.iter().map(|e| e.name.as_str()).collect();
        for want in [
            "registry.db",
            "fleet/fleet.toml",
            "fleet/policies/a.toml",
            "fleet/crl.pem",
            "ext/ca_key/fleet-ca.key",
            "ext/state_dir/escrow.key.pem",
        ] {
            assert!(names.contains(&want), "{want} not in {names:?}");
        }
        for never in ["fleet/mosquitto.pid", "fleet/broker/mosquitto.db"] {
            assert!(!names.contains(&never), "{never} in {names:?}");
        }
        assert!(
            !names.iter().any(|n| n.contains("registry.db-")),
            "{names:?}"
        );
        assert_eq!(c.manifest.external.len(), 2, "{:?}", c.manifest.external);
        let payload = build_payload(&mut c.manifest, &c.data).unwrap();
        let (_, _, key) = vouch_attest::backup::keygen(&mut rand::rngs::OsRng).unwrap();
        let sealed = seal(&key.public_key(), &payload, &mut rand::rngs::OsRng).unwrap();
        let contents = open(&sealed, &key).unwrap();

        let target = tmp.path().join("restored");
        let opts = RestoreOptions {
            dir: target.clone(),
            broker_port: Some(28883),
            enroll_port: Some(28884),
            force: false,
        };
        let r = restore(&contents, &opts).unwrap();
        assert_eq!(r.ports, Some((28883, 28884)));
        let cfg = FleetConfig::load(&r.config).unwrap();
        let target = std::fs::canonicalize(&target).unwrap();
        assert_eq!(cfg.ca_key, target.join("ca.key"));
        assert_eq!(cfg.state_dir, target.join("state"));
        assert_eq!(cfg.crl, target.join("crl.pem"));
        assert_eq!(cfg.broker_port, 28883);
        assert_eq!(std::fs::read(&cfg.ca_key).unwrap(), b"CA KEY");
        assert_eq!(
            std::fs::read(cfg.state_dir.join("escrow.key.pem")).unwrap(),
            b"ESCROW KEY"
        );
        let conf = std::fs::read_to_string(target.join("mosquitto.conf")).unwrap();
        assert!(conf.contains("listener 28883 127.0.0.1"), "{conf}");
        assert!(conf.contains("listener 28884 127.0.0.1"), "{conf}");
        assert!(conf.contains("plugin /usr/lib/plugin.so") && conf.contains("user root"));
        assert!(!conf.contains(&tmp.path().join("fleet").display().to_string()));
        let reg = Registry::open(&cfg.state_dir).unwrap();
        let check = reg.verify_audit().unwrap();
        assert_eq!((check.rows, check.problem), (5, None));
        // A second restore into the same directory needs --force.
        assert!(matches!(
            restore(&contents, &opts),
            Err(BackupRunError::NotEmpty { .. })
        ));
        let forced = RestoreOptions {
            force: true,
            ..opts
        };
        restore(&contents, &forced).unwrap();
    }

    #[test]
    fn the_snapshot_is_consistent_while_another_connection_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let mut reg = Registry::open(&state).unwrap();
        reg.audit(AuditKind::Backup, None, "first", 0).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            let state = state.clone();
            std::thread::spawn(move || {
                let mut reg = Registry::open(&state).unwrap();
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    reg.audit(AuditKind::Backup, None, &"x".repeat(3000), n)
                        .unwrap();
                    n += 1;
                }
                n
            })
        };
        let mut rows = Vec::new();
        for _ in 0..5 {
            let snap = snapshot_registry(&state.join(DB_FILE)).unwrap();
            let dir = tmp.path().join(format!("snap{}", rows.len()));
            files::create_private_dir(&dir).unwrap();
            std::fs::write(dir.join(DB_FILE), &*snap).unwrap();
            let check = Registry::open(&dir).unwrap().verify_audit().unwrap();
            assert_eq!(check.problem, None);
            rows.push(check.rows);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(writer.join().unwrap() > 0);
        assert!(rows.windows(2).all(|w| w[0] <= w[1]), "{rows:?}");
    }

    #[test]
    fn a_payload_without_registry_or_configuration_is_refused() {
        let mut m = Manifest {
            format: FORMAT.into(),
            created_ms: 0,
            source_dir: "/old".into(),
            made_by: String::new(),
            config: "fleet.toml".into(),
            external: Default::default(),
            skipped: Vec::new(),
            entries: vec![Entry {
                name: "fleet/fleet.toml".into(),
                size: 0,
                sha256: String::new(),
                mode: 0o600,
            }],
        };
        let text = ConfigFile::for_new_fleet(1).to_toml().unwrap();
        let p = build_payload(&mut m, &[Zeroizing::new(text.into_bytes())]).unwrap();
        let c = parse_payload(p).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let opts = RestoreOptions {
            dir: tmp.path().join("d"),
            broker_port: None,
            enroll_port: None,
            force: false,
        };
        assert!(matches!(
            restore(&c, &opts),
            Err(BackupRunError::Missing("registry snapshot"))
        ));
        assert!(!tmp.path().join("d").exists(), "nothing written");
    }
}
