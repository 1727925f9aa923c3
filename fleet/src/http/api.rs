//! The API's handlers. Each validates its input (device ids by the fleet's one check, policy
//! names by the configuration's, volume UUIDs, numbers in range), runs the same library
//! function the command line runs on a blocking thread, and answers JSON.

use super::ear::{self, EarInput, EarSigner};
use super::error::ApiError;
use super::metrics::Snapshot;
use super::{AppState, Operator};
use crate::pki::device::check_device_id;
use crate::registry::{now_ms, rfc3339_ms, AuditKind, Registry, RegistryError, StoredVerdict};
use crate::serve::liveness::Liveness;
use crate::serve::ondemand::{request_attestation, OnDemandError};
use crate::serve::release::{self, ReleaseError};
use crate::serve::revoke::RevokeError;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

/// Who is asking: `local` on the loopback listener.
pub const LOCAL_OPERATOR: &str = "local";

type ApiResult<T> = Result<T, ApiError>;

/// Runs `f` with the registry on a blocking thread.
pub async fn with_registry<T: Send + 'static>(
    st: &AppState,
    f: impl FnOnce(&mut Registry) -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    let srv = st.srv.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let mut out = None;
        let r = srv.with_registry(|reg| {
            out = Some(f(reg));
            Ok(())
        });
        match (r, out) {
            (Err(e), _) => Err(ApiError::internal("registry", &e)),
            (Ok(()), Some(v)) => v,
            (Ok(()), None) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "no result",
            )),
        }
    })
    .await;
    joined.unwrap_or_else(|e| Err(ApiError::internal("internal", &e)))
}

fn reg_err(e: RegistryError) -> ApiError {
    match e {
        RegistryError::UnknownDevice(id) => {
            ApiError::not_found("no_device", format!("no device with id {id:?}"))
        }
        e => ApiError::internal("registry", &e),
    }
}

/// A device id from the path, checked.
fn device_id(p: Result<Path<String>, PathRejection>) -> ApiResult<String> {
    let Path(id) = p?;
    check_device_id(&id)
        .map_err(|e| ApiError::bad("invalid_device_id", format!("device id {id:?}: {e}")))?;
    Ok(id)
}

/// One stored reason split into its parts: `check`, `detail`, and where the detail names them,
/// `event_index` and `pcr`.
pub fn reason_parts(text: &str) -> Value {
    let (check, detail) = text.split_once(": ").unwrap_or((text, ""));
    let number_after = |tag: &str| {
        detail.rfind(tag).and_then(|i| {
            let rest = &detail[i + tag.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            rest[digits.len()..]
                .starts_with(')')
                .then(|| digits.parse::<u64>().ok())
                .flatten()
        })
    };
    let pcr = number_after("(PCR ").or_else(|| {
        check
            .strip_prefix("eventlog.pcr")
            .and_then(|n| n.parse::<u64>().ok())
    });
    json!({
        "text": text,
        "check": check,
        "detail": detail,
        "event_index": number_after("(event "),
        "pcr": pcr,
    })
}

/// A verdict for the API: times in RFC 3339 and ms, reasons in parts.
pub fn verdict_json(v: &StoredVerdict) -> Value {
    json!({
        "id": v.id,
        "trusted": v.trusted,
        "verdict": if v.trusted { "trusted" } else { "untrusted" },
        "challenged": rfc3339_ms(v.challenged_ms),
        "challenged_ms": v.challenged_ms,
        "stored": rfc3339_ms(v.stored_ms),
        "stored_ms": v.stored_ms,
        "latency_ms": v.stored_ms.saturating_sub(v.challenged_ms),
        "reasons": v.reasons.iter().map(|r| reason_parts(r)).collect::<Vec<_>>(),
    })
}

/// `GET /healthz`.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 when the registry answers and the broker connection is up, else 503.
pub async fn readyz(State(st): State<AppState>) -> Response {
    let registry = with_registry(&st, |r| r.last_verdict_id().map_err(reg_err))
        .await
        .is_ok();
    let broker = st.srv.observer.metrics.broker_connected();
    let status = if registry && broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if status == StatusCode::OK { "ready" } else { "not_ready" },
        "registry": registry,
        "broker": broker,
    });
    (status, Json(body)).into_response()
}

