//! The target-health poller: `DescribeTargetHealth` on the configured target
//! groups (and every group of the configured load balancers, paged) each
//! round. A target's transition to failing (an unhealthy state with a
//! failure reason, or `unused` with `Target.InvalidState`, a stopped
//! instance) opens a target-unhealthy incident, once per failure however
//! many replicas poll (the dedupe key names the target's previous incident,
//! not the poll time); back to healthy is a recovery. A target that flaps
//! (by default 4 transitions in 10 minutes) opens an incident marked
//! `flapping=true` with its `flap-count`, even when healthy at that poll.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_elasticloadbalancingv2 as elbv2;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::poll::{
    FlapRule, Health, Opening, PollError, Poller, TokenBucket, Tracker, Verdict, mark_flapping,
    opening, take,
};
use crate::incident::{Incident, IncidentKind};
use crate::signals::Signal;
use crate::signals::elbv2::{TargetState, classify, incident, recovery, refs};
use crate::store::Store;

/// Calls a second and burst of one AWS API, per poller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Sustained calls a second.
    pub per_sec: f64,
    /// Calls at once.
    pub burst: u32,
}

impl Rate {
    fn bucket(self) -> TokenBucket {
        TokenBucket::new(self.per_sec, self.burst, Instant::now())
    }
}

/// What the target-health poller watches.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetsConfig {
    /// Target group ARNs.
    pub target_groups: Vec<String>,
    /// Load balancer ARNs: each of their target groups is polled.
    pub load_balancers: Vec<String>,
    /// The rate of each API.
    pub rate: Rate,
    /// When a target is flapping.
    pub flap: FlapRule,
}

/// A target in a group, on a port (one instance may serve several).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TargetKey {
    group: String,
    id: String,
    port: Option<i32>,
}

/// The poller; see the module.
pub struct TargetPoller {
    client: elbv2::Client,
    store: Arc<dyn Store>,
    config: TargetsConfig,
    tracker: Tracker<TargetKey>,
    health_calls: TokenBucket,
    group_calls: TokenBucket,
}

impl TargetPoller {
    /// A poller reading through `client` and the store's incidents.
    pub fn new(client: elbv2::Client, store: Arc<dyn Store>, config: TargetsConfig) -> Self {
        Self {
            client,
            store,
            tracker: Tracker::new(config.flap),
            health_calls: config.rate.bucket(),
            group_calls: config.rate.bucket(),
            config,
        }
    }

    /// The configured groups, then every group of each load balancer.
    async fn groups(&mut self, stop: &mut watch::Receiver<bool>) -> Result<Vec<String>, PollError> {
        let mut groups = self.config.target_groups.clone();
        for lb in &self.config.load_balancers {
            let mut marker: Option<String> = None;
            loop {
                if !take(&mut self.group_calls, stop).await {
                    return Err(PollError::Stopped);
                }
                let out = self
                    .client
                    .describe_target_groups()
                    .load_balancer_arn(lb)
                    .set_marker(marker.take())
                    .send()
                    .await
                    .map_err(|e| PollError::aws("DescribeTargetGroups", &e))?;
                for arn in out
                    .target_groups()
                    .iter()
                    .filter_map(|g| g.target_group_arn())
                {
                    if !groups.iter().any(|g| g == arn) {
                        groups.push(arn.to_owned());
                    }
                }
                match out.next_marker() {
                    Some(m) if !m.is_empty() => marker = Some(m.to_owned()),
                    _ => break,
                }
            }
        }
        Ok(groups)
    }

    /// What the tracker's `Open` on a target becomes: nothing when the
    /// store has it open already (or the observation is stale), else the
    /// incident, after a recovery of the open one it supersedes (a flapping
    /// target, healthy at this poll, replaces its last incident).
    async fn open(
        &self,
        key: &TargetKey,
        health: (Health, &str, &str),
        flapping: Option<u32>,
        at: DateTime<Utc>,
    ) -> Result<Vec<Signal>, PollError> {
        let port = key.port.map(|p| p.to_string());
        let same = |i: &Incident| {
            i.kind == IncidentKind::TargetUnhealthy
                && i.group.as_ref().is_some_and(|g| g.id == key.group)
                && i.detail.get("port") == port.as_ref()
        };
        let (state, code, description) = health;
        let supersede = state == Health::Healthy && flapping.is_some();
        let store = self.store.as_ref();
        let Opening::New { suffix, supersedes } =
            opening(store, &key.id, same, at, supersede).await?
        else {
            return Ok(Vec::new());
        };
        let (code, description) = match (state, flapping) {
            (Health::Healthy, Some(n)) => (
                "flapping",
                format!(
                    "{n} health transitions within {} s (healthy at this poll)",
                    self.config.flap.window.as_secs()
                ),
            ),
            _ => (code, description.to_owned()),
        };
        let dedupe_key = format!(
            "{}#{}:{}#{suffix}",
            key.group,
            key.id,
            port.as_deref().unwrap_or("")
        );
        let (resource, group) = refs(&key.id, Some(&key.group));
        let mut out = Vec::new();
        if supersedes {
            out.push(Signal::Recovery(recovery(
                resource.clone(),
                Some(&key.group),
                at,
            )));
        }
        let port = key.port.and_then(|p| u64::try_from(p).ok());
        let mut i = incident(resource, group, port, (code, &description), at, dedupe_key);
        mark_flapping(&mut i.detail, flapping);
        out.push(Signal::Incident(i));
        Ok(out)
    }
}

#[async_trait::async_trait]
impl Poller for TargetPoller {
    fn name(&self) -> &'static str {
        "targets"
    }

    async fn observe(
        &mut self,
        at: DateTime<Utc>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Vec<Signal>, PollError> {
        let groups = self.groups(stop).await?;
        let mut seen: HashSet<TargetKey> = HashSet::new();
        let mut out = Vec::new();
        for tg in &groups {
            if !take(&mut self.health_calls, stop).await {
                return Err(PollError::Stopped);
            }
            let resp = self
                .client
                .describe_target_health()
                .target_group_arn(tg)
                .send()
                .await
                .map_err(|e| PollError::aws("DescribeTargetHealth", &e))?;
            for d in resp.target_health_descriptions() {
                let Some(target) = d.target() else { continue };
                let Some(id) = target.id().filter(|id| !id.is_empty()) else {
                    continue;
                };
                let key = TargetKey {
                    group: tg.clone(),
                    id: id.to_owned(),
                    port: target.port(),
                };
                seen.insert(key.clone());
                let h = d.target_health();
                let state = h.and_then(|h| h.state()).map_or("", |s| s.as_str());
                let code = h.and_then(|h| h.reason()).map_or("", |r| r.as_str());
                let description = h.and_then(|h| h.description()).unwrap_or("");
                let health = match classify(state, code, description) {
                    TargetState::Healthy => Health::Healthy,
                    TargetState::Failing => Health::Unhealthy,
                    // Registering, draining, not in use: no news either way.
                    TargetState::Other(_) => continue,
                };
                match self.tracker.observe(&key, health, Instant::now()) {
                    Verdict::Quiet => {}
                    Verdict::Recover => {
                        let (resource, _) = refs(&key.id, Some(tg));
                        out.push(Signal::Recovery(recovery(resource, Some(tg), at)));
                    }
                    Verdict::Open { flapping } => {
                        let health = (health, code, description);
                        out.extend(self.open(&key, health, flapping, at).await?);
                    }
                }
            }
        }
        self.tracker.retain(|k| seen.contains(k));
        Ok(out)
    }

    fn forget(&mut self) {
        self.tracker.clear();
    }
}
