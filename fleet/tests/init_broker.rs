//! End-to-end: `init` a fleet directory, run the real mosquitto on it, and check TLS client
//! authentication, the ACL and revocation with `mosquitto_pub` / `mosquitto_sub` (MQTT v5).
//! mosquitto and mosquitto-clients must be installed: the test fails when they are missing.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vouch_fleet::pki::broker::reload_broker;
use vouch_fleet::pki::setup::{init_fleet, InitOptions};
use vouch_fleet::pki::{issue_device_certificate, load_ca, revoke, DevicePublicKey, Validity};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn other_free_port(than: u16) -> u16 {
    loop {
        let p = free_port();
        if p != than {
            return p;
        }
    }
}

/// A mosquitto process, killed on drop.
struct Broker {
    child: Child,
}

impl Broker {
    fn start(conf: &Path, port: u16) -> Broker {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto must be installed (apt-get install mosquitto)");
        let broker = Broker { child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }
}

impl Broker {
    /// SIGTERM (mosquitto saves its persistence database on a clean shutdown) and wait.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("/bin/sh")
            .args(["-c", "kill -TERM \"$1\"", "sh", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client identity: certificate and key files, and the listener it uses: the fleet and the
/// claim the enrollment listener (client ids as sent), devices the device listener (client id
/// = certificate CN).
#[derive(Clone)]
struct Identity {
    cert: PathBuf,
    key: PathBuf,
    enroll: bool,
}

struct Fleet {
    dir: PathBuf,
    port: u16,
    enroll_port: u16,
}

/// A client id no other client of the test uses, with the prefix the broker requires.
fn fresh_client_id() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "vouch-conn-t{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl Fleet {
    fn base_args(&self, id: Option<&Identity>) -> Vec<String> {
        let port = match id {
            Some(i) if i.enroll => self.enroll_port,
            _ => self.port,
        };
        let mut a = vec![
            "-h".into(),
            "localhost".into(),
            "-p".into(),
            port.to_string(),
            "-V".into(),
            "mqttv5".into(),
            "--cafile".into(),
            self.dir.join("ca.crt").display().to_string(),
        ];
        if let Some(id) = id {
            a.extend([
                "--cert".into(),
                id.cert.display().to_string(),
                "--key".into(),
                id.key.display().to_string(),
            ]);
        }
        a
    }

    /// Publishes one QoS 1 message and returns mosquitto_pub's output.
    fn publish(&self, id: Option<&Identity>, topic: &str, msg: &str) -> Output {
        self.publish_as(id, &fresh_client_id(), topic, msg.as_bytes())
    }

    /// Publishes one QoS 1 message with client id `client_id` (the payload from a file).
    fn publish_as(
        &self,
        id: Option<&Identity>,
        client_id: &str,
        topic: &str,
        msg: &[u8],
    ) -> Output {
        self.publish_with(id, client_id, topic, msg, &[])
    }

    /// Like `publish_as`, with extra mosquitto_pub arguments (after the common ones).
    fn publish_with(
        &self,
        id: Option<&Identity>,
        client_id: &str,
        topic: &str,
        msg: &[u8],
        extra: &[&str],
    ) -> Output {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), msg).unwrap();
        Command::new("mosquitto_pub")
            .args(self.base_args(id))
            .args(extra)
            .args(["-i", client_id, "-q", "1", "-t", topic, "-f"])
            .arg(file.path())
            .output()
            .expect("mosquitto_pub must be installed (apt-get install mosquitto-clients)")
    }

