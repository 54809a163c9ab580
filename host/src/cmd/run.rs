//! `healer run`: the service. Loads the policies, opens the store, serves the
//! HTTP API (health, policy swaps, kill switch, `POST /events`), follows the
//! persisted policy set and watches the policy directory, and long-polls the
//! SQS queue the EventBridge rules deliver to; every message's signals go
//! through the pipeline (record, decide, judge) and the message is deleted
//! only once recorded. Dry run unless `--live`. SIGTERM / Ctrl-C stop polling,
//! finish the batch in hand and exit 0 (ECS stops tasks with SIGTERM).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use clap::Args;
use healer::api::{AdminToken, Api, Approvals, Health, Ingest};
use healer::metrics::{Counter, Gauge, metrics};
use healer::pipeline::{Answer, ApprovalError, Pipeline};
use healer::policy::blobs::{BlobDir, BlobStore, StoreBlobs};
use healer::policy::catalog::Catalog;
use healer::policy::{PolicyContext, PolicyRegistry};
use healer::safety::{AwsFacts, Governor, GovernorConfig, Layered, StaticFacts};
use healer::signals::{DEFAULT_MAX_SIGNALS, NormalizeOptions};
use healer::sources::poll::SignalSink;
use healer::sources::sns::{SnsConfig, SnsVerifier};
use healer::sources::sqs::SqsSource;
use healer::sources::{Handled, Origin, handle_leased, handle_signals};
use healer::store::Store;
use tokio::sync::watch;

use super::live::{Live, LiveArgs};
use super::policy::EngineArgs;
use super::store::StoreArgs;
use super::{load_json, load_policies};