/// `GET /metrics`.
pub async fn metrics(State(st): State<AppState>) -> ApiResult<Response> {
    let liveness = Liveness::of(&st.srv.cfg);
    let mut snap = with_registry(&st, move |reg| {
        let mut snap = Snapshot::default();
        for (d, stale) in liveness.devices(reg, now_ms()).map_err(reg_err)? {
            *snap.devices.entry(d.status.as_str()).or_default() += 1;
            snap.stale += u64::from(stale);
        }
        Ok(snap)
    })
    .await?;
    for s in ["enrolled", "trusted", "untrusted", "revoked", "deleted"] {
        snap.devices.entry(s).or_default();
    }
    snap.refusals = st.srv.refusals().into_iter().collect();
    let text = st.srv.observer.metrics.render(&snap);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// `GET /api/v1/openapi.json`.
pub async fn openapi() -> Json<Value> {
    Json(super::openapi::document())
}

/// `GET /.well-known/jwks.json`.
pub async fn jwks(State(st): State<AppState>) -> Json<Value> {
    Json(st.ear.jwks())
}

/// `GET /api/v1/devices`.
pub async fn list_devices(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    let liveness = Liveness::of(&st.srv.cfg);
    with_registry(&st, move |reg| {
        let mut out = Vec::new();
        for (d, stale) in liveness.devices(reg, now_ms()).map_err(reg_err)? {
            let last = reg.verdicts(&d.id, 1).map_err(reg_err)?;
            let policy = reg.policy_of(&d.id).map_err(reg_err)?;
            out.push(json!({
                "id": d.id,
                "status": d.status,
                "stale": stale,
                "cert_serial": d.cert_serial,
                "enrolled": rfc3339_ms(d.enrolled_ms),
                "policy": policy,
                "last_verdict": last.first().map(verdict_json),
            }));
        }
        Ok(Json(json!({ "devices": out })))
    })
    .await
}

/// Query of `getDevice`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceQuery {
    limit: Option<u32>,
}

/// `GET /api/v1/devices/{id}`.
pub async fn get_device(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<DeviceQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let id = device_id(p)?;
    let Query(q) = q?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad("invalid_limit", "limit must be 1 to 1000"));
    }
    let liveness = Liveness::of(&st.srv.cfg);
    with_registry(&st, move |reg| {
        let d = reg
            .device(&id)
            .map_err(reg_err)?
            .ok_or_else(|| ApiError::not_found("no_device", format!("no device with id {id:?}")))?;
        let verdicts = reg.verdicts(&id, limit).map_err(reg_err)?;
        let last_trusted = reg.last_trusted_ms().map_err(reg_err)?.get(&id).copied();
        let stale = liveness.is_stale(&d, last_trusted, now_ms());
        let policy = reg.policy_of(&id).map_err(reg_err)?;
        Ok(Json(json!({
            "device": d,
            "enrolled": rfc3339_ms(d.enrolled_ms),
            "stale": stale,
            "last_trusted": last_trusted.map(rfc3339_ms),
            "policy": policy,
            "verdicts": verdicts.iter().map(verdict_json).collect::<Vec<_>>(),
        })))
    })
    .await
}

/// Query of `getEar`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarQuery {
    nonce: Option<String>,
}

