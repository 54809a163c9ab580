//! Live mode's flags, shared by `healer run` and `healer heal`: the explicit
//! switch, the notification channels, the worker pool and the deadlines.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use healer::actions::{DEFAULT_CHANNEL, Ec2Executor, Executors};
use healer::pipeline::{Pipeline, WorkOptions, Worker};
use healer::safety::GovernorConfig;
use healer::verify::AwsVerifier;

/// Live mode: off unless asked for.
#[derive(Debug, Clone, Args)]
pub struct LiveArgs {
    /// Act: execute approved steps through the AWS APIs (default: dry run,
    /// every approved step is recorded as the exact request it would send).
    #[arg(long, env = "HEALER_LIVE")]
    live: bool,
    /// SNS topic ARN of the `default` notification channel (required in
    /// live mode unless `--channels` names one).
    #[arg(long, env = "HEALER_NOTIFY_DEFAULT")]
    notify_default: Option<String>,
    /// Notification channels as JSON: `{"default": "arn:aws:sns:…",
    /// "escalation": "arn:aws:sns:…"}`; a step's channel without a topic
    /// goes to `default`.
    #[arg(long, env = "HEALER_CHANNELS_JSON")]
    channels: Option<String>,
    /// What the SSM steps may run, as JSON (`[diagnose]` of the config file):
    /// `{"documents": ["healer-diagnose"], "wait-secs": 120, "rules": [..],
    /// "commands": {"restart-service": {"document": "AWS-RunShellScript",
    /// "parameters": {"commands": ["systemctl restart web"]}}}}`.
    #[arg(long, env = "HEALER_DIAGNOSE_JSON")]
    diagnose: Option<String>,
    /// Incidents acted on or verified at once.
    #[arg(long, env = "HEALER_WORKERS", default_value_t = 8)]
    workers: usize,
    /// How often the store is swept for acting and verifying work (a
    /// verifying incident is looked at once per sweep), in milliseconds.
    #[arg(long, env = "HEALER_DRIVE_INTERVAL_MS", default_value_t = 5000)]
    drive_interval_ms: u64,
    /// Overall deadline of one step, in seconds.
    #[arg(long, env = "HEALER_STEP_DEADLINE_SECS", default_value_t = 900)]
    step_deadline_secs: u64,
    /// Verify deadline of a decision that names none, in seconds.
    #[arg(long, env = "HEALER_VERIFY_DEADLINE_SECS", default_value_t = 600)]
    verify_deadline_secs: u64,
    /// Seconds after acting before a poll's "recovered" counts (status
    /// checks lag a reboot).
    #[arg(long, env = "HEALER_VERIFY_SETTLE_SECS", default_value_t = 60)]
    verify_settle_secs: u64,
    /// Most attempts per incident: the first decision, then the policy asked
    /// again after each failed verification (its ladder).
    #[arg(long, env = "HEALER_MAX_ROUNDS", default_value_t = 3)]
    max_rounds: usize,
    /// How long an incident's lease lasts without renewal, in seconds: how
    /// soon another host takes over the work of one that died.
    #[arg(long, env = "HEALER_LEASE_SECS", default_value_t = 60)]
    lease_secs: u64,
    /// How long a replacement waits for its twin to run, in seconds.
    #[arg(long, env = "HEALER_LAUNCH_DEADLINE_SECS", default_value_t = 300)]
    launch_deadline_secs: u64,
}

/// What a live host acts and verifies with.
pub struct Live {
    /// The executors.
    pub executors: Executors,
    /// The poller.
    pub verifier: AwsVerifier,
    /// Deadlines.
    pub options: WorkOptions,
    /// Worker pool size.
    pub workers: usize,
    /// Sweep interval.
    pub interval: Duration,
}

impl Live {
    /// The worker over `pipeline`, asking the policy again with `context`.
    pub fn worker<'a>(
        &'a self,
        pipeline: &'a Pipeline<'a>,
        context: &'a healer::policy::PolicyContext,
    ) -> Worker<'a> {
        Worker {
            pipeline,
            executors: &self.executors,
            verifier: &self.verifier,
            context,
            options: self.options,
            on_step: None,
            stopping: None,
        }
    }
}

impl LiveArgs {
    /// Settles the governor's mode: live only with `--live`; a config that
    /// says `dry-run: false` without it is refused, so no file alone turns
    /// acting on.
    pub fn apply(&self, governor: &mut GovernorConfig) -> anyhow::Result<()> {
        if !governor.dry_run && !self.live {
            anyhow::bail!(
                "the governor config sets dry-run to false, but live mode needs --live (HEALER_LIVE=true) as well"
            );
        }
        governor.dry_run = !self.live;
        Ok(())
    }

    /// The channels map, with `--notify-default` as `default`.
    pub fn channels(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let mut channels: BTreeMap<String, String> = match &self.channels {
            Some(json) => serde_json::from_str(json).context("invalid HEALER_CHANNELS_JSON")?,
            None => BTreeMap::new(),
        };
        if let Some(topic) = &self.notify_default {
            channels.insert(DEFAULT_CHANNEL.to_owned(), topic.clone());
        }
        Ok(channels)
    }

    /// The SSM executor's configuration.
    pub fn ssm(&self) -> anyhow::Result<healer::actions::SsmConfig> {
        let config: healer::actions::DiagnoseConfig = match &self.diagnose {
            Some(json) => serde_json::from_str(json).context("invalid HEALER_DIAGNOSE_JSON")?,
            None => healer::actions::DiagnoseConfig::default(),
        };
        config.build().context("invalid diagnose rules")
    }

    /// The live host's parts; `None` in dry run. Live mode without a
    /// `default` channel is refused: an escalation must reach someone.
    pub fn build(&self, shared: &aws_config::SdkConfig) -> anyhow::Result<Option<Live>> {
        if !self.live {
            return Ok(None);
        }
        let channels = self.channels()?;
        if !channels.contains_key(DEFAULT_CHANNEL) {
            anyhow::bail!(
                "live mode needs a default notification channel: --notify-default TOPIC_ARN (HEALER_NOTIFY_DEFAULT) or \"default\" in --channels"
            );
        }
        let executors = Executors::live_with(
            shared,
            channels,
            Ec2Executor::new(&healer::aws::action_config(shared))
                .with_launch_deadline(Duration::from_secs(self.launch_deadline_secs.max(1))),
            self.ssm()?,
        );
        Ok(Some(Live {
            executors,
            verifier: AwsVerifier::new(shared),
            options: WorkOptions {
                step_deadline: Duration::from_secs(self.step_deadline_secs.max(1)),
                verify_deadline: Duration::from_secs(self.verify_deadline_secs.max(1)),
                lease: Duration::from_secs(self.lease_secs.max(3)),
                max_rounds: self.max_rounds.max(1),
                settle: Duration::from_secs(self.verify_settle_secs),
            },
            workers: self.workers.max(1),
            interval: Duration::from_millis(self.drive_interval_ms.max(10)),
        }))
    }
}
