//! A small MQTT client for the tests: connects with a rustls configuration, subscribes, and
//! hands incoming messages and connection errors over a channel.

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub enum Incoming {
    Connected,
    SubAck,
    Message(String, Vec<u8>),
    Error(String),
}

pub struct Client {
    pub client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Incoming>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects as `id` and subscribes to `subs`; Err with the connection error when refused.
pub async fn connect(
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    id: &str,
    subs: &[String],
) -> Result<Client, String> {
    let mut o = MqttOptions::new(id, "localhost", port);
    o.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_max_packet_size(4 << 20, 4 << 20)
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    let (client, mut ev) = AsyncClient::new(o, 16);
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let item = match ev.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => Incoming::Connected,
                Ok(Event::Incoming(Packet::SubAck(_))) => Incoming::SubAck,
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    Incoming::Message(p.topic.clone(), p.payload.to_vec())
                }
                Ok(_) => continue,
                Err(e) => {
                    let _ = tx.send(Incoming::Error(format!("{e:?}")));
                    return;
                }
            };
            if tx.send(item).is_err() {
                return;
            }
        }
    });
    for s in subs {
        client
            .subscribe(s.clone(), QoS::AtLeastOnce)
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut c = Client { client, rx, task };
    let mut acks = 0;
    let mut connected = false;
    let wait = async {
        while !(connected && acks == subs.len()) {
            match c.rx.recv().await {
                Some(Incoming::Connected) => connected = true,
                Some(Incoming::SubAck) => acks += 1,
                Some(Incoming::Message(..)) => {}
                Some(Incoming::Error(e)) => return Err(e),
                None => return Err("closed".to_string()),
            }
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .map_err(|_| "connect timed out".to_string())??;
    Ok(c)
}

impl Client {
    pub async fn publish(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    /// The next message on `topic` (others are skipped).
    pub async fn next_on(&mut self, topic: &str, timeout: Duration) -> Vec<u8> {
        let wait = async {
            loop {
                match self.rx.recv().await {
                    Some(Incoming::Message(t, p)) if t == topic => return Ok(p),
                    Some(Incoming::Error(e)) => return Err(e),
                    None => return Err("closed".into()),
                    _ => {}
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => panic!("connection failed waiting for {topic}: {e}"),
            Err(_) => panic!("nothing on {topic} within {timeout:?}"),
        }
    }

    /// Waits until the connection fails; returns the error text.
    pub async fn wait_error(&mut self, timeout: Duration) -> Option<String> {
        let wait = async {
            loop {
                match self.rx.recv().await {
                    Some(Incoming::Error(e)) => return e,
                    None => return "closed".into(),
                    _ => {}
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok()
    }
}
