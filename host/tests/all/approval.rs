//! Steps the approval rule holds: approved (with who and when, after the
//! reservations it takes) the incident moves to `acting`; denied it is
//! `denied`; past the approval time the answer is refused and the steps are
//! denied as expired; an incident with nothing held is a conflict.

use std::sync::Arc;

use chrono::Utc;
use healer::Incident;
use healer::decision::ActionKind;
use healer::pipeline::{Answer, ApprovalError, Recorded};
use healer::policy::PolicyContext;
use healer::safety::GovernorConfig;
use healer::store::VerdictRecord;
use healer::store::{IncidentRecord, LifecycleState};

use crate::support::Ec2World;

/// The ec2-replace world, live, with replacements held for approval.
type World = Ec2World;

impl World {
    async fn holding(ttl_minutes: u32) -> World {
        Ec2World::new(GovernorConfig {
            dry_run: false,
            require_approval: vec![ActionKind::ReplaceInstance],
            approval_ttl_minutes: ttl_minutes,
            ..GovernorConfig::default()
        })
        .await
    }

    /// An impaired instance whose replacement waits for a human.
    async fn held(&self) -> IncidentRecord {
        let mut ctx = PolicyContext::default();
        ctx.config.insert("strategy".into(), "replace".into());
        let incident = Incident::from_json(
            format!(
                r#"{{"kind":"instance-impaired","resource":{{"kind":"ec2-instance","id":"i-0abc"}},"detected-at":"{}"}}"#,
                Utc::now().to_rfc3339()
            )
            .as_bytes(),
        )
        .expect("incident");
        let (_, recorded) = self
            .pipeline()
            .on_incident(&incident, &ctx, Utc::now())
            .await
            .expect("decided");
        let Recorded::New(r) = recorded else {
            panic!("{recorded:?}");
        };
        assert_eq!(r.state, LifecycleState::Decided, "{r:#?}");
        assert!(held(&r).is_some(), "{:#?}", r.verdicts);
        *r
    }
}

fn held(r: &IncidentRecord) -> Option<&VerdictRecord> {
    r.verdicts
        .iter()
        .find(|v| v.verdict == healer::safety::VerdictKind::PendingApproval)
}

fn replace_verdict(r: &IncidentRecord) -> &VerdictRecord {
    r.verdicts.iter().find(|v| v.step == 0).expect("step 0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_moves_the_held_step_to_acting_with_who_and_when() {
    let w = World::holding(60).await;
    let r = w.held().await;
    let id = r.incident.id.clone();
    let approved = w
        .pipeline()
        .answer(&id, Answer::Approve, "api@10.0.0.9", Utc::now())
        .await
        .expect("approved");
    assert_eq!(approved.state, LifecycleState::Acting);
    let v = replace_verdict(&approved);
    assert_eq!(v.verdict, healer::safety::VerdictKind::Approved);
    assert!(
        v.reason.contains("approved by api@10.0.0.9 at "),
        "{}",
        v.reason
    );
    // The approved step is in the actions index, so the limits see it.
    let since = Utc::now() - chrono::Duration::hours(1);
    let actions = w
        .store
        .actions_since(&healer::store::Scope::All, since)
        .await
        .expect("actions");
    assert!(
        actions
            .iter()
            .any(|a| a.incident_id == id.as_str() && a.kind == ActionKind::ReplaceInstance),
        "{actions:?}"
    );
    // Nothing is held any more.
    let again = w
        .pipeline()
        .answer(&id, Answer::Approve, "x", Utc::now())
        .await;
    assert!(
        matches!(again, Err(ApprovalError::NothingPending { .. })),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_denies_the_incident_and_a_late_answer_expires() {
    let w = World::holding(60).await;
    let r = w.held().await;
    let denied = w
        .pipeline()
        .answer(&r.incident.id, Answer::Deny, "ops", Utc::now())
        .await
        .expect("denied");
    let v = replace_verdict(&denied);
    assert_eq!(v.verdict, healer::safety::VerdictKind::Denied);
    assert_eq!(v.rule, Some(healer::safety::Rule::Approval));
    assert!(v.reason.contains("denied by ops"), "{}", v.reason);
    assert_eq!(denied.state, LifecycleState::Denied);

    let late = World::holding(1).await;
    let r = late.held().await;
    let answer = late
        .pipeline()
        .answer(
            &r.incident.id,
            Answer::Approve,
            "ops",
            Utc::now() + chrono::Duration::minutes(5),
        )
        .await;
    assert!(
        matches!(answer, Err(ApprovalError::Expired { minutes: 1, .. })),
        "{answer:?}"
    );
    let after = late
        .store
        .get(&r.incident.id)
        .await
        .expect("get")
        .expect("there");
    let v = replace_verdict(&after);
    assert_eq!(v.verdict, healer::safety::VerdictKind::Denied);
    assert!(v.reason.contains("expired"), "{}", v.reason);
    assert!(held(&after).is_none());
    assert_eq!(after.state, LifecycleState::Denied);
}

/// The service's side of the approval routes, on the test's world.
struct Answers(World);

#[async_trait::async_trait]
impl healer::api::Approvals for Answers {
    async fn answer(
        &self,
        id: &healer::IncidentId,
        answer: Answer,
        who: &str,
    ) -> Result<IncidentRecord, ApprovalError> {
        self.0.pipeline().answer(id, answer, who, Utc::now()).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approval_routes_need_the_token_and_answer_once() {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    const TOKEN: &str = "approval-admin-token-0123";
    let w = World::holding(60).await;
    let r = w.held().await;
    let store = w.store.clone();
    let router = healer::api::Api::new(Arc::new(healer::api::Health::new(Vec::new(), false, None)))
        .token(Some(healer::api::AdminToken::new(TOKEN).expect("token")))
        .store(store)
        .approvals(Arc::new(Answers(w)))
        .router()
        .layer(axum::extract::connect_info::MockConnectInfo(
            "10.1.2.3:4".parse::<std::net::SocketAddr>().expect("addr"),
        ));
    let post = |path: String, token: Option<&'static str>| {
        let router = router.clone();
        async move {
            let mut req = Request::post(path);
            if let Some(t) = token {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            let resp = router
                .oneshot(req.body(Body::empty()).expect("request"))
                .await
                .expect("infallible");
            let status = resp.status();
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&body).expect("json"),
            )
        }
    };
    let path = format!("/incidents/{}/approve", r.incident.id);
    let (s, b) = post(path.clone(), None).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let (s, b) = post(path.clone(), Some(TOKEN)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["state"], "acting");
    let reason = b["verdicts"][0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("approved by api@10.1.2.3 at "), "{b}");
    let (s, b) = post(path, Some(TOKEN)).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (StatusCode::CONFLICT, Some("conflict")),
        "{b}"
    );
    let (s, b) = post("/incidents/inc-none/deny".to_owned(), Some(TOKEN)).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not-found")),
        "{b}"
    );
}
