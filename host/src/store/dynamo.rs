//! DynamoDB backend (production): on-demand tables for incidents (TTL on
//! `expires_at`, GSIs by resource and by group), the actions index, governor
//! state, policy versions and per-resource config. Idempotent create, versioned
//! updates and leases are conditional writes, so several replicas agree.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, Put, ScalarAttributeType, TimeToLiveSpecification,
    TransactWriteItem,
};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};

use super::aggregates::{AggCell, Closed, bucket_of};
use super::dynamo_error::{DynamoError, build_err, condition_met, err};
use super::slots;
use super::{
    ActionRecord, DecisionState, GroupBy, IncidentRecord, ListFilter, Page, Reservation,
    ResourceConfigRecord, Scope, SlotClaim, Store, StoreError,
};
use crate::incident::IncidentId;

/// Table names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoTables {
    /// Incident records.
    pub incidents: String,
    /// Actions index.
    pub actions: String,
    /// Governor state.
    pub governor: String,
    /// Policy versions.
    pub policies: String,
    /// Per-resource config.
    pub resource_config: String,
    /// Exact decision inputs by hash.
    pub inputs: String,
    /// Stats aggregates (`pk` = grouping, `sk` = day#group key, so a
    /// window is one query).
    pub aggregates: String,
}

impl DynamoTables {
    /// `<prefix>-incidents`, `<prefix>-actions`, `<prefix>-governor`,
    /// `<prefix>-policy-versions`, `<prefix>-resource-config`,
    /// `<prefix>-policy-inputs`, `<prefix>-aggregates`.
    pub fn with_prefix(prefix: &str) -> Self {
        DynamoTables {
            incidents: format!("{prefix}-incidents"),
            actions: format!("{prefix}-actions"),
            governor: format!("{prefix}-governor"),
            policies: format!("{prefix}-policy-versions"),
            resource_config: format!("{prefix}-resource-config"),
            inputs: format!("{prefix}-policy-inputs"),
            aggregates: format!("{prefix}-aggregates"),
        }
    }
}

/// The DynamoDB store.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    tables: DynamoTables,
}

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s<'a>(item: &'a Item, key: &str) -> Option<&'a str> {
    item.get(key)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn get_n(item: &Item, key: &str) -> Option<i64> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn record_of(item: &Item) -> Result<IncidentRecord, StoreError> {
    let json =
        get_s(item, "record").ok_or_else(|| StoreError::Corrupt("item without record".into()))?;
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The incidents index by UTC day of detection (`day`, `detected_at`): the
/// newest incidents without a scan.
const BY_DAY: &str = "by-day";
/// The sparse index of open incidents: only items with [`OPEN_FLAG`] are in
/// it, and only open incidents carry it.
const OPEN: &str = "open";
/// Set (`"1"`) while an incident is open, removed when it closes.
const OPEN_FLAG: &str = "open_flag";

/// Whether an error says the table lacks an index (a table created before
/// it existed): the caller falls back to a scan.
fn no_such_index(e: &StoreError) -> bool {
    e.to_string().contains("index")
}

/// Sort key of the actions index: zero-padded start time, so string order is time order.
fn action_sk(at: DateTime<Utc>, incident: &str, step: usize) -> String {
    format!("{:015}#{incident}#{step:04}", at.timestamp_millis().max(0))
}

fn key_def(name: &str, kind: KeyType) -> Result<KeySchemaElement, StoreError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(build_err("CreateTable"))
}

fn attr_def(name: &str, t: ScalarAttributeType) -> Result<AttributeDefinition, StoreError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(t)
        .build()
        .map_err(build_err("CreateTable"))
}

impl DynamoStore {
    /// A store on the given client and tables (call `init` to create them).
    pub fn new(client: Client, tables: DynamoTables) -> Self {
        DynamoStore { client, tables }
    }

