//! The store: every incident's whole life (lifecycle timestamps, decision
//! provenance, governor verdicts, executed steps, MTTR), the actions index the
//! governor queries, per-resource config, governor state and policy versions.
//!
//! `Store` is the seam; `SqliteStore` (embedded default) and `DynamoStore`
//! (production) implement its primitive operations, and the lifecycle rules live
//! here once, in the trait's provided methods, so both backends behave the same.

pub mod aggregates;
mod dynamo;
mod dynamo_error;
mod record;
mod slots;
mod sqlite;
mod stats;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

pub use dynamo::{DynamoStore, DynamoTables};
pub use dynamo_error::DynamoError;
pub use record::{
    ActionRecord, IncidentRecord, LifecycleState, Outcome, Provenance, ResourceConfigRecord,
    ResourceSelector, ResourceSettings, Round, StepRecord, VerdictRecord,
};
pub use slots::{Reservation, SlotClaim, SlotLimit};
pub use sqlite::SqliteStore;
pub use stats::{GroupBy, Stats, StatsRow};

use crate::aws::AwsErrorClass;
use crate::incident::{Incident, IncidentId, IncidentKind};

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No incident with that id.
    #[error("incident {0} not found")]
    NotFound(String),
    /// A lifecycle transition the model forbids (e.g. acting on a denied incident).
    #[error("illegal transition of incident {id}: {from} → {to}")]
    IllegalTransition {
        /// Incident id.
        id: String,
        /// Current state.
        from: LifecycleState,
        /// Requested state.
        to: LifecycleState,
    },
    /// Concurrent writers kept winning; the update was not applied.
    #[error("incident {0} is being updated concurrently; gave up after retries")]
    Contention(String),
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A DynamoDB call failed: the operation, the SDK's error as the source,
    /// and its class ([`StoreError::aws_class`]).
    #[error(transparent)]
    Dynamo(#[from] DynamoError),
    /// A stored record could not be (de)serialized.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// An invalid argument (bad page token, bad config).
    #[error("{0}")]
    Invalid(String),
    /// The blocking worker panicked or was cancelled.
    #[error("store worker failed: {0}")]
    Worker(String),
}

impl StoreError {
    /// The class of the AWS error behind this one (throttled, timed out,
    /// access denied, …); `None` for a failure that is not an AWS call's.
    pub fn aws_class(&self) -> Option<AwsErrorClass> {
        match self {
            StoreError::Dynamo(e) => Some(e.class()),
            _ => None,
        }
    }

    /// Whether retrying the same operation later may succeed: a transient AWS
    /// failure (throttled, timed out, connection, 5xx) or writers contending.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Contention(_) => true,
            _ => self.aws_class().is_some_and(AwsErrorClass::is_retryable),
        }
    }
}

/// What a query is about: one resource or one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// A resource id (task ARN, instance id, …).
    Resource(String),
    /// A group id (service ARN, ASG name, target group ARN).
    Group(String),
    /// Everything (only for the actions index: global rate and in-flight limits).
    All,
}

/// Filters of `list`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only incidents not in a terminal state.
    pub open: bool,
    /// Only this kind.
    pub kind: Option<IncidentKind>,
    /// Only incidents detected at or after this time.
    pub since: Option<DateTime<Utc>>,
}

/// One page of `list`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Page {
    /// The records (SQLite: newest first; DynamoDB: scan order).
    pub items: Vec<IncidentRecord>,
    /// Token for the next page; `None` when this is the last one.
    pub next: Option<String>,
}

/// The store state one decision is judged against, read in one round trip: the
/// SQLite backend reads it in one read transaction (a consistent snapshot);
/// other backends issue the reads concurrently.
#[derive(Debug, Clone, Default)]
pub struct DecisionState {
    /// Every action started since the governor's history window began.
    pub actions: Vec<ActionRecord>,
    /// The store's kill-switch flag value, if set.
    pub kill_switch: Option<String>,
    /// Operator per-resource config records.
    pub resource_configs: Vec<ResourceConfigRecord>,
    /// Incidents of the resource detected in the window (newest first).
    pub incidents_resource: Vec<IncidentRecord>,
    /// Incidents of the group detected in the window (newest first), empty
    /// without a group.
    pub incidents_group: Vec<IncidentRecord>,
}

/// A change to an incident record, applied under compare-and-set (and again
/// on a fresh read when another writer got there first).
pub type Change<'a> =
    dyn for<'r> Fn(&'r mut IncidentRecord) -> Result<(), StoreError> + Send + Sync + 'a;