    fn publish_as_ok(&self, id: &Identity, topic: &str, msg: &[u8]) {
        let out = self.publish_as(Some(id), &fresh_client_id(), topic, msg);
        assert!(out.status.success(), "publish to {topic} failed: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("failed"), "publish to {topic}: {err}");
    }

    fn publish_ok(&self, id: &Identity, topic: &str, msg: &str) {
        let out = self.publish(Some(id), topic, msg);
        assert!(out.status.success(), "publish to {topic} failed: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("failed"), "publish to {topic}: {err}");
    }

    fn subscribe(&self, id: &Identity, topics: &[&str]) -> Subscriber {
        self.subscribe_with(id, topics, &[])
    }

    /// Like `subscribe`, with extra mosquitto_sub arguments.
    fn subscribe_with(&self, id: &Identity, topics: &[&str], extra: &[&str]) -> Subscriber {
        let mut cmd = Command::new("mosquitto_sub");
        cmd.args(self.base_args(Some(id)))
            .args(["-q", "1", "-v", "-d"])
            .args(extra);
        if !extra.contains(&"-i") {
            cmd.args(["-i", &fresh_client_id()]);
        }
        for t in topics {
            cmd.args(["-t", t]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub must be installed");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        let connacks = Arc::new(AtomicUsize::new(0));
        let counter = connacks.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // `-d` debug lines: count connections, keep only messages.
                if line.starts_with("Client ")
                    || line.starts_with("Subscribed (")
                    || line.starts_with("Received DISCONNECT")
                {
                    if line.contains("received CONNACK") {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Subscriber {
            child,
            rx,
            connacks,
        }
    }
}

/// A running mosquitto_sub; each received message is one "topic payload" line.
struct Subscriber {
    child: Child,
    rx: Receiver<String>,
    /// CONNACKs received: more than one means the connection was dropped and re-made.
    connacks: Arc<AtomicUsize>,
}

impl Subscriber {
    fn connections(&self) -> usize {
        self.connacks.load(Ordering::Relaxed)
    }

    /// True when the mosquitto_sub process is still running.
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Publishes `topic` as `publisher` every 100 ms until this subscriber receives it, so the
    /// subscription is known to be active.
    fn wait_ready(&self, fleet: &Fleet, publisher: &Identity, topic: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            fleet.publish_ok(publisher, topic, "ready");
            if let Ok(line) = self.rx.recv_timeout(Duration::from_millis(100)) {
                if line.starts_with(topic) {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "subscriber never became ready");
        }
        // Drain duplicates of the readiness probe.
        while self.rx.recv_timeout(Duration::from_millis(50)).is_ok() {}
    }

    /// Lines received until one starting with `sentinel` arrives (which is not included).
    fn lines_until(&self, sentinel: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("{sentinel} never arrived; got {lines:?}"));
            if line.starts_with(sentinel) {
                return lines;
            }
            lines.push(line);
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Generates a P-256 key "on the device", has the CA certify its SPKI, writes key and cert.
fn enroll_device(dir: &Path, id: &str) -> (Identity, vouch_fleet::pki::Serial) {
    let device_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let spki = device_key.public_key_der();
    let ca = load_ca(dir).unwrap();
    let issued = issue_device_certificate(
        &ca,
        id,
        DevicePublicKey::Spki(&spki),
        Validity::days_from_now(30),
    )
    .unwrap();
    let cert = dir.join(format!("test-{id}.crt"));
    let key = dir.join(format!("test-{id}.key"));
    std::fs::write(&cert, &issued.pem).unwrap();
    std::fs::write(&key, device_key.serialize_pem()).unwrap();
    (
        Identity {
            cert,
            key,
            enroll: false,
        },
        issued.serial,
    )
}

#[test]
fn broker_enforces_tls_identities_acl_and_revocation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fleet");
    let port = free_port();
    let enroll_port = other_free_port(port);
    init_fleet(&InitOptions {
        dir: dir.clone(),
        broker_port: port,
        enroll_port,
        dynsec_plugin: None,
        server_names: vec![],
        force: false,
    })
    .unwrap();
    let _broker = Broker::start(&dir.join("mosquitto.conf"), port);
    let fleet = Fleet {
        dir: dir.clone(),
        port,
        enroll_port,
    };
    let me = Identity {
        cert: dir.join("fleet.crt"),
        key: dir.join("fleet.key"),
        enroll: true,
    };
    let claim = Identity {
        cert: dir.join("claim.crt"),
        key: dir.join("claim.key"),
        enroll: true,
    };
    let (dev, dev_serial) = enroll_device(&dir, "node-1");
    let (dev2, _) = enroll_device(&dir, "node-2");

    // The fleet subscribes to everything and sees its own publish anywhere.
    let all = fleet.subscribe(&me, &["#"]);
    all.wait_ready(&fleet, &me, "probe/ready");
    fleet.publish_ok(&me, "anything/at/all", "x");
    fleet.publish_ok(&me, "probe/s1", "");
    assert_eq!(all.lines_until("probe/s1"), ["anything/at/all x"]);

    // No client certificate: the TLS handshake is refused.
    let out = fleet.publish(None, "devices/node-1/x", "anon");
    assert!(
        !out.status.success(),
        "anonymous publish succeeded: {out:?}"
    );

    // The device publishes under its own id.
    fleet.publish_ok(&dev, "devices/node-1/x", "mine");
    // It may not publish under another id: MQTT v5 reason 135 (Not authorized).
    let out = fleet.publish(Some(&dev), "devices/node-2/x", "forged");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Not authorized"), "forged publish: {out:?}");
    fleet.publish_ok(&me, "probe/s2", "");
    assert_eq!(all.lines_until("probe/s2"), ["devices/node-1/x mine"]);

    // The device receives fleet commands on its cmd/ sub-tree.
    let inbox = fleet.subscribe(&dev, &["devices/node-1/cmd/#"]);
    inbox.wait_ready(&fleet, &me, "devices/node-1/cmd/ready");
    fleet.publish_ok(&me, "devices/node-1/cmd/x", "challenge");
    fleet.publish_ok(&me, "devices/node-1/cmd/s3", "");
    assert_eq!(
        inbox.lines_until("devices/node-1/cmd/s3"),
        ["devices/node-1/cmd/x challenge"]
    );
    // ... but nothing of another device's (its subscription is granted, delivery is not).
    let peek = fleet.subscribe(&dev, &["devices/node-2/cmd/#", "devices/node-1/cmd/#"]);
    peek.wait_ready(&fleet, &me, "devices/node-1/cmd/ready2");
    fleet.publish_ok(&me, "devices/node-2/cmd/x", "not yours");
    fleet.publish_ok(&me, "devices/node-1/cmd/s4", "");
    assert_eq!(
        peek.lines_until("devices/node-1/cmd/s4"),
        Vec::<String>::new()
    );
    drop(peek);
    drop(inbox);
    while all.rx.try_recv().is_ok() {}

    // The claim identity may enroll under its own client id, nothing else.
    let out = fleet.publish_as(
        Some(&claim),
        "vouch-conn-abc",
        "enroll/vouch-conn-abc/request",
        b"csr",
    );
    assert!(out.status.success(), "enrollment publish: {out:?}");
    for (topic, what) in [
        ("devices/node-1/x", "claim forgery"),
        (
            "enroll/vouch-conn-other/request",
            "another claimant's request",
        ),
        (
            "devices/vouch-claim/boot",
            "the device pattern under its own name",
        ),
    ] {
        let out = fleet.publish_as(Some(&claim), "vouch-conn-abc", topic, what.as_bytes());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("Not authorized"),
            "claim publish {what}: {out:?}"
        );
    }
    fleet.publish_ok(&me, "probe/s5", "");
    assert_eq!(
        all.lines_until("probe/s5"),
        ["enroll/vouch-conn-abc/request csr"]
    );

    // Client ids. Without the prefix: refused on both listeners.
    for who in [&dev, &claim] {
        let out = fleet.publish_as(Some(who), "node-1", "devices/node-1/x", b"no prefix");
        assert!(!out.status.success(), "client id without prefix: {out:?}");
    }
    // Nobody takes over node-1's connection: not node-2 asking for node-1's client id on the
    // device listener (it gets its own), not the claim asking for it on either listener.
    let mut victim = fleet.subscribe(&dev, &["devices/node-1/cmd/#"]);
    victim.wait_ready(&fleet, &me, "devices/node-1/cmd/ready3");
    let takeovers: [(&Identity, &str); 3] = [
        (&dev2, "vouch-conn-node-1"),
        (
            &Identity {
                enroll: false,
                ..claim.clone()
            },
            "vouch-conn-node-1",
        ),
        (&claim, "vouch-conn-node-1"),
    ];
    for (who, client_id) in takeovers {
        let _ = fleet.publish_as(Some(who), client_id, "devices/node-2/x", b"takeover");
    }
    fleet.publish_ok(&me, "devices/node-1/cmd/s7", "");
    assert_eq!(
        victim.lines_until("devices/node-1/cmd/s7"),
        Vec::<String>::new()
    );
    assert!(victim.alive(), "node-1's connection was taken over");
    assert_eq!(victim.connections(), 1, "node-1 was disconnected");
    // Of the takeover attempts only node-2's own publish (under its own id) went through.
    let through: Vec<String> = all
        .lines_until("devices/node-1/cmd/s7")
        .into_iter()
        .filter(|l| l.ends_with(" takeover"))
        .collect();
    assert_eq!(through, ["devices/node-2/x takeover"]);

    // Larger than the broker's max_packet_size: the sender is cut off, nothing delivered. (An
    // MQTT 5 client learns the limit from CONNACK and does not even send it: MQTT 3.1.1.)
    let big = vec![b'x'; vouch_fleet::pki::broker::BROKER_MAX_PACKET + 1];
    // (node-2 sends: a publish by node-1 would replace the victim's connection, its own.)
    let out = fleet.publish_with(
        Some(&dev2),
        "vouch-conn-x",
        "devices/node-2/big",
        &big,
        &["-V", "mqttv311"],
    );
    assert!(!out.status.success(), "oversized publish accepted: {out:?}");
    // A message the fleet refuses itself still passes (the fleet's own check names it).
    let just_over = vec![b'x'; vouch_attest::protocol::MAX_MESSAGE_BYTES + 1];
    fleet.publish_as_ok(&dev2, "devices/node-2/over", &just_over);
    fleet.publish_ok(&me, "probe/s8", "");
    let seen = all.lines_until("probe/s8");
    assert_eq!(
        seen.len(),
        1,
        "only the message under the broker limit arrives"
    );
    assert!(
        seen[0].starts_with("devices/node-2/over "),
        "{}",
        &seen[0][..40]
    );

    // Disconnecting a device: only the fleet may ask the broker, and it works.
    let kick = vouch_fleet::pki::broker::kick_command("node-1");
    for who in [&dev2, &claim] {
        let out = fleet.publish_as(
            Some(who),
            &fresh_client_id(),
            vouch_fleet::pki::broker::DYNSEC_CONTROL_TOPIC,
            &kick,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("Not authorized"),
            "kick by a non-fleet identity: {out:?}"
        );
    }
    fleet.publish_ok(&me, "devices/node-1/cmd/s9", "");
    assert_eq!(
        victim.lines_until("devices/node-1/cmd/s9"),
        Vec::<String>::new()
    );
    assert_eq!(
        victim.connections(),
        1,
        "a non-fleet identity disconnected node-1"
    );
    fleet.publish_as_ok(&me, vouch_fleet::pki::broker::DYNSEC_CONTROL_TOPIC, &kick);
    let deadline = Instant::now() + Duration::from_secs(10);
    while victim.alive() && victim.connections() < 2 {
        assert!(
            Instant::now() < deadline,
            "the fleet's kick did not disconnect node-1"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(victim);
    while all.rx.try_recv().is_ok() {}

    // Revoke node-1, SIGHUP the broker through its pid file: node-1 is refused, node-2 and the
    // fleet still connect.
    let ca = load_ca(&dir).unwrap();
    let crl = revoke(&ca, &dev_serial).unwrap();
    assert_eq!(crl.revoked, [dev_serial]);
    reload_broker(&dir.join("mosquitto.pid")).unwrap();
    // SIGHUP is asynchronous: attempts made before mosquitto re-read the CRL may still get
    // through; the attempt that was refused must not.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut attempt = 0;
    let refused = loop {
        attempt += 1;
        let payload = format!("after revocation #{attempt}");
        let out = fleet.publish(Some(&dev), "devices/node-1/x", &payload);
        if !out.status.success() {
            break payload;
        }
        assert!(Instant::now() < deadline, "revoked device still connects");
        std::thread::sleep(Duration::from_millis(100));
    };
    fleet.publish_ok(&dev2, "devices/node-2/x", "still here");
    fleet.publish_ok(&me, "probe/s6", "");
    let seen = all.lines_until("probe/s6");
    assert!(
        seen.contains(&"devices/node-2/x still here".to_string()),
        "{seen:?}"
    );
    assert!(!seen.iter().any(|l| l.ends_with(&refused)), "{seen:?}");
}

#[test]
fn queued_qos1_message_survives_a_broker_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fleet");
    let port = free_port();
    let enroll_port = other_free_port(port);
    init_fleet(&InitOptions {
        dir: dir.clone(),
        broker_port: port,
        enroll_port,
        dynsec_plugin: None,
        server_names: vec![],
        force: false,
    })
    .unwrap();
    let conf = dir.join("mosquitto.conf");
    let broker = Broker::start(&conf, port);
    let fleet = Fleet {
        dir: dir.clone(),
        port,
        enroll_port,
    };
    let me = Identity {
        cert: dir.join("fleet.crt"),
        key: dir.join("fleet.key"),
        enroll: true,
    };
    let (dev, _) = enroll_device(&dir, "node-9");
    // A persistent session (no clean start, session expiry one hour) subscribed to its commands.
    let session = ["-c", "-i", "vouch-conn-node-9-session", "-x", "3600"];
    let sub = fleet.subscribe_with(&dev, &["devices/node-9/cmd/#"], &session);
    sub.wait_ready(&fleet, &me, "devices/node-9/cmd/ready");
    drop(sub);
    // Queued while the device is away, then the broker restarts.
    fleet.publish_ok(&me, "devices/node-9/cmd/queued", "challenge-1");
    broker.stop();
    assert!(dir.join("broker/mosquitto.db").is_file());
    let _broker = Broker::start(&conf, port);
    let sub = fleet.subscribe_with(&dev, &["devices/node-9/cmd/#"], &session);
    fleet.publish_ok(&me, "devices/node-9/cmd/after", "");
    assert_eq!(
        sub.lines_until("devices/node-9/cmd/after"),
        ["devices/node-9/cmd/queued challenge-1"]
    );
}
