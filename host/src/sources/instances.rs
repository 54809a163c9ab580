//! The instance-status poller: each round, the running instances carrying
//! the opt-in tag (`DescribeInstances` filtered by it, paged), then their
//! status checks (`DescribeInstanceStatus`, 100 ids a call, paged). A system
//! or instance check turning `impaired` opens an instance-impaired incident,
//! once per failure across replicas (the dedupe key names the instance's
//! previous one); both checks back to `ok` is a recovery. Faster than a
//! one-minute `StatusCheckFailed` alarm delivered through SNS.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_ec2 as ec2;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::poll::{
    FlapRule, Health, Opening, PollError, Poller, TokenBucket, Tracker, Verdict, mark_flapping,
    opening, take,
};
use super::targets::Rate;
use crate::incident::{Incident, IncidentKind};
use crate::signals::Signal;
use crate::signals::ec2::{
    StatusChecks, StatusHealth, classify_status, status_incident, status_recovery,
};
use crate::store::Store;

/// Ids per `DescribeInstanceStatus` call (the API's maximum).
const IDS_PER_CALL: usize = 100;

/// What the instance-status poller watches.
#[derive(Debug, Clone, PartialEq)]
pub struct InstancesConfig {
    /// The opt-in tag's key and value (the governor's, `SelfHeal=true`).
    pub tag: (String, String),
    /// The rate of each API.
    pub rate: Rate,
    /// When an instance is flapping.
    pub flap: FlapRule,
}

/// The poller; see the module.
pub struct InstancePoller {
    client: ec2::Client,
    store: Arc<dyn Store>,
    config: InstancesConfig,
    region: Option<String>,
    tracker: Tracker<String>,
    list_calls: TokenBucket,
    status_calls: TokenBucket,
}

impl InstancePoller {
    /// A poller reading through `client` (its region is the incidents') and
    /// the store's incidents.
    pub fn new(client: ec2::Client, store: Arc<dyn Store>, config: InstancesConfig) -> Self {
        let region = client.config().region().map(|r| r.to_string());
        Self {
            client,
            store,
            region,
            tracker: Tracker::new(config.flap),
            list_calls: TokenBucket::new(config.rate.per_sec, config.rate.burst, Instant::now()),
            status_calls: TokenBucket::new(config.rate.per_sec, config.rate.burst, Instant::now()),
            config,
        }
    }

    /// The running instances carrying the opt-in tag.
    async fn tagged(&mut self, stop: &mut watch::Receiver<bool>) -> Result<Vec<String>, PollError> {
        let (key, value) = &self.config.tag;
        let mut ids = Vec::new();
        let mut token: Option<String> = None;
        loop {
            if !take(&mut self.list_calls, stop).await {
                return Err(PollError::Stopped);
            }
            let out = self
                .client
                .describe_instances()
                .filters(filter(&format!("tag:{key}"), value))
                .filters(filter("instance-state-name", "running"))
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| PollError::aws("DescribeInstances", &e))?;
            for r in out.reservations() {
                ids.extend(
                    r.instances()
                        .iter()
                        .filter_map(|i| i.instance_id())
                        .map(str::to_owned),
                );
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(ids)
    }

    /// The status checks of `ids`, by id.
    async fn statuses(
        &mut self,
        ids: &[String],
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Vec<(String, StatusChecks)>, PollError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(IDS_PER_CALL) {
            let mut token: Option<String> = None;
            loop {
                if !take(&mut self.status_calls, stop).await {
                    return Err(PollError::Stopped);
                }
                let resp = self
                    .client
                    .describe_instance_status()
                    .set_instance_ids(Some(chunk.to_vec()))
                    .set_next_token(token.take())
                    .send()
                    .await
                    .map_err(|e| PollError::aws("DescribeInstanceStatus", &e))?;
                for s in resp.instance_statuses() {
                    if let Some(id) = s.instance_id() {
                        out.push((id.to_owned(), checks(s)));
                    }
                }
                match resp.next_token() {
                    Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                    _ => break,
                }
            }
        }
        Ok(out)
    }

    async fn open(
        &self,
        id: &str,
        checks: &StatusChecks,
        flapping: Option<u32>,
        at: DateTime<Utc>,
    ) -> Result<Option<Incident>, PollError> {
        let same = |i: &Incident| i.kind == IncidentKind::InstanceImpaired;
        // An instance that flaps keeps its open incident: its policy
        // (replace) already answers an impaired instance.
        let Opening::New { suffix, .. } = opening(self.store.as_ref(), id, same, at, false).await?
        else {
            return Ok(None);
        };
        let location = (self.region.clone(), None);
        let key = format!("{id}#status#{suffix}");
        let mut i = status_incident(id, location, checks, at, key);
        mark_flapping(&mut i.detail, flapping);
        Ok(Some(i))
    }
}

fn filter(name: &str, value: &str) -> ec2::types::Filter {
    ec2::types::Filter::builder()
        .name(name)
        .values(value)
        .build()
}

/// The summaries and failed checks of one `InstanceStatus` item.
fn checks(s: &ec2::types::InstanceStatus) -> StatusChecks {
    let mut c = StatusChecks::default();
    for (label, summary, into) in [
        ("system", s.system_status(), &mut c.system),
        ("instance", s.instance_status(), &mut c.instance),
    ] {
        let Some(summary) = summary else { continue };
        *into = summary.status().map_or("", |st| st.as_str()).to_owned();
        for d in summary.details() {
            if d.status().is_some_and(|st| st.as_str() == "failed") {
                let name = d.name().map_or("unnamed", |n| n.as_str());
                c.failed.push(format!("{label}:{name}"));
                if c.impaired_since.is_none() {
                    c.impaired_since = d.impaired_since().map(|t| t.to_string());
                }
            }
        }
    }
    c
}

#[async_trait::async_trait]
impl Poller for InstancePoller {
    fn name(&self) -> &'static str {
        "instances"
    }

    async fn observe(
        &mut self,
        at: DateTime<Utc>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Vec<Signal>, PollError> {
        let ids = self.tagged(stop).await?;
        let statuses = self.statuses(&ids, stop).await?;
        let mut out = Vec::new();
        for (id, checks) in &statuses {
            let health = match classify_status(&checks.system, &checks.instance) {
                StatusHealth::Ok => Health::Healthy,
                StatusHealth::Impaired => Health::Unhealthy,
                // Initializing, insufficient data: no news either way.
                StatusHealth::Other(_) => continue,
            };
            match self.tracker.observe(id, health, Instant::now()) {
                Verdict::Quiet => {}
                Verdict::Recover => {
                    let location = (self.region.clone(), None);
                    out.push(Signal::Recovery(status_recovery(id, location, at)));
                }
                Verdict::Open { flapping } => {
                    if let Some(i) = self.open(id, checks, flapping, at).await? {
                        out.push(Signal::Incident(i));
                    }
                }
            }
        }
        let live: HashSet<&String> = ids.iter().collect();
        self.tracker.retain(|k| live.contains(k));
        Ok(out)
    }

    fn forget(&mut self) {
        self.tracker.clear();
    }
}
