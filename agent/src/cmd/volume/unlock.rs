//! `vouch-agent volume unlock | lock | status`.
//!
//! `unlock` reads the `vouch-tpm2` token, unseals the secret (a changed bound PCR exits 7 and
//! names the PCRs), opens keyslot 0 with it, and only then maps the data segment with
//! device-mapper ([`crate::volume::dm`]). Without device-mapper it fails with its own exit code
//! after the unseal and keyslot checks, so the error path still proves the TPM side works;
//! `--dry-run` stops before mapping. Timings of unseal and keyslot go to standard error.
//!
//! When the unseal fails because the boot state changed and the fleet has released the
//! volume's recovery passphrase to this device (`crate::volume::recovery`), `unlock` re-seals
//! keyslot 0 with it first (same PCRs or fleet key as before), so a restart of the volumes unit
//! finishes a recovery.

use super::common::{open_device, read_header, unseal_and_open};
use super::reseal::{released_waiting, reseal, same_policy};
use super::{StatusArgs, UnlockArgs, VolumeError};
use crate::tpm::worker::TpmClient;
use crate::tpm::TpmError;
use crate::volume::config::VolumesConfig;
use crate::volume::dm;
use crate::volume::luks2::HeaderHealth;
use crate::volume::tpm_token;
use serde_json::json;
use std::path::Path;

/// `vouch-agent volume unlock`.
pub fn run(tpm: &TpmClient, state_dir: &Path, args: &UnlockArgs) -> Result<(), VolumeError> {
    if !args.all {
        let device = args.device.clone().unwrap_or_default();
        let name = args.name.clone().unwrap_or_default();
        return unlock_one(
            tpm,
            state_dir,
            &device,
            &name,
            args.signed_policy.as_deref(),
            args.dry_run,
        );
    }
    let cfg = VolumesConfig::load(&args.config)?;
    let total = cfg.volumes.len();
    let mut failed = Vec::new();
    for v in &cfg.volumes {
        if let Err(e) = unlock_one(
            tpm,
            state_dir,
            &v.device,
            &v.name,
            v.signed_policy.as_deref(),
            args.dry_run,
        ) {
            eprintln!("vouch-agent: volume {}: {e}", v.name);
            failed.push((v.name.clone(), e));
        }
    }
    let names = failed
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    match failed.into_iter().next() {
        None => Ok(()),
        Some((_, first)) => Err(VolumeError::Several {
            failed: names.split(", ").count(),
            total,
            names,
            first: Box::new(first),
        }),
    }
}

fn unlock_one(
    tpm: &TpmClient,
    state_dir: &Path,
    device: &Path,
    name: &str,
    signed_policy: Option<&Path>,
    dry_run: bool,
) -> Result<(), VolumeError> {
    let mut dev = open_device(device, false)?;
    let mut volume = read_header(device, &mut dev)?;
    let opened = match unseal_and_open(tpm, state_dir, device, &mut dev, &volume, signed_policy) {
        Err(VolumeError::Tpm(TpmError::Policy(crate::seal::PolicyError::BootStateChanged {
            ..
        }))) if released_waiting(state_dir, volume.uuid()) => {
            // The boot changed and the fleet released the recovery passphrase for this boot:
            // re-seal keyslot 0 the way it was sealed before, then unlock as usual.
            eprintln!(
                "{}: the boot state changed; re-sealing with the passphrase the fleet released",
                device.display()
            );
            let (_, sealed) =
                tpm_token::read_sealed(&volume).map_err(|source| VolumeError::Token {
                    path: device.to_path_buf(),
                    source: Box::new(source),
                })?;
            drop(dev);
            reseal(tpm, state_dir, device, None, same_policy(&sealed))?;
            dev = open_device(device, false)?;
            volume = read_header(device, &mut dev)?;
            unseal_and_open(tpm, state_dir, device, &mut dev, &volume, signed_policy)?
        }
        other => other?,
    };
    eprintln!(
        "{}: unsealed in {:.1} ms, keyslot {} opened in {:.1} ms",
        device.display(),
        opened.unseal.as_secs_f64() * 1e3,
        opened.unlocked.keyslot,
        opened.keyslot.as_secs_f64() * 1e3
    );
    if dry_run {
        eprintln!("{}: dry run: not mapped", device.display());
        return Ok(());
    }
    let seg = volume
        .metadata
        .segments
        .values()
        .find(|s| s.kind == "crypt")
        .ok_or_else(|| VolumeError::Header {
            path: device.to_path_buf(),
            source: Box::new(crate::volume::luks2::Luks2Error::NoSegment),
        })?;
    let size = crate::volume::device::BlockDevice::size(&mut dev).map_err(|source| {
        VolumeError::Device {
            path: device.to_path_buf(),
            source,
        }
    })?;
    let offset = seg.offset.0;
    let mapping = dm::CryptMapping {
        name,
        uuid: dm::luks_uuid(volume.uuid(), name),
        device,
        offset,
        length: size.saturating_sub(offset),
        sector_size: seg.sector_size.unwrap_or(512),
        volume_key: &opened.unlocked.volume_key,
    };
    dm::activate(&mapping).map_err(|source| VolumeError::Dm {
        name: name.into(),
        source: Box::new(source),
    })?;
    eprintln!("{}: mapped as /dev/mapper/{name}", device.display());
    Ok(())
}