/// Arguments of `run`; every one can come from the environment.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Directory of policy components (`*.wasm`) [default: the example
    /// policies built into the binary].
    #[arg(long, env = "HEALER_POLICIES")]
    policies: Option<PathBuf>,
    /// SQS queue URL to long-poll for events (the EventBridge rules' target).
    /// Without it the service only serves HTTP.
    #[arg(long, env = "HEALER_SQS_QUEUE_URL")]
    sqs_queue_url: Option<String>,
    /// Address of the HTTP API (`/health`). Loopback by default, so a laptop
    /// or a shared host exposes nothing; a container sets 0.0.0.0:8080 (the
    /// Dockerfile and the Fargate task definition do).
    #[arg(long, env = "HEALER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Most signals one SQS message yields; the rest are counted as truncated,
    /// not recorded, and the message is still deleted once the kept ones are.
    #[arg(long, env = "HEALER_MAX_SIGNALS_PER_PAYLOAD", default_value_t = DEFAULT_MAX_SIGNALS,
        value_parser = super::signal_cap)]
    max_signals_per_payload: usize,
    /// Governor limits JSON (`GovernorConfig`, kebab-case; every field optional).
    #[arg(long, env = "HEALER_GOVERNOR", conflicts_with = "governor_json")]
    governor: Option<PathBuf>,
    /// Governor limits as inline JSON (for containers configured by env).
    #[arg(long, env = "HEALER_GOVERNOR_JSON")]
    governor_json: Option<String>,
    /// Policy context JSON applied to every incident.
    #[arg(long, env = "HEALER_CONTEXT", conflicts_with = "context_json")]
    context: Option<PathBuf>,
    /// Policy context as inline JSON (a config file's `[context]` arrives here).
    #[arg(long, env = "HEALER_CONTEXT_JSON")]
    context_json: Option<String>,
    /// Operator resource facts JSON (override what `--aws-facts` reads).
    #[arg(long, env = "HEALER_FACTS")]
    facts: Option<PathBuf>,
    /// Read resource facts (tags, group sizes) from the AWS APIs.
    #[arg(long, env = "HEALER_AWS_FACTS")]
    aws_facts: bool,
    /// Seconds without a completed queue poll after which `/health` answers
    /// 503 `stuck` (ECS then replaces the task).
    #[arg(long, env = "HEALER_STUCK_AFTER_SECS", default_value_t = 120)]
    stuck_after_secs: u64,
    /// Concurrent policy instances (pooling allocator slots).
    #[arg(long, env = "HEALER_MAX_CONCURRENT", default_value_t = 16)]
    max_concurrent: u32,
    /// Admin API bearer token (at least 16 characters). Without it (and
    /// without `--admin-token-file`) the admin routes are off. On ECS, inject
    /// it from SSM Parameter Store or Secrets Manager as this variable.
    #[arg(
        long = "admin-token",
        env = "HEALER_ADMIN_TOKEN",
        hide_env_values = true,
        conflicts_with = "admin_token_file"
    )]
    admin_token: Option<String>,
    /// Shared secret EventBridge API destinations send in the `X-Healer-Secret`
    /// header to `POST /events/eventbridge` (off without it; 16+ characters).
    #[arg(
        long = "eventbridge-secret",
        env = "HEALER_EVENTBRIDGE_SECRET",
        hide_env_values = true
    )]
    eventbridge_secret: Option<String>,
    /// SNS topic ARNs whose HTTPS subscription messages `POST /events/sns`
    /// accepts (signature-checked) and whose subscriptions it confirms,
    /// comma-separated. Without any the route is off.
    #[arg(long, env = "HEALER_SNS_TOPICS", value_delimiter = ',')]
    sns_topics: Vec<String>,
    /// Oldest SNS message accepted, in seconds (older ones are replays).
    #[arg(long, env = "HEALER_SNS_MAX_AGE_SECS", default_value_t = 3600)]
    sns_max_age_secs: u64,
    /// Test only: a `host:port` whose plain-http certificate and subscribe
    /// URLs are trusted like SNS's own hosts.
    #[arg(long, env = "HEALER_SNS_TEST_TRUSTED_HOST", hide = true)]
    sns_test_trusted_host: Option<String>,
    /// File holding the admin API bearer token.
    #[arg(long, env = "HEALER_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// Directory keeping every pushed policy component by sha256, for the
    /// other replicas and the next start (replicas must share it) [default:
    /// the store itself, which every replica shares].
    #[arg(long, env = "HEALER_POLICY_BLOBS")]
    policy_blobs: Option<PathBuf>,
    /// How often the service reads the persisted policy set (swaps made on
    /// other replicas) and rescans the policy directory, in milliseconds.
    #[arg(long, env = "HEALER_FOLLOW_INTERVAL_MS", default_value_t = 2000)]
    follow_interval_ms: u64,
    /// Regression guard: a newly activated version is judged on the first
    /// this many incidents it decides once they settle, and rolled back when
    /// their failure rate (policy errors and traps, escalations, failed
    /// actions) exceeds the previous version's by more than the margin
    /// [default: 0, off].
    #[arg(long, env = "HEALER_REGRESSION_GUARD_DECISIONS", default_value_t = 0)]
    regression_guard_decisions: u64,
    /// The regression guard's margin, as a fraction (0.2: 20 percentage points).
    #[arg(long, env = "HEALER_REGRESSION_GUARD_MARGIN", default_value_t = 0.2)]
    regression_guard_margin: f64,
    /// Largest policy component `PUT /policies/{name}` takes, in bytes.
    #[arg(long, env = "HEALER_MAX_POLICY_BYTES", default_value_t = healer::api::DEFAULT_MAX_POLICY_BYTES)]
    max_policy_bytes: usize,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    live: LiveArgs,
    #[command(flatten)]
    poll: super::poll::PollArgs,
}

/// Everything the ingestion loop and the workers need.
pub(super) struct Service {
    store: Arc<dyn Store>,
    registry: Arc<PolicyRegistry>,
    governor: Governor,
    facts: Layered,
    pub(super) context: PolicyContext,
    max_signals: usize,
    pub(super) health: Arc<Health>,
    /// Live mode's executors and verifier; `None` in dry run.
    pub(super) live: Option<Live>,
    /// Hands incidents decided `acting` to the workers.
    work: Option<tokio::sync::mpsc::Sender<healer::pipeline::Handoff>>,
}