/// How many times a compare-and-set update retries before giving up.
const CAS_RETRIES: usize = 16;

/// How far back [`Store::recent`] looks.
pub const RECENT_DAYS: i64 = 7;

/// [`Store::recent`] through [`Store::list`] (the default, and DynamoDB's
/// fallback on a table without its by-day index).
pub(crate) async fn recent_listed<S: Store + ?Sized>(
    store: &S,
    limit: usize,
) -> Result<Vec<IncidentRecord>, StoreError> {
    let filter = ListFilter {
        since: Some(Utc::now() - chrono::Duration::days(RECENT_DAYS)),
        ..ListFilter::default()
    };
    Ok(store.list(&filter, None, limit).await?.items)
}

/// [`Store::all_open`] by paging [`Store::list`] (the default, and
/// DynamoDB's fallback on a table without its open index).
pub(crate) async fn open_listed<S: Store + ?Sized>(
    store: &S,
) -> Result<Vec<IncidentRecord>, StoreError> {
    let filter = ListFilter {
        open: true,
        ..ListFilter::default()
    };
    let mut open = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = store.list(&filter, token.as_deref(), 500).await?;
        open.extend(page.items.into_iter().filter(|r| !r.state.is_terminal()));
        match page.next {
            Some(t) => token = Some(t),
            None => return Ok(open),
        }
    }
}

/// The store seam. Backends implement the primitives; the lifecycle operations
/// are provided on top of them.
#[async_trait]
pub trait Store: Send + Sync {
    /// Creates tables / runs migrations. Idempotent.
    async fn init(&self) -> Result<(), StoreError>;

    /// Inserts a record unless one with its id exists; returns the existing one.
    async fn insert_if_absent(
        &self,
        record: &IncidentRecord,
    ) -> Result<Option<IncidentRecord>, StoreError>;

    /// Reads one record.
    async fn get(&self, id: &IncidentId) -> Result<Option<IncidentRecord>, StoreError>;

    /// Writes `record` if the stored version is still `expected_version`
    /// (the record carries `expected_version + 1`). `false` if someone else won.
    async fn compare_and_put(
        &self,
        record: &IncidentRecord,
        expected_version: u64,
    ) -> Result<bool, StoreError>;

    /// Adds (or replaces) an entry of the actions index.
    async fn put_action(&self, action: &ActionRecord) -> Result<(), StoreError>;

    /// Actions on a resource or group that started at or after `since`, oldest first.
    async fn actions_since(
        &self,
        scope: &Scope,
        since: DateTime<Utc>,
    ) -> Result<Vec<ActionRecord>, StoreError>;

    /// Every incident on a resource or group (any state).
    async fn incidents_of(&self, scope: &Scope) -> Result<Vec<IncidentRecord>, StoreError>;

