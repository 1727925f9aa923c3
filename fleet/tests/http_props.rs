//! Property-based test of the HTTP API's input handling against a real `vouch-fleet serve`
//! (with mosquitto): every operation of the served OpenAPI document is driven with generated
//! bad input (path segments of arbitrary bytes, percent-encoded, invalid UTF-8 included; random
//! query strings; arbitrary bodies and content types; other methods). No answer is a 5xx, and
//! every 4xx carries the JSON error body.

mod serve_support;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;
use serve_support::{free_port_besides, Fleet, Settings};
use std::time::Duration;

fn encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (*b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One generated request.
#[derive(Debug, Clone)]
struct Input {
    op: usize,
    method: Option<&'static str>,
    segments: Vec<Vec<u8>>,
    query: Vec<(Vec<u8>, Vec<u8>)>,
    body: Option<Vec<u8>>,
    content_type: Option<&'static str>,
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..80),
        "[0-9a-f]{64}".prop_map(String::into_bytes),
        "[A-Za-z0-9._-]{1,200}".prop_map(String::into_bytes),
        Just(b"..".to_vec()),
        Just(b"-1".to_vec()),
        Just(b"99999999999999999999999".to_vec()),
    ]
}

fn json_body() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
    ];
    let value = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("policy".to_string()),
                    Just("override_reason".to_string()),
                    "[a-z_]{1,10}"
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    value.prop_map(|v| v.to_string().into_bytes())
}

fn input(ops: usize) -> impl Strategy<Value = Input> {
    (
        0..ops,
        prop_oneof![
            4 => Just(None),
            1 => prop_oneof![
                Just(Some("GET")),
                Just(Some("POST")),
                Just(Some("PUT")),
                Just(Some("DELETE")),
                Just(Some("PATCH"))
            ],
        ],
        proptest::collection::vec(bytes(), 2),
        proptest::collection::vec((bytes(), bytes()), 0..4),
        prop_oneof![
            Just(None),
            json_body().prop_map(Some),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Some),
        ],
        prop_oneof![
            Just(Some("application/json")),
            Just(Some("text/plain")),
            Just(None)
        ],
    )
        .prop_map(|(op, method, segments, query, body, content_type)| Input {
            op,
            method,
            segments,
            query,
            body,
            content_type,
        })
}

#[test]
fn bad_input_gets_json_4xx_never_5xx() {
    let http_port_cell = std::cell::Cell::new(0u16);
    let fleet = Fleet::start_with(Settings::default(), &[], |text, dir| {
        let http_port = free_port_besides(dir);
        http_port_cell.set(http_port);
        format!("{text}\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n")
    });
    let http_port = http_port_cell.get();
    fleet.wait_log("HTTP API listening", Duration::from_secs(10));
    let base = format!("http://127.0.0.1:{http_port}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = reqwest::Client::new();
    let doc: Value = rt.block_on(async {
        let t = c
            .get(format!("{base}/api/v1/openapi.json"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        serde_json::from_str(&t).unwrap()
    });
    // (method, path template) of every documented operation.
    let mut ops: Vec<(String, String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops.push((
                method.to_uppercase(),
                path.clone(),
                op["operationId"].as_str().unwrap().to_string(),
            ));
        }
    }
    assert!(ops.len() >= 15, "{ops:?}");
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    let seen = std::cell::RefCell::new(std::collections::BTreeMap::<u16, u32>::new());
    let result = runner.run(&input(ops.len()), |inp| {
        let (method, template, id) = &ops[inp.op];
        let mut segs = inp.segments.iter();
        let path: String = template
            .split('/')
            .map(|s| {
                if s.starts_with('{') {
                    encode(segs.next().map(Vec::as_slice).unwrap_or(b""))
                } else {
                    s.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let query: Vec<String> = inp
            .query
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        let url = if query.is_empty() {
            format!("{base}{path}")
        } else {
            format!("{base}{path}?{}", query.join("&"))
        };
        let method = inp.method.unwrap_or(method.as_str());
        let (status, text) = rt.block_on(async {
            let mut rq = c.request(method.parse().unwrap(), &url);
            if let Some(ct) = inp.content_type {
                rq = rq.header("content-type", ct);
            }
            if let Some(b) = &inp.body {
                rq = rq.body(b.clone());
            }
            let r = rq.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        });
        *seen.borrow_mut().entry(status).or_default() += 1;
        prop_assert!(
            status < 500 || (id == "readyz" && status == 503),
            "{method} {url} ({id}) -> {status}: {text}"
        );
        if (400..500).contains(&status) {
            let v: Value = serde_json::from_str(&text).map_err(|e| {
                TestCaseError::fail(format!("{method} {url}: not JSON ({e}): {text}"))
            })?;
            prop_assert!(
                v["error"]["code"].is_string() && v["error"]["message"].is_string(),
                "{method} {url}: {text}"
            );
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}\n{}", fleet.server_log());
    }
    let seen = seen.into_inner();
    eprintln!("statuses: {seen:?}");
    // The generated input reached the validation of the operations, not only the router.
    assert!(seen.get(&400).copied().unwrap_or(0) > 20, "{seen:?}");
    assert!(seen.get(&404).copied().unwrap_or(0) > 20, "{seen:?}");
}

#[test]
fn init_http_port_writes_the_http_section() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("f");
    let init = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_vouch-fleet"))
            .args(["init", "--dir"])
            .arg(&dir)
            .args(["--broker-port", "18883", "--enroll-port", "18884"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = init(&["--http-port", "0"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = init(&["--http-port", "18480"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("http://127.0.0.1:18480/"));
    let cfg = vouch_fleet::config::FleetConfig::load(&dir.join("fleet.toml")).unwrap();
    assert_eq!(cfg.http_listen, Some("127.0.0.1:18480".parse().unwrap()));
    assert!(!cfg.http_tls);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.join("fleet.toml"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}