impl Service {
    pub(super) fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    pub(super) fn pipeline(&self) -> Pipeline<'_> {
        Pipeline {
            store: self.store.as_ref(),
            registry: &self.registry,
            governor: &self.governor,
            facts: &self.facts,
        }
    }

    async fn consume(&self, source: &SqsSource, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_secs(1);
        while !*stop.borrow() {
            let batch = tokio::select! {
                r = source.receive() => r,
                _ = stop.changed() => break,
            };
            let messages = match batch {
                Ok(m) => {
                    backoff = Duration::from_secs(1);
                    self.health.polled(Utc::now());
                    m
                }
                Err(e) => {
                    self.health.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, "receive failed; retrying in {backoff:?}");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    continue;
                }
            };
            let now = Utc::now();
            if let Some(oldest) = messages.iter().filter_map(|m| m.sent_at).min() {
                let lag = (now - oldest).num_milliseconds().max(0) as f64 / 1000.0;
                metrics().set(Gauge::SqsPollLag, &[], lag);
            }
            // A batch in hand is finished even when a stop arrives meanwhile.
            for m in messages {
                let result = match self.ingest(m.body.as_bytes(), Origin::Sqs).await {
                    Handled::Done { .. } => match source.delete(&m).await {
                        Ok(()) => {
                            self.health.processed.fetch_add(1, Ordering::Relaxed);
                            "processed"
                        }
                        // Redelivered later: recording is idempotent.
                        Err(e) => {
                            self.health.failures.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(message = %m.id, error = %e, "delete failed");
                            "delete-failed"
                        }
                    },
                    Handled::Rejected(why) => {
                        tracing::warn!(message = %m.id, receive_count = m.receive_count, reason = %why,
                            "unreadable message left for the dead-letter queue");
                        "rejected"
                    }
                    Handled::Failed(why) => {
                        tracing::error!(message = %m.id, receive_count = m.receive_count, reason = %why,
                            "could not record; left for redelivery");
                        "failed"
                    }
                };
                metrics().inc(Counter::SqsMessages, &[("result", result)]);
            }
        }
    }
}

#[async_trait::async_trait]
impl Approvals for Service {
    async fn answer(
        &self,
        id: &healer::IncidentId,
        answer: Answer,
        who: &str,
    ) -> Result<healer::store::IncidentRecord, ApprovalError> {
        let record = self.pipeline().answer(id, answer, who, Utc::now()).await?;
        if record.state == healer::store::LifecycleState::Acting
            && let Some(work) = &self.work
        {
            // A full queue is fine: the next sweep finds it.
            let _ = work.try_send(id.clone().into());
        }
        Ok(record)
    }
}

impl Service {
    /// Hands incidents left `acting`, leases in hand, to the workers; what
    /// they cannot take now (a full queue, no workers) is released for the
    /// next sweep.
    async fn hand_over(&self, handoffs: Vec<healer::pipeline::Handoff>) {
        for h in handoffs {
            let refused = match &self.work {
                Some(work) => match work.try_send(h) {
                    Ok(()) => continue,
                    Err(e) => e.into_inner(),
                },
                None => h,
            };
            refused.release(self.store()).await;
        }
    }
}

