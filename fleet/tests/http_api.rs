//! The HTTP API of a real `vouch-fleet serve` (with mosquitto and a swtpm device played by the
//! test agent), talked to over HTTP by reqwest: health and readiness, the device list and a
//! device's verdict history with its reasons split into check and PCR, `/metrics` accepted by
//! `promtool check metrics`, the EAR checked by the README's relying-party snippet (PyJWT,
//! fetching the JWKS from the server), the page, on-demand attestation and revocation through
//! the API, a stale device (alerted once on MQTT, to the webhook and in the audit log, shown by
//! the CLI), HMAC-signed webhooks verified with openssl and retried after a failure, JSON errors
//! for bad requests, and the OpenAPI document checked against the live routes.

mod http_support;
mod serve_support;

use http_support::{openssl_hmac, promtool_check, readme_relying_party_check, Receiver};
use serde_json::Value;
use serve_support::agent::TestAgent;
use serve_support::{free_port_besides, mqtt, testdata, Fleet, Settings, BOOT_LOG};
use std::time::{Duration, Instant};
use swtpm_tests::Swtpm;
use vouch_attest::protocol::{self, Alert, BootAnnouncement, EnrollResponse};

const SECS: Duration = Duration::from_secs(10);
const WEBHOOK_KEY: &str = "3f1c0ffee-webhook-key";

