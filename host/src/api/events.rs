//! `POST /events` and `POST /events/eventbridge`: one raw AWS payload (an
//! EventBridge event, an SNS notification, a CloudWatch alarm: what SQS would
//! carry), recorded through the same path as the queue's messages.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::Serialize;

use super::{ApiError, ApiState, Caller, ErrorCode};
use crate::sources::sns::{MessageType, SnsRejection};
use crate::sources::{Handled, Origin};

/// What a recorded payload turned into.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct Accepted {
    incidents: usize,
    healed: usize,
    ignored: usize,
    reasons: Vec<String>,
    truncated: usize,
}

/// `POST /events`: loopback callers, or others with the admin token.
pub(super) async fn post(
    State(api): State<ApiState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    caller.read(api.token.as_ref())?;
    record(&api, body).await
}

/// The header an EventBridge API destination's connection sends the shared
/// secret in (connection auth type `API_KEY`, key name `X-Healer-Secret`).
pub const SECRET_HEADER: &str = "x-healer-secret";

/// `POST /events/eventbridge`: an EventBridge API destination, authenticated
/// by the shared secret header; off without a configured secret.
pub(super) async fn eventbridge(
    State(api): State<ApiState>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let Some(secret) = &api.eventbridge_secret else {
        return Err(ApiError::new(
            ErrorCode::AdminOff,
            "EventBridge ingestion is off: no HEALER_EVENTBRIDGE_SECRET is configured",
        ));
    };
    let given = headers
        .get(SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !secret.matches(given) {
        tracing::warn!("EventBridge delivery refused: missing or wrong secret header.");
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            format!("missing or wrong {SECRET_HEADER} header"),
        ));
    }
    record(&api, body).await
}

/// What `/events/sns` did with a message that was not a notification.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct Subscription {
    topic: String,
    confirmed: bool,
}

/// `POST /events/sns`: an SNS HTTP(S) subscription's message. Refused with
/// 403 and the reason unless its topic is configured, its certificate URL is
/// SNS's, it is recent and its signature verifies; a subscription
/// confirmation for a configured topic is confirmed.
pub(super) async fn sns(
    State(api): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse as _;
    let Some(verifier) = &api.sns else {
        return Err(ApiError::new(
            ErrorCode::AdminOff,
            "SNS ingestion is off: no topic is configured (HEALER_SNS_TOPICS)",
        ));
    };
    let body = body?;
    let refuse = |e: SnsRejection| {
        crate::metrics::metrics().inc(
            crate::metrics::Counter::Signals,
            &[("origin", "sns"), ("outcome", "refused")],
        );
        tracing::warn!(reason = %e, "SNS message refused.");
        let code = if e.is_transient() {
            ErrorCode::Unavailable
        } else {
            ErrorCode::Forbidden
        };
        ApiError::new(code, e.to_string())
    };
    let m = verifier
        .verify(&body, chrono::Utc::now())
        .await
        .map_err(refuse)?;
    match m.kind {
        MessageType::Notification => {
            if verifier.already_recorded(&m.message_id) {
                let duplicate = serde_json::json!({ "duplicate": m.message_id });
                return Ok(Json(duplicate).into_response());
            }
            let answer = ingest(&api, &m.signed_envelope(), Origin::Sns).await?;
            verifier.recorded(&m.message_id, chrono::Utc::now());
            Ok(answer.into_response())
        }
        MessageType::SubscriptionConfirmation => {
            verifier.confirm(&m).await.map_err(refuse)?;
            Ok(Json(Subscription {
                topic: m.topic_arn,
                confirmed: true,
            })
            .into_response())
        }
        MessageType::UnsubscribeConfirmation => Ok(Json(Subscription {
            topic: m.topic_arn,
            confirmed: false,
        })
        .into_response()),
    }
}

async fn record(
    api: &ApiState,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let body = body?;
    ingest(api, &body, Origin::Http).await
}

async fn ingest(
    api: &ApiState,
    body: &[u8],
    origin: Origin,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let ingest = api
        .ingest
        .as_ref()
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "this service does not ingest events"))?;
    let handled = ingest.ingest(body, origin).await;
    api.feed.wake();
    match handled {
        Handled::Done {
            incidents,
            healed,
            ignored,
            reasons,
            truncated,
            ..
        } => Ok((
            StatusCode::ACCEPTED,
            Json(Accepted {
                incidents,
                healed,
                ignored,
                reasons,
                truncated,
            }),
        )),
        Handled::Rejected(why) => Err(ApiError::new(ErrorCode::BadRequest, why)),
        Handled::Failed(why) => Err(ApiError::new(ErrorCode::Unavailable, why)),
    }
}