#[async_trait::async_trait]
impl Ingest for Service {
    /// Records one payload (from the queue or `POST /events`), counts it, and
    /// hands what it left `acting` to the workers.
    async fn ingest(&self, payload: &[u8], origin: Origin) -> Handled {
        let mut opts = NormalizeOptions::new(Utc::now());
        opts.max_signals = self.max_signals;
        let pipeline = self.pipeline();
        let (outcome, handoffs) = handle_leased(&pipeline, payload, &self.context, &opts).await;
        self.hand_over(handoffs).await;
        outcome.count(origin);
        match &outcome {
            Handled::Done {
                incidents,
                healed,
                ignored,
                reasons,
                truncated,
                acting,
            } => {
                if *truncated > 0 {
                    self.health
                        .truncated
                        .fetch_add(*truncated as u64, Ordering::Relaxed);
                    tracing::warn!(
                        truncated,
                        limit = self.max_signals,
                        "Payload over the signal cap: the signals past it were not recorded."
                    );
                }
                tracing::info!(incidents, healed, ignored, first_reasons = ?reasons, truncated,
                    acting = acting.len(), "Recorded.");
            }
            Handled::Rejected(_) => {
                self.health.rejected.fetch_add(1, Ordering::Relaxed);
            }
            Handled::Failed(_) => {
                self.health.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        outcome
    }
}

#[async_trait::async_trait]
impl SignalSink for Service {
    /// Records a poller's signals, counts them, and hands what they left
    /// `acting` to the workers.
    async fn record(
        &self,
        signals: Vec<healer::signals::Signal>,
        at: chrono::DateTime<Utc>,
    ) -> Handled {
        let pipeline = self.pipeline();
        let (outcome, handoffs) = handle_signals(&pipeline, signals, &self.context, at).await;
        self.hand_over(handoffs).await;
        outcome.count(Origin::Poll);
        match &outcome {
            Handled::Done {
                incidents,
                healed,
                acting,
                ..
            } => tracing::info!(incidents, healed, acting = acting.len(), "Recorded a poll."),
            Handled::Failed(_) | Handled::Rejected(_) => {
                self.health.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        outcome
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Runs the service until SIGTERM / Ctrl-C.
pub fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let mut governor_config: GovernorConfig = match &a.governor_json {
        Some(json) => serde_json::from_str(json).context("invalid HEALER_GOVERNOR_JSON")?,
        None => load_json(a.governor.as_deref(), "governor config")?,
    };
    a.live.apply(&mut governor_config)?;
    let context: PolicyContext = match &a.context_json {
        Some(json) => serde_json::from_str(json).context("invalid HEALER_CONTEXT_JSON")?,
        None => load_json(a.context.as_deref(), "context")?,
    };
    let operator: std::collections::BTreeMap<String, healer::safety::ResourceFacts> =
        load_json(a.facts.as_deref(), "facts")?;
    let token = admin_token(&a)?;
    let topics: Vec<String> = a
        .sns_topics
        .iter()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    let sns = (!topics.is_empty()).then(|| {
        Arc::new(SnsVerifier::new(SnsConfig {
            topics,
            max_age: Duration::from_secs(a.sns_max_age_secs),
            test_trusted_host: a.sns_test_trusted_host.clone(),
        }))
    });
    let eventbridge = a
        .eventbridge_secret
        .as_deref()
        .map(AdminToken::new)
        .transpose()
        .context("invalid HEALER_EVENTBRIDGE_SECRET")?;
    // The directory's baseline, taken before it is loaded: a file changed
    // from here on is pushed by the follower.
    let dir_watch = a
        .policies
        .as_deref()
        .map(healer::policy::follow::DirWatch::new);
    let (registry, report) =
        load_policies(a.engine.engine(a.max_concurrent)?, a.policies.as_deref())?;
    a.engine.route(&registry);
    let registry = Arc::new(registry);
    let policies = report
        .loaded
        .iter()
        .map(|p| format!("{}@{}", p.name, p.version))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let store = a.store.open().await?;
        let blobs: Arc<dyn BlobStore> = match &a.policy_blobs {
            Some(d) => Arc::new(BlobDir::new(d)),
            None => Arc::new(StoreBlobs::new(store.clone())),
        };
        let catalog = Arc::new(Catalog::new(registry.clone(), blobs, store.clone()));
        catalog
            .start(match &a.policies {
                Some(dir) => healer::policy::follow::wasm_files(dir),
                None => healer::policy::embedded_files(),
            })
            .await
            .context("cannot restore the persisted policy set")?;
        let shared = healer::aws::sdk_config().await;
        let source = a
            .sqs_queue_url
            .as_ref()
            .map(|url| SqsSource::new(aws_sdk_sqs::Client::new(&shared), url));
        let mut health = Health::new(policies, governor_config.dry_run, a.sqs_queue_url.clone());
        health.stuck_after = Duration::from_secs(a.stuck_after_secs.max(1));
        let health = Arc::new(health);
        let live = a.live.build(&shared)?;
        let (work_tx, work_rx) = tokio::sync::mpsc::channel(1024);
        let service = Arc::new(Service {
            store: store.clone(),
            registry,
            governor: Governor::new(governor_config.clone()),
            facts: Layered {
                aws: a.aws_facts.then(|| AwsFacts::new(shared.clone())),
                operator: StaticFacts(operator.clone()),
            },
            context,
            max_signals: a.max_signals_per_payload,
            health: health.clone(),
            work: live.is_some().then_some(work_tx),
            live,
        });
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .with_context(|| format!("cannot listen on {}", a.listen))?;
        let mode = if service.live.is_some() { "live" } else { "dry run" };
        tracing::info!(listen = %a.listen, queue = ?a.sqs_queue_url, mode, "healer running");
        eprintln!("healer: listening on {} ({mode})", listener.local_addr()?);
        let (stop_tx, stop_rx) = watch::channel(false);
        let workers = service
            .live
            .is_some()
            .then(|| tokio::spawn(super::work::drive(service.clone(), work_rx, stop_rx.clone())));
        let consumer = source.map(|source| {
            let (service, stop) = (service.clone(), stop_rx.clone());
            tokio::spawn(async move { service.consume(&source, stop).await })
        });
        let pollers = a.poll.spawn(
            &shared,
            store.clone(),
            (
                governor_config.opt_in_tag_key.clone(),
                governor_config.opt_in_tag_value.clone(),
            ),
            service.clone(),
            &stop_rx,
        )?;
        let follower = tokio::spawn(healer::policy::follow::follow(
            catalog.clone(),
            dir_watch,
            Duration::from_millis(a.follow_interval_ms.max(100)),
            stop_rx.clone(),
        ));
        // In live mode the guard tells the team of a rollback.
        let guard_notify = match service.live.is_some() {
            true => Some(healer::actions::SnsExecutor::new(
                &healer::aws::action_config(&shared),
                a.live.channels()?,
            )),
            false => None,
        };
        let guard = tokio::spawn(healer::policy::guard::run(
            catalog.clone(),
            store.clone(),
            healer::policy::guard::GuardConfig {
                decisions: a.regression_guard_decisions,
                margin: a.regression_guard_margin,
            },
            guard_notify,
            stop_rx.clone(),
        ));
        let api = Api::new(health.clone())
            .token(token)
            .catalog(catalog)
            .store(store)
            .ingest(service.clone())
            .approvals(service.clone())
            .eventbridge_secret(eventbridge)
            .sns(sns)
            .max_policy_bytes(a.max_policy_bytes)
            .stop(stop_rx.clone())
            .governor(
                Governor::new(governor_config),
                healer::safety::Facts(operator),
            )
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        let mut http_stop = stop_rx.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, api)
                .with_graceful_shutdown(async move {
                    let _ = http_stop.wait_for(|s| *s).await;
                })
                .await
        });
        // A dead consumer is a dead service: if ingestion ends before a stop
        // was asked for (a panic, or the loop returning), the service exits
        // non-zero so its supervisor (ECS) replaces it.
        let ingestion = supervise(consumer, shutdown_signal()).await;
        service.health.stopping.store(true, Ordering::Relaxed);
        let _ = stop_tx.send(true);
        let code = match ingestion {
            Ingestion::Running(consumer) => {
                tracing::info!("Stopping: finishing the batch in hand.");
                consumer.await.context("ingestion loop panicked")?;
                ExitCode::SUCCESS
            }
            Ingestion::Ended(panic) => {
                service.health.ingestion_ended.store(true, Ordering::Relaxed);
                match panic {
                    Some(error) => tracing::error!(error = %error, "Ingestion loop panicked; stopping the service."),
                    None => tracing::error!("Ingestion loop ended; stopping the service."),
                }
                ExitCode::FAILURE
            }
            Ingestion::Off => ExitCode::SUCCESS,
        };
        if let Some(workers) = workers {
            tracing::info!("Stopping: letting the workers finish the step in hand.");
            workers.await.context("worker pool panicked")?;
        }
        for p in pollers {
            p.await.context("a poller panicked")?;
        }
        follower.await.context("policy follower panicked")?;
        guard.await.context("regression guard panicked")?;
        server
            .await
            .context("HTTP server panicked")?
            .context("HTTP server failed")?;
        Ok(code)
    })
}

