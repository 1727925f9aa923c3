//! The operator's view over HTTP, served by `vouch-fleet serve` when `fleet.toml` has an
//! `[http]` section: a JSON API for what the command line does, Prometheus metrics, health
//! endpoints, signed attestation results for relying parties, webhooks and a status page
//! (`fleet/README.md`, "HTTP API").
//!
//! - [`openapi`]: the table of operations, from which the router and the OpenAPI document are
//!   both made.
//! - [`api`]: the handlers; they call the same library functions as the command line.
//! - [`error`]: JSON errors (4xx for malformed requests, never 5xx).
//! - [`metrics`], [`observe`]: counters and gauges, and the once-a-second round that feeds them,
//!   finds stale devices and emits events.
//! - [`ear`]: EAT Attestation Results (ES256 JWT) and their key.
//! - [`webhooks`]: HMAC-signed event deliveries with retries.
//! - [`page`]: the HTML page.
//!
//! - [`operators`], [`tls`]: operator client certificates and HTTPS (`[http] tls = true`).
//!
//! Without `tls` the listener is plain HTTP on a loopback address (the configuration refuses
//! others): whoever can connect to it is treated as the local operator `local`, as a local user
//! who can run `vouch-fleet` on the fleet directory would be. With `tls`, every operation but the
//! public ones ([`openapi::PUBLIC`]) needs a valid, unrevoked operator certificate, whose CN is
//! the operator's name in the audit log and for dual control.

pub mod api;
pub mod ear;
pub mod error;
pub mod metrics;
pub mod observe;
pub mod openapi;
pub mod operators;
pub mod page;
pub mod tls;
pub mod webhooks;

use crate::serve::Server;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put, MethodRouter};
use axum::{Extension, Router};
use std::sync::Arc;
use tls::{Peer, TlsState};

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The HTTP side could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The EAR signing key could not be loaded or created.
    #[error(transparent)]
    Ear(#[from] ear::EarError),
    /// A webhook could not be set up.
    #[error(transparent)]
    Webhook(#[from] webhooks::WebhookError),
    /// The HTTPS material could not be loaded.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The listening address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The server.
    pub srv: Arc<Server>,
    /// The EAR signer.
    pub ear: Arc<ear::EarSigner>,
    /// HTTPS state (operator CA, CRL), when `[http] tls`.
    pub tls: Option<Arc<TlsState>>,
}

/// The operator a request acts for (`local` on the plain listener, else the certificate's CN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator(pub String);

/// On the plain listener, where the operator is whoever connects: the `Host` must be an IP
/// address or `localhost` (a DNS name rebound to 127.0.0.1 by a web page is refused), and a
/// browser's `Origin`, when sent, must be this server (another site's page cannot make the
/// browser revoke devices).
fn same_origin(headers: &axum::http::HeaderMap) -> Result<(), error::ApiError> {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let name = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    if !(name == "localhost" || name.parse::<std::net::IpAddr>().is_ok()) {
        return Err(error::ApiError::new(
            StatusCode::FORBIDDEN,
            "host_refused",
            format!("Host {host:?} is not this server's address (use 127.0.0.1 or localhost)"),
        ));
    }
    if let Some(origin) = headers.get(axum::http::header::ORIGIN) {
        let ok = origin.to_str().is_ok_and(|o| o == format!("http://{host}"));
        if !ok {
            return Err(error::ApiError::new(
                StatusCode::FORBIDDEN,
                "cross_origin",
                "requests from another site's page are refused",
            ));
        }
    }
    Ok(())
}

/// Lets public operations through; for the others, names the operator or refuses (401).
async fn authorize(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let public = req
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|p| openapi::is_public(p.as_str()));
    let peer = req
        .extensions()
        .get::<Peer>()
        .cloned()
        .unwrap_or(Peer::Anonymous);
    if peer == Peer::Local {
        if let Err(e) = same_origin(req.headers()) {
            return e.into_response();
        }
    }
    let who = match peer {
        Peer::Local => Ok(api::LOCAL_OPERATOR.to_string()),
        Peer::Anonymous => Err((
            "operator_certificate_required",
            "this operation needs an operator client certificate (vouch-fleet operator add)"
                .to_string(),
        )),
        Peer::Operator { name, serial } => {
            let revoked = match &st.tls {
                Some(t) => t
                    .current()
                    .map(|(_, r)| r.contains(&serial))
                    .unwrap_or(true),
                None => true,
            };
            if revoked {
                Err((
                    "operator_revoked",
                    format!("the certificate of operator {name} is revoked"),
                ))
            } else {
                Ok(name)
            }
        }
    };
    match who {
        Ok(name) => {
            req.extensions_mut().insert(Operator(name));
        }
        Err((code, message)) if !public => {
            return error::ApiError::new(StatusCode::UNAUTHORIZED, code, message).into_response()
        }
        Err(_) => {}
    }
    next.run(req).await
}

