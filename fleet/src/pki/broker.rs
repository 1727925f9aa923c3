//! The mosquitto broker set-up written by `vouch-fleet init`: `mosquitto.conf`, the ACL file, and
//! a reload (SIGHUP through the pid file) after the CRL changed.
//!
//! # Identities
//! The broker requires a client certificate signed by the fleet CA and uses its CN as the MQTT
//! username (`use_identity_as_username`):
//! - `vouch-fleet`: the fleet itself; may publish and subscribe to everything (`#`), and publish
//!   to the dynamic-security plugin's control topic to disconnect a revoked device.
//! - `vouch-claim`: the shared enrollment certificate every new agent ships with; it may only
//!   publish `enroll/<its client id>/request` and read `enroll/<its client id>/response`.
//! - `<device id>`: an enrolled device; its CN is its id (see [`super::device::check_device_id`]).
//!
//! # Client ids: nobody takes over another's connection
//! mosquitto drops a connection when another one arrives with the same client id. Two
//! listeners make that harmless:
//! - the **device listener** (`port`) sets `use_username_as_clientid`: the client id *is* the
//!   certificate's CN, so only the holder of a device's certificate can replace that device's
//!   session (and only the fleet's certificate the fleet's);
//! - the **enrollment listener** (`enroll_port`) keeps the client id as sent, so that many
//!   agents sharing the claim certificate can enroll at once; `clientid_prefixes` (global) makes
//!   every client id start with [`CLIENT_ID_PREFIX`], which no device id (hex) and no CN of
//!   the fleet begins with. An enrolling agent picks a random id and uses it as its request id;
//!   the ACL confines it to `enroll/<that id>/...`, so no other claimant sees it.
//!
//! # Size
//! `max_packet_size` ([`BROKER_MAX_PACKET`]) refuses (and disconnects) any client sending a
//! packet the fleet would refuse anyway, so an oversized message is never queued for the fleet.
//!
//! # Disconnecting a revoked device
//! mosquitto re-reads its CRL on SIGHUP but keeps established connections. The dynamic-security
//! plugin, loaded with an empty configuration (it defers every ACL decision to the ACL file),
//! offers `deleteClient`, which disconnects every connection of that username: the fleet
//! publishes [`kick_command`] to [`DYNSEC_CONTROL_TOPIC`], a topic only the fleet may write.
//!
//! # Topic scheme
//! | topic | from | to | ACL |
//! |---|---|---|---|
//! | `enroll/<client id>/request` | agent (claim cert) | fleet | `pattern write enroll/%c/request` |
//! | `enroll/<client id>/response` | fleet | agent (claim cert) | `pattern read enroll/%c/response` |
//! | `devices/<id>/...` (evidence, status, ...) | device `<id>` | fleet | `pattern write devices/%u/#` |
//! | `devices/<id>/cmd/...` (challenges, commands) | fleet | device `<id>` | `pattern read devices/%u/cmd/#` |
//! | `$CONTROL/dynamic-security/v1` | fleet | broker | fleet only |
//!
//! A device may also write under its own `devices/<id>/cmd/` (the write pattern covers it); the
//! fleet subscribes to its specific upstream sub-topics and ignores anything it did not publish
//! under `cmd/`. Pattern lines apply to every user, so the claim identity could write
//! `devices/vouch-claim/...`: no device can have that id, and the fleet ignores that prefix.
//!
//! # Broker process
//! The configuration uses absolute paths (mosquitto resolves relative ones against its working
//! directory), so `mosquitto -c D/mosquitto.conf` runs from anywhere. Persistence is on, in
//! `D/broker/`, so queued QoS 1 messages survive a restart. When started as root, mosquitto drops
//! privileges to the user named by `user`; `init` writes `user root` in that case because the
//! fleet directory is 0700 and the broker must re-read `crl.pem` on SIGHUP.

use super::files::{self, FileError};
use super::layout::FleetPaths;
use super::{CLAIM_NAME, FLEET_NAME};
use std::path::{Path, PathBuf};
use std::process::Command;
use vouch_attest::protocol::{CLIENT_ID_PREFIX, MAX_MESSAGE_BYTES};

/// The broker's `max_packet_size`: the largest message either side accepts plus room for the
/// MQTT header, the topic and MQTT v5 properties.
pub const BROKER_MAX_PACKET: usize = MAX_MESSAGE_BYTES + 4096;
/// The dynamic-security plugin's control topic.
pub const DYNSEC_CONTROL_TOPIC: &str = "$CONTROL/dynamic-security/v1";
/// Where Debian and most distributions install mosquitto's dynamic-security plugin.
pub const DYNSEC_PLUGIN_CANDIDATES: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/arm-linux-gnueabihf/mosquitto_dynamic_security.so",
    "/usr/lib64/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
];

