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
//! The listener is plain HTTP on a loopback address (the configuration refuses others): whoever
//! can connect to it is treated as the local operator `local`, as a local user who can run
//! `vouch-fleet` on the fleet directory would be.

pub mod api;
pub mod ear;
pub mod error;
pub mod metrics;
pub mod observe;
pub mod openapi;
pub mod page;
pub mod webhooks;

use crate::serve::Server;
use axum::routing::{get, post, put, MethodRouter};
use axum::Router;
use std::sync::Arc;

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
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })?;
    let app = router(AppState {
        srv: srv.clone(),
        ear: Arc::new(ear),
    });
    srv.log(&format!("HTTP API listening on http://{addr}"));
    let s = srv.clone();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            s.log(&format!("HTTP server stopped: {e}"));
        }
    });
    Ok(())
}