fn handler(id: &str) -> MethodRouter<AppState> {
    match id {
        "healthz" => get(api::healthz),
        "readyz" => get(api::readyz),
        "metrics" => get(api::metrics),
        "openapi" => get(api::openapi),
        "jwks" => get(api::jwks),
        "listDevices" => get(api::list_devices),
        "getDevice" => get(api::get_device),
        "getEar" => get(api::get_ear),
        "attestDevice" => post(api::attest_device),
        "revokeDevice" => post(api::revoke_device),
        "setPolicy" => put(api::set_policy),
        "listPolicies" => get(api::list_policies),
        "releaseEscrow" => post(api::release_escrow),
        "listApprovals" => get(api::list_approvals),
        "approveRelease" => post(api::approve_release),
        "audit" => get(api::audit),
        "page" => get(page::overview),
        "devicePage" => get(page::device),
        // Every id of the table has a handler (the router test requests each).
        _ => get(error::no_route),
    }
}

/// The router: one route per operation of [`openapi::OPS`], JSON errors for anything else.
pub fn router(state: AppState) -> Router {
    openapi::OPS
        .iter()
        .fold(Router::new(), |r, op| r.route(op.path, handler(op.id)))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authorize,
        ))
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::wrong_method)
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Starts the webhooks (when configured) and the HTTP listener (when `[http]` is configured).
pub async fn start(srv: &Arc<Server>) -> Result<(), HttpError> {
    webhooks::start(srv)?;
    let Some(addr) = srv.cfg.http_listen else {
        return Ok(());
    };
    let state_dir = srv.cfg.state_dir.clone();
    let ear = tokio::task::spawn_blocking(move || ear::EarSigner::load_or_create(&state_dir))
        .await
        .map_err(|e| HttpError::Bind {
            addr,
            source: std::io::Error::other(e),
        })??;
    let tls = if srv.cfg.http_tls {
        let t = Arc::new(TlsState::new(operators::operators_dir(&srv.cfg)));
        t.current()?;
        Some(t)
    } else {
        None
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })?;
    let app = router(AppState {
        srv: srv.clone(),
        ear: Arc::new(ear),
        tls: tls.clone(),
    });
    let s = srv.clone();
    match tls {
        None => {
            srv.log(&format!("HTTP API listening on http://{addr}"));
            let app = app.layer(Extension(Peer::Local));
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    s.log(&format!("HTTP server stopped: {e}"));
                }
            });
        }
        Some(t) => {
            srv.log(&format!("HTTP API listening on https://{addr}"));
            tokio::spawn(serve_tls(s, listener, app, t));
        }
    }
    Ok(())
}

/// Accepts HTTPS connections: the handshake with the current configuration (at most 10 s), then
/// HTTP/1.1 with the client's [`Peer`] known to the router.
async fn serve_tls(
    srv: Arc<Server>,
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Arc<TlsState>,
) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                srv.log(&format!("HTTPS accept: {e}"));
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let cfg = match tls.current() {
            Ok((cfg, _)) => cfg,
            Err(e) => {
                srv.log(&format!("HTTPS: {}", vouch_attest::errors::chain(&e)));
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let accept = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp);
            let Ok(Ok(stream)) =
                tokio::time::timeout(std::time::Duration::from_secs(10), accept).await
            else {
                return;
            };
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map_or(Peer::Anonymous, tls::peer_of);
            let svc = hyper_util::service::TowerToHyperService::new(app.layer(Extension(peer)));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}