async fn get(c: &reqwest::Client, url: &str) -> (u16, String) {
    let r = c.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Polls `url` until `ok(status, body)`, or fails after `timeout`.
async fn wait_for(
    c: &reqwest::Client,
    url: &str,
    timeout: Duration,
    ok: impl Fn(u16, &str) -> bool,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let (s, body) = get(c, url).await;
        if ok(s, &body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{url}: {s} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn metric(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_metrics_ear_stale_webhooks_and_page_against_a_live_fleet() {
    let swtpm = Swtpm::start().unwrap();
    let log = std::fs::read(testdata(BOOT_LOG)).unwrap();
    swtpm.boot_from_log(&log).unwrap();
    let hook = Receiver::start(1);
    let http_port_cell = std::cell::Cell::new(0u16);
    let fleet = Fleet::start_with(
        Settings::default(),
        &TestAgent::swtpm_trust(&swtpm),
        |text, dir| {
            let http_port = free_port_besides(dir);
            http_port_cell.set(http_port);
            std::fs::write(dir.join("webhook.secret"), format!("{WEBHOOK_KEY}\n")).unwrap();
            // Challenges every 5 s; stale after 2 intervals without a trusted verdict.
            let text = text
                .replace("interval_secs = 300", "interval_secs = 5")
                .replace("jitter_secs = 30", "jitter_secs = 1")
                .replace("stale_after_intervals = 3", "stale_after_intervals = 2");
            format!(
                "{text}\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n\n[[webhooks]]\n\
                 url = \"http://127.0.0.1:{}/hook\"\nsecret_file = \"webhook.secret\"\n",
                hook.port
            )
        },
    );
    let http_port = http_port_cell.get();
    let base = format!("http://127.0.0.1:{http_port}");
    let c = reqwest::Client::new();
    fleet.wait_log("HTTP API listening", SECS);

    // Health and readiness (registry and broker) need nothing.
    let (s, body) = get(&c, &format!("{base}/healthz")).await;
    assert_eq!((s, json(&body)["status"].as_str()), (200, Some("ok")));
    let ready = wait_for(&c, &format!("{base}/readyz"), SECS, |s, _| s == 200).await;
    assert_eq!(json(&ready)["broker"], true);

    // A device enrolls and is trusted.
    let ca = swtpm.ca_dir();
    let agent = TestAgent::new(&swtpm, &ca.join("issuercert.pem"), &ca.join("signkey.pem"));
    let EnrollResponse::Accepted {
        device_id,
        certificate_pem,
    } = agent.enroll(&fleet).await
    else {
        panic!("enrollment refused:\n{}", fleet.server_log());
    };
    let ops_tls = vouch_fleet::serve::mqtt::client_tls(
        &fleet.ca(),
        &fleet.dir.join("fleet.crt"),
        &fleet.dir.join("fleet.key"),
    )
    .unwrap();
    let mut ops = mqtt::connect(
        fleet.enroll_port,
        ops_tls,
        "vouch-conn-ops",
        &["fleet/alerts".into()],
    )
    .await
    .unwrap();
    let mut dev = agent
        .connect_device(&fleet, &device_id, &certificate_pem)
        .await
        .unwrap();
    let cmd = format!("devices/{device_id}/cmd/attest");
    let att = format!("devices/{device_id}/attestation");
    let boot = BootAnnouncement {
        boot_id: "b0071d00-0000-4000-8000-0000000000a1".parse().unwrap(),
    };
    dev.publish(
        &format!("devices/{device_id}/boot"),
        protocol::encode(&boot),
    )
    .await;
    let ch = dev.next_on(&cmd, SECS).await;
    dev.publish(&att, protocol::encode(&agent.answer(&ch, &log)))
        .await;
    let v1 = fleet.wait_verdict(&device_id, 0, SECS);
    assert!(v1.trusted, "{:?}", v1.reasons);

    // The device list and the device.
    let (s, body) = get(&c, &format!("{base}/api/v1/devices")).await;
    assert_eq!(s, 200, "{body}");
    let list = json(&body);
    let d = &list["devices"][0];
    assert_eq!(d["id"], device_id.as_str());
    assert_eq!(d["status"], "trusted");
    assert_eq!(d["stale"], false);
    assert_eq!(d["last_verdict"]["id"], v1.id);
    let (s, body) = get(&c, &format!("{base}/api/v1/devices/{device_id}")).await;
    assert_eq!(s, 200, "{body}");
    let one = json(&body);
    assert_eq!(one["verdicts"][0]["trusted"], true);
    assert_eq!(
        one["device"]["last_boot_id"],
        "b0071d00-0000-4000-8000-0000000000a1"
    );

    // Metrics: promtool accepts them, and they count what happened (the counters follow the
    // registry once a second).
    let text = wait_for(&c, &format!("{base}/metrics"), SECS, |s, t| {
        s == 200 && metric(t, "vouch_attestations_total{verdict=\"trusted\"} ") == Some(1.0)
    })
    .await;
    let (ok, why) = promtool_check(&text);
    assert!(ok, "promtool check metrics: {why}\n{text}");
    assert_eq!(
        metric(&text, "vouch_attestations_total{verdict=\"trusted\"} "),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "vouch_devices{status=\"trusted\"} "),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "vouch_appraisal_duration_seconds_count "),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "vouch_broker_connected "),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "vouch_enrollments_total "),
        Some(1.0),
        "{text}"
    );
    assert_eq!(metric(&text, "vouch_devices_stale "), Some(0.0), "{text}");

    // The EAR, checked as the README shows a relying party doing it (PyJWT; the key fetched
    // from the well-known URL).
    let nonce = "bm9uY2UtZnJvbS10aGUtcmVseWluZy1wYXJ0eQ";
    let out = readme_relying_party_check(&base, &device_id, nonce).unwrap();
    assert!(out.starts_with("affirming "), "{out}");
    let vector = json(out.trim_start_matches("affirming "));
    assert_eq!(vector["instance-identity"], 2, "{out}");
    assert_eq!(vector["hardware"], 2, "{out}");
    // A token for another nonce fails the snippet's nonce check; a changed token fails PyJWT.
    let (_, token) = get(
        &c,
        &format!("{base}/api/v1/devices/{device_id}/ear?nonce=other-nonce-1"),
    )
    .await;
    assert!(token.split('.').count() == 3, "{token}");

    // The page.
    let (s, page) = get(&c, &format!("{base}/")).await;
    assert_eq!(s, 200);
    assert!(
        page.contains(&device_id) && page.contains("trusted"),
        "{page}"
    );
    let (s, page) = get(&c, &format!("{base}/devices/{device_id}")).await;
    assert_eq!(s, 200);
    assert!(page.contains(&format!("#{}", v1.id)), "{page}");

    // The device stops answering: stale after 2 intervals, alerted once.
    let stale = wait_for(
        &c,
        &format!("{base}/api/v1/devices"),
        Duration::from_secs(20),
        |_, b| b.contains("\"stale\":true"),
    )
    .await;
    assert!(stale.contains(&device_id));
    let alert: Alert = loop {
        let a: Alert = protocol::decode("alert", &ops.next_on("fleet/alerts", SECS).await).unwrap();
        if a.kind == "stale" {
            break a;
        }
    };
    assert_eq!(alert.device_id, device_id);
    assert!(
        alert.reasons[0].contains("no trusted verdict since"),
        "{alert:?}"
    );
    let (_, text) = get(&c, &format!("{base}/metrics")).await;
    assert_eq!(metric(&text, "vouch_devices_stale "), Some(1.0), "{text}");
    let cli = fleet.cli(&["devices"]);
    let cli_text = String::from_utf8_lossy(&cli.stdout);
    assert!(cli_text.contains("STALE"), "{cli_text}");
    let cli = fleet.cli(&["device", "show", &device_id]);
    let cli_text = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli_text.contains("liveness:    STALE (last trusted verdict: 20"),
        "{cli_text}"
    );
    let (_, page) = get(&c, &format!("{base}/devices/{device_id}")).await;
    assert!(page.contains("class=\"stale\""), "{page}");
    // The EAR of a stale device is no longer affirming.
    let out = readme_relying_party_check(&base, &device_id, nonce).unwrap();
    assert!(out.starts_with("warning "), "{out}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stale_rows = fleet
        .registry()
        .audit_entries(Some(&device_id))
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == "stale")
        .count();
    assert_eq!(stale_rows, 1, "alerted more than once");

    // Something is measured into PCR7 that the log does not show; on-demand attestation through
    // the API: untrusted, the reason names the check and the PCR.
    agent.measure_unlogged(7);
    let r = c
        .post(format!("{base}/api/v1/devices/{device_id}/attest"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let ch = dev.next_on(&cmd, SECS).await;
    dev.publish(&att, protocol::encode(&agent.answer(&ch, &log)))
        .await;
    let v2 = fleet.wait_verdict(&device_id, v1.id, SECS);
    assert!(!v2.trusted);
    let (_, body) = get(&c, &format!("{base}/api/v1/devices/{device_id}?limit=1")).await;
    let one = json(&body);
    let reasons = one["verdicts"][0]["reasons"].as_array().unwrap().clone();
    assert_eq!(one["verdicts"].as_array().unwrap().len(), 1);
    let pcr7 = reasons
        .iter()
        .find(|r| r["check"] == "eventlog.pcr7")
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(pcr7["pcr"], 7, "{body}");
    let out = readme_relying_party_check(&base, &device_id, nonce).unwrap();
    assert!(out.starts_with("contraindicated "), "{out}");
    wait_for(&c, &format!("{base}/metrics"), SECS, |_, t| {
        metric(
            t,
            "vouch_attestation_failures_total{check=\"eventlog.pcr7\"} ",
        ) == Some(1.0)
    })
    .await;

    // Revocation through the API.
    let r = c
        .post(format!("{base}/api/v1/devices/{device_id}/revoke"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let b = json(&r.text().await.unwrap());
    assert_eq!(b["status"], "revoked");
    assert!(dev.wait_error(SECS).await.is_some(), "session not closed");
    let r = c
        .post(format!("{base}/api/v1/devices/{device_id}/attest"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
    let text = wait_for(&c, &format!("{base}/metrics"), SECS, |_, t| {
        metric(t, "vouch_revocations_total ") == Some(1.0)
    })
    .await;
    let (ok, why) = promtool_check(&text);
    assert!(ok, "{why}");

    // Webhooks: the first delivery was refused (500) and retried; every body is signed
    // (HMAC-SHA256, checked with openssl); events: first verdict, stale, trusted → untrusted,
    // revoked.
    let deadline = Instant::now() + Duration::from_secs(20);
    let events = loop {
        let got = hook.received();
        let accepted: Vec<_> = got.iter().filter(|r| r.answered == 204).cloned().collect();
        if accepted.iter().any(|r| r.event == "revoked") || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(events[0].answered, 500, "{events:?}");
    assert_eq!(
        events[1].body, events[0].body,
        "the refused event was not retried first"
    );
    for r in &events {
        assert_eq!(r.signature, openssl_hmac(WEBHOOK_KEY, &r.body), "{r:?}");
    }
    let kinds: Vec<(String, Value)> = events
        .iter()
        .filter(|r| r.answered == 204)
        .map(|r| (r.event.clone(), json(&String::from_utf8_lossy(&r.body))))
        .collect();
    let names: Vec<&str> = kinds.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["verdict_changed", "stale", "verdict_changed", "revoked"],
        "{kinds:?}"
    );
    assert_eq!(kinds[0].1["trusted"], true);
    assert_eq!(kinds[2].1["trusted"], false);
    assert_eq!(kinds[2].1["previous_trusted"], true);
    assert!(kinds
        .iter()
        .all(|(_, b)| b["device_id"] == device_id.as_str()));

    // Bad requests get 4xx with a JSON error naming what was wrong.
    for (method, path, body, status, code) in [
        (
            "GET",
            "/api/v1/devices/bad%20id".to_string(),
            None,
            400,
            "invalid_device_id",
        ),
        (
            "GET",
            format!("/api/v1/devices/{}", "0".repeat(64)),
            None,
            404,
            "no_device",
        ),
        (
            "GET",
            format!("/api/v1/devices/{device_id}?limit=0"),
            None,
            400,
            "invalid_limit",
        ),
        (
            "GET",
            format!("/api/v1/devices/{device_id}?bogus=1"),
            None,
            400,
            "invalid_query",
        ),
        (
            "GET",
            format!("/api/v1/devices/{device_id}/ear?nonce=a%20b"),
            None,
            400,
            "invalid_nonce",
        ),
        (
            "DELETE",
            "/api/v1/devices".to_string(),
            None,
            405,
            "method_not_allowed",
        ),
        ("GET", "/api/v2/nothing".to_string(), None, 404, "no_route"),
        (
            "PUT",
            format!("/api/v1/devices/{device_id}/policy"),
            Some("{\"policy\":"),
            400,
            "invalid_body",
        ),
        (
            "PUT",
            format!("/api/v1/devices/{device_id}/policy"),
            Some("{\"policy\":\"../x\"}"),
            400,
            "invalid_policy_name",
        ),
        (
            "PUT",
            format!("/api/v1/devices/{device_id}/policy"),
            Some("{\"policy\":\"absent\"}"),
            409,
            "policy_unusable",
        ),
        (
            "POST",
            format!(
                "/api/v1/devices/{device_id}/escrow/0b9a7c1e-0000-4000-8000-000000000001/release"
            ),
            Some("{}"),
            404,
            "no_escrow_record",
        ),
        (
            "POST",
            format!("/api/v1/devices/{device_id}/escrow/not-a-uuid!/release"),
            Some("{}"),
            400,
            "invalid_volume",
        ),
        (
            "POST",
            "/api/v1/escrow/approvals/x/approve".to_string(),
            None,
            400,
            "invalid_path",
        ),
        (
            "POST",
            "/api/v1/escrow/approvals/9/approve".to_string(),
            None,
            404,
            "no_approval",
        ),
    ] {
        let mut rq = c.request(method.parse().unwrap(), format!("{base}{path}"));
        if let Some(b) = body {
            rq = rq.header("content-type", "application/json").body(b);
        }
        let r = rq.send().await.unwrap();
        let got = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(got, status, "{method} {path}: {text}");
        assert_eq!(
            json(&text)["error"]["code"],
            code,
            "{method} {path}: {text}"
        );
    }

    // A web page cannot use the loopback listener: another site's Origin, or a DNS name rebound
    // to 127.0.0.1, is refused before anything happens.
    for (header, value, code) in [
        ("origin", "http://evil.example", "cross_origin"),
        ("host", "evil.example:80", "host_refused"),
    ] {
        let r = c
            .post(format!("{base}/api/v1/devices/{device_id}/attest"))
            .header(header, value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 403);
        assert_eq!(json(&r.text().await.unwrap())["error"]["code"], code);
    }
    let r = c
        .get(format!("{base}/api/v1/devices"))
        .header("origin", format!("http://127.0.0.1:{http_port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // The OpenAPI document against the live routes: every documented operation is routed
    // (never the no_route or wrong-method answer), and only those.
    let (_, doc) = get(&c, &format!("{base}/api/v1/openapi.json")).await;
    let doc = json(&doc);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ops_seen = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{id}", &"0".repeat(64))
            .replace("{volume}", "0b9a7c1e-0000-4000-8000-000000000001")
            .replace("{approval}", "999");
        for (method, op) in item.as_object().unwrap() {
            ops_seen += 1;
            let mut rq = c.request(
                method.to_uppercase().parse().unwrap(),
                format!("{base}{concrete}"),
            );
            if op.get("requestBody").is_some() {
                rq = rq.header("content-type", "application/json").body("{}");
            }
            let r = rq.send().await.unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            let code = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
            assert!(
                status != 405 && code.as_deref() != Some("no_route"),
                "{method} {path} ({}) is documented but not routed: {status} {text}",
                op["operationId"]
            );
            for other in ["get", "post", "put", "delete"] {
                if item.get(other).is_none() {
                    let r = c
                        .request(
                            other.to_uppercase().parse().unwrap(),
                            format!("{base}{concrete}"),
                        )
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(
                        r.status().as_u16(),
                        405,
                        "{other} {path} is routed but not documented"
                    );
                }
            }
        }
    }
    assert_eq!(ops_seen, vouch_fleet::http::openapi::OPS.len());
}