/// `GET /api/v1/devices/{id}/ear`: the latest verdict as a signed EAR (`application/jwt`).
pub async fn get_ear(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<EarQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let id = device_id(p)?;
    let Query(q) = q?;
    if let Some(n) = &q.nonce {
        if !ear::valid_nonce(n) {
            return Err(ApiError::bad(
                "invalid_nonce",
                "nonce must be 8 to 88 base64url characters",
            ));
        }
    }
    let liveness = Liveness::of(&st.srv.cfg);
    let signer = st.ear.clone();
    with_registry(&st, move |reg| {
        let d = reg
            .device(&id)
            .map_err(reg_err)?
            .ok_or_else(|| ApiError::not_found("no_device", format!("no device with id {id:?}")))?;
        let v = reg
            .verdicts(&id, 1)
            .map_err(reg_err)?
            .into_iter()
            .next()
            .ok_or_else(|| {
                ApiError::not_found("no_verdict", format!("device {id} has no verdict yet"))
            })?;
        let last_trusted = reg.last_trusted_ms().map_err(reg_err)?.get(&id).copied();
        let now = now_ms();
        let stale = liveness.is_stale(&d, last_trusted, now);
        let policy = reg.policy_of(&id).map_err(reg_err)?;
        // A revoked or deleted device's last verdict no longer stands.
        let trusted = v.trusted && d.status.is_active();
        let mut reasons = v.reasons.clone();
        if !d.status.is_active() {
            reasons.push(format!("device.status: the device is {}", d.status));
        }
        let appraisal = ear::appraise(trusted, stale, &reasons);
        let claims = EarSigner::claims(&EarInput {
            device_id: &id,
            verdict_id: v.id,
            verdict_ms: v.stored_ms,
            appraisal: &appraisal,
            policy: policy.as_deref(),
            stale,
            nonce: q.nonce.as_deref(),
            now_secs: now / 1000,
        });
        let token = signer.sign(&claims);
        Ok(([(header::CONTENT_TYPE, "application/jwt")], token).into_response())
    })
    .await
}

/// `POST /api/v1/devices/{id}/attest`.
pub async fn attest_device(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let id = device_id(p)?;
    with_registry(&st, move |reg| {
        let now = now_ms();
        let rid = request_attestation(reg, &id, now).map_err(|e| match e {
            OnDemandError::NoDevice(_) => ApiError::not_found("no_device", e.to_string()),
            OnDemandError::Inactive { .. } => ApiError::conflict("device_inactive", e.to_string()),
            OnDemandError::Registry(r) => reg_err(r),
        })?;
        let body = json!({
            "request_id": rid,
            "device_id": id,
            "requested": rfc3339_ms(now),
            "requested_ms": now,
        });
        Ok((StatusCode::ACCEPTED, Json(body)).into_response())
    })
    .await
}

/// `POST /api/v1/devices/{id}/revoke`.
pub async fn revoke_device(
    State(st): State<AppState>,
    Extension(Operator(operator)): Extension<Operator>,
    p: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let id = device_id(p)?;
    let srv = st.srv.clone();
    with_registry(&st, move |reg| {
        let now = now_ms();
        let why = format!("operator {operator}: revoke (HTTP API)");
        let r = srv
            .with_ca(|ca| {
                crate::serve::revoke::revoke_device(
                    reg,
                    ca,
                    srv.cfg.broker_reload_pid_file.as_deref(),
                    &id,
                    &why,
                    false,
                    now,
                )
            })
            .map_err(|e| match e {
                RevokeError::UnknownDevice(_) => ApiError::not_found("no_device", e.to_string()),
                RevokeError::Registry(r) => reg_err(r),
                e => ApiError::internal("revocation_failed", &e),
            })?;
        srv.log(&format!("device {id} revoked ({why})"));
        Ok(Json(json!({
            "device_id": id,
            "status": "revoked",
            "serial": r.serial,
            "crl_number": r.crl_number,
            "broker_reloaded": r.broker_reloaded,
        })))
    })
    .await
}

/// Body of `setPolicy`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyAssignment {
    policy: String,
}

/// `PUT /api/v1/devices/{id}/policy`.
pub async fn set_policy(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    body: Result<Json<PolicyAssignment>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let id = device_id(p)?;
    let Json(body) = body?;
    if !crate::config::valid_policy_name(&body.policy) {
        return Err(ApiError::bad(
            "invalid_policy_name",
            format!("{:?} is not a policy name", body.policy),
        ));
    }
    let dir = st.srv.cfg.policies_dir.clone();
    let releases_dir = st.srv.cfg.releases_dir.clone();
    with_registry(&st, move |reg| {
        let path = crate::serve::policies::path_of(&dir, &body.policy);
        let releases = crate::serve::releases::ReleaseStore::load(&releases_dir);
        crate::serve::policies::load_file(&path, &releases)
            .map_err(|why| ApiError::conflict("policy_unusable", why))?;
        reg.set_policy(&id, &body.policy).map_err(reg_err)?;
        Ok(Json(json!({ "device_id": id, "policy": body.policy })))
    })
    .await
}

