//! Hostile clients against the real system (issue 10): mosquitto from `vouch-fleet init`,
//! `vouch-fleet serve`, two `vouch-agent run` processes on swtpm (A stays genuine to the end, B
//! is revoked during the run), and attackers holding what they could plausibly hold: the claim
//! certificate every new agent ships with, a compromised device's identity (a fleet-issued
//! certificate for a software key, with the device's software TPM so it can also answer
//! challenges), expired, revoked and foreign certificates, and a software TPM whose EK the fleet
//! trusts (an owner of a genuine TPM).
//!
//! Every attack asserts that it had no effect AND that the system named why: a CONNACK or
//! PUBACK refusal code from the broker (MQTT 5 answers an unauthorized publish with reason 135),
//! a TLS alert, a broker log line, an enrollment refusal reason, a fleet log line or an audit
//! entry. At the end the genuine device A still answers an on-demand `vouch-fleet attest` with
//! a trusted verdict, the fleet never lost its broker connection, and A was never knocked off.
//! A table of attack -> outcome -> reason is printed; the test fails listing every attack that
//! was not refused (or not named), never at the first one.

use rumqttc::QoS;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use swtpm_tests::adversary::{
    self, answer, conn_id, gzip, pub_v5, random_hex, refused_code, response_kind, Claimant, Conn,
    ConnOpts, Identity, Seen,
};
use swtpm_tests::load::provision::{self, BootImage, SimDevice};
use swtpm_tests::stack::{wait_until, FleetStack, Proc};
use swtpm_tests::{testdata, Swtpm};
use vouch_attest::protocol::{self, BootAnnouncement, EscrowDeposit, MAX_MESSAGE_BYTES};
use vouch_fleet::pki::Validity;

const LOG: &str = "eventlogs/t2t_event-arch-linux.bin";
const SHORT: Duration = Duration::from_secs(3);
const MIB: usize = 1 << 20;

fn status(v: &serde_json::Value) -> &str {
    v["device"]["status"].as_str().unwrap_or_default()
}

