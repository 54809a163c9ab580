//! The HTTP API `healer run` serves.
//!
//! - `GET /` and `/ui/*`: the dashboard's page and assets, open (they hold
//!   no data; the page asks for the token the data routes need).
//! - `GET /health`: open (the ECS health check and load balancers probe it).
//! - `GET /metrics`: open, Prometheus text format (see [`crate::metrics`]).
//! - Admin (bearer token; off when none is configured): `PUT /policies/{name}`
//!   (or `POST /policies`) uploads a component and swaps it in on every replica, `POST
//!   /policies/{name}/rollback`, `/activate`, `/shadow`, `DELETE
//!   /policies/{name}[/shadow]`, `PUT /kill-switch`, `POST
//!   /incidents/{id}/approve` and `/deny` (the steps the approval rule holds).
//! - Read (the token when one is set, else direct loopback): `GET /policies`,
//!   `GET /kill-switch`, `GET /incidents`
//!   (filters, signed cursors), `GET /incidents/{id}`, `GET /stats`, `GET
//!   /stats/shadow` (a shadow version's agreement with the active one), `GET
//!   /overview` (the dashboard's first screen), `GET /incidents/stream`
//!   (server-sent events as incidents change, see [`feed`]).
//! - Ingestion: `POST /events` takes a raw AWS payload (what SQS would carry)
//!   and answers 202 once it is recorded; `POST /events/eventbridge` does the
//!   same for EventBridge API destinations, authenticated by a shared secret
//!   header; `POST /events/sns` takes SNS HTTPS subscription messages, each
//!   signature-checked (see [`crate::sources::sns`]).
//!
//! Every error is one JSON shape, [`ApiError`].

mod auth;
mod cursor;
mod dashboard;
mod error;
mod events;
pub mod feed;
mod health;
mod incidents;
mod policies;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};

pub use auth::{AdminToken, Caller, MIN_TOKEN_LEN, WeakToken};
pub use error::{ApiError, ErrorCode};
pub use events::SECRET_HEADER;
pub use health::{DEFAULT_STUCK_AFTER, Health, HealthStatus};

use crate::policy::catalog::Catalog;
use crate::sources::sns::SnsVerifier;
use crate::sources::{Handled, Origin};
use crate::store::Store;

/// Largest policy component `PUT /policies/{name}` takes by default (a
/// Python component is about 18 MB).
pub const DEFAULT_MAX_POLICY_BYTES: usize = 64 << 20;
/// Largest payload `POST /events` takes (SQS's and EventBridge's own cap is 256 KiB;
/// the normalizer refuses past its own limit with a reason).
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// Where `POST /events` hands a payload: the service's ingestion, which
/// records what it carries (and hands live work to the workers).
#[async_trait::async_trait]
pub trait Ingest: Send + Sync {
    /// Records one payload that came from `origin`.
    async fn ingest(&self, payload: &[u8], origin: Origin) -> Handled;
}

/// Where `POST /incidents/{id}/approve` and `/deny` go: the service's
/// pipeline, which answers the held steps and hands live work to the workers.
#[async_trait::async_trait]
pub trait Approvals: Send + Sync {
    /// Answers the held steps of an incident on behalf of `who`.
    async fn answer(
        &self,
        id: &crate::incident::IncidentId,
        answer: crate::pipeline::Answer,
        who: &str,
    ) -> Result<crate::store::IncidentRecord, crate::pipeline::ApprovalError>;
}

/// What the routes work on.
#[derive(Clone)]
pub struct ApiState {
    health: Arc<Health>,
    token: Option<AdminToken>,
    catalog: Option<Arc<Catalog>>,
    store: Option<Arc<dyn Store>>,
    ingest: Option<Arc<dyn Ingest>>,
    eventbridge_secret: Option<AdminToken>,
    sns: Option<Arc<SnsVerifier>>,
    approvals: Option<Arc<dyn Approvals>>,
    /// The read API's cursor signer, keyed once from the store.
    cursors: Arc<tokio::sync::OnceCell<cursor::Cursors>>,
    /// The incident stream's shared watcher.
    feed: Arc<feed::Feed>,
    /// The service's governor and operator facts, for `GET
    /// /stats/shadow?verdicts=true`.
    judge: Option<Arc<(crate::safety::Governor, crate::safety::Facts)>>,
}

/// Builds the router.
pub struct Api {
    state: ApiState,
    max_policy_bytes: usize,
}

impl Api {
    /// An API serving `/health` only; the builders add the rest.
    pub fn new(health: Arc<Health>) -> Self {
        Api {
            state: ApiState {
                health,
                token: None,
                catalog: None,
                store: None,
                ingest: None,
                eventbridge_secret: None,
                sns: None,
                approvals: None,
                cursors: Arc::default(),
                feed: Arc::default(),
                judge: None,
            },
            max_policy_bytes: DEFAULT_MAX_POLICY_BYTES,
        }
    }

    /// The admin token (admin routes are off without one).
    pub fn token(mut self, token: Option<AdminToken>) -> Self {
        self.state.token = token;
        self
    }

    /// The policy catalog the policy routes change.
    pub fn catalog(mut self, catalog: Arc<Catalog>) -> Self {
        self.state.catalog = Some(catalog);
        self
    }

