//! `healer run`: the service. Loads the policies, opens the store, serves
//! `GET /health`, and long-polls the SQS queue the EventBridge rules deliver
//! to; every message's signals go through the pipeline (record, decide, judge)
//! and the message is deleted only once recorded. Dry run only until the
//! executors land. SIGTERM / Ctrl-C stop polling, finish the batch in hand and
//! exit 0 (ECS stops tasks with SIGTERM).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use clap::Args;
use healer::api::{Health, router};
use healer::pipeline::Pipeline;
use healer::policy::{PolicyContext, PolicyRegistry};
use healer::safety::{AwsFacts, Governor, GovernorConfig, Layered, StaticFacts};
use healer::signals::{DEFAULT_MAX_SIGNALS, NormalizeOptions};
use healer::sources::sqs::SqsSource;
use healer::sources::{Handled, handle};
use healer::store::Store;
use tokio::sync::watch;

use super::live::{Live, LiveArgs};
use super::policy::EngineArgs;
use super::store::StoreArgs;
use super::{load_json, load_policies};

/// Arguments of `run`; every one can come from the environment.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Directory of policy components (`*.wasm`).
    #[arg(long, env = "HEALER_POLICIES")]
    policies: PathBuf,
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
    #[arg(long, env = "HEALER_CONTEXT")]
    context: Option<PathBuf>,
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
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    live: LiveArgs,
}

/// Everything the ingestion loop and the workers need.
pub(super) struct Service {
    store: Arc<dyn Store>,
    registry: PolicyRegistry,
    governor: Governor,
    facts: Layered,
    pub(super) context: PolicyContext,
    max_signals: usize,
    pub(super) health: Arc<Health>,
    /// Live mode's executors and verifier; `None` in dry run.
    pub(super) live: Option<Live>,
    /// Hands incidents decided `acting` to the workers.
    work: Option<tokio::sync::mpsc::Sender<healer::IncidentId>>,
}

impl Service {
    pub(super) fn pipeline(&self) -> Pipeline<'_> {
        Pipeline {
            store: self.store.as_ref(),
            registry: &self.registry,
            governor: &self.governor,
            facts: &self.facts,
        }
    }

    async fn consume(&self, source: &SqsSource, mut stop: watch::Receiver<bool>) {
        let pipeline = self.pipeline();
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
            // A batch in hand is finished even when a stop arrives meanwhile.
            for m in messages {
                let mut opts = NormalizeOptions::new(Utc::now());
                opts.max_signals = self.max_signals;
                let outcome = handle(&pipeline, m.body.as_bytes(), &self.context, &opts).await;
                match outcome {
                    Handled::Done {
                        incidents,
                        healed,
                        ignored,
                        reasons,
                        truncated,
                        acting,
                    } => {
                        if truncated > 0 {
                            self.health
                                .truncated
                                .fetch_add(truncated as u64, Ordering::Relaxed);
                            tracing::warn!(message = %m.id, truncated, limit = self.max_signals,
                                "Payload over the signal cap: the signals past it were not recorded.");
                        }
                        tracing::info!(message = %m.id, incidents, healed, ignored,
                            first_reasons = ?reasons, truncated, "Recorded.");
                        for id in acting {
                            // A full queue is fine: the next sweep finds it.
                            if let Some(work) = &self.work {
                                let _ = work.try_send(id);
                            }
                        }
                        match source.delete(&m).await {
                            Ok(()) => {
                                self.health.processed.fetch_add(1, Ordering::Relaxed);
                            }
                            // Redelivered later: recording is idempotent.
                            Err(e) => {
                                self.health.failures.fetch_add(1, Ordering::Relaxed);
                                tracing::error!(message = %m.id, error = %e, "delete failed");
                            }
                        }
                    }
                    Handled::Rejected(why) => {
                        self.health.rejected.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(message = %m.id, receive_count = m.receive_count, reason = %why,
                            "unreadable message left for the dead-letter queue");
                    }
                    Handled::Failed(why) => {
                        self.health.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(message = %m.id, receive_count = m.receive_count, reason = %why,
                            "could not record; left for redelivery");
                    }
                }
            }
        }
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
    let context: PolicyContext = load_json(a.context.as_deref(), "context")?;
    let operator = load_json(a.facts.as_deref(), "facts")?;
    let (registry, report) = load_policies(a.engine.engine(a.max_concurrent)?, &a.policies)?;
    a.engine.route(&registry);
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
            store,
            registry,
            governor: Governor::new(governor_config),
            facts: Layered {
                aws: a.aws_facts.then(|| AwsFacts::new(shared.clone())),
                operator: StaticFacts(operator),
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
        let mut http_stop = stop_rx.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, router(health.clone()))
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
        server
            .await
            .context("HTTP server panicked")?
            .context("HTTP server failed")?;
        Ok(code)
    })
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
