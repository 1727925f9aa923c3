//! HTTPS with operator certificates against a real `vouch-fleet serve` (with mosquitto):
//! `vouch-fleet operator add` issues alice's and bob's certificates (and the operator CA and
//! server certificate); without a certificate only the public operations answer; an override
//! escrow release asked by alice is refused to alice's own approval and goes through with bob's,
//! both in the audit log; `operator revoke alice` stops alice on her open connection and at the
//! next handshake; `operator list` shows it.

mod serve_support;

use serde_json::Value;
use serve_support::{free_port_besides, Fleet, Settings};
use std::path::Path;
use std::time::Duration;
use vouch_fleet::registry::{now_ms, NewDevice};

const DEVICE: &str = "abababababababababababababababababababababababababababababababab";
const VOLUME: &str = "0b9a7c1e-0000-4000-8000-0000000000b1";

fn client(dir: &Path, who: Option<&str>) -> reqwest::Client {
    let ca = std::fs::read(dir.join("operators/ca.crt")).unwrap();
    let mut b = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .use_rustls_tls();
    if let Some(name) = who {
        let mut pem = std::fs::read(dir.join(format!("ops/{name}.crt"))).unwrap();
        pem.extend(std::fs::read(dir.join(format!("ops/{name}.key"))).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

async fn call(c: &reqwest::Client, method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
    let mut rq = c.request(method.parse().unwrap(), url);
    if let Some(b) = body {
        rq = rq
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let r = rq.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn cli(config: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_vouch-fleet"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_certificates_dual_control_and_revocation() {
    let port_cell = std::cell::Cell::new(0u16);
    let fleet = Fleet::start_with(Settings::default(), &[], |text, dir| {
        let port = free_port_besides(dir);
        port_cell.set(port);
        let text = format!("{text}\n[http]\nlisten = \"127.0.0.1:{port}\"\ntls = true\n");
        let config = dir.join("fleet.toml");
        std::fs::write(&config, &text).unwrap();
        let ops = dir.join("ops");
        std::fs::create_dir_all(&ops).unwrap();
        for name in ["alice", "bob"] {
            let out = cli(
                &config,
                &["operator", "add", name, "--out-dir", ops.to_str().unwrap()],
            );
            assert!(out.status.success(), "{out:?}");
        }
        // Two certificates for one name at once: refused.
        let out = cli(
            &config,
            &[
                "operator",
                "add",
                "alice",
                "--out-dir",
                ops.to_str().unwrap(),
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        text
    });
    let port = port_cell.get();
    fleet.wait_log("HTTP API listening on https://", Duration::from_secs(10));
    let dir = fleet.dir.clone();
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.join("ops/alice.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600);
    let base = format!("https://127.0.0.1:{port}");
    let (anon, alice, bob) = (
        client(&dir, None),
        client(&dir, Some("alice")),
        client(&dir, Some("bob")),
    );

    // Without a certificate: public operations only.
    assert_eq!(
        call(&anon, "GET", &format!("{base}/healthz"), None).await.0,
        200
    );
    assert_eq!(
        call(&anon, "GET", &format!("{base}/metrics"), None).await.0,
        200
    );
    assert_eq!(
        call(&anon, "GET", &format!("{base}/.well-known/jwks.json"), None)
            .await
            .0,
        200
    );
    let (s, b) = call(&anon, "GET", &format!("{base}/api/v1/devices"), None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("operator_certificate_required"))
    );
    let (s, _) = call(&alice, "GET", &format!("{base}/api/v1/devices"), None).await;
    assert_eq!(s, 200);

    // A device with a deposited escrow record (the record sealed to the fleet's escrow key).
    let keygen = std::process::Command::new(env!("CARGO_BIN_EXE_vouch-fleet"))
        .args(["escrow", "keygen", "--key"])
        .arg(dir.join("state/escrow.key.pem"))
        .arg("--public")
        .arg(dir.join("escrow.pub.pem"))
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{keygen:?}");
    let public = vouch_attest::escrow::public_from_pem(
        &std::fs::read_to_string(dir.join("escrow.pub.pem")).unwrap(),
    )
    .unwrap();
    let blob = vouch_attest::escrow::seal_to(
        &public,
        b"recovery passphrase",
        &vouch_attest::escrow::aad(VOLUME, DEVICE),
        &mut rand::rngs::OsRng,
    )
    .unwrap();
    let record = vouch_attest::escrow::EscrowRecord::new(DEVICE, VOLUME, &blob);
    let reg = fleet.registry();
    reg.upsert_device(
        &NewDevice {
            id: DEVICE,
            ek_public: b"ek",
            ak_public: b"ak",
            tls_public: b"tls",
            cert_serial: "4000000000000000000000000000abcd",
        },
        now_ms(),
    )
    .unwrap();
    reg.record_boot(DEVICE, "b0071d00-0000-4000-8000-0000000000b2", now_ms())
        .unwrap();
    reg.deposit_escrow(
        DEVICE,
        VOLUME,
        &serde_json::to_string(&record).unwrap(),
        now_ms(),
    )
    .unwrap();

    // No trusted verdict: a plain release is refused by the rule; an override waits for a
    // second operator.
    let url = format!("{base}/api/v1/devices/{DEVICE}/escrow/{VOLUME}/release");
    let (s, b) = call(&alice, "POST", &url, Some("{}")).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("release_refused")),
        "{b}"
    );
    let (s, b) = call(
        &alice,
        "POST",
        &url,
        Some(r#"{"override_reason":"disk moved to new board"}"#),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["status"], "awaiting_approval");
    let aid = b["approval_id"].as_i64().unwrap();
    let approve = format!("{base}/api/v1/escrow/approvals/{aid}/approve");
    let (s, b) = call(&alice, "POST", &approve, None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("second_operator_required")),
        "{b}"
    );
    assert!(reg
        .escrow_approval(aid)
        .unwrap()
        .unwrap()
        .release_id
        .is_none());
    let (s, b) = call(&bob, "POST", &approve, None).await;
    assert_eq!(s, 202, "{b}");
    let rid = b["release_id"].as_i64().unwrap();
    let release = reg.escrow_release(rid).unwrap().unwrap();
    assert!(release.basis.starts_with("OVERRIDE"), "{release:?}");
    let (s, b) = call(&bob, "POST", &approve, None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("already_approved"))
    );
    let audit: Vec<String> = reg
        .audit_entries(Some(DEVICE))
        .unwrap()
        .into_iter()
        .map(|r| format!("{} {}", r.kind, r.detail))
        .collect();
    assert!(
        audit
            .iter()
            .any(|r| r.starts_with("escrow_approval") && r.contains("asked by alice")),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|r| r.starts_with("escrow_approval") && r.contains("approved by bob")),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|r| r.starts_with("escrow_release") && r.contains("by alice (approved by bob)")),
        "{audit:?}"
    );

    // Revoking alice: refused on her open connection, and at the next handshake.
    let out = cli(&fleet.config, &["operator", "revoke", "alice"]);
    assert!(out.status.success(), "{out:?}");
    let (s, b) = call(&alice, "GET", &format!("{base}/api/v1/devices"), None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("operator_revoked")),
        "{b}"
    );
    let fresh = client(&dir, Some("alice"));
    let r = fresh.get(format!("{base}/api/v1/devices")).send().await;
    assert!(
        r.is_err(),
        "a revoked certificate completed a handshake: {r:?}"
    );
    assert_eq!(
        call(&bob, "GET", &format!("{base}/api/v1/devices"), None)
            .await
            .0,
        200
    );
    let out = cli(&fleet.config, &["operator", "list", "--json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let state: Vec<(String, bool)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["revoked"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        state,
        [("alice".to_string(), true), ("bob".to_string(), false)]
    );
    let ops: Vec<String> = reg
        .audit_entries(None)
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == "operator")
        .map(|r| r.detail)
        .collect();
    assert_eq!(ops.len(), 3, "{ops:?}");
}
