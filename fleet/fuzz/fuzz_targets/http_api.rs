//! The HTTP API's router on a real (empty) fleet: arbitrary method, path, query, content type
//! and body. Nothing may panic, and no request gets a 5xx (`/readyz` aside: without a broker it
//! is 503 by design).
//!
//! Input: byte 0 picks the method, byte 1 the content type; then the request target up to the
//! first 0 byte (bytes outside the URI alphabet percent-encoded), the rest is the body.
#![no_main]

use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;
use vouch_fleet::http::tls::Peer;
use vouch_fleet::http::{ear::EarSigner, router, AppState};

struct Fixture {
    _dir: tempfile::TempDir,
    app: axum::Router,
    rt: tokio::runtime::Runtime,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let fleet = dir.path().join("fleet");
        vouch_fleet::pki::init_fleet(&vouch_fleet::pki::InitOptions {
            dir: fleet.clone(),
            broker_port: 18883,
            enroll_port: 18884,
            dynsec_plugin: None,
            server_names: vec![],
            force: false,
        })
        .unwrap();
        let cfg = vouch_fleet::config::FleetConfig::load(&fleet.join("fleet.toml")).unwrap();
        let srv = vouch_fleet::serve::Server::new(cfg, vouch_fleet::serve::verifier::Verifier::new())
            .unwrap();
        let ear = EarSigner::new(&p256::SecretKey::random(&mut rand::rngs::OsRng));
        let app = router(AppState {
            srv: Arc::new(srv),
            ear: Arc::new(ear),
            tls: None,
        })
        .layer(axum::Extension(Peer::Local));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        Fixture { _dir: dir, app, rt }
    })
}

const METHODS: [&str; 6] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"];
const TYPES: [Option<&str>; 3] = [Some("application/json"), Some("text/plain"), None];

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let method = METHODS[usize::from(data[0]) % METHODS.len()];
    let ctype = TYPES[usize::from(data[1]) % TYPES.len()];
    let rest = &data[2..];
    let (target, body) = match rest.iter().position(|b| *b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let mut uri = String::from("/");
    for b in target {
        if b.is_ascii_alphanumeric() || b"/-._~?&=%{}".contains(b) {
            uri.push(char::from(*b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    let mut req = Request::builder().method(method).uri(&uri);
    if let Some(t) = ctype {
        req = req.header("content-type", t);
    }
    let Ok(req) = req.body(Body::from(body.to_vec())) else {
        return;
    };
    let f = fixture();
    let res = f.rt.block_on(f.app.clone().oneshot(req)).unwrap();
    let status = res.status().as_u16();
    assert!(
        status < 500 || (uri.starts_with("/readyz") && status == 503),
        "{method} {uri}: {status}"
    );
});