    /// The store (kill switch, read routes).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.state.store = Some(store);
        self
    }

    /// Where `POST /events` records payloads.
    pub fn ingest(mut self, ingest: Arc<dyn Ingest>) -> Self {
        self.state.ingest = Some(ingest);
        self
    }

    /// The shared secret EventBridge API destinations send in
    /// `X-Healer-Secret` (`POST /events/eventbridge` is off without one).
    pub fn eventbridge_secret(mut self, secret: Option<AdminToken>) -> Self {
        self.state.eventbridge_secret = secret;
        self
    }

    /// Who answers held steps.
    pub fn approvals(mut self, approvals: Arc<dyn Approvals>) -> Self {
        self.state.approvals = Some(approvals);
        self
    }

    /// What `POST /events/sns` accepts (off without it).
    pub fn sns(mut self, verifier: Option<Arc<SnsVerifier>>) -> Self {
        self.state.sns = verifier;
        self
    }

    /// The service's stop: the incident streams end when it turns true, so
    /// an open dashboard does not hold up a graceful shutdown.
    pub fn stop(mut self, stop: tokio::sync::watch::Receiver<bool>) -> Self {
        self.state.feed = Arc::new(feed::Feed::new(stop));
        self
    }

    /// The service's governor and operator facts (`GET /stats/shadow`
    /// judges shadow plans with them).
    pub fn governor(
        mut self,
        governor: crate::safety::Governor,
        facts: crate::safety::Facts,
    ) -> Self {
        self.state.judge = Some(Arc::new((governor, facts)));
        self
    }

    /// Largest component `PUT /policies/{name}` takes.
    pub fn max_policy_bytes(mut self, bytes: usize) -> Self {
        self.max_policy_bytes = bytes;
        self
    }

    /// The router. Serve it with connect info (`into_make_service_with_connect_info`)
    /// so read routes can tell loopback callers.
    pub fn router(self) -> Router {
        let upload = put(policies::put)
            .delete(policies::retire)
            .layer(DefaultBodyLimit::max(self.max_policy_bytes));
        Router::new()
            .route("/", get(dashboard::index))
            .route("/ui/meta", get(dashboard::meta))
            .route("/ui/{name}", get(dashboard::ui))
            .route("/overview", get(dashboard::overview))
            .route("/incidents/stream", get(feed::stream))
            .route("/health", get(health::health))
            .route("/metrics", get(metrics))
            .route(
                "/policies",
                get(policies::list)
                    .post(policies::post)
                    .layer(DefaultBodyLimit::max(self.max_policy_bytes)),
            )
            .route("/policies/{name}", upload)
            .route("/policies/{name}/limits", put(policies::set_limits))
            .route("/policies/{name}/rollback", post(policies::rollback))
            .route("/policies/{name}/activate", post(policies::activate))
            .route(
                "/policies/{name}/shadow",
                post(policies::shadow).delete(policies::unshadow),
            )
            .route("/incidents", get(incidents::list))
            .route("/incidents/{id}", get(incidents::get))
            .route("/incidents/{id}/approve", post(incidents::approve))
            .route("/incidents/{id}/deny", post(incidents::deny))
            .route("/stats", get(incidents::stats))
            .route("/stats/shadow", get(incidents::shadow))
            .route(
                "/kill-switch",
                get(policies::kill_switch).put(policies::set_kill_switch),
            )
            .route(
                "/events",
                post(events::post).layer(DefaultBodyLimit::max(MAX_EVENT_BYTES)),
            )
            .route(
                "/events/sns",
                post(events::sns).layer(DefaultBodyLimit::max(MAX_EVENT_BYTES)),
            )
            .route(
                "/events/eventbridge",
                post(events::eventbridge).layer(DefaultBodyLimit::max(MAX_EVENT_BYTES)),
            )
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(axum::middleware::from_fn_with_state(
                self.state.clone(),
                guard,
            ))
            .with_state(self.state)
    }
}

/// Checks who may call a route before its body is read, so an anonymous
/// caller cannot make the service buffer an upload (the handlers check again).
async fn guard(
    axum::extract::State(api): axum::extract::State<ApiState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::extract::FromRequestParts as _;
    use axum::http::Method;
    use axum::response::IntoResponse as _;
    let path = req.uri().path();
    let open = matches!(
        path,
        "/" | "/health" | "/metrics" | "/events/sns" | "/events/eventbridge"
    ) || (path.starts_with("/ui/") && *req.method() == Method::GET);
    if open {
        return next.run(req).await;
    }
    let admin = !matches!(*req.method(), Method::GET | Method::HEAD) && path != "/events";
    let (mut parts, body) = req.into_parts();
    let checked = match Caller::from_request_parts(&mut parts, &()).await {
        Ok(c) if admin => c.admin(api.token.as_ref()),
        Ok(c) => c.read(api.token.as_ref()),
        Err(e) => Err(e),
    };
    match checked {
        Ok(()) => {
            next.run(axum::extract::Request::from_parts(parts, body))
                .await
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /metrics`: Prometheus text format, open like `/health` (it carries
/// no resource ids).
async fn metrics(
    axum::extract::State(api): axum::extract::State<ApiState>,
) -> impl axum::response::IntoResponse {
    if let Some(c) = &api.catalog {
        let active = c
            .registry()
            .roles()
            .values()
            .filter(|r| r.0.is_some())
            .count();
        crate::metrics::metrics().set(crate::metrics::Gauge::PoliciesActive, &[], active as f64);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::metrics::metrics().render(),
    )
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this method is not served on this route",
    )
}

impl ApiState {
    fn catalog(&self) -> Result<&Arc<Catalog>, ApiError> {
        self.catalog
            .as_ref()
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "this service has no policy catalog"))
    }

    fn store(&self) -> Result<&Arc<dyn Store>, ApiError> {
        self.store
            .as_ref()
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "this service has no store"))
    }
}
