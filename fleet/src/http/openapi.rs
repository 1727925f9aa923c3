//! The table of the server's operations and the OpenAPI 3.1 document made from it (served at
//! `/api/v1/openapi.json`). The router is built from the same table ([`super::router`]), so a
//! documented operation without a handler, or a handler without documentation, cannot exist;
//! `fleet/tests/http_api.rs` checks the served document against the live routes.

use serde_json::{json, Map, Value};

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum In {
    /// A path segment.
    Path,
    /// A query parameter.
    Query,
}

/// One parameter.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Name.
    pub name: &'static str,
    /// Where.
    pub place: In,
    /// JSON schema type (`string`, `integer`).
    pub ty: &'static str,
    /// What it is.
    pub doc: &'static str,
}

/// One operation.
#[derive(Debug, Clone, Copy)]
pub struct Op {
    /// `operationId`, also the router's key to its handler.
    pub id: &'static str,
    /// `get`, `post`, `put`.
    pub method: &'static str,
    /// Path template (`{id}` segments).
    pub path: &'static str,
    /// One line.
    pub summary: &'static str,
    /// Parameters.
    pub params: &'static [Param],
    /// The JSON request body's schema, if it takes one.
    pub body: Option<&'static str>,
    /// Success status and what comes back.
    pub ok: (u16, &'static str),
    /// The content type of the success answer.
    pub produces: &'static str,
}

const ID: Param = Param {
    name: "id",
    place: In::Path,
    ty: "string",
    doc: "Device id (64 hex digits: SHA-256 of the EK public key).",
};

const JSON: &str = "application/json";

/// Every operation the server offers.
pub const OPS: &[Op] = &[
    Op {
        id: "healthz",
        method: "get",
        path: "/healthz",
        summary: "Liveness of the process.",
        params: &[],
        body: None,
        ok: (200, "The process serves requests."),
        produces: JSON,
    },
    Op {
        id: "readyz",
        method: "get",
        path: "/readyz",
        summary: "Readiness: the registry answers and the broker connection is up (503 if not).",
        params: &[],
        body: None,
        ok: (200, "Ready."),
        produces: JSON,
    },
    Op {
        id: "metrics",
        method: "get",
        path: "/metrics",
        summary: "Prometheus metrics (text exposition format 0.0.4).",
        params: &[],
        body: None,
        ok: (200, "The metrics."),
        produces: "text/plain; version=0.0.4",
    },
    Op {
        id: "openapi",
        method: "get",
        path: "/api/v1/openapi.json",
        summary: "This document.",
        params: &[],
        body: None,
        ok: (200, "The OpenAPI document."),
        produces: JSON,
    },
    Op {
        id: "jwks",
        method: "get",
        path: "/.well-known/jwks.json",
        summary: "The public key (JWK set) that verifies the EAR tokens.",
        params: &[],
        body: None,
        ok: (200, "The JWK set."),
        produces: JSON,
    },
    Op {
        id: "listDevices",
        method: "get",
        path: "/api/v1/devices",
        summary: "Every device with its status, staleness and last verdict.",
        params: &[],
        body: None,
        ok: (200, "The devices."),
        produces: JSON,
    },
    Op {
        id: "getDevice",
        method: "get",
        path: "/api/v1/devices/{id}",
        summary: "One device: keys, status, policy, and its verdict history with every reason \
                  (check, event index, PCR).",
        params: &[
            ID,
            Param {
                name: "limit",
                place: In::Query,
                ty: "integer",
                doc: "How many verdicts, newest first (1-1000, default 20).",
            },
        ],
        body: None,
        ok: (200, "The device."),
        produces: JSON,
    },
    Op {
        id: "getEar",
        method: "get",
        path: "/api/v1/devices/{id}/ear",
        summary: "The device's latest verdict as a signed EAT Attestation Result (ES256 JWT).",
        params: &[
            ID,
            Param {
                name: "nonce",
                place: In::Query,
                ty: "string",
                doc: "The relying party's nonce (8-88 base64url characters), returned as \
                      eat_nonce.",
            },
        ],
        body: None,
        ok: (200, "The token (application/jwt)."),
        produces: "application/jwt",
    },
    Op {
        id: "attestDevice",
        method: "post",
        path: "/api/v1/devices/{id}/attest",
        summary: "Challenge the device now (as `vouch-fleet attest`); the verdict appears in \
                  its history.",
        params: &[ID],
        body: None,
        ok: (202, "Queued."),
        produces: JSON,
    },
    Op {
        id: "revokeDevice",
        method: "post",
        path: "/api/v1/devices/{id}/revoke",
        summary: "Revoke the device's certificate (as `vouch-fleet revoke`).",
        params: &[ID],
        body: None,
        ok: (200, "Revoked."),
        produces: JSON,
    },
    Op {
        id: "setPolicy",
        method: "put",
        path: "/api/v1/devices/{id}/policy",
        summary: "Assign a policy to the device (as `vouch-fleet device set-policy`).",
        params: &[ID],
        body: Some("PolicyAssignment"),
        ok: (200, "Assigned."),
        produces: JSON,
    },
    Op {
        id: "listPolicies",
        method: "get",
        path: "/api/v1/policies",
        summary: "The policies the server loaded, and those it could not use.",
        params: &[],
        body: None,
        ok: (200, "The policies."),
        produces: JSON,
    },
    Op {
        id: "releaseEscrow",
        method: "post",
        path: "/api/v1/devices/{id}/escrow/{volume}/release",
        summary: "Release a volume's recovery passphrase to the device (as `vouch-fleet escrow \
                  release`). With override_reason the release waits for a second operator.",
        params: &[
            ID,
            Param {
                name: "volume",
                place: In::Path,
                ty: "string",
                doc: "The volume's UUID.",
            },
        ],
        body: Some("EscrowRelease"),
        ok: (202, "Queued, or (override) waiting for approval."),
        produces: JSON,
    },
    Op {
        id: "listApprovals",
        method: "get",
        path: "/api/v1/escrow/approvals",
        summary: "Override releases waiting for (or given) a second operator's approval.",
        params: &[],
        body: None,
        ok: (200, "The approval requests."),
        produces: JSON,
    },
    Op {
        id: "approveRelease",
        method: "post",
        path: "/api/v1/escrow/approvals/{approval}/approve",
        summary: "Approve an override release: a second operator, distinct from the one who \
                  asked; then it is queued.",
        params: &[Param {
            name: "approval",
            place: In::Path,
            ty: "integer",
            doc: "The approval request's id.",
        }],
        body: None,
        ok: (202, "Approved and queued."),
        produces: JSON,
    },
    Op {
        id: "audit",
        method: "get",
        path: "/api/v1/audit",
        summary: "The audit log (newest last) and the check of its hash chain.",
        params: &[
            Param {
                name: "device",
                place: In::Query,
                ty: "string",
                doc: "Only this device's rows.",
            },
            Param {
                name: "limit",
                place: In::Query,
                ty: "integer",
                doc: "At most this many of the newest rows (1-10000, default 1000).",
            },
        ],
        body: None,
        ok: (200, "The rows and the chain check."),
        produces: JSON,
    },
    Op {
        id: "page",
        method: "get",
        path: "/",
        summary: "The fleet overview page (HTML).",
        params: &[],
        body: None,
        ok: (200, "The page."),
        produces: "text/html",
    },
    Op {
        id: "devicePage",
        method: "get",
        path: "/devices/{id}",
        summary: "A device's page with its verdict history and reasons (HTML).",
        params: &[ID],
        body: None,
        ok: (200, "The page."),
        produces: "text/html",
    },
];

/// The operations anyone may call, also over HTTPS without an operator certificate.
pub const PUBLIC: [&str; 6] = ["healthz", "readyz", "metrics", "openapi", "jwks", "getEar"];

/// True when the route `path` (a template of [`OPS`]) belongs to a public operation.
pub fn is_public(path: &str) -> bool {
    OPS.iter().any(|o| o.path == path && PUBLIC.contains(&o.id))
}

fn schemas() -> Value {
    json!({
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": { "type": "string" },
                        "message": { "type": "string" }
                    }
                }
            }
        },
        "PolicyAssignment": {
            "type": "object",
            "required": ["policy"],
            "additionalProperties": false,
            "properties": { "policy": { "type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$" } }
        },
        "EscrowRelease": {
            "type": "object",
            "additionalProperties": false,
            "properties": { "override_reason": { "type": "string", "minLength": 1, "maxLength": 1000 } }
        }
    })
}