fn device_id(tpm: &Swtpm, state: &Path) -> String {
    let out = tpm.agent(state, &["tpm", "info", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    v["device_id"].as_str().unwrap().to_string()
}

/// One row of the final table.
struct Row {
    attack: String,
    held: bool,
    reason: String,
    secs: f64,
}

/// Runs the attacks, keeps going after a failure, prints the table.
#[derive(Default)]
struct Book {
    rows: Vec<Row>,
}

type Outcome = Result<String, String>;

impl Book {
    /// Runs one attack: `Ok(reason)` when it had no effect and the reason was named, `Err(what
    /// happened)` otherwise (a panic counts as `Err`).
    fn attack(&mut self, name: &str, f: impl FnOnce() -> Outcome) {
        let t = Instant::now();
        let r = std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
            Err(format!(
                "panicked: {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            ))
        });
        let secs = t.elapsed().as_secs_f64();
        let (held, reason) = match r {
            Ok(reason) if !reason.trim().is_empty() => (true, reason),
            Ok(_) => (false, "no reason named".to_string()),
            Err(e) => (false, e),
        };
        eprintln!(
            "[{}] {name} ({secs:.1} s): {}",
            if held { "refused" } else { "NOT REFUSED" },
            one_line(&reason, 300)
        );
        self.rows.push(Row {
            attack: name.to_string(),
            held,
            reason,
            secs,
        });
    }

    fn table(&self) -> String {
        let mut t = String::from("\n| # | attack | outcome | reason |\n|---|---|---|---|\n");
        for (i, r) in self.rows.iter().enumerate() {
            t.push_str(&format!(
                "| {} | {} | {} | {} ({:.1} s) |\n",
                i + 1,
                r.attack,
                if r.held {
                    "no effect"
                } else {
                    "**NOT REFUSED**"
                },
                one_line(&r.reason, 220).replace('|', "/"),
                r.secs
            ));
        }
        t
    }
}

fn one_line(s: &str, max: usize) -> String {
    let s = s.replace('\n', " ⏎ ");
    if s.chars().count() > max {
        format!("{}…", s.chars().take(max).collect::<String>())
    } else {
        s
    }
}

/// Everything the attacks need.
struct World {
    fleet: FleetStack,
    a_id: String,
    a_log: PathBuf,
    claim: Identity,
    /// Compromised devices C and D: registered, with software TPMs and minted certificates.
    c: Sim,
    d: Sim,
    gz: Arc<Vec<u8>>,
    work: PathBuf,
}

struct Sim {
    dev: SimDevice,
    id: Identity,
}

impl World {
    fn port(&self) -> u16 {
        self.fleet.port()
    }
    fn eport(&self) -> u16 {
        self.fleet.enroll_port()
    }
    fn server_log(&self) -> String {
        self.fleet.server_log()
    }
    fn broker_log(&self) -> String {
        self.fleet.broker_log()
    }
    fn fleet_connects(&self) -> usize {
        self.server_log().matches("connected to the broker").count()
    }
    fn agent_log(&self, which: &Path) -> String {
        std::fs::read_to_string(which).unwrap_or_default()
    }
    fn agent_losses(&self, which: &Path) -> usize {
        self.agent_log(which)
            .matches("broker connection lost")
            .count()
    }
    fn agent_connects(&self, which: &Path) -> usize {
        self.agent_log(which)
            .matches("connected to the broker")
            .count()
    }

    /// Audit rows (seq, kind, device, detail) after `seq`.
    fn audit_after(&self, seq: i64) -> Vec<(i64, String, String, String)> {
        let out = self.fleet.cli(&["audit", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
        v["entries"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                (
                    e["seq"].as_i64().unwrap_or(0),
                    e["kind"].as_str().unwrap_or_default().to_string(),
                    e["device_id"].as_str().unwrap_or("-").to_string(),
                    e["detail"].as_str().unwrap_or_default().to_string(),
                )
            })
            .filter(|r| r.0 > seq)
            .collect()
    }

    fn audit_seq(&self) -> i64 {
        self.audit_after(-1).last().map(|r| r.0).unwrap_or(0)
    }

    /// Waits for an audit row after `seq` for `device` whose kind or detail contains every
    /// needle; returns it as text.
    fn audit_wait(&self, seq: i64, device: &str, needles: &[&str], d: Duration) -> Outcome {
        let mut found = None;
        let ok = wait_until("audit entry", d, || {
            found = self.audit_after(seq).into_iter().find(|r| {
                (device.is_empty() || r.2 == device)
                    && needles.iter().all(|n| r.1.contains(n) || r.3.contains(n))
            });
            found.is_some()
        });
        match (ok, found) {
            (Ok(()), Some(r)) => Ok(format!("audit #{} {} {}: {}", r.0, r.1, short(&r.2), r.3)),
            _ => Err(format!(
                "no audit entry for {} with {needles:?}; audit since #{seq}: {:?}",
                short(device),
                self.audit_after(seq)
            )),
        }
    }

    /// Waits for a server log line, appearing after `from` bytes, that contains every needle.
    fn server_wait(&self, from: usize, needles: &[&str], d: Duration) -> Outcome {
        log_wait(|| self.server_log(), from, needles, d, "server log")
    }

    fn broker_wait(&self, from: usize, needles: &[&str], d: Duration) -> Outcome {
        log_wait(|| self.broker_log(), from, needles, d, "broker log")
    }

    /// A genuine on-demand attestation of `id` gives a trusted verdict; returns how long it took.
    fn attest_trusted(&self, id: &str) -> Outcome {
        let t = Instant::now();
        let out = self.fleet.cli(&["attest", id, "--wait", "30"]);
        let v = self.fleet.device(id).unwrap_or_default();
        if out.code == 0 && v["verdicts"][0]["trusted"] == true {
            Ok(format!(
                "on-demand attest of {} trusted in {:.1} s",
                short(id),
                t.elapsed().as_secs_f64()
            ))
        } else {
            Err(format!(
                "on-demand attest of {} failed (exit {}): {}{}; last verdict {}",
                short(id),
                out.code,
                out.stdout,
                out.stderr,
                v["verdicts"][0]
            ))
        }
    }

    /// Asks the fleet for an on-demand challenge of `id` without waiting for it.
    fn request_attest(&self, id: &str) -> std::thread::JoinHandle<swtpm_tests::Output> {
        let config = self.fleet.config();
        let id = id.to_string();
        std::thread::spawn(move || {
            swtpm_tests::run(
                "vouch-fleet",
                &[
                    "attest",
                    &id,
                    "--wait",
                    "20",
                    "--config",
                    &config.to_string_lossy(),
                ],
                &[],
            )
        })
    }

    /// A connection of compromised device `s` on the device listener, subscribed to its own
    /// commands.
    fn device_conn(&self, s: &Sim) -> Result<Conn, String> {
        let c = Conn::open(&s.id, self.port(), &conn_id());
        c.connack()
            .map_err(|e| format!("{} cannot connect: {e}", s.id.name))?;
        c.subscribe(&format!("devices/{}/cmd/#", s.dev.id), QoS::AtLeastOnce);
        c.suback(SHORT)
            .ok_or_else(|| format!("{}: no SUBACK", s.id.name))?;
        Ok(c)
    }

    /// Requests a challenge for `s` and waits until `conn` receives it; returns the payload.
    fn challenge_for(&self, s: &Sim, conn: &Conn) -> Result<Vec<u8>, String> {
        let topic = format!("devices/{}/cmd/attest", s.dev.id);
        let before = conn
            .messages(Duration::ZERO)
            .iter()
            .filter(|m| m.0 == topic)
            .count();
        let _h = self.request_attest(&s.dev.id);
        let mut got = None;
        let _ = wait_until("a challenge", Duration::from_secs(15), || {
            let m: Vec<_> = conn
                .messages(Duration::from_millis(50))
                .into_iter()
                .filter(|m| m.0 == topic)
                .collect();
            if m.len() > before {
                got = m.last().map(|m| m.1.clone());
            }
            got.is_some()
        });
        got.ok_or_else(|| format!("no challenge for {} reached it", s.id.name))
    }
}

fn log_wait(
    text: impl Fn() -> String,
    from: usize,
    needles: &[&str],
    d: Duration,
    what: &str,
) -> Outcome {
    let mut found = None;
    let _ = wait_until(what, d, || {
        let t = text();
        found = t
            .get(from.min(t.len())..)
            .unwrap_or_default()
            .lines()
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_string);
        found.is_some()
    });
    found
        .map(|l| format!("{what}: {}", l.trim()))
        .ok_or_else(|| {
            let t = text();
            format!(
                "no {what} line with {needles:?}; new lines:\n{}",
                tail(t.get(from.min(t.len())..).unwrap_or_default(), 30)
            )
        })
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn short(id: &str) -> String {
    if id.len() > 16 {
        format!("{}…", &id[..12])
    } else {
        id.to_string()
    }
}

/// The broker's max_packet_size from the generated configuration.
fn broker_limit(dir: &Path) -> Option<usize> {
    std::fs::read_to_string(dir.join("mosquitto.conf"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("max_packet_size "))
        .and_then(|v| v.trim().parse().ok())
}

/// A CONNECT must be refused with CONNACK "not authorized".
fn expect_connack_refused(id: &Identity, port: u16, client_id: &str) -> Outcome {
    let c = Conn::open(id, port, client_id);
    match c.connack() {
        Ok(()) => Err(format!(
            "{} connected with client id {client_id:?} on port {port}",
            id.name
        )),
        Err(why) => match refused_code(&why) {
            Some(code) => Ok(format!("CONNACK {code:?} for client id {client_id:?}")),
            None => Err(format!("refused, but not by CONNACK: {why}")),
        },
    }
}

/// The TLS handshake must fail (the broker refuses the certificate).
fn expect_tls_refused(id: &Identity, port: u16) -> Outcome {
    let c = Conn::open(id, port, &conn_id());
    match c.connack() {
        Ok(()) => Err(format!("{} was accepted on port {port}", id.name)),
        Err(why) if refused_code(&why).is_none() => Ok(format!("TLS refused: {why}")),
        Err(why) => Err(format!("got past TLS, refused later: {why}")),
    }
}

/// An MQTT 5 publish must be answered with PUBACK/PUBREC reason 135 (not authorized).
fn expect_puback_135(id: &Identity, port: u16, topic: &str, payload: &[u8]) -> Outcome {
    let r = pub_v5(id, port, &conn_id(), topic, payload);
    match r.puback_rc() {
        Some(135) => Ok(format!(
            "broker PUBACK reason 135 (not authorized) on {topic}"
        )),
        other => Err(format!(
            "publish to {topic} as {} not refused (reason {other:?}): {}",
            id.name,
            one_line(&r.text, 400)
        )),
    }
}

/// A well-formed boot announcement whose boot id is derived from `label`.
fn boot_payload(label: &str) -> Vec<u8> {
    let digest = ring::digest::digest(&ring::digest::SHA256, label.as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest.as_ref()[..16]);
    protocol::encode(&BootAnnouncement {
        boot_id: vouch_attest::boot::BootId::from_bytes(id),
    })
}

fn escrow_payload(device: &str, volume: &str) -> Vec<u8> {
    let record = vouch_attest::escrow::EscrowRecord::new(device, volume, b"not a real blob");
    protocol::encode(&EscrowDeposit {
        record: serde_json::to_string(&record).unwrap(),
    })
}

fn last_boot_id(w: &World, id: &str) -> String {
    w.fleet.device(id).unwrap_or_default()["device"]["boot_id"].to_string()
}

/// Publishes an oversized message as `id` and checks the broker refused it (the publisher is
/// disconnected, no PUBACK) and that the fleet kept its connection and keeps giving verdicts.
fn oversized(
    w: &World,
    id: &Identity,
    port: u16,
    client_id: &str,
    topic: &str,
    size: usize,
) -> Outcome {
    let limit = broker_limit(&w.fleet.dir()).ok_or("mosquitto.conf sets no max_packet_size")?;
    let (connects, blog) = (w.fleet_connects(), w.broker_log().len());
    let c = Conn::open(id, port, client_id);
    c.connack().map_err(|e| format!("cannot connect: {e}"))?;
    c.publish(topic, QoS::AtLeastOnce, false, vec![b'{'; size]);
    let closed = c.closed_within(Duration::from_secs(10));
    let acked = c.pubacks();
    let Some(why) = closed else {
        return Err(format!(
            "a {size}-byte publish on {topic} was not refused by the broker (limit {limit}, PUBACKs {acked})"
        ));
    };
    if acked > 0 {
        return Err(format!("the broker acknowledged the {size}-byte message"));
    }
    let broker = w
        .broker_wait(blog, &["too large"], Duration::from_secs(2))
        .or_else(|_| w.broker_wait(blog, &["oversize"], Duration::from_millis(100)))
        .unwrap_or_else(|_| "(no broker log line)".into());
    let served = w.attest_trusted(&w.a_id)?;
    if w.fleet_connects() != connects {
        return Err(format!(
            "the fleet reconnected after the {size}-byte message:\n{}",
            tail(&w.server_log(), 20)
        ));
    }
    Ok(format!(
        "broker closed the publisher ({}), limit {limit} bytes; {broker}; fleet kept its connection, {served}",
        one_line(&why, 80)
    ))
}

#[test]
fn hostile_clients_change_nothing_and_are_named() {
    let started = Instant::now();
    let log = testdata().join(LOG);
    let log_bytes = std::fs::read(&log).unwrap();
    let tpm_a = Swtpm::start().unwrap();
    tpm_a.boot_from_log(&log_bytes).unwrap();
    let trust = vec![tpm_a.ca_root_cert(), tpm_a.ca_dir().join("issuercert.pem")];
    let fleet =
        FleetStack::start(&trust, |t| t.replace("jitter_secs = 30", "jitter_secs = 0")).unwrap();
    let dir = fleet.dir();
    let work = tempfile::tempdir().unwrap();
    let wdir = work.path().to_path_buf();

    // The compromised devices C and D: software TPMs booted from the same real log, registered
    // as enrolled, and certificates for software keys the attacker holds.
    let image = BootImage::from_log(&log_bytes).unwrap();
    let sims = provision::make_devices(&dir, &image, 2, |_| {}).unwrap();
    provision::register(&dir.join("state"), &sims).unwrap();
    let mut sims = sims.into_iter();
    let mk = |dev: SimDevice, name: &str| {
        let id = adversary::mint(&dir, &wdir, name, &dev.id, Validity::days_from_now(2)).unwrap();
        Sim { dev, id }
    };
    let c = mk(sims.next().unwrap(), "device-C");
    let d = mk(sims.next().unwrap(), "device-D");
    let claim = Identity::claim(&dir);

    // Eavesdroppers in place before anyone enrolls: the claim certificate on both listeners and
    // device C, subscribed to everything they might learn something from.
    let eaves_claim = Conn::open(&claim, fleet.enroll_port(), &conn_id());
    let eaves_claim_ok = eaves_claim.connack();
    for f in [
        "#",
        "enroll/+/response",
        "enroll/+/request",
        "$SYS/#",
        "devices/#",
    ] {
        eaves_claim.subscribe(f, QoS::AtLeastOnce);
    }
    let eaves_claim_dev = Conn::open(&claim, fleet.port(), &conn_id());
    let eaves_claim_dev_ok = eaves_claim_dev.connack();
    for f in ["#", "enroll/+/response", "devices/+/cmd/#", "$SYS/#"] {
        eaves_claim_dev.subscribe(f, QoS::AtLeastOnce);
    }
    let eaves_c = Conn::open(&c.id, fleet.port(), &conn_id());
    let eaves_c_ok = eaves_c.connack();
    for f in ["#", "enroll/#", "devices/+/cmd/#", "$SYS/#", "$CONTROL/#"] {
        eaves_c.subscribe(f, QoS::AtLeastOnce);
    }

    // The genuine agent (every test swtpm starts from one prepared state, so all would be the
    // same device: one genuine agent, revoked at the very end).
    let state_a = tpm_a.dir().join("agent");
    let a_id = device_id(&tpm_a, &state_a);
    let cfg_a = fleet.agent_config(&tpm_a, &state_a, &log).unwrap();
    let _agent_a: Proc = fleet.start_agent(&cfg_a).unwrap();
    fleet
        .wait_device(&a_id, Duration::from_secs(60), |v| status(v) == "trusted")
        .unwrap_or_else(|e| {
            panic!(
                "{e}\nagent log:\n{}\nbroker log:\n{}",
                std::fs::read_to_string(cfg_a.with_extension("log")).unwrap_or_default(),
                fleet.broker_log()
            )
        });
    eprintln!(
        "set-up: the genuine agent trusted after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let w = World {
        fleet,
        a_id: a_id.clone(),
        a_log: cfg_a.with_extension("log"),
        claim: claim.clone(),
        c,
        d,
        gz: image.eventlog_gz.clone(),
        work: wdir.clone(),
    };
    // A software TPM whose EK the fleet trusts stands in for an attacker who owns a real TPM.
    std::fs::copy(
        w.fleet.dir().join("ca.crt"),
        w.fleet.dir().join("trust-roots").join("test-vendor.pem"),
    )
    .unwrap();
    let fleet_connects_0 = w.fleet_connects();
    let a_losses_0 = w.agent_losses(&w.a_log);
    let mut book = Book::default();

    // ---------------------------------------------------------------- client-id takeover
    let takeover = |w: &World, what: &str, f: &dyn Fn() -> Outcome| -> Outcome {
        let (a0, f0, blog) = (
            w.agent_losses(&w.a_log),
            w.fleet_connects(),
            w.broker_log().len(),
        );
        let r = f()?;
        std::thread::sleep(Duration::from_millis(700));
        let log = w.broker_log();
        let new = log.get(blog..).unwrap_or_default();
        for victim in [w.a_id.as_str(), "vouch-fleet"] {
            if let Some(l) = new
                .lines()
                .find(|l| l.contains(victim) && l.contains("already connected"))
            {
                return Err(format!("{what}: broker took over {victim}: {l}"));
            }
        }
        if w.agent_losses(&w.a_log) != a0 {
            return Err(format!("{what}: agent A lost its connection"));
        }
        if w.fleet_connects() != f0 {
            return Err(format!("{what}: the fleet reconnected"));
        }
        Ok(r)
    };
    let a = w.a_id.clone();
    book.attack(
        "claim cert takes device A's id (no prefix), enrollment listener",
        || {
            takeover(&w, "claim", &|| {
                expect_connack_refused(&w.claim, w.eport(), &a)
            })
        },
    );
    book.attack(
        "claim cert takes device A's id (no prefix), device listener",
        || {
            takeover(&w, "claim", &|| {
                expect_connack_refused(&w.claim, w.port(), &a)
            })
        },
    );
    book.attack(
        "claim cert takes 'vouch-fleet', enrollment listener",
        || {
            takeover(&w, "claim", &|| {
                expect_connack_refused(&w.claim, w.eport(), "vouch-fleet")
            })
        },
    );
    book.attack("claim cert takes 'vouch-fleet', device listener", || {
        takeover(&w, "claim", &|| {
            expect_connack_refused(&w.claim, w.port(), "vouch-fleet")
        })
    });
    book.attack("device C takes device A's id (no prefix)", || {
        takeover(&w, "device C", &|| {
            expect_connack_refused(&w.c.id, w.port(), &a)
        })
    });
    book.attack("device C takes 'vouch-fleet'", || {
        takeover(&w, "device C", &|| {
            expect_connack_refused(&w.c.id, w.port(), "vouch-fleet")
        })
    });
    book.attack(
        "client ids without the vouch-conn- prefix, both listeners",
        || {
            let id = random_hex(8);
            let r1 = expect_connack_refused(&w.claim, w.eport(), &id)?;
            let r2 = expect_connack_refused(&w.c.id, w.port(), &id)?;
            let r3 = expect_connack_refused(&w.claim, w.eport(), "")?;
            Ok(format!("{r1}; {r2}; empty id: {r3}"))
        },
    );
    // The ids the genuine clients send: on the device listener they are replaced by the CN.
    let a_sent = format!("{}{}", protocol::CLIENT_ID_PREFIX, w.a_id);
    for (who, port_is_enroll, sent) in [
        ("claim cert", true, a_sent.clone()),
        ("claim cert", false, a_sent.clone()),
        ("device C", false, a_sent.clone()),
        ("claim cert", true, "vouch-conn-fleet".to_string()),
        ("device C", false, "vouch-conn-fleet".to_string()),
    ] {
        let name = format!(
            "{who} sends the id {} on the {} listener",
            if sent == a_sent {
                "device A sends"
            } else {
                "the fleet sends"
            },
            if port_is_enroll {
                "enrollment"
            } else {
                "device"
            }
        );
        book.attack(&name, || {
            let ident = if who == "device C" { &w.c.id } else { &w.claim };
            let port = if port_is_enroll { w.eport() } else { w.port() };
            takeover(&w, &name, &|| {
                let blog = w.broker_log().len();
                let conn = Conn::open(ident, port, &sent);
                let r = match conn.connack() {
                    Err(why) => format!("refused: {why}"),
                    Ok(()) => {
                        // Named: the broker's connection line shows the id it really uses.
                        let cn = if who == "device C" {
                            w.c.dev.id.clone()
                        } else {
                            "vouch-claim".to_string()
                        };
                        if port_is_enroll {
                            format!(
                                "separate session {sent:?} on the enrollment listener; genuine sessions live on the device listener as their CN"
                            )
                        } else {
                            w.broker_wait(blog, &["New client connected", &format!(" as {cn} ")], SHORT)
                                .map(|l| format!("client id replaced by the CN: {l}"))?
                        }
                    }
                };
                std::thread::sleep(Duration::from_millis(300));
                conn.disconnect();
                Ok(r)
            })
        });
    }

    // ---------------------------------------------------------------- foreign / expired / revoked
    book.attack("foreign-CA certificate named after device A", || {
        let f = adversary::foreign(&w.fleet.dir(), &w.work.join("foreign"), &w.a_id)
            .map_err(|e| e.to_string())?;
        let r1 = expect_tls_refused(&f, w.port())?;
        let r2 = expect_tls_refused(&f, w.eport())?;
        Ok(format!("{r1}; enrollment listener: {r2}"))
    });
    book.attack("expired fleet-CA certificate of device C", || {
        let e = adversary::mint(
            &w.fleet.dir(),
            &w.work,
            "expired",
            &w.c.dev.id,
            Validity::days_from_now(0),
        )?;
        std::thread::sleep(Duration::from_millis(1100));
        expect_tls_refused(&e, w.port())
    });
    book.attack(
        "revoked fleet-CA certificate of device C (on the CRL)",
        || {
            let r = adversary::mint(
                &w.fleet.dir(),
                &w.work,
                "revoked",
                &w.c.dev.id,
                Validity::days_from_now(2),
            )?;
            let ca = vouch_fleet::pki::load_ca(&w.fleet.dir()).map_err(|e| e.to_string())?;
            let serial: vouch_fleet::pki::Serial = r
                .serial
                .clone()
                .unwrap_or_default()
                .parse()
                .map_err(|_| "serial")?;
            vouch_fleet::pki::revoke(&ca, &serial).map_err(|e| e.to_string())?;
            vouch_fleet::pki::broker::reload_broker(&w.fleet.dir().join("mosquitto.pid"))
                .map_err(|e| e.to_string())?;
            std::thread::sleep(Duration::from_millis(500));
            expect_tls_refused(&r, w.port())
        },
    );

    // ---------------------------------------------------------------- oversized messages (1)
    let limit = broker_limit(&w.fleet.dir());
    eprintln!("broker max_packet_size: {limit:?}, protocol limit {MAX_MESSAGE_BYTES}");
    for size in [3 * MIB / 2, 3 * MIB] {
        book.attack(
            &format!(
                "claim cert: {} MiB on its own enroll/<id>/request",
                size as f64 / MIB as f64
            ),
            || {
                let id = conn_id();
                oversized(
                    &w,
                    &w.claim,
                    w.eport(),
                    &id,
                    &format!("enroll/{id}/request"),
                    size,
                )
            },
        );
        book.attack(
            &format!(
                "device C: {} MiB on devices/C/attestation",
                size as f64 / MIB as f64
            ),
            || {
                oversized(
                    &w,
                    &w.c.id,
                    w.port(),
                    &conn_id(),
                    &format!("devices/{}/attestation", w.c.dev.id),
                    size,
                )
            },
        );
    }
    book.attack("claim cert: 1.5 MiB on devices/vouch-claim/boot", || {
        oversized(
            &w,
            &w.claim,
            w.port(),
            &conn_id(),
            "devices/vouch-claim/boot",
            3 * MIB / 2,
        )
    });
    book.attack(
        "device C: just over 1 MiB (between the protocol and broker limits)",
        || {
            let size = MAX_MESSAGE_BYTES + 512;
            let (seq, connects) = (w.audit_seq(), w.fleet_connects());
            let conn = Conn::open(&w.c.id, w.port(), &conn_id());
            conn.connack()?;
            let mut payload = vec![b' '; size];
            payload[0] = b'{';
            conn.publish(
                &format!("devices/{}/attestation", w.c.dev.id),
                QoS::AtLeastOnce,
                false,
                payload,
            );
            let _ = conn.wait(Duration::from_secs(10), |s| {
                matches!(s, Seen::PubAck(_) | Seen::Closed(_))
            });
            let r = if conn.pubacks() > 0 {
                w.audit_wait(seq, &w.c.dev.id, &["too_large"], Duration::from_secs(10))
                    .or_else(|_| {
                        w.audit_wait(seq, &w.c.dev.id, &["exceeds"], Duration::from_secs(1))
                    })?
            } else {
                format!(
                    "broker refused it: {}",
                    conn.closed_within(Duration::ZERO).unwrap_or_default()
                )
            };
            let served = w.attest_trusted(&w.a_id)?;
            if w.fleet_connects() != connects {
                return Err("the fleet reconnected".into());
            }
            Ok(format!("{r}; {served}"))
        },
    );
    book.attack(
        "claim cert: just over 1 MiB on its own enroll/<id>/request",
        || {
            let id = conn_id();
            let conn = Conn::open(&w.claim, w.eport(), &id);
            conn.connack()?;
            conn.subscribe(&format!("enroll/{id}/response"), QoS::AtLeastOnce);
            conn.suback(SHORT).ok_or("no SUBACK")?;
            let mut payload = vec![b' '; MAX_MESSAGE_BYTES + 512];
            payload[0] = b'{';
            conn.publish(
                &format!("enroll/{id}/request"),
                QoS::AtLeastOnce,
                false,
                payload,
            );
            match conn.wait(Duration::from_secs(10), |s| {
                matches!(s, Seen::Message { .. } | Seen::Closed(_))
            }) {
                Some(Seen::Message { payload, .. }) => {
                    let k = response_kind(&payload);
                    if k.starts_with("refused") {
                        Ok(format!("fleet answered {k}"))
                    } else {
                        Err(format!("fleet answered {k}"))
                    }
                }
                Some(Seen::Closed(why)) => Ok(format!("broker refused it: {why}")),
                _ => Err("no answer and no refusal".into()),
            }
        },
    );

    // ---------------------------------------------------------------- malformed content
    let c_conn = w.device_conn(&w.c);
    let c_topic = format!("devices/{}/attestation", w.c.dev.id);
    let malformed: [(&str, Vec<u8>, &[&str]); 4] = [
        ("not JSON", b"\xff\xfe not json {".to_vec(), &["malformed"]),
        (
            "unknown field",
            br#"{"nonce":"AAAA","quote":"AA==","signature":"AA==","pcrs":{},"x":1}"#.to_vec(),
            &["malformed", "unknown field"],
        ),
        (
            "wrong field types",
            br#"{"nonce":7,"quote":[1],"signature":null,"pcrs":"x"}"#.to_vec(),
            &["malformed"],
        ),
        ("empty payload", Vec::new(), &["malformed"]),
    ];
    for (what, payload, needles) in malformed {
        book.attack(&format!("device C: attestation report, {what}"), || {
            let conn = c_conn.as_ref().map_err(Clone::clone)?;
            let seq = w.audit_seq();
            conn.publish(&c_topic, QoS::AtLeastOnce, false, payload);
            w.audit_wait(seq, &w.c.dev.id, needles, Duration::from_secs(10))
        });
    }
    book.attack(
        "device C: undecodable boot announcement and escrow deposit",
        || {
            let conn = c_conn.as_ref().map_err(Clone::clone)?;
            let from = w.server_log().len();
            conn.publish(
                &format!("devices/{}/boot", w.c.dev.id),
                QoS::AtLeastOnce,
                false,
                b"\x00\x01garbage".to_vec(),
            );
            let r1 = w.server_wait(
                from,
                &[&w.c.dev.id, "boot", "refused"],
                Duration::from_secs(10),
            )?;
            conn.publish(
                &format!("devices/{}/escrow", w.c.dev.id),
                QoS::AtLeastOnce,
                false,
                br#"{"record":"{}"}"#.to_vec(),
            );
            let r2 = w.server_wait(
                from,
                &[&w.c.dev.id, "escrow", "refused"],
                Duration::from_secs(10),
            )?;
            Ok(format!("{r1}; {r2}"))
        },
    );

    // ---------------------------------------------------------------- evidence: replay, theft
    // Positive control: C's software TPM answers its own challenge and is trusted.
    book.attack("device C: replays its own (accepted) report", || {
        let conn = c_conn.as_ref().map_err(Clone::clone)?;
        let ch = w.challenge_for(&w.c, conn)?;
        let report = answer(&w.c.dev.tpm, &ch, &w.gz)?;
        let bytes = protocol::encode(&report);
        conn.publish(&c_topic, QoS::AtLeastOnce, false, bytes.clone());
        w.fleet
            .wait_device(&w.c.dev.id, Duration::from_secs(15), |v| {
                v["verdicts"][0]["trusted"] == true
            })
            .map_err(|e| format!("control: C's own answer was not trusted: {e}"))?;
        let verdicts = w.fleet.device(&w.c.dev.id).unwrap_or_default()["verdicts"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0);
        let seq = w.audit_seq();
        conn.publish(&c_topic, QoS::AtLeastOnce, false, bytes);
        let r = w.audit_wait(seq, &w.c.dev.id, &["nonce"], Duration::from_secs(10))?;
        let after = w.fleet.device(&w.c.dev.id).unwrap_or_default()["verdicts"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0);
        if after != verdicts {
            return Err("the replay produced a verdict".into());
        }
        Ok(r)
    });
    book.attack(
        "device D: answers with device C's nonce (a challenge issued to C)",
        || {
            let conn = c_conn.as_ref().map_err(Clone::clone)?;
            let ch = w.challenge_for(&w.c, conn)?;
            let stolen = answer(&w.d.dev.tpm, &ch, &w.gz)?;
            let seq = w.audit_seq();
            let r = pub_v5(
                &w.d.id,
                w.port(),
                &conn_id(),
                &format!("devices/{}/attestation", w.d.dev.id),
                &protocol::encode(&stolen),
            );
            if r.puback_rc() != Some(0) {
                return Err(format!("D's publish failed: {}", r.text));
            }
            let refused = w.audit_wait(seq, &w.d.dev.id, &["nonce"], Duration::from_secs(10))?;
            // C's genuine answer to the same challenge must still be accepted.
            let genuine = answer(&w.c.dev.tpm, &ch, &w.gz)?;
            let before = w.fleet.device(&w.c.dev.id).unwrap_or_default()["verdicts"][0]["id"]
                .as_i64()
                .unwrap_or(0);
            conn.publish(
                &c_topic,
                QoS::AtLeastOnce,
                false,
                protocol::encode(&genuine),
            );
            w.fleet
                .wait_device(&w.c.dev.id, Duration::from_secs(15), |v| {
                    v["verdicts"][0]["id"].as_i64().unwrap_or(0) > before
                        && v["verdicts"][0]["trusted"] == true
                })
                .map_err(|e| format!("C's genuine answer after the theft was not accepted: {e}"))?;
            Ok(format!("{refused}; C's own answer still trusted"))
        },
    );
    book.attack(
        "device C: quote signed by another TPM (D's AK) for C's nonce",
        || {
            let conn = c_conn.as_ref().map_err(Clone::clone)?;
            let ch = w.challenge_for(&w.c, conn)?;
            let forged = answer(&w.d.dev.tpm, &ch, &w.gz)?;
            let seq = w.audit_seq();
            conn.publish(&c_topic, QoS::AtLeastOnce, false, protocol::encode(&forged));
            let r = w
                .audit_wait(seq, &w.c.dev.id, &["untrusted"], Duration::from_secs(15))
                .or_else(|_| {
                    w.audit_wait(seq, &w.c.dev.id, &["refused"], Duration::from_secs(1))
                })?;
            let v = w.fleet.device(&w.c.dev.id).unwrap_or_default();
            if v["verdicts"][0]["trusted"] == true {
                return Err("the forged quote was trusted".into());
            }
            Ok(r)
        },
    );
    book.attack("device C: gzip bomb as event log (64 MiB of zeros)", || {
        let conn = c_conn.as_ref().map_err(Clone::clone)?;
        let ch = w.challenge_for(&w.c, conn)?;
        let bomb = gzip(&vec![0u8; 64 * MIB]);
        let report = answer(&w.c.dev.tpm, &ch, &bomb)?;
        let seq = w.audit_seq();
        conn.publish(&c_topic, QoS::AtLeastOnce, false, protocol::encode(&report));
        let r = w.audit_wait(seq, &w.c.dev.id, &["inflates"], Duration::from_secs(15))?;
        if w.fleet.device(&w.c.dev.id).unwrap_or_default()["verdicts"][0]["trusted"] == true {
            return Err("trusted with a bomb".into());
        }
        Ok(format!("{r} ({} compressed bytes)", bomb.len()))
    });

    // ---------------------------------------------------------------- ACL crossings
    let b_boot = last_boot_id(&w, &w.a_id);
    let acl: Vec<(String, Identity, bool, String, Vec<u8>)> = vec![
        (
            "device C writes devices/A/attestation".into(),
            w.c.id.clone(),
            false,
            format!("devices/{}/attestation", w.a_id),
            b"{}".to_vec(),
        ),
        (
            "device C writes devices/A/boot".into(),
            w.c.id.clone(),
            false,
            format!("devices/{}/boot", w.a_id),
            boot_payload("hijacked"),
        ),
        (
            "device C writes devices/A/escrow".into(),
            w.c.id.clone(),
            false,
            format!("devices/{}/escrow", w.a_id),
            escrow_payload(&w.a_id, "11111111-1111-4111-8111-111111111111"),
        ),
        (
            "device C writes a fake challenge to devices/A/cmd/attest".into(),
            w.c.id.clone(),
            false,
            format!("devices/{}/cmd/attest", w.a_id),
            b"{}".to_vec(),
        ),
        (
            "device C writes enroll/<id>/request".into(),
            w.c.id.clone(),
            false,
            format!("enroll/{}/request", conn_id()),
            b"{}".to_vec(),
        ),
        (
            "device C writes devices/vouch-fleet/boot".into(),
            w.c.id.clone(),
            false,
            "devices/vouch-fleet/boot".into(),
            boot_payload("x"),
        ),
        (
            "device C writes fleet/alerts".into(),
            w.c.id.clone(),
            false,
            "fleet/alerts".into(),
            b"{}".to_vec(),
        ),
        (
            "claim cert writes devices/A/boot (enrollment listener)".into(),
            w.claim.clone(),
            true,
            format!("devices/{}/boot", w.a_id),
            boot_payload("hijacked"),
        ),
        (
            "claim cert writes devices/A/attestation (device listener)".into(),
            w.claim.clone(),
            false,
            format!("devices/{}/attestation", w.a_id),
            b"{}".to_vec(),
        ),
        (
            "claim cert writes another claimant's enroll/<id>/request".into(),
            w.claim.clone(),
            true,
            format!("enroll/{}/request", conn_id()),
            b"{}".to_vec(),
        ),
        (
            "device C kicks A through $CONTROL/dynamic-security/v1".into(),
            w.c.id.clone(),
            false,
            "$CONTROL/dynamic-security/v1".into(),
            kick(&w.a_id),
        ),
        (
            "claim cert kicks the fleet through $CONTROL/dynamic-security/v1".into(),
            w.claim.clone(),
            true,
            "$CONTROL/dynamic-security/v1".into(),
            kick("vouch-fleet"),
        ),
        (
            "claim cert kicks A through $CONTROL/dynamic-security/v1 (device listener)".into(),
            w.claim.clone(),
            false,
            "$CONTROL/dynamic-security/v1".into(),
            kick(&w.a_id),
        ),
    ];
    for (name, ident, enroll, topic, payload) in acl {
        book.attack(&name, || {
            let port = if enroll { w.eport() } else { w.port() };
            let (a0, f0) = (w.agent_losses(&w.a_log), w.fleet_connects());
            let r = expect_puback_135(&ident, port, &topic, &payload)?;
            std::thread::sleep(Duration::from_millis(300));
            if w.agent_losses(&w.a_log) != a0 || w.fleet_connects() != f0 {
                return Err(format!("{r}, yet A or the fleet lost its connection"));
            }
            Ok(r)
        });
    }
    book.attack("device C: will message on devices/A/boot", || {
        let conn = Conn::open_with(
            &w.c.id,
            w.port(),
            &conn_id(),
            ConnOpts {
                will: Some((
                    format!("devices/{}/boot", w.a_id),
                    boot_payload("will"),
                    false,
                )),
                ..ConnOpts::default()
            },
        );
        let r = match conn.connack() {
            Err(why) => format!("CONNECT refused: {why}"),
            Ok(()) => {
                conn.abort();
                std::thread::sleep(Duration::from_secs(1));
                "will published by the broker as C".into()
            }
        };
        if last_boot_id(&w, &w.a_id) != b_boot {
            return Err(format!("{r}: A's boot id changed"));
        }
        if r.starts_with("CONNECT refused") {
            return Ok(r);
        }
        // mosquitto accepts the will at CONNECT and checks it against the ACL when it fires:
        // the same publish from C, over MQTT 5, names the refusal.
        let same = expect_puback_135(
            &w.c.id,
            w.port(),
            &format!("devices/{}/boot", w.a_id),
            &boot_payload("will"),
        )?;
        Ok(format!(
            "{r}, dropped by the ACL (A's boot id unchanged); the same publish: {same}"
        ))
    });
    book.attack(
        "device C: retained QoS 2 message on devices/A/cmd/attest",
        || {
            let r =
                pub_v5_qos2_retained(&w.c.id, w.port(), &format!("devices/{}/cmd/attest", w.a_id));
            if r.contains("RC:135") || r.contains("Publish 1 failed: Not authorized") {
                Ok("broker PUBREC reason 135: mosquitto_pub reports \"Publish 1 failed: Not authorized\"".into())
            } else {
                Err(format!("not refused: {}", one_line(&r, 1500)))
            }
        },
    );
    book.attack("claim cert: reserved name devices/vouch-claim/boot", || {
        let (seq, from) = (w.audit_seq(), w.server_log().len());
        let r = pub_v5(
            &w.claim,
            w.port(),
            &conn_id(),
            "devices/vouch-claim/boot",
            &boot_payload("x"),
        );
        match r.puback_rc() {
            Some(135) => Ok("broker PUBACK reason 135 (not authorized)".into()),
            _ => {
                let named = w.server_wait(from, &["vouch-claim"], SHORT).or_else(|_| {
                    w.audit_wait(seq, "", &["vouch-claim"], Duration::from_millis(100))
                });
                named.map_err(|_| {
                    format!(
                        "the broker accepted it (reason {:?}) and the fleet dropped it silently",
                        r.puback_rc()
                    )
                })
            }
        }
    });

    // ---------------------------------------------------------------- enrollment sabotage (3)
    let claimant = |label: &str| Claimant::new(&w.fleet.dir(), label);
    // One enrolling connection: subscribed to its response, request sent, challenge received.
    let begin = |cl: &Claimant, rid: &str| -> Result<(Conn, Vec<u8>), String> {
        let conn = Conn::open(&w.claim, w.eport(), rid);
        conn.connack()?;
        conn.subscribe(&format!("enroll/{rid}/response"), QoS::AtLeastOnce);
        conn.suback(SHORT).ok_or("no SUBACK")?;
        conn.publish(
            &format!("enroll/{rid}/request"),
            QoS::AtLeastOnce,
            false,
            cl.request(rid)?,
        );
        let Some(Seen::Message { payload, .. }) = conn.wait(Duration::from_secs(10), |s| {
            matches!(s, Seen::Message { .. })
        }) else {
            return Err("no enrollment response".into());
        };
        if response_kind(&payload) != "challenge" {
            return Err(format!("expected a challenge: {}", response_kind(&payload)));
        }
        Ok((conn, payload))
    };
    let respond = |conn: &Conn, rid: &str, payload: Vec<u8>| -> String {
        let n = conn.messages(Duration::ZERO).len();
        conn.publish(
            &format!("enroll/{rid}/request"),
            QoS::AtLeastOnce,
            false,
            payload,
        );
        let mut got = String::from("no answer");
        let _ = wait_until("an enrollment answer", Duration::from_secs(10), || {
            let m = conn.messages(Duration::from_millis(50));
            if m.len() > n {
                got = response_kind(&m[n].1);
                true
            } else {
                false
            }
        });
        got
    };
    book.attack(
        "wrong proof for a pending request id does not cancel the right one",
        || {
            let v = claimant("victim1")?;
            let rid = conn_id();
            let (conn, challenge) = begin(&v, &rid)?;
            // The attacker (granted the id) publishes a wrong proof on the victim's topic.
            drop(conn);
            let att = Conn::open(&w.claim, w.eport(), &rid);
            att.connack()?;
            att.subscribe(&format!("enroll/{rid}/response"), QoS::AtLeastOnce);
            att.suback(SHORT).ok_or("no SUBACK")?;
            let refused = respond(&att, &rid, v.proof(&rid, &challenge, true)?);
            att.disconnect();
            if !refused.contains("secret_mismatch") {
                return Err(format!("the wrong proof was answered {refused}"));
            }
            let conn = Conn::open(&w.claim, w.eport(), &rid);
            conn.connack()?;
            conn.subscribe(&format!("enroll/{rid}/response"), QoS::AtLeastOnce);
            conn.suback(SHORT).ok_or("no SUBACK")?;
            let ok = respond(&conn, &rid, v.proof(&rid, &challenge, false)?);
            if !ok.starts_with("accepted") {
                return Err(format!(
                    "wrong proof ({refused}) cancelled the enrollment: then {ok}"
                ));
            }
            Ok(format!(
                "wrong proof {refused}; the genuine proof was then {ok}"
            ))
        },
    );
    book.attack(
        "a request with other keys for a pending request id does not overwrite it",
        || {
            let v = claimant("victim2")?;
            let x = claimant("overwriter")?;
            let rid = conn_id();
            let (conn, challenge) = begin(&v, &rid)?;
            drop(conn);
            let att = Conn::open(&w.claim, w.eport(), &rid);
            att.connack()?;
            att.subscribe(&format!("enroll/{rid}/response"), QoS::AtLeastOnce);
            att.suback(SHORT).ok_or("no SUBACK")?;
            let refused = respond(&att, &rid, x.request(&rid)?);
            att.disconnect();
            if !refused.starts_with("refused") {
                return Err(format!("the overwriting request was answered {refused}"));
            }
            let conn = Conn::open(&w.claim, w.eport(), &rid);
            conn.connack()?;
            conn.subscribe(&format!("enroll/{rid}/response"), QoS::AtLeastOnce);
            conn.suback(SHORT).ok_or("no SUBACK")?;
            let ok = respond(&conn, &rid, v.proof(&rid, &challenge, false)?);
            if !ok.starts_with("accepted") {
                return Err(format!(
                    "overwrite ({refused}) broke the enrollment: then {ok}"
                ));
            }
            Ok(format!(
                "overwrite {refused}; the genuine proof was then {ok}"
            ))
        },
    );
    book.attack(
        "enrollment: malformed message and request id not matching the topic",
        || {
            let rid = conn_id();
            let conn = Conn::open(&w.claim, w.eport(), &rid);
            conn.connack()?;
            conn.subscribe(&format!("enroll/{rid}/response"), QoS::AtLeastOnce);
            conn.suback(SHORT).ok_or("no SUBACK")?;
            let r1 = respond(&conn, &rid, b"{\"step\":\"request\",\"evil\":1}".to_vec());
            let x = claimant("mismatch")?;
            let r2 = respond(&conn, &rid, x.request(&conn_id())?);
            if r1.contains("refused: malformed") && r2.contains("refused: request_id") {
                Ok(format!("{r1}; {r2}"))
            } else {
                Err(format!("{r1}; {r2}"))
            }
        },
    );
    book.attack(
        "enrollment flood from one claimant does not starve another",
        || {
            let from = w.server_log().len();
            let rid = conn_id();
            let flood = Conn::open(&w.claim, w.eport(), &rid);
            flood.connack()?;
            for _ in 0..400 {
                flood.publish(
                    &format!("enroll/{rid}/request"),
                    QoS::AtMostOnce,
                    false,
                    b"{}".to_vec(),
                );
            }
            std::thread::sleep(Duration::from_millis(1500));
            let v = claimant("patient")?;
            let vrid = conn_id();
            let t = Instant::now();
            let (conn, challenge) = begin(&v, &vrid)?;
            let ok = respond(&conn, &vrid, v.proof(&vrid, &challenge, false)?);
            if !ok.starts_with("accepted") {
                return Err(format!("the other claimant got {ok}"));
            }
            let named = w.server_wait(from, &["rate limit"], SHORT)?;
            Ok(format!(
                "other claimant enrolled in {:.1} s; {named}",
                t.elapsed().as_secs_f64()
            ))
        },
    );

    // ---------------------------------------------------------------- revocation (4)
    book.attack(
        "revoked device D: live session cut, later messages refused",
        || {
            let conn = Conn::open(&w.d.id, w.port(), &conn_id());
            conn.connack()?;
            // Control: D's deposit is accepted while D is enrolled.
            let seq = w.audit_seq();
            conn.publish(
                &format!("devices/{}/escrow", w.d.dev.id),
                QoS::AtLeastOnce,
                false,
                escrow_payload(&w.d.dev.id, "22222222-2222-4222-8222-222222222222"),
            );
            w.audit_wait(seq, &w.d.dev.id, &["deposited"], Duration::from_secs(10))
                .map_err(|e| format!("control deposit: {e}"))?;
            let out = w.fleet.cli(&["revoke", &w.d.dev.id]);
            if out.code != 0 {
                return Err(format!("revoke failed: {}", out.stderr));
            }
            let t = Instant::now();
            let cut = conn
                .closed_within(Duration::from_secs(10))
                .ok_or("the revoked device's live session was not cut within 10 s")?;
            let cut_s = t.elapsed().as_secs_f64();
            // The registered certificate is on the CRL; the attacker's second one is not: the
            // broker lets it in, every fleet handler must refuse.
            let conn = Conn::open(&w.d.id, w.port(), &conn_id());
            conn.connack().map_err(|e| {
                format!("second certificate refused at connect already ({e}): cannot test handlers")
            })?;
            let (seq, from) = (w.audit_seq(), w.server_log().len());
            let boot0 = last_boot_id(&w, &w.d.dev.id);
            conn.publish(
                &format!("devices/{}/escrow", w.d.dev.id),
                QoS::AtLeastOnce,
                false,
                escrow_payload(&w.d.dev.id, "33333333-3333-4333-8333-333333333333"),
            );
            conn.publish(
                &format!("devices/{}/boot", w.d.dev.id),
                QoS::AtLeastOnce,
                false,
                boot_payload("after-revocation"),
            );
            conn.publish(
                &format!("devices/{}/attestation", w.d.dev.id),
                QoS::AtLeastOnce,
                false,
                br#"{"nonce":"AAAA","quote":"AA==","signature":"AA==","pcrs":{}}"#.to_vec(),
            );
            std::thread::sleep(Duration::from_secs(2));
            let audit = w.audit_after(seq);
            if audit.iter().any(|r| r.3.contains("33333333")) {
                return Err("a revoked device's escrow deposit was stored".into());
            }
            if last_boot_id(&w, &w.d.dev.id) != boot0 {
                return Err("a revoked device's boot announcement was recorded".into());
            }
            let refused = |what: &str| {
                audit
                    .iter()
                    .filter(|r| r.2 == w.d.dev.id && r.1.contains("refused") && r.3.contains(what))
                    .map(|r| format!("{} {}", r.1, r.3))
                    .next()
                    .or_else(|| {
                        w.server_log()
                            .get(from..)
                            .unwrap_or_default()
                            .lines()
                            .find(|l| {
                                l.contains(&w.d.dev.id) && l.contains(what) && l.contains("refused")
                            })
                            .map(|l| l.trim().to_string())
                    })
            };
            let named: Vec<String> = ["/escrow", "/boot", "attestation"]
                .iter()
                .map(|what| {
                    refused(what)
                        .ok_or_else(|| format!("no refusal named for {what}: audit {audit:?}"))
                })
                .collect::<Result<_, _>>()?;
            Ok(format!(
                "session cut in {cut_s:.1} s ({}); then {}",
                one_line(&cut, 60),
                one_line(&named.join(" / "), 300)
            ))
        },
    );

    // ---------------------------------------------------------------- eavesdroppers (3)
    let own = |conn: &Conn| -> Vec<String> {
        conn.messages(Duration::ZERO)
            .into_iter()
            .map(|m| m.0)
            .collect()
    };
    book.attack("claim cert reads #, enroll/+/response, enroll/+/request, $SYS/# (enrollment listener)", || {
        eaves_claim_ok.clone()?;
        let subs = eaves_claim.seen_after(Duration::ZERO).into_iter().filter(|s| matches!(s, Seen::SubAck(_))).count();
        let got = own(&eaves_claim);
        if got.is_empty() {
            Ok(format!("{subs} subscriptions granted, 0 messages delivered during the genuine and 4 scripted enrollments (ACL: read only enroll/<own client id>/response)"))
        } else {
            Err(format!("delivered: {got:?}"))
        }
    });
    book.attack(
        "claim cert reads #, devices/+/cmd/#, $SYS/# (device listener)",
        || match &eaves_claim_dev_ok {
            Err(e) => Ok(format!("refused at connect: {e}")),
            Ok(()) => {
                let got = own(&eaves_claim_dev);
                if got.is_empty() {
                    Ok(
                        "0 messages delivered over the whole run (ACL: claim reads nothing here)"
                            .into(),
                    )
                } else {
                    Err(format!("delivered: {got:?}"))
                }
            }
        },
    );
    book.attack("device C reads #, enroll/#, devices/+/cmd/#, $SYS/#, $CONTROL/#", || {
        eaves_c_ok.clone()?;
        let got: Vec<String> = own(&eaves_c)
            .into_iter()
            .filter(|t| !t.starts_with(&format!("devices/{}/cmd/", w.c.dev.id)))
            .collect();
        if got.is_empty() {
            Ok("only its own devices/C/cmd/ messages delivered over the whole run (ACL: pattern read devices/%u/cmd/#)".into())
        } else {
            Err(format!("delivered: {got:?}"))
        }
    });

    // ---------------------------------------------------------------- the genuine device
    book.attack("after everything: genuine device A still served, never knocked off", || {
        let r = w.attest_trusted(&w.a_id)?;
        let lost = w.agent_losses(&w.a_log) - a_losses_0;
        let reconnects = w.fleet_connects() - fleet_connects_0;
        if lost > 0 || reconnects > 0 {
            return Err(format!(
                "{r}, but A lost its connection {lost} times and the fleet reconnected {reconnects} times"
            ));
        }
        Ok(format!("{r}; A lost its connection 0 times, the fleet reconnected 0 times"))
    });

    book.attack(
        "last: vouch-fleet revoke A: the genuine agent's session is cut, reconnects refused",
        || {
            let (lost0, conn0) = (w.agent_losses(&w.a_log), w.agent_connects(&w.a_log));
            let (blog, seq) = (w.broker_log().len(), w.audit_seq());
            let out = w.fleet.cli(&["revoke", &w.a_id]);
            if out.code != 0 {
                return Err(format!("revoke failed: {}", out.stderr));
            }
            let t = Instant::now();
            wait_until("A's connection lost", Duration::from_secs(10), || {
                w.agent_losses(&w.a_log) > lost0
            })
            .map_err(|_| {
                format!(
                    "agent A kept its session 10 s after revoke:\n{}",
                    tail(&w.agent_log(&w.a_log), 10)
                )
            })?;
            let cut = t.elapsed().as_secs_f64();
            std::thread::sleep(Duration::from_secs(5));
            if w.agent_connects(&w.a_log) != conn0 {
                return Err("agent A reconnected after its revocation".into());
            }
            let broker = w
                .broker_wait(blog, &["revoked"], SHORT)
                .or_else(|_| w.broker_wait(blog, &["verify failed"], Duration::from_millis(10)))?;
            let audit = w.audit_wait(seq, &w.a_id, &["revoked"], SHORT)?;
            Ok(format!("A's session cut in {cut:.1} s; {broker}; {audit}"))
        },
    );
    let table = book.table();
    eprintln!("{table}");
    eprintln!(
        "{} attacks in {:.0} s",
        book.rows.len(),
        started.elapsed().as_secs_f64()
    );
    let failed: Vec<&Row> = book.rows.iter().filter(|r| !r.held).collect();
    assert!(
        failed.is_empty(),
        "{} of {} attacks were not refused or not named:\n{}\nserver log tail:\n{}\nbroker log tail:\n{}",
        failed.len(),
        book.rows.len(),
        failed
            .iter()
            .map(|r| format!("- {}: {}", r.attack, one_line(&r.reason, 600)))
            .collect::<Vec<_>>()
            .join("\n"),
        tail(&w.server_log(), 40),
        tail(&w.broker_log(), 40)
    );
    assert!(book.rows.len() >= 30);
}

/// The dynamic-security command that would disconnect `username`.
fn kick(username: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "commands": [{"command": "createClient", "username": username},
                     {"command": "deleteClient", "username": username}]
    }))
    .unwrap()
}

/// `mosquitto_pub -V mqttv5 -q 2 -r` of a fake challenge; returns its debug output.
fn pub_v5_qos2_retained(id: &Identity, port: u16, topic: &str) -> String {
    let out = std::process::Command::new("mosquitto_pub")
        .args(["-V", "mqttv5", "-q", "2", "-r", "-d", "-h", "localhost"])
        .args(["-p", &port.to_string(), "-i", &conn_id(), "-t", topic])
        .args([
            "-m",
            r#"{"nonce":"AAAA","pcrs":[{"bank":"sha256","pcrs":[0]}]}"#,
        ])
        .arg("--cafile")
        .arg(&id.ca)
        .arg("--cert")
        .arg(&id.cert)
        .arg("--key")
        .arg(&id.key)
        .output();
    match out {
        Ok(o) => format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => e.to_string(),
    }
}
