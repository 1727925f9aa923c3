//! The page for people: the fleet overview (devices by status, stale devices, each device's last
//! verdict) and a device's page (its verdict history with every reason). Plain server-rendered
//! HTML, no scripts (the Content-Security-Policy forbids them); every value is escaped.

use super::api::{reason_parts, with_registry};
use super::error::ApiError;
use super::AppState;
use crate::pki::device::check_device_id;
use crate::registry::{now_ms, rfc3339_ms};
use crate::serve::liveness::Liveness;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::fmt::Write as _;

/// `s` with `&`, `<`, `>`, `"` and `'` escaped.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;font-size:90%}\
.trusted{color:#060}.untrusted,.revoked,.stale{color:#a00;font-weight:bold}code{font-size:90%}";

fn html(title: &str, body: &str) -> Response {
    let page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"30\"><title>{}</title>\
         <style>{STYLE}</style></head><body>{body}</body></html>\n",
        esc(title)
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        page,
    )
        .into_response()
}

/// `GET /`: the fleet overview.
pub async fn overview(State(st): State<AppState>) -> Result<Response, ApiError> {
    let liveness = Liveness::of(&st.srv.cfg);
    let body = with_registry(&st, move |reg| {
        let devices = liveness
            .devices(reg, now_ms())
            .map_err(|e| ApiError::internal("registry", &e))?;
        let mut counts = std::collections::BTreeMap::<&str, usize>::new();
        let mut stale_n = 0;
        let mut rows = String::new();
        for (d, stale) in &devices {
            *counts.entry(d.status.as_str()).or_default() += 1;
            stale_n += usize::from(*stale);
            let last = reg
                .verdicts(&d.id, 1)
                .map_err(|e| ApiError::internal("registry", &e))?;
            let (verdict, at) = match last.first() {
                Some(v) => (
                    if v.trusted { "trusted" } else { "untrusted" },
                    rfc3339_ms(v.stored_ms),
                ),
                None => ("-", "-".to_string()),
            };
            let _ = write!(
                rows,
                "<tr><td><a href=\"/devices/{id}\"><code>{id}</code></a></td>\
                 <td class=\"{st}\">{st}</td><td class=\"{sc}\">{sv}</td>\
                 <td class=\"{verdict}\">{verdict}</td><td>{at}</td></tr>",
                id = esc(&d.id),
                st = d.status.as_str(),
                sc = if *stale { "stale" } else { "" },
                sv = if *stale { "stale" } else { "live" },
            );
        }
        let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
        Ok(format!(
            "<h1>Vouch fleet</h1><p>{} devices: {}; <span class=\"stale\">{stale_n} stale</span>.</p>\
             <table><tr><th>device</th><th>status</th><th>liveness</th><th>last verdict</th>\
             <th>at</th></tr>{rows}</table>\
             <p><a href=\"/api/v1/openapi.json\">API</a> · <a href=\"/metrics\">metrics</a></p>",
            devices.len(),
            esc(&summary.join(", ")),
        ))
    })
    .await?;
    Ok(html("Vouch fleet", &body))
}

/// `GET /devices/{id}`: one device and its verdict history with reasons.
pub async fn device(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = p?;
    check_device_id(&id)
        .map_err(|e| ApiError::bad("invalid_device_id", format!("device id {id:?}: {e}")))?;
    let liveness = Liveness::of(&st.srv.cfg);
    let body = with_registry(&st, move |reg| {
        let internal = |e: crate::registry::RegistryError| ApiError::internal("registry", &e);
        let d = reg.device(&id).map_err(internal)?.ok_or_else(|| {
            ApiError::not_found("no_device", format!("no device with id {id:?}"))
        })?;
        let last_trusted = reg.last_trusted_ms().map_err(internal)?.get(&id).copied();
        let stale = liveness.is_stale(&d, last_trusted, now_ms());
        let policy = reg.policy_of(&id).map_err(internal)?;
        let verdicts = reg.verdicts(&id, 50).map_err(internal)?;
        let mut rows = String::new();
        for v in &verdicts {
            let what = if v.trusted { "trusted" } else { "untrusted" };
            let mut reasons = String::new();
            for r in &v.reasons {
                let p = reason_parts(r);
                let mut at = String::new();
                if let Some(i) = p["event_index"].as_u64() {
                    let _ = write!(at, " event {i}");
                }
                if let Some(i) = p["pcr"].as_u64() {
                    let _ = write!(at, " PCR {i}");
                }
                let _ = write!(
                    reasons,
                    "<li><code>{}</code>{}: {}</li>",
                    esc(p["check"].as_str().unwrap_or_default()),
                    esc(&at),
                    esc(p["detail"].as_str().unwrap_or_default())
                );
            }
            let _ = write!(
                rows,
                "<tr><td>#{}</td><td>{}</td><td class=\"{what}\">{what}</td><td><ul>{reasons}</ul></td></tr>",
                v.id,
                rfc3339_ms(v.stored_ms)
            );
        }
        Ok(format!(
            "<p><a href=\"/\">fleet</a></p><h1>Device <code>{id}</code></h1>\
             <p>status <span class=\"{st}\">{st}</span>{stale}; enrolled {enrolled}; \
             last trusted verdict {lt}; policy {policy}; certificate {serial}</p>\
             <h2>Verdicts (newest first)</h2><table><tr><th>verdict</th><th>at</th><th>result</th>\
             <th>reasons</th></tr>{rows}</table>",
            id = esc(&d.id),
            st = d.status.as_str(),
            stale = if stale { ", <span class=\"stale\">stale</span>" } else { "" },
            enrolled = rfc3339_ms(d.enrolled_ms),
            lt = last_trusted.map_or("none".to_string(), rfc3339_ms),
            policy = esc(policy.as_deref().unwrap_or("(fleet default)")),
            serial = esc(d.cert_serial.as_deref().unwrap_or("-")),
        ))
    })
    .await?;
    Ok(html("Vouch device", &body))
}
