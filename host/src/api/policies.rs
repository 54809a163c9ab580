//! The policy routes and the kill switch.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{Path, RawQuery, State};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState, Caller, ErrorCode};
use crate::policy::catalog::{PolicySet, Pushed};
use crate::policy::{LimitOverride, PolicyId, PolicyRole, RegistryEntry};
use crate::safety::KillSwitch;

/// `GET /policies`.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct Listing {
    /// Every policy this replica holds, with its versions, roles and counts.
    policies: Vec<RegistryEntry>,
    /// The persisted set every replica follows, and its version.
    set: PolicySet,
    set_version: u64,
}

pub(super) async fn list(
    State(api): State<ApiState>,
    caller: Caller,
) -> Result<Json<Listing>, ApiError> {
    caller.read(api.token.as_ref())?;
    let catalog = api.catalog()?;
    let (set, set_version) = catalog.read().await?;
    Ok(Json(Listing {
        policies: catalog.registry().list(),
        set,
        set_version,
    }))
}

/// The role a `PUT` asks for: `?role=shadow`, else active.
fn role_of(query: Option<&str>) -> Result<PolicyRole, ApiError> {
    let mut role = PolicyRole::Active;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair {
            "role=active" => role = PolicyRole::Active,
            "role=shadow" => role = PolicyRole::Shadow,
            other => {
                return Err(ApiError::new(
                    ErrorCode::BadRequest,
                    format!("unknown query {other:?}: the only one is role=active|shadow"),
                ));
            }
        }
    }
    Ok(role)
}

/// `PUT /policies/{name}[?role=shadow]`: the body is the component, whose
/// metadata must name `name`.
pub(super) async fn put(
    State(api): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Pushed>, ApiError> {
    upload(api, caller, Some(name), query, body).await
}

/// `POST /policies[?role=shadow]`: the same, under the name in its metadata.
pub(super) async fn post(
    State(api): State<ApiState>,
    caller: Caller,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Pushed>, ApiError> {
    upload(api, caller, None, query, body).await
}

async fn upload(
    api: ApiState,
    caller: Caller,
    name: Option<String>,
    query: Option<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Pushed>, ApiError> {
    caller.admin(api.token.as_ref())?;
    let role = role_of(query.as_deref())?;
    let body = body?;
    if body.is_empty() {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "the body must be the policy component (application/wasm)",
        ));
    }
    let pushed = api
        .catalog()?
        .push(body.to_vec(), role, name.as_deref(), &caller.who())
        .await?;
    tracing::info!(policy = %pushed.policy.name, version = %pushed.policy.version,
        sha256 = %pushed.policy.sha256, role = ?role, by = %caller.who(),
        swap_ms = pushed.swap_ms, compile_ms = pushed.compile_ms, "Policy pushed.");
    Ok(Json(pushed))
}

/// What a rollback or an activation put in place.
#[derive(Serialize)]
pub(super) struct Active {
    active: PolicyId,
}

/// What `PUT /policies/{name}/limits` left.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct LimitsSet {
    name: String,
    limits: LimitOverride,
}

/// `PUT /policies/{name}/limits`: the operator's limits for one policy on
/// every replica (`{}` clears them). Refused (400, the limit named) above the
/// ceiling or below what a version in use needs.
pub(super) async fn set_limits(
    State(api): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<LimitOverride>, JsonRejection>,
) -> Result<Json<LimitsSet>, ApiError> {
    caller.admin(api.token.as_ref())?;
    let Json(limits) = body?;
    api.catalog()?
        .set_limits(&name, &limits, &caller.who())
        .await?;
    Ok(Json(LimitsSet { name, limits }))
}

pub(super) async fn rollback(
    State(api): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Active>, ApiError> {
    caller.admin(api.token.as_ref())?;
    let active = api.catalog()?.rollback(&name, &caller.who()).await?;
    Ok(Json(Active { active }))
}

pub(super) async fn activate(
    State(api): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Active>, ApiError> {
    caller.admin(api.token.as_ref())?;
    let active = api.catalog()?.activate(&name, &caller.who()).await?;
    Ok(Json(Active { active }))
}

/// `POST /policies/{name}/shadow`: which stored version to run in shadow.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(super) struct ShadowOf {
    sha256: String,
}

/// What a shadow change left.
#[derive(Serialize)]
pub(super) struct Shadowed {
    name: String,
    shadow: Option<String>,
}

pub(super) async fn shadow(
    State(api): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<ShadowOf>, JsonRejection>,
) -> Result<Json<Shadowed>, ApiError> {
    caller.admin(api.token.as_ref())?;
    let Json(of) = body?;
    api.catalog()?
        .shadow(&name, Some(&of.sha256), &caller.who())
        .await?;
    Ok(Json(Shadowed {
        name,
        shadow: Some(of.sha256),
    }))
}

pub(super) async fn unshadow(
    State(api): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Shadowed>, ApiError> {
    caller.admin(api.token.as_ref())?;
    api.catalog()?.shadow(&name, None, &caller.who()).await?;
    Ok(Json(Shadowed { name, shadow: None }))
}

/// What a retirement did.
#[derive(Serialize)]
pub(super) struct Retired {
    retired: String,
}

pub(super) async fn retire(
    State(api): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Retired>, ApiError> {
    caller.admin(api.token.as_ref())?;
    api.catalog()?.retire(&name, &caller.who()).await?;
    Ok(Json(Retired { retired: name }))
}

/// The kill switch, read and written.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(super) struct Switch {
    state: KillSwitch,
}

pub(super) async fn kill_switch(
    State(api): State<ApiState>,
    caller: Caller,
) -> Result<Json<Switch>, ApiError> {
    caller.read(api.token.as_ref())?;
    let state = crate::safety::kill_switch_flag(api.store()?.as_ref()).await?;
    Ok(Json(Switch { state }))
}

pub(super) async fn set_kill_switch(
    State(api): State<ApiState>,
    caller: Caller,
    body: Result<Json<Switch>, JsonRejection>,
) -> Result<Json<Switch>, ApiError> {
    caller.admin(api.token.as_ref())?;
    let Json(switch) = body?;
    crate::safety::set_kill_switch(api.store()?.as_ref(), switch.state).await?;
    tracing::warn!(state = switch.state.as_str(), by = %caller.who(), "Kill switch set over the API.");
    Ok(Json(switch))
}