    /// One page of incidents passing `filter`.
    async fn list(
        &self,
        filter: &ListFilter,
        page_token: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError>;

    /// The `limit` most recently detected incidents of the last
    /// [`RECENT_DAYS`] days, newest first (the dashboard's live feed). The
    /// default is the first page of [`Store::list`], which is newest first
    /// on SQLite; DynamoDB reads its by-day index, one day at a time.
    async fn recent(&self, limit: usize) -> Result<Vec<IncidentRecord>, StoreError> {
        recent_listed(self, limit).await
    }

    /// Every incident not in a terminal state (they are few: incidents close
    /// within minutes). The default pages [`Store::list`]; DynamoDB reads its
    /// sparse index of open incidents instead of scanning the table.
    async fn all_open(&self) -> Result<Vec<IncidentRecord>, StoreError> {
        open_listed(self).await
    }

    /// Takes (or renews) the lease on an incident for `owner` until `now + ttl`,
    /// if it is free, expired, or already `owner`'s. Exactly one replica wins.
    async fn claim(
        &self,
        id: &IncidentId,
        owner: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Gives the lease up if `owner` holds it.
    async fn release(&self, id: &IncidentId, owner: &str) -> Result<(), StoreError>;

    /// Stores a per-resource config record.
    async fn put_resource_config(&self, config: &ResourceConfigRecord) -> Result<(), StoreError>;

    /// Every per-resource config record.
    async fn resource_configs(&self) -> Result<Vec<ResourceConfigRecord>, StoreError>;

    /// A governor state value and its version (0 = absent).
    async fn governor_get(&self, key: &str) -> Result<(Option<String>, u64), StoreError>;

    /// Sets a governor state value if its version is still `expected_version`.
    async fn governor_cas(
        &self,
        key: &str,
        value: &str,
        expected_version: u64,
    ) -> Result<bool, StoreError>;

    /// Records a loaded policy version.
    async fn put_policy_version(
        &self,
        name: &str,
        version: &str,
        sha256: &str,
        uploaded_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Every recorded policy version as (name, version, sha256, uploaded_at).
    async fn policy_versions(
        &self,
    ) -> Result<Vec<(String, String, String, DateTime<Utc>)>, StoreError>;

    /// Records a decision's exact input (canonical JSON) under its hash.
    /// Idempotent: one hash is one input, stored once however many
    /// decisions share it.
    async fn put_policy_input(&self, hash: &str, input: &str) -> Result<(), StoreError>;

    /// The input recorded under `hash`.
    async fn policy_input(&self, hash: &str) -> Result<Option<String>, StoreError>;

    /// The inputs recorded under `hashes`, as (hash, input); hashes the store
    /// does not hold are left out. Backends override it to read many at once.
    async fn policy_inputs(&self, hashes: &[String]) -> Result<Vec<(String, String)>, StoreError> {
        let mut out = Vec::with_capacity(hashes.len());
        for hash in hashes {
            if let Some(input) = self.policy_input(hash).await? {
                out.push((hash.clone(), input));
            }
        }
        Ok(out)
    }

    /// Takes a place under every limit the claims name, all or nothing (see
    /// the `slots` module): `Held`, or `Full` with the first limit that had
    /// no free place. Exactly one of two racing replicas gets the last place.
    async fn reserve(
        &self,
        claims: &[SlotClaim],
        now: DateTime<Utc>,
    ) -> Result<Reservation, StoreError>;

    /// Everything one decision reads (see [`DecisionState`]), in one round trip.
    /// `kill_switch_key` names the governor flag; actions are those started and
    /// incidents those detected at or after `since`.
    async fn decision_state(
        &self,
        resource: &str,
        group: Option<&str>,
        kill_switch_key: &str,
        since: DateTime<Utc>,
    ) -> Result<DecisionState, StoreError>;

    // ---- provided: the lifecycle, the same for every backend ----

    /// Records a newly detected incident. Idempotent: an incident whose
    /// deterministic id exists is returned as is, with `false`.
    async fn create_incident(
        &self,
        incident: &Incident,
    ) -> Result<(IncidentRecord, bool), StoreError> {
        let record = IncidentRecord::detected(incident.clone());
        match self.insert_if_absent(&record).await? {
            Some(existing) => Ok((existing, false)),
            None => Ok((record, true)),
        }
    }

    /// Applies `change` with optimistic concurrency, retrying on conflicts.
    async fn update(
        &self,
        id: &IncidentId,
        change: &Change<'_>,
    ) -> Result<IncidentRecord, StoreError> {
        for _ in 0..CAS_RETRIES {
            let record = self
                .get(id)
                .await?
                .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
            if let Some(written) = self.put_changed(record, change).await? {
                return Ok(written);
            }
        }
        Err(StoreError::Contention(id.to_string()))
    }

    /// `update`, starting from `current`: the caller's copy of the record,
    /// as it last read or wrote it (under the incident's lease, usually
    /// still the stored one). One write when nobody changed the record
    /// since; otherwise (or when `change` refuses the copy) exactly
    /// `update`, from a fresh read.
    async fn update_from(
        &self,
        current: &IncidentRecord,
        change: &Change<'_>,
    ) -> Result<IncidentRecord, StoreError> {
        // A copy the change refuses may only be stale: judge the fresh one.
        let mut changed = current.clone();
        if change(&mut changed).is_err() {
            return self.update(&current.incident.id, change).await;
        }
        // A store error is the caller's to see (and to retry by redelivery).
        match self
            .put_written(changed, (current.version, current.state))
            .await?
        {
            Some(written) => Ok(written),
            None => self.update(&current.incident.id, change).await,
        }
    }

    /// Applies `change` to `record` and writes it if the stored version is
    /// still the record's; `None` when another writer got there first.
    async fn put_changed(
        &self,
        mut record: IncidentRecord,
        change: &Change<'_>,
    ) -> Result<Option<IncidentRecord>, StoreError> {
        let before = (record.version, record.state);
        change(&mut record)?;
        self.put_written(record, before).await
    }

    /// Writes `record`, already changed from a copy at `before` (its version
    /// and state), if the stored version is still that; `None` when another
    /// writer got there first.
    async fn put_written(
        &self,
        mut record: IncidentRecord,
        before: (u64, LifecycleState),
    ) -> Result<Option<IncidentRecord>, StoreError> {
        let (expected, was) = before;
        record.version = expected + 1;
        if !self.compare_and_put(&record, expected).await? {
            return Ok(None);
        }
        // Exactly one writer wins the closing transition: counted once.
        if !was.is_terminal() && record.state.is_terminal() {
            self.aggregate_closed(&record).await;
        }
        Ok(Some(record))
    }

    /// Moves an incident to `to` at `at`, with an optional note (why it was
    /// denied, escalated or ignored). Illegal transitions are rejected.
    async fn transition(
        &self,
        id: &IncidentId,
        to: LifecycleState,
        at: DateTime<Utc>,
        note: Option<String>,
    ) -> Result<IncidentRecord, StoreError> {
        self.update(id, &|r| r.advance(to, at, note.clone())).await
    }

    /// `transition`, from `current` (the caller's copy: see `update_from`).
    async fn transition_from(
        &self,
        current: &IncidentRecord,
        to: LifecycleState,
        at: DateTime<Utc>,
        note: Option<String>,
    ) -> Result<IncidentRecord, StoreError> {
        self.update_from(current, &|r| r.advance(to, at, note.clone()))
            .await
    }

    /// Records the decision (provenance and every governor verdict) and moves
    /// the incident (`current`, the caller's copy) to `decided`, with the
    /// decisions of the other routed policies and the shadows recorded
    /// beside the acting one, and in the same write the state it moves to
    /// next (`acting`, `denied`, `escalated`), if any.
    async fn record_decisions(
        &self,
        current: &IncidentRecord,
        provenance: Provenance,
        also_decided: Vec<Provenance>,
        verdicts: Vec<VerdictRecord>,
        at: DateTime<Utc>,
        next: Option<(LifecycleState, Option<String>)>,
    ) -> Result<IncidentRecord, StoreError> {
        self.update_from(current, &|r| {
            r.advance(LifecycleState::Decided, at, None)?;
            r.provenance = Some(provenance.clone());
            r.also_decided = also_decided.clone();
            r.verdicts = verdicts.clone();
            if let Some((state, note)) = &next {
                r.advance(*state, at, note.clone())?;
            }
            Ok(())
        })
        .await
    }

    /// Starts another round on a verifying incident whose verification
    /// failed: the current decision, verdicts and steps move to `rounds`
    /// (with what verify saw), the new decision and its verdicts (indexed
    /// from the returned record's `step_base`) become current, and the
    /// incident is acting again.
    async fn record_round(
        &self,
        id: &IncidentId,
        provenance: Provenance,
        verdicts: Vec<VerdictRecord>,
        verify_seen: String,
        at: DateTime<Utc>,
    ) -> Result<IncidentRecord, StoreError> {
        self.update(id, &|r| {
            r.advance(LifecycleState::Acting, at, None)?;
            // Past every recorded step and every index the previous decision
            // could use (its steps and the escalation after them), so no
            // actions-index entry of an earlier round is reused.
            let base = r.next_step_base();
            r.rounds.push(Round {
                provenance: r.provenance.take(),
                verdicts: std::mem::take(&mut r.verdicts),
                steps: std::mem::take(&mut r.steps),
                verify_seen: verify_seen.clone(),
            });
            r.step_base = base;
            r.provenance = Some(provenance.clone());
            r.verdicts = verdicts
                .iter()
                .map(|v| VerdictRecord {
                    step: base + v.step,
                    ..v.clone()
                })
                .collect();
            Ok(())
        })
        .await
    }

    /// Records an executed step (start, end, result) on the incident
    /// (`current`, the caller's copy) and in the actions index. The incident
    /// must be acting or verifying.
    async fn record_step(
        &self,
        current: &IncidentRecord,
        step: StepRecord,
    ) -> Result<IncidentRecord, StoreError> {
        let record = self
            .update_from(current, &|r| {
                // A step already started is always ended (a recovery signal
                // may have healed the incident meanwhile: what the step did
                // and created is still recorded); a new one only while acting.
                let started = r.steps.iter().any(|s| s.index == step.index);
                if !started
                    && !matches!(r.state, LifecycleState::Acting | LifecycleState::Verifying)
                {
                    return Err(StoreError::IllegalTransition {
                        id: r.incident.id.to_string(),
                        from: r.state,
                        to: LifecycleState::Acting,
                    });
                }
                r.steps.retain(|s| s.index != step.index);
                r.steps.push(step.clone());
                r.steps.sort_by_key(|s| s.index);
                Ok(())
            })
            .await?;
        let action = ActionRecord::of(&record, &step);
        self.put_action(&action).await?;
        Ok(record)
    }

    /// Incidents on a resource or group that are not in a terminal state.
    async fn open_incidents(&self, scope: &Scope) -> Result<Vec<IncidentRecord>, StoreError> {
        let mut all = self.incidents_of(scope).await?;
        all.retain(|r| !r.state.is_terminal());
        Ok(all)
    }

    /// Adds one closed incident to the aggregate cell of `key` under `by` on
    /// `day` (atomically: concurrent writers add up).
    async fn add_aggregate(
        &self,
        by: GroupBy,
        day: NaiveDate,
        key: &str,
        closed: aggregates::Closed,
    ) -> Result<(), StoreError>;

    /// The aggregate cells under `by` from `from` on, one per day and key:
    /// (day, key, cell).
    async fn aggregates(
        &self,
        by: GroupBy,
        from: NaiveDate,
    ) -> Result<Vec<(NaiveDate, String, aggregates::AggCell)>, StoreError>;

    /// Adds a record that just closed to every grouping's aggregates. A
    /// failure is logged, not returned: the incident's own write stands.
    async fn aggregate_closed(&self, record: &IncidentRecord) {
        for (by, day, key, closed) in aggregates::cells_of(record) {
            if let Err(e) = self.add_aggregate(by, day, &key, closed).await {
                tracing::warn!(incident = %record.incident.id, error = %e,
                    "Could not add the closed incident to the stats aggregates.");
            }
        }
    }

    /// [`Store::stats`] from the aggregates: the closed incidents from their
    /// cells (whole UTC days from `since`'s), the open ones read as they are.
    /// Never loads every record of the window. MTTR percentiles and the
    /// maximum are read off a histogram (within 19 %); the mean is exact.
    async fn stats_aggregated(
        &self,
        by: GroupBy,
        since: DateTime<Utc>,
    ) -> Result<Stats, StoreError> {
        let from = aggregates::first_day(since);
        let cells: Vec<(String, aggregates::AggCell)> = self
            .aggregates(by, from)
            .await?
            .into_iter()
            .map(|(_, k, c)| (k, c))
            .collect();
        let start = from.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
        let open: Vec<IncidentRecord> = self
            .all_open()
            .await?
            .into_iter()
            .filter(|r| start.is_none_or(|s| r.incident.detected_at >= s))
            .collect();
        Ok(aggregates::rows(by, &cells, &open))
    }

    /// Counts and MTTR (mean, p50, p90, max) grouped by `by`, over incidents
    /// detected at or after `since`.
    async fn stats(&self, by: GroupBy, since: Option<DateTime<Utc>>) -> Result<Stats, StoreError> {
        let filter = ListFilter {
            since,
            ..ListFilter::default()
        };
        let mut records = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.list(&filter, token.as_deref(), 500).await?;
            records.extend(page.items);
            match page.next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        Ok(Stats::compute(&records, by))
    }
}

/// Which backend, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "backend")]
pub enum StoreConfig {
    /// One SQLite file.
    Sqlite {
        /// The database file.
        path: std::path::PathBuf,
    },
    /// DynamoDB tables with this name prefix, client from the AWS environment.
    Dynamodb {
        /// Table name prefix (tables are `<prefix>-incidents`, …).
        table_prefix: String,
    },
}

impl StoreConfig {
    /// Opens the configured store. DynamoDB honours `AWS_REGION`,
    /// `AWS_ENDPOINT_URL` and the standard credentials chain, with the
    /// per-call timeouts of [`crate::aws::sdk_config`].
    pub async fn open(&self) -> Result<std::sync::Arc<dyn Store>, StoreError> {
        Ok(match self {
            StoreConfig::Sqlite { path } => std::sync::Arc::new(SqliteStore::open(path).await?),
            StoreConfig::Dynamodb { table_prefix } => {
                let client = aws_sdk_dynamodb::Client::new(&crate::aws::sdk_config().await);
                std::sync::Arc::new(DynamoStore::new(
                    client,
                    DynamoTables::with_prefix(table_prefix),
                ))
            }
        })
    }
}