/// The first installed dynamic-security plugin of [`DYNSEC_PLUGIN_CANDIDATES`].
pub fn find_dynsec_plugin() -> Option<PathBuf> {
    DYNSEC_PLUGIN_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// The dynamic-security plugin's initial configuration: no clients, groups or roles, and
/// default access off, so it defers every decision to the ACL file. It is used only to
/// disconnect revoked devices ([`kick_command`]).
pub const DYNSEC_EMPTY_CONFIG: &str = "{\"defaultACLAccess\":{\"publishClientSend\":false,\
\"publishClientReceive\":false,\"subscribe\":false,\"unsubscribe\":false},\
\"clients\":[],\"groups\":[],\"roles\":[]}\n";

/// The control message that disconnects every connection whose username (certificate CN) is
/// `username`: a dynamic-security client of that name is created and deleted at once
/// (`deleteClient` kicks its connections), leaving the plugin's configuration empty.
pub fn kick_command(username: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "commands": [
            {"command": "createClient", "username": username},
            {"command": "deleteClient", "username": username},
        ]
    }))
    .unwrap_or_default()
}

/// Reloading the broker failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The pid file could not be read.
    #[error("cannot read the broker pid file")]
    PidFile(#[source] FileError),
    /// The pid file does not hold a process id > 1.
    #[error("{path} does not hold a process id")]
    BadPid { path: PathBuf },
    /// `kill` could not be started.
    #[error("cannot run kill to signal broker pid {pid}")]
    Spawn {
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    /// `kill -HUP` failed (no such process, not permitted).
    #[error("kill -HUP {pid} failed ({status}): is the broker running?")]
    Signal {
        pid: u32,
        status: std::process::ExitStatus,
    },
}

/// Settings of the generated broker configuration.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// TCP port of the device listener on 127.0.0.1 (devices and the fleet).
    pub port: u16,
    /// TCP port of the enrollment listener on 127.0.0.1 (the claim certificate).
    pub enroll_port: u16,
    /// The dynamic-security plugin mosquitto loads.
    pub dynsec_plugin: PathBuf,
    /// Write `user root` (the broker runs as root and must keep reading the 0700 directory).
    pub run_as_root: bool,
}

/// The ACL file: fleet everything, enrollment only on the connection's own topics, devices
/// their own sub-tree.
pub fn render_acl() -> String {
    format!(
        "# Generated by vouch-fleet init. Usernames are certificate CNs.\n\
         # The fleet may use every topic, and the broker's control topic to disconnect revoked\n\
         # devices (\"#\" does not cover topics starting with \"$\").\n\
         user {FLEET_NAME}\n\
         topic readwrite #\n\
         topic readwrite $CONTROL/dynamic-security/#\n\
         \n\
         # The claim identity ({CLAIM_NAME}) has no topic of its own: it enrolls through the\n\
         # patterns below, on enroll/<its client id>/ only (a random id nobody else sees). The\n\
         # device patterns would give it devices/{CLAIM_NAME}/: denied (denials come first).\n\
         user {CLAIM_NAME}\n\
         topic deny devices/#\n\
         pattern write enroll/%c/request\n\
         pattern read enroll/%c/response\n\
         \n\
         # A device publishes only under devices/<its id>/ and reads only devices/<its id>/cmd/.\n\
         pattern write devices/%u/#\n\
         pattern read devices/%u/cmd/#\n"
    )
}

