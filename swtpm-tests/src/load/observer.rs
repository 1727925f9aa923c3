//! A passive MQTT observer for the latency benchmark: connected with the fleet's certificate
//! (the fleet may read every topic) under its own client id, it timestamps every challenge
//! (`devices/+/cmd/attest`) and every report (`devices/+/attestation`) the broker delivers, keyed
//! by nonce. Next to the verdict rows this splits the end-to-end latency into: fleet until the
//! broker delivers the challenge, device answer (two broker hops and the agent), and broker
//! delivery of the report until the fleet stores the verdict.

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vouch_attest::protocol::{self, AttestChallenge, AttestationReport};
use vouch_fleet::serve::mqtt::{client_tls, TlsError};

/// When the observer saw a challenge and its report (µs since the Unix epoch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// The challenge was delivered.
    pub challenge_us: Option<i64>,
    /// The report was delivered.
    pub report_us: Option<i64>,
}

/// The observer could not start.
#[derive(Debug, thiserror::Error)]
pub enum ObserverError {
    /// The fleet's TLS identity could not be loaded.
    #[error("observer TLS identity")]
    Tls(#[source] TlsError),
    /// Its runtime could not be started.
    #[error("starting the observer runtime")]
    Runtime(#[source] std::io::Error),
}

/// A running observer; stops when dropped.
pub struct Observer {
    seen: Arc<Mutex<HashMap<Vec<u8>, Seen>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl Observer {
    /// Connects to `localhost:port` with the fleet identity of `fleet_dir` (ca.crt, fleet.crt,
    /// fleet.key) and starts recording. `port` must be the broker's enrollment listener: on the
    /// device listener the fleet identity's client id is the server's own, and connecting there
    /// would disconnect the server.
    pub fn start(fleet_dir: &Path, port: u16) -> Result<Observer, ObserverError> {
        let tls = client_tls(
            &fleet_dir.join("ca.crt"),
            &fleet_dir.join("fleet.crt"),
            &fleet_dir.join("fleet.key"),
        )
        .map_err(ObserverError::Tls)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ObserverError::Runtime)?;
        let mut o = MqttOptions::new("vouch-conn-bench-observer", "localhost", port);
        o.set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_max_packet_size(4 << 20, 4 << 20)
            .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
        let seen: Arc<Mutex<HashMap<Vec<u8>, Seen>>> = Arc::new(Mutex::new(HashMap::new()));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let record = seen.clone();
        std::thread::spawn(move || {
            rt.block_on(async move {
                let (client, mut events) = AsyncClient::new(o, 8);
                loop {
                    let ev = tokio::select! {
                        e = events.poll() => e,
                        _ = &mut stopped => return,
                    };
                    match ev {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            for t in ["devices/+/cmd/attest", "devices/+/attestation"] {
                                let _ = client.try_subscribe(t, QoS::AtMostOnce);
                            }
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            let at = now_us();
                            let challenge = p.topic.ends_with("/cmd/attest");
                            let nonce = if challenge {
                                protocol::decode::<AttestChallenge>("challenge", &p.payload)
                                    .map(|c| c.nonce)
                            } else {
                                protocol::decode::<AttestationReport>("report", &p.payload)
                                    .map(|r| r.nonce)
                            };
                            if let (Ok(nonce), Ok(mut m)) = (nonce, record.lock()) {
                                let e = m.entry(nonce).or_default();
                                if challenge {
                                    e.challenge_us = Some(at);
                                } else {
                                    e.report_us = Some(at);
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            });
        });
        Ok(Observer {
            seen,
            stop: Some(stop),
        })
    }

    /// Everything seen so far, ordered by challenge time (entries without one last).
    pub fn seen(&self) -> Vec<Seen> {
        let mut v: Vec<Seen> = self
            .seen
            .lock()
            .map(|m| m.values().copied().collect())
            .unwrap_or_default();
        v.sort_by_key(|s| s.challenge_us.unwrap_or(i64::MAX));
        v
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}