/// The admin token from `--admin-token` / `HEALER_ADMIN_TOKEN` or its file.
fn admin_token(a: &RunArgs) -> anyhow::Result<Option<AdminToken>> {
    let text = match (&a.admin_token, &a.admin_token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read admin token file {}", f.display()))?,
        (None, None) => return Ok(None),
    };
    Ok(Some(AdminToken::new(&text)?))
}

/// Waits for a stop request or for the ingestion loop to end, whichever
/// comes first.
async fn supervise(
    consumer: Option<tokio::task::JoinHandle<()>>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Ingestion {
    match consumer {
        Some(mut consumer) => tokio::select! {
            _ = shutdown => Ingestion::Running(consumer),
            ended = &mut consumer => Ingestion::Ended(ended.err()),
        },
        None => {
            shutdown.await;
            Ingestion::Off
        }
    }
}

/// How the ingestion loop stood when the service began to stop.
enum Ingestion {
    /// Still polling: asked to stop, it finishes the batch in hand.
    Running(tokio::task::JoinHandle<()>),
    /// It ended on its own (with the panic, if it panicked).
    Ended(Option<tokio::task::JoinError>),
    /// No queue configured.
    Off,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dead_consumer_stops_the_service() {
        let panicked = tokio::spawn(async { panic!("ingestion bug") });
        let r = supervise(Some(panicked), std::future::pending()).await;
        assert!(matches!(r, Ingestion::Ended(Some(e)) if e.is_panic()));
        let returned = tokio::spawn(async {});
        let r = supervise(Some(returned), std::future::pending()).await;
        assert!(matches!(r, Ingestion::Ended(None)));
        let polling = tokio::spawn(std::future::pending::<()>());
        let r = supervise(Some(polling), async {}).await;
        assert!(matches!(r, Ingestion::Running(_)));
    }
}