/// `mosquitto.conf` for the fleet directory `paths` (which must be absolute).
pub fn render_mosquitto_conf(paths: &FleetPaths, settings: &BrokerSettings) -> String {
    let p = |path: PathBuf| path.display().to_string();
    let mut broker_dir = p(paths.broker_dir());
    broker_dir.push('/');
    let user = if settings.run_as_root {
        "# Started as root: stay root (the fleet directory is 0700).\nuser root\n"
    } else {
        ""
    };
    let tls = format!(
        "tls_version tlsv1.2\n\
         cafile {ca}\n\
         certfile {cert}\n\
         keyfile {key}\n\
         crlfile {crl}\n\
         require_certificate true\n\
         use_identity_as_username true\n",
        ca = p(paths.ca_cert()),
        cert = p(paths.server_cert()),
        key = p(paths.server_key()),
        crl = p(paths.crl()),
    );
    format!(
        "# Generated by vouch-fleet init. Run: mosquitto -c {conf}\n\
         per_listener_settings false\n\
         allow_anonymous false\n\
         {user}\
         pid_file {pid}\n\
         persistence true\n\
         persistence_location {broker_dir}\n\
         autosave_interval 60\n\
         # Nagle off: a report sent right after a small packet would wait for a delayed ACK.\n\
         set_tcp_nodelay true\n\
         log_dest stderr\n\
         log_type error\n\
         log_type warning\n\
         log_type notice\n\
         log_type information\n\
         connection_messages true\n\
         acl_file {acl}\n\
         # Every client id starts with this prefix (no device id or fleet name does): see the\n\
         # enrollment listener below.\n\
         clientid_prefixes {CLIENT_ID_PREFIX}\n\
         # Nothing larger than the fleet and the agents accept reaches them (the sender is\n\
         # disconnected instead).\n\
         max_packet_size {max_packet}\n\
         # Only to disconnect revoked devices: its empty configuration defers every access\n\
         # decision to acl_file.\n\
         plugin {plugin}\n\
         plugin_opt_config_file {dynsec}\n\
         \n\
         # Devices and the fleet. The client id is the certificate's CN, so no one can take\n\
         # over another identity's connection.\n\
         listener {port} 127.0.0.1\n\
         {tls}\
         use_username_as_clientid true\n\
         \n\
         # Enrollment with the claim certificate: client ids as sent (random, prefixed).\n\
         listener {enroll_port} 127.0.0.1\n\
         {tls}",
        conf = p(paths.mosquitto_conf()),
        pid = p(paths.pid_file()),
        acl = p(paths.acl()),
        max_packet = BROKER_MAX_PACKET,
        plugin = settings.dynsec_plugin.display(),
        dynsec = p(paths.dynsec_config()),
        port = settings.port,
        enroll_port = settings.enroll_port,
    )
}

/// Sends SIGHUP to the broker whose pid is in `pid_file`, so it re-reads its CRL and ACL.
pub fn reload_broker(pid_file: &Path) -> Result<(), BrokerError> {
    let text = files::read_text_bounded(pid_file, 64).map_err(BrokerError::PidFile)?;
    let pid = text
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|&p| p > 1)
        .ok_or_else(|| BrokerError::BadPid {
            path: pid_file.to_path_buf(),
        })?;
    // The shell's built-in kill: no extra binary and no unsafe libc call.
    let status = Command::new("/bin/sh")
        .args(["-c", "kill -HUP \"$1\"", "sh", &pid.to_string()])
        .status()
        .map_err(|source| BrokerError::Spawn { pid, source })?;
    if !status.success() {
        return Err(BrokerError::Signal { pid, status });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_uses_absolute_paths_and_tls_settings() {
        let paths = FleetPaths::new("/srv/fleet");
        let conf = render_mosquitto_conf(
            &paths,
            &BrokerSettings {
                port: 18883,
                enroll_port: 18884,
                dynsec_plugin: PathBuf::from("/usr/lib/dynsec.so"),
                run_as_root: false,
            },
        );
        for line in [
            "listener 18883 127.0.0.1",
            "listener 18884 127.0.0.1",
            "use_username_as_clientid true",
            "clientid_prefixes vouch-conn-",
            "plugin /usr/lib/dynsec.so",
            "plugin_opt_config_file /srv/fleet/dynamic-security.json",
            "require_certificate true",
            "use_identity_as_username true",
            "crlfile /srv/fleet/crl.pem",
            "persistence_location /srv/fleet/broker/",
            "pid_file /srv/fleet/mosquitto.pid",
            "acl_file /srv/fleet/acl",
            "set_tcp_nodelay true",
        ] {
            assert!(conf.lines().any(|l| l == line), "missing {line:?}");
        }
        assert!(!conf.contains("user root"));
        // The client id is bound to the certificate on the device listener only.
        let device = conf.split("listener 18884").next().unwrap_or_default();
        assert!(device.contains("use_username_as_clientid true"));
        let enroll = conf.split("listener 18884").nth(1).unwrap_or_default();
        assert!(!enroll.contains("use_username_as_clientid"));
        assert!(conf.contains(&format!("max_packet_size {BROKER_MAX_PACKET}")));
    }

    #[test]
    fn reload_refuses_bad_pid_files() {
        let dir = tempfile::tempdir().unwrap();
        let pid = dir.path().join("pid");
        std::fs::write(&pid, "1\n").unwrap();
        assert!(matches!(
            reload_broker(&pid),
            Err(BrokerError::BadPid { .. })
        ));
        std::fs::write(&pid, "abc").unwrap();
        assert!(matches!(
            reload_broker(&pid),
            Err(BrokerError::BadPid { .. })
        ));
    }
}