/// `GET /api/v1/policies`.
pub async fn list_policies(State(st): State<AppState>) -> Json<Value> {
    let (ok, bad) = st.srv.with_policies(|p| {
        let (ok, bad) = p.summary();
        (
            ok.into_iter().map(str::to_owned).collect::<Vec<_>>(),
            bad.into_iter()
                .map(|(n, w)| json!({ "name": n, "problem": w }))
                .collect::<Vec<_>>(),
        )
    });
    Json(json!({
        "loaded": ok,
        "unusable": bad,
        "default_policy": st.srv.cfg.default_policy,
    }))
}

/// Body of `releaseEscrow`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseBody {
    override_reason: Option<String>,
}

fn valid_volume(v: &str) -> bool {
    (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

fn release_err(e: ReleaseError) -> ApiError {
    match e {
        ReleaseError::NoRecord { .. } => ApiError::not_found("no_escrow_record", e.to_string()),
        ReleaseError::Refused { .. } => {
            ApiError::conflict("release_refused", vouch_attest::errors::chain(&e))
        }
        ReleaseError::OtherDevice { .. }
        | ReleaseError::OtherVolume { .. }
        | ReleaseError::StoredRecord { .. } => {
            ApiError::conflict("escrow_record_unusable", vouch_attest::errors::chain(&e))
        }
        ReleaseError::Registry(r) => reg_err(r),
        e @ (ReleaseError::Read { .. } | ReleaseError::Escrow { .. }) => {
            ApiError::internal("escrow_key", &e)
        }
    }
}

/// `POST /api/v1/devices/{id}/escrow/{volume}/release`: without `override_reason`, approved by
/// the release rule and queued; with one, recorded for a second operator's approval.
pub async fn release_escrow(
    State(st): State<AppState>,
    Extension(Operator(operator)): Extension<Operator>,
    p: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<ReleaseBody>, JsonRejection>,
) -> ApiResult<Response> {
    let Path((id, volume)) = p?;
    check_device_id(&id)
        .map_err(|e| ApiError::bad("invalid_device_id", format!("device id {id:?}: {e}")))?;
    if !valid_volume(&volume) {
        return Err(ApiError::bad(
            "invalid_volume",
            "the volume must be a UUID (hex digits and dashes)",
        ));
    }
    let Json(body) = body?;
    if let Some(r) = &body.override_reason {
        if r.trim().is_empty() || r.len() > 1000 {
            return Err(ApiError::bad(
                "invalid_reason",
                "override_reason must be 1 to 1000 characters",
            ));
        }
    }
    let key = st.srv.cfg.state_dir.join("escrow.key.pem");
    with_registry(&st, move |reg| {
        if reg.device(&id).map_err(reg_err)?.is_none() {
            return Err(ApiError::not_found(
                "no_device",
                format!("no device with id {id:?}"),
            ));
        }
        let Some(reason) = body.override_reason else {
            let q = release::release_to_device(reg, &key, &id, &volume, None, Some(&operator))
                .map_err(release_err)?;
            let b = json!({ "release_id": q.id, "boot_id": q.boot_id, "basis": q.basis });
            return Ok((StatusCode::ACCEPTED, Json(b)).into_response());
        };
        // Dual control: check now what can be checked (record, rule with the override), then
        // wait for a second, distinct operator.
        let record = release::stored_record(reg, &id, &volume).map_err(release_err)?;
        release::check_record(&record, &id, Some(&volume)).map_err(release_err)?;
        release::basis(reg, &id, true, Some(&reason)).map_err(release_err)?;
        let now = now_ms();
        let aid = reg
            .request_escrow_approval(&id, &volume, &reason, &operator, now)
            .map_err(reg_err)?;
        reg.audit(
            AuditKind::EscrowApproval,
            Some(&id),
            &format!(
                "override release of volume {volume} asked by {operator} (approval #{aid}), \
                 waiting for a second operator: {reason}"
            ),
            now,
        )
        .map_err(reg_err)?;
        let b =
            json!({ "approval_id": aid, "status": "awaiting_approval", "requested_by": operator });
        Ok((StatusCode::ACCEPTED, Json(b)).into_response())
    })
    .await
}

/// `GET /api/v1/escrow/approvals`.
pub async fn list_approvals(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    with_registry(&st, |reg| {
        let a = reg.escrow_approvals().map_err(reg_err)?;
        Ok(Json(json!({ "approvals": a })))
    })
    .await
}

/// `POST /api/v1/escrow/approvals/{approval}/approve`: a second operator, distinct from the one
/// who asked, approves; then the release goes through the release rule with the override.
pub async fn approve_release(
    State(st): State<AppState>,
    Extension(Operator(approver)): Extension<Operator>,
    p: Result<Path<i64>, PathRejection>,
) -> ApiResult<Response> {
    let Path(aid) = p?;
    let key = st.srv.cfg.state_dir.join("escrow.key.pem");
    with_registry(&st, move |reg| {
        let a = reg
            .escrow_approval(aid)
            .map_err(reg_err)?
            .ok_or_else(|| ApiError::not_found("no_approval", format!("no approval #{aid}")))?;
        if a.approved_by.is_some() {
            return Err(ApiError::conflict(
                "already_approved",
                format!("approval #{aid} was already given"),
            ));
        }
        if a.requested_by == approver {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "second_operator_required",
                format!(
                    "approval #{aid} was asked by {approver}; a second, distinct operator must \
                     approve it"
                ),
            ));
        }
        let who = format!("{} (approved by {approver})", a.requested_by);
        let q = release::release_to_device(
            reg,
            &key,
            &a.device_id,
            &a.volume_uuid,
            Some(&a.reason),
            Some(&who),
        )
        .map_err(release_err)?;
        let now = now_ms();
        reg.approve_escrow(aid, &approver, q.id, now)
            .map_err(reg_err)?;
        reg.audit(
            AuditKind::EscrowApproval,
            Some(&a.device_id),
            &format!(
                "override release of volume {} (approval #{aid}) approved by {approver}: \
                 release #{}",
                a.volume_uuid, q.id
            ),
            now,
        )
        .map_err(reg_err)?;
        let b = json!({ "approval_id": aid, "release_id": q.id, "basis": q.basis });
        Ok((StatusCode::ACCEPTED, Json(b)).into_response())
    })
    .await
}