/// The OpenAPI 3.1 document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for op in OPS {
        let params: Vec<Value> = op
            .params
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "in": if p.place == In::Path { "path" } else { "query" },
                    "required": p.place == In::Path,
                    "description": p.doc,
                    "schema": { "type": p.ty },
                })
            })
            .collect();
        let error = json!({
            "description": "Refused; the body says why.",
            "content": { JSON: { "schema": { "$ref": "#/components/schemas/Error" } } }
        });
        let mut responses = Map::new();
        responses.insert(
            op.ok.0.to_string(),
            json!({ "description": op.ok.1, "content": { op.produces: {} } }),
        );
        responses.insert("4XX".into(), error.clone());
        responses.insert("5XX".into(), error);
        let mut o = json!({
            "operationId": op.id,
            "summary": op.summary,
            "parameters": params,
            "responses": responses,
        });
        if let (false, Value::Object(m)) = (PUBLIC.contains(&op.id), &mut o) {
            m.insert("security".into(), json!([{ "operatorCertificate": [] }]));
        }
        if let (Some(schema), Value::Object(m)) = (op.body, &mut o) {
            m.insert(
                "requestBody".into(),
                json!({
                    "required": true,
                    "content": { JSON: { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
                }),
            );
        }
        if let Value::Object(entry) = paths.entry(op.path).or_insert_with(|| json!({})) {
            entry.insert(op.method.to_string(), o);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Vouch fleet API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The operator's API of vouch-fleet serve (fleet/README.md, \"HTTP API\")."
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "operatorCertificate": {
                    "type": "mutualTLS",
                    "description": "With [http] tls = true: an operator client certificate from \
                                    `vouch-fleet operator add`. On the plain loopback listener \
                                    every client is the operator `local`."
                }
            }
        }
    })
}
