//! `/etc/vouch/volumes.toml`: the volumes `vouch-agent volume unlock --all` maps at boot.
//!
//! ```toml
//! [[volume]]
//! name = "data"                 # /dev/mapper/data
//! device = "/dev/disk/by-uuid/…" # the LUKS2 device made by `volume create`
//! signed_policy = "/var/lib/vouch/data.policy.json"  # optional (authorized seals)
//! ```
//! Unknown keys are refused, so a typo cannot silently skip a setting.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Largest configuration file read.
const MAX_CONFIG: u64 = 256 * 1024;

/// Errors of reading the volumes configuration.
#[derive(Debug, thiserror::Error)]
pub enum VolumesConfigError {
    /// The file could not be read.
    #[error("reading {path} failed")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is too large.
    #[error("{path} is larger than {MAX_CONFIG} bytes")]
    TooLarge { path: PathBuf },
    /// The TOML is invalid or has unknown keys.
    #[error("{path} is not valid")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    /// Two volumes share a name.
    #[error("{path}: volume name {name:?} appears twice")]
    DuplicateName { path: PathBuf, name: String },
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumesConfig {
    /// The volumes, unlocked in this order.
    #[serde(default, rename = "volume")]
    pub volumes: Vec<VolumeEntry>,
}

/// One volume.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeEntry {
    /// Device-mapper name (`/dev/mapper/NAME`).
    pub name: String,
    /// The LUKS2 block device.
    pub device: PathBuf,
    /// Signed policy for secrets sealed to fleet-approved PCR policies.
    #[serde(default)]
    pub signed_policy: Option<PathBuf>,
}

impl VolumesConfig {
    /// Parses configuration text (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, VolumesConfigError> {
        let cfg: VolumesConfig =
            toml::from_str(text).map_err(|source| VolumesConfigError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        for (i, v) in cfg.volumes.iter().enumerate() {
            if cfg.volumes.iter().skip(i + 1).any(|w| w.name == v.name) {
                return Err(VolumesConfigError::DuplicateName {
                    path: path.to_path_buf(),
                    name: v.name.clone(),
                });
            }
        }
        Ok(cfg)
    }

    /// Reads and parses the file.
    pub fn load(path: &Path) -> Result<Self, VolumesConfigError> {
        use std::io::Read;
        let err = |source| VolumesConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let f = std::fs::File::open(path).map_err(err)?;
        let mut text = String::new();
        f.take(MAX_CONFIG + 1)
            .read_to_string(&mut text)
            .map_err(err)?;
        if text.len() as u64 > MAX_CONFIG {
            return Err(VolumesConfigError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        Self::parse(&text, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("volumes.example.toml");
        let cfg = VolumesConfig::load(&path).unwrap();
        assert_eq!(cfg.volumes.len(), 2);
        assert_eq!(cfg.volumes[0].name, "data");
        assert_eq!(cfg.volumes[0].signed_policy, None);
        assert!(cfg.volumes[1].signed_policy.is_some());
    }

    #[test]
    fn unknown_keys_and_duplicates_are_refused() {
        let p = Path::new("v.toml");
        let e = VolumesConfig::parse("[[volume]]\nname='a'\ndevice='/d'\nsigned_poilcy='x'\n", p)
            .unwrap_err();
        let text = crate::exit::chain(&e);
        assert!(text.contains("signed_poilcy"), "{text}");
        let e = VolumesConfig::parse(
            "[[volume]]\nname='a'\ndevice='/d'\n[[volume]]\nname='a'\ndevice='/e'\n",
            p,
        )
        .unwrap_err();
        assert!(matches!(e, VolumesConfigError::DuplicateName { .. }));
        assert!(VolumesConfig::parse("[[volume]]\nname='a'\n", p).is_err());
        assert_eq!(VolumesConfig::parse("", p).unwrap().volumes.len(), 0);
    }
}