/// Query of `audit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    device: Option<String>,
    limit: Option<u32>,
}

/// `GET /api/v1/audit`.
pub async fn audit(
    State(st): State<AppState>,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q?;
    if let Some(d) = &q.device {
        check_device_id(d)
            .map_err(|e| ApiError::bad("invalid_device_id", format!("device id {d:?}: {e}")))?;
    }
    let limit = q.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad("invalid_limit", "limit must be 1 to 10000"));
    }
    with_registry(&st, move |reg| {
        let rows = reg.audit_entries(q.device.as_deref()).map_err(reg_err)?;
        let check = reg.verify_audit().map_err(reg_err)?;
        let skip = rows.len().saturating_sub(limit as usize);
        let rows: Vec<Value> = rows
            .into_iter()
            .skip(skip)
            .map(|r| {
                let mut v = serde_json::to_value(&r).unwrap_or(Value::Null);
                if let Value::Object(m) = &mut v {
                    m.insert("at".into(), Value::String(rfc3339_ms(r.at_ms)));
                }
                v
            })
            .collect();
        Ok(Json(json!({ "entries": rows, "chain": check })))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::reason_parts;

    #[test]
    fn reasons_split_into_check_event_and_pcr() {
        let r = reason_parts("policy.secure_boot: SecureBoot is 0 (event 12) (PCR 7)");
        assert_eq!(r["check"], "policy.secure_boot");
        assert_eq!(r["event_index"], 12);
        assert_eq!(r["pcr"], 7);
        let r = reason_parts("eventlog.pcr4: sha256 PCR4 replays to aa but the quote has bb");
        assert_eq!(r["pcr"], 4);
        assert!(r["event_index"].is_null());
        let r = reason_parts("no colon");
        assert_eq!(
            (r["check"].as_str(), r["detail"].as_str()),
            (Some("no colon"), Some(""))
        );
    }
}