    async fn create_table(
        &self,
        name: &str,
        keys: &[(&str, ScalarAttributeType, KeyType)],
        indexes: &[(&str, &str, &str)],
        extra_attrs: &[(&str, ScalarAttributeType)],
    ) -> Result<(), StoreError> {
        let mut req = self
            .client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest);
        for (attr, t, kind) in keys {
            req = req
                .attribute_definitions(attr_def(attr, t.clone())?)
                .key_schema(key_def(attr, kind.clone())?);
        }
        for (attr, t) in extra_attrs {
            req = req.attribute_definitions(attr_def(attr, t.clone())?);
        }
        for (index, hash, range) in indexes {
            req = req.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(*index)
                    .key_schema(key_def(hash, KeyType::Hash)?)
                    .key_schema(key_def(range, KeyType::Range)?)
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .map_err(build_err("CreateTable"))?,
            );
        }
        match req.send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_in_use_exception()) => {}
            Err(e) => return Err(err(e)),
        }
        // Wait until the table is ACTIVE (immediate on moto, seconds on AWS).
        for _ in 0..120 {
            let out = self
                .client
                .describe_table()
                .table_name(name)
                .send()
                .await
                .map_err(err)?;
            let active = out
                .table()
                .and_then(|t| t.table_status())
                .is_some_and(|st| st.as_str() == "ACTIVE");
            if active {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(StoreError::Dynamo(DynamoError::NotActive {
            table: name.to_owned(),
        }))
    }

    /// Incidents of a resource or group (newest first), detected at or after
    /// `since` when given.
    async fn incidents_since(
        &self,
        scope: &Scope,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<IncidentRecord>, StoreError> {
        let (index, attr, key) = match scope {
            Scope::Resource(id) => ("by-resource", "resource_id", id),
            Scope::Group(id) => ("by-group", "group_id", id),
            Scope::All => {
                return Err(StoreError::Invalid(
                    "incidents_of needs a resource or group; use list".into(),
                ));
            }
        };
        let mut values = vec![(":k", s(key))];
        let condition = match since {
            Some(t) => {
                values.push((":t", n(t.timestamp_millis())));
                "#a = :k AND detected_at >= :t"
            }
            None => "#a = :k",
        };
        let items = self
            .query_all(
                &self.tables.incidents,
                Some(index),
                condition,
                vec![("#a", attr)],
                values,
            )
            .await?;
        let mut records = items.iter().map(record_of).collect::<Result<Vec<_>, _>>()?;
        records.sort_by_key(|r| std::cmp::Reverse(r.incident.detected_at));
        Ok(records)
    }

    async fn scan_all(&self, table: &str) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(table)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(err)?;
            out.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    /// Up to `limit` items of one index partition, highest range key first.
    async fn query_newest(
        &self,
        index: &str,
        key_condition: &str,
        names: Vec<(&str, &str)>,
        values: Vec<(&str, AttributeValue)>,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        self.query_pages(
            &self.tables.incidents,
            Some(index),
            key_condition,
            names,
            values,
            Some(limit),
        )
        .await
    }

    async fn query_all(
        &self,
        table: &str,
        index: Option<&str>,
        key_condition: &str,
        names: Vec<(&str, &str)>,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<Vec<Item>, StoreError> {
        self.query_pages(table, index, key_condition, names, values, None)
            .await
    }

    /// Every page of a query, in key order; with `newest`, highest range key
    /// first and at most that many items.
    async fn query_pages(
        &self,
        table: &str,
        index: Option<&str>,
        key_condition: &str,
        names: Vec<(&str, &str)>,
        values: Vec<(&str, AttributeValue)>,
        newest: Option<usize>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(table)
                .set_index_name(index.map(str::to_owned))
                .key_condition_expression(key_condition)
                .set_exclusive_start_key(start.take());
            if let Some(limit) = newest {
                let left = limit.saturating_sub(out.len());
                q = q
                    .scan_index_forward(false)
                    .limit(i32::try_from(left).unwrap_or(1000).min(1000));
            }
            for (k, v) in &names {
                q = q.expression_attribute_names(*k, *v);
            }
            for (k, v) in &values {
                q = q.expression_attribute_values(*k, v.clone());
            }
            let page = q.send().await.map_err(err)?;
            out.extend(page.items().iter().cloned());
            let full = newest.is_some_and(|limit| out.len() >= limit);
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() && !full => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn init(&self) -> Result<(), StoreError> {
        use KeyType::{Hash, Range};
        use ScalarAttributeType::{N, S};
        let t = &self.tables;
        self.create_table(
            &t.incidents,
            &[("id", S, Hash)],
            &[
                ("by-resource", "resource_id", "detected_at"),
                ("by-group", "group_id", "detected_at"),
                (BY_DAY, "day", "detected_at"),
                (OPEN, OPEN_FLAG, "detected_at"),
            ],
            &[
                ("resource_id", S),
                ("group_id", S),
                ("day", S),
                (OPEN_FLAG, S),
                ("detected_at", N),
            ],
        )
        .await?;
        self.create_table(
            &t.actions,
            &[("scope", S, Hash), ("sk", S, Range)],
            &[],
            &[],
        )
        .await?;
        self.create_table(&t.governor, &[("pk", S, Hash)], &[], &[])
            .await?;
        self.create_table(
            &t.policies,
            &[("name", S, Hash), ("sha256", S, Range)],
            &[],
            &[],
        )
        .await?;
        self.create_table(&t.resource_config, &[("pk", S, Hash)], &[], &[])
            .await?;
        self.create_table(&t.inputs, &[("hash", S, Hash)], &[], &[])
            .await?;
        self.create_table(
            &t.aggregates,
            &[("pk", S, Hash), ("sk", S, Range)],
            &[],
            &[],
        )
        .await?;
        let ttl = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name("expires_at")
            .build()
            .map_err(build_err("UpdateTimeToLive"))?;
        match self
            .client
            .update_time_to_live()
            .table_name(&t.incidents)
            .time_to_live_specification(ttl)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Enabling TTL twice is a ValidationException: already done.
            Err(e)
                if DisplayErrorContext(&e)
                    .to_string()
                    .contains("already enabled") =>
            {
                Ok(())
            }
            Err(e) => Err(err(e)),
        }
    }

    async fn insert_if_absent(
        &self,
        record: &IncidentRecord,
    ) -> Result<Option<IncidentRecord>, StoreError> {
        let inc = &record.incident;
        let mut item: Item = HashMap::from([
            ("id".to_owned(), s(inc.id.as_str())),
            ("kind".to_owned(), s(inc.kind.as_str())),
            ("state".to_owned(), s(record.state.as_str())),
            ("resource_id".to_owned(), s(&inc.resource.id)),
            (
                "day".to_owned(),
                s(inc.detected_at.date_naive().to_string()),
            ),
            (
                "detected_at".to_owned(),
                n(inc.detected_at.timestamp_millis()),
            ),
            ("version".to_owned(), n(record.version as i64)),
            ("expires_at".to_owned(), n(record.expires_at())),
            ("record".to_owned(), s(to_json(record)?)),
        ]);
        if let Some(g) = &inc.group {
            item.insert("group_id".into(), s(&g.id));
        }
        if !record.state.is_terminal() {
            item.insert(OPEN_FLAG.into(), s("1"));
        }
        let put = self
            .client
            .put_item()
            .table_name(&self.tables.incidents)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await;
        if condition_met(put)? {
            return Ok(None);
        }
        self.get(&inc.id)
            .await?
            .ok_or_else(|| StoreError::NotFound(inc.id.to_string()))
            .map(Some)
    }

    async fn get(&self, id: &IncidentId) -> Result<Option<IncidentRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.incidents)
            .key("id", s(id.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(err)?;
        out.item().map(record_of).transpose()
    }

    async fn compare_and_put(
        &self,
        record: &IncidentRecord,
        expected_version: u64,
    ) -> Result<bool, StoreError> {
        // The open flag (the sparse index of open incidents) goes with the state.
        let open = !record.state.is_terminal();
        let res = self
            .client
            .update_item()
            .table_name(&self.tables.incidents)
            .key("id", s(record.incident.id.as_str()))
            .update_expression(if open {
                "SET #st = :st, #v = :nv, #r = :r, #o = :one"
            } else {
                "SET #st = :st, #v = :nv, #r = :r REMOVE #o"
            })
            .set_expression_attribute_values(
                open.then(|| HashMap::from([(":one".to_owned(), s("1"))])),
            )
            .condition_expression("#v = :ev")
            .expression_attribute_names("#o", OPEN_FLAG)
            .expression_attribute_names("#st", "state")
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#r", "record")
            .expression_attribute_values(":st", s(record.state.as_str()))
            .expression_attribute_values(":nv", n(record.version as i64))
            .expression_attribute_values(":r", s(to_json(record)?))
            .expression_attribute_values(":ev", n(expected_version as i64))
            .send()
            .await;
        condition_met(res)
    }

    async fn put_action(&self, action: &ActionRecord) -> Result<(), StoreError> {
        let json = to_json(action)?;
        let sk = action_sk(action.started_at, &action.incident_id, action.step);
        let mut scopes = vec!["all".to_owned()];
        if !action.target.is_empty() {
            scopes.push(format!("r#{}", action.target));
        }
        if let Some(g) = &action.group {
            scopes.push(format!("g#{g}"));
        }
        for scope in scopes {
            self.client
                .put_item()
                .table_name(&self.tables.actions)
                .item("scope", s(scope))
                .item("sk", s(&sk))
                .item("record", s(&json))
                .send()
                .await
                .map_err(err)?;
        }
        Ok(())
    }

    async fn actions_since(
        &self,
        scope: &Scope,
        since: DateTime<Utc>,
    ) -> Result<Vec<ActionRecord>, StoreError> {
        let key = match scope {
            Scope::Resource(id) => format!("r#{id}"),
            Scope::Group(id) => format!("g#{id}"),
            Scope::All => "all".to_owned(),
        };
        // `#s`: `scope` may be a reserved word, so it goes through a name placeholder.
        let items = self
            .query_all(
                &self.tables.actions,
                None,
                "#s = :s AND sk >= :from",
                vec![("#s", "scope")],
                vec![
                    (":s", s(key)),
                    (
                        ":from",
                        s(format!("{:015}", since.timestamp_millis().max(0))),
                    ),
                ],
            )
            .await?;
        items
            .iter()
            .map(|i| {
                let json = get_s(i, "record").unwrap_or("");
                serde_json::from_str(json).map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect()
    }

    async fn incidents_of(&self, scope: &Scope) -> Result<Vec<IncidentRecord>, StoreError> {
        self.incidents_since(scope, None).await
    }

    async fn decision_state(
        &self,
        resource: &str,
        group: Option<&str>,
        kill_switch_key: &str,
        since: DateTime<Utc>,
    ) -> Result<DecisionState, StoreError> {
        let resource = Scope::Resource(resource.to_owned());
        let group_scope = group.map(|g| Scope::Group(g.to_owned()));
        let group_incidents = async {
            match &group_scope {
                Some(scope) => self.incidents_since(scope, Some(since)).await,
                None => Ok(Vec::new()),
            }
        };
        // Five reads at once: one round trip of latency. The incident queries
        // read only the window, through the indexes' `detected_at` range key.
        let (actions, (kill_switch, _), resource_configs, incidents_resource, incidents_group) = tokio::try_join!(
            self.actions_since(&Scope::All, since),
            self.governor_get(kill_switch_key),
            self.resource_configs(),
            self.incidents_since(&resource, Some(since)),
            group_incidents,
        )?;
        Ok(DecisionState {
            actions,
            kill_switch,
            resource_configs,
            incidents_resource,
            incidents_group,
        })
    }

    async fn recent(&self, limit: usize) -> Result<Vec<IncidentRecord>, StoreError> {
        let today = Utc::now().date_naive();
        let mut out = Vec::new();
        for back in 0..=super::RECENT_DAYS {
            if out.len() >= limit {
                break;
            }
            let day = today - chrono::Duration::days(back);
            let items = match self
                .query_newest(
                    BY_DAY,
                    "#d = :d",
                    vec![("#d", "day")],
                    vec![(":d", s(day.to_string()))],
                    limit - out.len(),
                )
                .await
            {
                Ok(items) => items,
                Err(e) if no_such_index(&e) => {
                    tracing::warn!(error = %e, "The incidents table has no by-day index \
                        (created before it existed): the newest incidents are read by scan.");
                    return super::recent_listed(self, limit).await;
                }
                Err(e) => return Err(e),
            };
            for item in &items {
                out.push(record_of(item)?);
            }
        }
        Ok(out)
    }

    async fn all_open(&self) -> Result<Vec<IncidentRecord>, StoreError> {
        let items = match self
            .query_all(
                &self.tables.incidents,
                Some(OPEN),
                "#o = :one",
                vec![("#o", OPEN_FLAG)],
                vec![(":one", s("1"))],
            )
            .await
        {
            Ok(items) => items,
            Err(e) if no_such_index(&e) => {
                tracing::warn!(error = %e, "The incidents table has no open index \
                    (created before it existed): open incidents are read by scan.");
                return super::open_listed(self).await;
            }
            Err(e) => return Err(e),
        };
        let mut open = items.iter().map(record_of).collect::<Result<Vec<_>, _>>()?;
        open.retain(|r| !r.state.is_terminal());
        open.sort_by_key(|r| std::cmp::Reverse(r.incident.detected_at));
        Ok(open)
    }

    async fn list(
        &self,
        filter: &ListFilter,
        page_token: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let mut conditions = Vec::new();
        let mut names: Vec<(&str, &str)> = Vec::new();
        let mut values: Vec<(&str, AttributeValue)> = Vec::new();
        if filter.open {
            conditions.push("NOT (#st IN (:h, :e, :d, :i))");
            names.push(("#st", "state"));
            values.extend([
                (":h", s("healed")),
                (":e", s("escalated")),
                (":d", s("denied")),
                (":i", s("ignored")),
            ]);
        }
        if let Some(k) = filter.kind {
            conditions.push("#k = :k");
            names.push(("#k", "kind"));
            values.push((":k", s(k.as_str())));
        }
        if let Some(since) = filter.since {
            conditions.push("detected_at >= :since");
            values.push((":since", n(since.timestamp_millis())));
        }
        let mut scan = self
            .client
            .scan()
            .table_name(&self.tables.incidents)
            .limit(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000));
        if !conditions.is_empty() {
            scan = scan.filter_expression(conditions.join(" AND "));
        }
        for (k, v) in names {
            scan = scan.expression_attribute_names(k, v);
        }
        for (k, v) in values {
            scan = scan.expression_attribute_values(k, v);
        }
        if let Some(t) = page_token {
            scan = scan.exclusive_start_key("id", s(t));
        }
        let out = scan.send().await.map_err(err)?;
        let items = out
            .items()
            .iter()
            .map(record_of)
            .collect::<Result<Vec<_>, _>>()?;
        let next = out
            .last_evaluated_key()
            .and_then(|k| get_s(k, "id"))
            .map(str::to_owned);
        Ok(Page { items, next })
    }

    async fn claim(
        &self,
        id: &IncidentId,
        owner: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let until = now.timestamp_millis() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let res = self
            .client
            .update_item()
            .table_name(&self.tables.incidents)
            .key("id", s(id.as_str()))
            .update_expression("SET lease_owner = :o, lease_expires = :u")
            .condition_expression(
                "attribute_exists(id) AND (attribute_not_exists(lease_owner) OR lease_expires <= :now OR lease_owner = :o)",
            )
            .expression_attribute_values(":o", s(owner))
            .expression_attribute_values(":u", n(until))
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .send()
            .await;
        condition_met(res)
    }

    async fn release(&self, id: &IncidentId, owner: &str) -> Result<(), StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.tables.incidents)
            .key("id", s(id.as_str()))
            .update_expression("REMOVE lease_owner, lease_expires")
            .condition_expression("lease_owner = :o")
            .expression_attribute_values(":o", s(owner))
            .send()
            .await;
        condition_met(res).map(drop)
    }

    async fn put_resource_config(&self, config: &ResourceConfigRecord) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.tables.resource_config)
            .item("pk", s(config.selector.key()))
            .item("record", s(to_json(config)?))
            .send()
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn resource_configs(&self) -> Result<Vec<ResourceConfigRecord>, StoreError> {
        let mut out = self
            .scan_all(&self.tables.resource_config)
            .await?
            .iter()
            .map(|item| {
                let json = get_s(item, "record").unwrap_or("");
                serde_json::from_str(json).map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect::<Result<Vec<ResourceConfigRecord>, _>>()?;
        out.sort_by_key(|c| c.selector.key());
        Ok(out)
    }

    async fn add_aggregate(
        &self,
        by: GroupBy,
        day: NaiveDate,
        key: &str,
        closed: Closed,
    ) -> Result<(), StoreError> {
        // ADD is atomic: concurrent replicas add up without a read.
        let n = |v: u64| AttributeValue::N(v.to_string());
        let mut update = self
            .client
            .update_item()
            .table_name(&self.tables.aggregates)
            .key("pk", s(by.as_str()))
            .key("sk", s(format!("{day}#{key}")))
            .expression_attribute_values(":one", n(1));
        update = match (closed.mttr_ms, closed.escalated) {
            (Some(ms), _) => update
                .update_expression("ADD closed :one, healed :one, mttr_sum :ms, #b :one")
                .expression_attribute_names("#b", format!("b{}", bucket_of(ms)))
                .expression_attribute_values(":ms", n(ms)),
            (None, true) => update.update_expression("ADD closed :one, escalated :one"),
            (None, false) => update.update_expression("ADD closed :one"),
        };
        update.send().await.map_err(err)?;
        Ok(())
    }

    async fn aggregates(
        &self,
        by: GroupBy,
        from: NaiveDate,
    ) -> Result<Vec<(NaiveDate, String, AggCell)>, StoreError> {
        // Days sort as text (YYYY-MM-DD), so the window is one key range.
        let items = self
            .query_all(
                &self.tables.aggregates,
                None,
                "pk = :pk AND sk >= :from",
                Vec::new(),
                vec![(":pk", s(by.as_str())), (":from", s(from.to_string()))],
            )
            .await?;
        let mut out = Vec::new();
        for item in &items {
            let Some((day, key)) = get_s(item, "sk").and_then(|sk| sk.split_once('#')) else {
                continue;
            };
            let Ok(day) = day.parse::<NaiveDate>() else {
                continue;
            };
            let num = |k: &str| {
                get_n(item, k)
                    .and_then(|v| u64::try_from(v).ok())
                    .unwrap_or(0)
            };
            let buckets = item
                .keys()
                .filter_map(|k| k.strip_prefix('b').and_then(|b| b.parse::<u16>().ok()))
                .map(|b| (b, num(&format!("b{b}"))))
                .collect();
            out.push((
                day,
                key.to_owned(),
                AggCell {
                    closed: num("closed"),
                    healed: num("healed"),
                    escalated: num("escalated"),
                    mttr_sum_ms: num("mttr_sum"),
                    buckets,
                },
            ));
        }
        Ok(out)
    }

    async fn governor_get(&self, key: &str) -> Result<(Option<String>, u64), StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.governor)
            .key("pk", s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(err)?;
        Ok(match out.item() {
            Some(item) => (
                get_s(item, "value").map(str::to_owned),
                get_n(item, "version")
                    .and_then(|v| u64::try_from(v).ok())
                    .unwrap_or(0),
            ),
            None => (None, 0),
        })
    }

    async fn put_policy_input(&self, hash: &str, input: &str) -> Result<(), StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.tables.inputs)
            .item("hash", s(hash))
            .item("input", s(input))
            .condition_expression("attribute_not_exists(#h)")
            .expression_attribute_names("#h", "hash");
        // Already there: the same hash is the same input.
        condition_met(put.send().await).map(drop)
    }

    async fn policy_input(&self, hash: &str) -> Result<Option<String>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.inputs)
            .key("hash", s(hash))
            .send()
            .await
            .map_err(err)?;
        Ok(out
            .item()
            .and_then(|i| get_s(i, "input"))
            .map(str::to_owned))
    }

    async fn reserve(
        &self,
        claims: &[SlotClaim],
        now: DateTime<Utc>,
    ) -> Result<Reservation, StoreError> {
        let grouped = slots::by_limit(claims);
        for _ in 0..super::CAS_RETRIES {
            let mut tx = self.client.transact_write_items();
            for (limit, cs) in &grouped {
                let key = limit.key();
                // Strongly consistent: the version read is the one the put
                // is conditioned on.
                let (value, version) = self.governor_get(&key).await?;
                let Some(set) = slots::taken(value.as_deref(), cs, now) else {
                    return Ok(Reservation::Full(limit.clone()));
                };
                let mut put = Put::builder()
                    .table_name(&self.tables.governor)
                    .item("pk", s(&key))
                    .item("value", s(set.to_json()))
                    .item("version", n(version as i64 + 1));
                put = if version == 0 {
                    put.condition_expression("attribute_not_exists(pk)")
                } else {
                    put.condition_expression("version = :v")
                        .expression_attribute_values(":v", n(version as i64))
                };
                let put = put.build().map_err(build_err("TransactWriteItems"))?;
                tx = tx.transact_items(TransactWriteItem::builder().put(put).build());
            }
            match tx.send().await {
                Ok(_) => return Ok(Reservation::Held),
                // Another writer changed a record since it was read: read again.
                Err(e)
                    if e.as_service_error().and_then(|se| se.code())
                        == Some("TransactionCanceledException") => {}
                Err(e) => return Err(err(e)),
            }
        }
        Err(StoreError::Contention("governor reservations".into()))
    }

    async fn governor_cas(
        &self,
        key: &str,
        value: &str,
        expected_version: u64,
    ) -> Result<bool, StoreError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.tables.governor)
            .item("pk", s(key))
            .item("value", s(value))
            .item("version", n(expected_version as i64 + 1));
        put = if expected_version == 0 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("version = :v")
                .expression_attribute_values(":v", n(expected_version as i64))
        };
        condition_met(put.send().await)
    }

    async fn put_policy_version(
        &self,
        name: &str,
        version: &str,
        sha256: &str,
        uploaded_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.tables.policies)
            .item("name", s(name))
            .item("sha256", s(sha256))
            .item("version", s(version))
            .item("uploaded_at", n(uploaded_at.timestamp_millis()))
            .send()
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn policy_versions(
        &self,
    ) -> Result<Vec<(String, String, String, DateTime<Utc>)>, StoreError> {
        let mut out: Vec<_> = self
            .scan_all(&self.tables.policies)
            .await?
            .iter()
            .map(|i| {
                (
                    get_s(i, "name").unwrap_or("").to_owned(),
                    get_s(i, "version").unwrap_or("").to_owned(),
                    get_s(i, "sha256").unwrap_or("").to_owned(),
                    Utc.timestamp_millis_opt(get_n(i, "uploaded_at").unwrap_or(0))
                        .single()
                        .unwrap_or_default(),
                )
            })
            .collect();
        out.sort_by(|a, b| (&a.0, a.3).cmp(&(&b.0, b.3)));
        Ok(out)
    }
}
