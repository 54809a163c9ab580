//! The pollers' flags (`[pollers]` in the config file), off by default: the
//! target-health poller runs when target groups or load balancers are named,
//! the instance-status poller when `--poll-instances` is set.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use healer::sources::instances::{InstancePoller, InstancesConfig};
use healer::sources::poll::{FlapRule, Schedule, SignalSink};
use healer::sources::targets::{Rate, TargetPoller, TargetsConfig};
use healer::store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What to poll, how often and how fast.
#[derive(Debug, Clone, Args)]
pub struct PollArgs {
    /// Target group ARNs whose targets' health is polled, comma-separated.
    #[arg(long, env = "HEALER_POLL_TARGET_GROUPS", value_delimiter = ',')]
    poll_target_groups: Vec<String>,
    /// Load balancer ARNs: every target group of each is polled.
    #[arg(long, env = "HEALER_POLL_LOAD_BALANCERS", value_delimiter = ',')]
    poll_load_balancers: Vec<String>,
    /// Seconds between target-health rounds.
    #[arg(
        long,
        env = "HEALER_POLL_TARGETS_INTERVAL_SECS",
        default_value_t = 15.0
    )]
    poll_targets_interval_secs: f64,
    /// Poll the status checks of running instances carrying the opt-in tag
    /// (the governor's, `SelfHeal=true` by default).
    #[arg(long, env = "HEALER_POLL_INSTANCES")]
    poll_instances: bool,
    /// Seconds between instance-status rounds.
    #[arg(
        long,
        env = "HEALER_POLL_INSTANCES_INTERVAL_SECS",
        default_value_t = 15.0
    )]
    poll_instances_interval_secs: f64,
    /// Each wait moves by up to this fraction of the interval either way.
    #[arg(long, env = "HEALER_POLL_JITTER", default_value_t = 0.1)]
    poll_jitter: f64,
    /// Calls a second to each AWS API, per poller, after the burst.
    #[arg(long, env = "HEALER_POLL_RATE", default_value_t = 5.0)]
    poll_rate: f64,
    /// Calls at once to each AWS API, per poller.
    #[arg(long, env = "HEALER_POLL_BURST", default_value_t = 10)]
    poll_burst: u32,
    /// Health transitions within the window that make a resource flapping.
    #[arg(long, env = "HEALER_FLAP_TRANSITIONS", default_value_t = 4)]
    flap_transitions: u32,
    /// The flapping window, in seconds.
    #[arg(long, env = "HEALER_FLAP_WINDOW_SECS", default_value_t = 600)]
    flap_window_secs: u64,
}

impl PollArgs {
    fn schedule(&self, secs: f64) -> anyhow::Result<Schedule> {
        anyhow::ensure!(
            secs.is_finite() && secs >= 0.1,
            "a poll interval must be at least 0.1 s (got {secs})"
        );
        Ok(Schedule {
            interval: Duration::from_secs_f64(secs),
            jitter: self.poll_jitter,
        })
    }

    fn rate(&self) -> Rate {
        Rate {
            per_sec: self.poll_rate,
            burst: self.poll_burst,
        }
    }

    fn flap(&self) -> FlapRule {
        FlapRule {
            threshold: self.flap_transitions.max(2),
            window: Duration::from_secs(self.flap_window_secs.max(1)),
        }
    }

    /// Starts the configured pollers, recording through `sink` until `stop`;
    /// `opt_in` is the governor's opt-in tag.
    pub fn spawn(
        &self,
        shared: &aws_config::SdkConfig,
        store: Arc<dyn Store>,
        opt_in: (String, String),
        sink: Arc<dyn SignalSink>,
        stop: &watch::Receiver<bool>,
    ) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let mut tasks = Vec::new();
        let clean = |v: &[String]| -> Vec<String> {
            v.iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let (groups, lbs) = (
            clean(&self.poll_target_groups),
            clean(&self.poll_load_balancers),
        );
        if !groups.is_empty() || !lbs.is_empty() {
            let schedule = self.schedule(self.poll_targets_interval_secs)?;
            tracing::info!(target_groups = groups.len(), load_balancers = lbs.len(),
                interval = ?schedule.interval, "polling target health");
            let poller = TargetPoller::new(
                aws_sdk_elasticloadbalancingv2::Client::new(shared),
                store.clone(),
                TargetsConfig {
                    target_groups: groups,
                    load_balancers: lbs,
                    rate: self.rate(),
                    flap: self.flap(),
                },
            );
            let run = healer::sources::poll::run(poller, schedule, sink.clone(), stop.clone());
            tasks.push(tokio::spawn(run));
        }
        if self.poll_instances {
            let schedule = self.schedule(self.poll_instances_interval_secs)?;
            tracing::info!(tag = %format!("{}={}", opt_in.0, opt_in.1),
                interval = ?schedule.interval, "polling instance status checks");
            let poller = InstancePoller::new(
                aws_sdk_ec2::Client::new(shared),
                store,
                InstancesConfig {
                    tag: opt_in,
                    rate: self.rate(),
                    flap: self.flap(),
                },
            );
            let run = healer::sources::poll::run(poller, schedule, sink, stop.clone());
            tasks.push(tokio::spawn(run));
        }
        Ok(tasks)
    }
}