/// `vouch-agent volume lock`.
pub fn lock(name: &str) -> Result<(), VolumeError> {
    dm::remove(name).map_err(|source| VolumeError::Dm {
        name: name.into(),
        source: Box::new(source),
    })
}

fn health(h: &HeaderHealth) -> String {
    match h {
        HeaderHealth::BothValid => "both header copies valid".into(),
        HeaderHealth::PrimaryCorrupt(e) => {
            format!("primary header damaged ({e}); secondary in use")
        }
        HeaderHealth::SecondaryCorrupt(e) => {
            format!("secondary header damaged ({e}); primary in use")
        }
        HeaderHealth::Diverged {
            primary_seqid,
            secondary_seqid,
        } => format!(
            "header copies differ (seqid {primary_seqid} / {secondary_seqid}); newer in use"
        ),
    }
}

/// `vouch-agent volume status`.
pub fn status(
    tpm: Option<&TpmClient>,
    state_dir: &Path,
    args: &StatusArgs,
) -> Result<(), VolumeError> {
    let mut dev = open_device(&args.device, false)?;
    let volume = read_header(&args.device, &mut dev)?;
    let keyslots: Vec<_> = volume
        .metadata
        .keyslots
        .iter()
        .map(|(id, ks)| {
            json!({
                "id": id.0,
                "type": ks.kind,
                "kdf": ks.kdf.as_ref().map(|k| k.kind.clone()),
            })
        })
        .collect();
    let tokens: Vec<_> = volume
        .tokens()
        .into_iter()
        .map(|(id, t)| json!({"id": id, "type": t.kind, "keyslots": t.keyslots}))
        .collect();
    let sealed_to = tpm_token::read_sealed(&volume)
        .ok()
        .map(|(_, s)| match &s.binding {
            crate::seal::Binding::Pcr { selection, .. } => {
                format!("PCRs {selection}")
            }
            crate::seal::Binding::Authorized { .. } => "fleet-approved PCR policies".to_string(),
        });
    let escrowed = tpm_token::read_escrow(&volume).is_ok();
    let unseal = match (args.check_unseal, tpm) {
        (true, Some(tpm)) => Some(
            match unseal_and_open(
                tpm,
                state_dir,
                &args.device,
                &mut dev,
                &volume,
                args.signed_policy.as_deref(),
            ) {
                Ok(o) => {
                    json!({"ok": true, "unseal_ms": o.unseal.as_secs_f64() * 1e3, "keyslot_ms": o.keyslot.as_secs_f64() * 1e3})
                }
                Err(e) => {
                    json!({"ok": false, "error": e.to_string(), "exit_code": crate::exit::volume(&e)})
                }
            },
        ),
        _ => None,
    };
    let out = json!({
        "device": args.device,
        "uuid": volume.uuid(),
        "label": volume.header.label,
        "health": health(&volume.health),
        "keyslots": keyslots,
        "tokens": tokens,
        "sealed_to": sealed_to,
        "recovery_escrowed": escrowed,
        "unseal": unseal,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("device:    {}", args.device.display());
    println!("uuid:      {}", volume.uuid());
    println!("health:    {}", health(&volume.health));
    for k in &keyslots {
        println!("keyslot:   {} {} kdf {}", k["id"], k["type"], k["kdf"]);
    }
    for t in &tokens {
        println!(
            "token:     {} {} keyslots {}",
            t["id"], t["type"], t["keyslots"]
        );
    }
    println!(
        "sealed to: {}",
        sealed_to.as_deref().unwrap_or("(no vouch-tpm2 token)")
    );
    println!(
        "escrow:    {}",
        if escrowed {
            "recovery passphrase escrowed"
        } else {
            "no vouch-escrow token"
        }
    );
    if let Some(u) = &unseal {
        if u["ok"] == true {
            println!(
                "unseal:    ok (unseal {:.1} ms, keyslot {:.1} ms)",
                u["unseal_ms"].as_f64().unwrap_or(0.0),
                u["keyslot_ms"].as_f64().unwrap_or(0.0)
            );
        } else {
            println!(
                "unseal:    FAILED: {}",
                u["error"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(())
}
