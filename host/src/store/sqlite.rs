//! SQLite backend: one file, WAL, migrations versioned in code (`PRAGMA
//! user_version`). Every call runs on tokio's blocking pool so the async runtime
//! never waits on disk. Records are JSON with their queried fields in indexed
//! columns; idempotent create and leases are single conditional statements.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::aggregates::{AggCell, Closed};
use super::slots;
use super::{
    ActionRecord, DecisionState, GroupBy, IncidentRecord, ListFilter, Page, Reservation,
    ResourceConfigRecord, Scope, SlotClaim, Store, StoreError,
};
use crate::incident::IncidentId;

/// Schema versions, applied in order; index + 1 is the `user_version`.
const MIGRATIONS: &[&str] = &[
    // 1: incidents, actions index, config, governor state, policy versions.
    "CREATE TABLE incidents (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        resource_id TEXT NOT NULL,
        group_id TEXT,
        detected_at INTEGER NOT NULL,
        version INTEGER NOT NULL,
        lease_owner TEXT,
        lease_expires INTEGER,
        record TEXT NOT NULL
    );
    CREATE INDEX incidents_resource ON incidents(resource_id);
    CREATE INDEX incidents_group ON incidents(group_id);
    CREATE INDEX incidents_detected ON incidents(detected_at DESC, id DESC);
    CREATE TABLE actions (
        incident_id TEXT NOT NULL,
        step INTEGER NOT NULL,
        target TEXT NOT NULL,
        group_id TEXT,
        started_at INTEGER NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (incident_id, step)
    );
    CREATE INDEX actions_target ON actions(target, started_at);
    CREATE INDEX actions_group ON actions(group_id, started_at);
    CREATE TABLE resource_config (selector TEXT PRIMARY KEY, record TEXT NOT NULL);
    CREATE TABLE governor_state (key TEXT PRIMARY KEY, value TEXT NOT NULL, version INTEGER NOT NULL);
    CREATE TABLE policy_versions (
        name TEXT NOT NULL, sha256 TEXT NOT NULL, version TEXT NOT NULL, uploaded_at INTEGER NOT NULL,
        PRIMARY KEY (name, sha256)
    );",
    // 2: incidents of a resource or group within a time window (the governor's
    // per-decision read) use one index range, however long the history.
    "DROP INDEX incidents_resource;
    DROP INDEX incidents_group;
    CREATE INDEX incidents_resource ON incidents(resource_id, detected_at);
    CREATE INDEX incidents_group ON incidents(group_id, detected_at);",
    // 3: the exact input of every decision, by hash (replay reads it back).
    "CREATE TABLE policy_inputs (hash TEXT PRIMARY KEY, input TEXT NOT NULL);",
    // 4: the stats aggregates (per grouping, day of detection and key).
    "CREATE TABLE aggregates (
        grouping TEXT NOT NULL, day TEXT NOT NULL, key TEXT NOT NULL, cell TEXT NOT NULL,
        PRIMARY KEY (grouping, day, key)
    );",
    // 5: the open incidents (the dashboard's overview and `/stats` read them
    // all) from a partial index instead of a scan of every record; the
    // list query's open filter is this WHERE clause word for word.
    "CREATE INDEX incidents_open ON incidents(detected_at DESC, id DESC)
        WHERE state NOT IN ('healed', 'escalated', 'denied', 'ignored');",
];

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and migrates it.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Invalid(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let path = path.to_owned();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, StoreError> {
            let conn = Connection::open(&path)?;
            conn.busy_timeout(Duration::from_secs(5))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            Ok(conn)
        })
        .await
        .map_err(|e| StoreError::Worker(e.to_string()))??;
        let store = SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        };
        store.init().await?;
        Ok(store)
    }

    /// Runs `f` on the connection without stalling the async runtime: on a
    /// multi-threaded runtime in place (`block_in_place` hands this worker's
    /// other tasks to another thread, and saves the two thread hand-offs of
    /// `spawn_blocking`, which dominated the cost of a statement), elsewhere on
    /// the blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        let work = move || {
            // A panic inside a closure cannot leave SQLite inconsistent (every
            // write is one statement or one transaction), so poisoning is ignored.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(work)
            }
            _ => tokio::task::spawn_blocking(work)
                .await
                .map_err(|e| StoreError::Worker(e.to_string()))?,
        }
    }
}

/// Hashes per `policy_inputs` query (well under SQLite's bound on
/// parameters).
const INPUTS_PER_QUERY: usize = 500;

fn row_record(json: String) -> Result<IncidentRecord, StoreError> {
    serde_json::from_str(&json).map_err(corrupt)
}

fn actions_since(
    conn: &Connection,
    scope: &Scope,
    since: DateTime<Utc>,
) -> Result<Vec<ActionRecord>, StoreError> {
    // `?1 IS NULL` selects every action (Scope::All).
    let (column, key) = match scope {
        Scope::Resource(id) => ("target", Some(id.as_str())),
        Scope::Group(id) => ("group_id", Some(id.as_str())),
        Scope::All => ("target", None),
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT record FROM actions WHERE (?1 IS NULL OR {column} = ?1) AND started_at >= ?2 ORDER BY started_at, incident_id, step"
    ))?;
    let rows = stmt.query_map(params![key, ms(since)], |row| row.get::<_, String>(0))?;
    rows.map(|r| serde_json::from_str(&r?).map_err(corrupt))
        .collect()
}

fn incidents_of(conn: &Connection, scope: &Scope) -> Result<Vec<IncidentRecord>, StoreError> {
    incidents_of_since(conn, scope, None)
}

/// Incidents of a resource or group, newest first, detected at or after `since`.
fn incidents_of_since(
    conn: &Connection,
    scope: &Scope,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<IncidentRecord>, StoreError> {
    let (column, key) = match scope {
        Scope::Resource(id) => ("resource_id", id.as_str()),
        Scope::Group(id) => ("group_id", id.as_str()),
        Scope::All => {
            return Err(StoreError::Invalid(
                "incidents_of needs a resource or group; use list".into(),
            ));
        }
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT record FROM incidents WHERE {column} = ?1 AND detected_at >= ?2 ORDER BY detected_at DESC, id DESC"
    ))?;
    let rows = stmt.query_map(params![key, since.map_or(i64::MIN, ms)], |row| {
        row.get::<_, String>(0)
    })?;
    rows.map(|r| row_record(r?)).collect()
}

fn resource_configs(conn: &Connection) -> Result<Vec<ResourceConfigRecord>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT record FROM resource_config ORDER BY selector")?;
    let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
    rows.map(|r| serde_json::from_str(&r?).map_err(corrupt))
        .collect()
}

fn governor_get(conn: &Connection, key: &str) -> Result<(Option<String>, u64), StoreError> {
    let row: Option<(String, i64)> = conn
        .prepare_cached("SELECT value, version FROM governor_state WHERE key = ?1")?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(row.map_or((None, 0), |(v, n)| (Some(v), u64::try_from(n).unwrap_or(0))))
}

#[async_trait]
impl Store for SqliteStore {
    async fn init(&self) -> Result<(), StoreError> {
        self.run(|conn| {
            let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
            for (i, sql) in MIGRATIONS.iter().enumerate() {
                let version = i64::try_from(i).unwrap_or(i64::MAX) + 1;
                if version > current {
                    let tx = conn.transaction()?;
                    tx.execute_batch(sql)?;
                    tx.pragma_update(None, "user_version", version)?;
                    tx.commit()?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn insert_if_absent(
        &self,
        record: &IncidentRecord,
    ) -> Result<Option<IncidentRecord>, StoreError> {
        let json = serde_json::to_string(record).map_err(corrupt)?;
        let r = record.clone();
        self.run(move |conn| {
            let inserted = conn.prepare_cached("INSERT INTO incidents (id, kind, state, resource_id, group_id, detected_at, version, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(id) DO NOTHING")?.execute(params![
                    r.incident.id.as_str(),
                    r.incident.kind.as_str(),
                    r.state.as_str(),
                    r.incident.resource.id,
                    r.incident.group.as_ref().map(|g| g.id.as_str()),
                    ms(r.incident.detected_at),
                    r.version as i64,
                    json
                ],
            )?;
            if inserted == 1 {
                return Ok(None);
            }
            let existing: String = conn.prepare_cached("SELECT record FROM incidents WHERE id = ?1")?.query_row([r.incident.id.as_str()],
                |row| row.get(0),
            )?;
            row_record(existing).map(Some)
        })
        .await
    }

    async fn get(&self, id: &IncidentId) -> Result<Option<IncidentRecord>, StoreError> {
        let id = id.to_string();
        self.run(move |conn| {
            conn.prepare_cached("SELECT record FROM incidents WHERE id = ?1")?
                .query_row([id], |row| row.get::<_, String>(0))
                .optional()?
                .map(row_record)
                .transpose()
        })
        .await
    }

    async fn compare_and_put(
        &self,
        record: &IncidentRecord,
        expected_version: u64,
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(record).map_err(corrupt)?;
        let (id, state, version) = (
            record.incident.id.to_string(),
            record.state.as_str(),
            record.version as i64,
        );
        self.run(move |conn| {
            let n = conn.prepare_cached("UPDATE incidents SET state = ?1, version = ?2, record = ?3 WHERE id = ?4 AND version = ?5")?.execute(params![state, version, json, id, expected_version as i64],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn put_action(&self, action: &ActionRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(action).map_err(corrupt)?;
        let a = action.clone();
        self.run(move |conn| {
            conn.prepare_cached("INSERT OR REPLACE INTO actions (incident_id, step, target, group_id, started_at, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?.execute(params![a.incident_id, a.step as i64, a.target, a.group, ms(a.started_at), json],
            )?;
            Ok(())
        })
        .await
    }

    async fn actions_since(
        &self,
        scope: &Scope,
        since: DateTime<Utc>,
    ) -> Result<Vec<ActionRecord>, StoreError> {
        let scope = scope.clone();
        self.run(move |conn| actions_since(conn, &scope, since))
            .await
    }

    async fn incidents_of(&self, scope: &Scope) -> Result<Vec<IncidentRecord>, StoreError> {
        let scope = scope.clone();
        self.run(move |conn| incidents_of(conn, &scope)).await
    }

    async fn list(
        &self,
        filter: &ListFilter,
        page_token: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        // Token: "<detected_at ms>:<id>" of the last item of the previous page.
        let after = match page_token {
            Some(t) => {
                let (at, id) = t
                    .split_once(':')
                    .and_then(|(a, id)| Some((a.parse::<i64>().ok()?, id.to_owned())))
                    .ok_or_else(|| StoreError::Invalid(format!("bad page token {t:?}")))?;
                Some((at, id))
            }
            None => None,
        };
        let filter = filter.clone();
        let limit = limit.clamp(1, 1000);
        self.run(move |conn| {
            let mut sql = String::from("SELECT record FROM incidents WHERE 1 = 1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if filter.open {
                sql.push_str(" AND state NOT IN ('healed', 'escalated', 'denied', 'ignored')");
            }
            if let Some(k) = filter.kind {
                sql.push_str(" AND kind = ?");
                args.push(k.as_str().to_owned().into());
            }
            if let Some(s) = filter.since {
                sql.push_str(" AND detected_at >= ?");
                args.push(ms(s).into());
            }
            if let Some((at, id)) = &after {
                // A row value: SQLite seeks the (detected_at, id) index to
                // the page's start (the equivalent OR scans it from the top,
                // which makes listing everything quadratic).
                sql.push_str(" AND (detected_at, id) < (?, ?)");
                args.push((*at).into());
                args.push(id.clone().into());
            }
            sql.push_str(" ORDER BY detected_at DESC, id DESC LIMIT ?");
            args.push(i64::try_from(limit + 1).unwrap_or(1001).into());
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), |row| {
                row.get::<_, String>(0)
            })?;
            let mut items = rows
                .map(|r| row_record(r?))
                .collect::<Result<Vec<_>, _>>()?;
            let next = if items.len() > limit {
                items.truncate(limit);
                items
                    .last()
                    .map(|r| format!("{}:{}", ms(r.incident.detected_at), r.incident.id))
            } else {
                None
            };
            Ok(Page { items, next })
        })
        .await
    }

    async fn claim(
        &self,
        id: &IncidentId,
        owner: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (id, owner) = (id.to_string(), owner.to_owned());
        let until = ms(now) + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        self.run(move |conn| {
            let n = conn.prepare_cached("UPDATE incidents SET lease_owner = ?1, lease_expires = ?2
                 WHERE id = ?3 AND (lease_owner IS NULL OR lease_expires <= ?4 OR lease_owner = ?1)")?.execute(params![owner, until, id, ms(now)],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn release(&self, id: &IncidentId, owner: &str) -> Result<(), StoreError> {
        let (id, owner) = (id.to_string(), owner.to_owned());
        self.run(move |conn| {
            conn.prepare_cached("UPDATE incidents SET lease_owner = NULL, lease_expires = NULL WHERE id = ?1 AND lease_owner = ?2")?.execute(params![id, owner],
            )?;
            Ok(())
        })
        .await
    }

    async fn put_resource_config(&self, config: &ResourceConfigRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(config).map_err(corrupt)?;
        let key = config.selector.key();
        self.run(move |conn| {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO resource_config (selector, record) VALUES (?1, ?2)",
            )?
            .execute(params![key, json])?;
            Ok(())
        })
        .await
    }

    async fn resource_configs(&self) -> Result<Vec<ResourceConfigRecord>, StoreError> {
        self.run(|conn| resource_configs(conn)).await
    }

    async fn put_policy_input(&self, hash: &str, input: &str) -> Result<(), StoreError> {
        let (hash, input) = (hash.to_owned(), input.to_owned());
        self.run(move |conn| {
            conn.prepare_cached(
                "INSERT INTO policy_inputs (hash, input) VALUES (?1, ?2) ON CONFLICT(hash) DO NOTHING",
            )?
            .execute(params![hash, input])?;
            Ok(())
        })
        .await
    }

    async fn policy_input(&self, hash: &str) -> Result<Option<String>, StoreError> {
        let hash = hash.to_owned();
        self.run(move |conn| {
            Ok(conn
                .prepare_cached("SELECT input FROM policy_inputs WHERE hash = ?1")?
                .query_row([hash], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn policy_inputs(&self, hashes: &[String]) -> Result<Vec<(String, String)>, StoreError> {
        let hashes = hashes.to_vec();
        self.run(move |conn| {
            let mut out = Vec::with_capacity(hashes.len());
            for chunk in hashes.chunks(INPUTS_PER_QUERY) {
                let marks = vec!["?"; chunk.len()].join(",");
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT hash, input FROM policy_inputs WHERE hash IN ({marks})"
                ))?;
                let rows = stmt.query_map(rusqlite::params_from_iter(chunk), |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?;
                for row in rows {
                    out.push(row?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn reserve(
        &self,
        claims: &[SlotClaim],
        now: DateTime<Utc>,
    ) -> Result<Reservation, StoreError> {
        let claims = claims.to_vec();
        self.run(move |conn| {
            // IMMEDIATE: the write lock is taken before the reads, so two
            // connections (two replicas on one file) serialize here.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for (limit, cs) in slots::by_limit(&claims) {
                let key = limit.key();
                let (value, version) = governor_get(&tx, &key)?;
                let Some(set) = slots::taken(value.as_deref(), &cs, now) else {
                    // Dropping the transaction rolls back what it took.
                    return Ok(Reservation::Full(limit));
                };
                tx.prepare_cached(
                    "INSERT INTO governor_state (key, value, version) VALUES (?1, ?2, ?3)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value, version = excluded.version",
                )?
                .execute(params![key, set.to_json(), version as i64 + 1])?;
            }
            tx.commit()?;
            Ok(Reservation::Held)
        })
        .await
    }

    async fn add_aggregate(
        &self,
        by: GroupBy,
        day: NaiveDate,
        key: &str,
        closed: Closed,
    ) -> Result<(), StoreError> {
        let (day, key) = (day.to_string(), key.to_owned());
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let cell: Option<String> = tx
                .prepare_cached(
                    "SELECT cell FROM aggregates WHERE grouping = ?1 AND day = ?2 AND key = ?3",
                )?
                .query_row(params![by.as_str(), day, key], |r| r.get(0))
                .optional()?;
            let mut cell: AggCell = match cell {
                Some(c) => serde_json::from_str(&c).map_err(corrupt)?,
                None => AggCell::default(),
            };
            cell.add(closed);
            let json = serde_json::to_string(&cell).map_err(corrupt)?;
            tx.prepare_cached(
                "INSERT INTO aggregates (grouping, day, key, cell) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(grouping, day, key) DO UPDATE SET cell = excluded.cell",
            )?
            .execute(params![by.as_str(), day, key, json])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn aggregates(
        &self,
        by: GroupBy,
        from: NaiveDate,
    ) -> Result<Vec<(NaiveDate, String, AggCell)>, StoreError> {
        let from = from.to_string();
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT day, key, cell FROM aggregates WHERE grouping = ?1 AND day >= ?2",
            )?;
            let rows = stmt.query_map(params![by.as_str(), from], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (day, key, cell) = row?;
                let day = day
                    .parse::<NaiveDate>()
                    .map_err(|e| StoreError::Corrupt(format!("aggregate day {day:?}: {e}")))?;
                out.push((day, key, serde_json::from_str(&cell).map_err(corrupt)?));
            }
            Ok(out)
        })
        .await
    }

    async fn governor_get(&self, key: &str) -> Result<(Option<String>, u64), StoreError> {
        let key = key.to_owned();
        self.run(move |conn| governor_get(conn, &key)).await
    }

    async fn governor_cas(
        &self,
        key: &str,
        value: &str,
        expected_version: u64,
    ) -> Result<bool, StoreError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.run(move |conn| {
            let expected = expected_version as i64;
            let n = if expected == 0 {
                conn.prepare_cached("INSERT INTO governor_state (key, value, version) VALUES (?1, ?2, 1) ON CONFLICT(key) DO NOTHING")?.execute(params![key, value],
                )?
            } else {
                conn.prepare_cached("UPDATE governor_state SET value = ?1, version = version + 1 WHERE key = ?2 AND version = ?3")?.execute(params![value, key, expected],
                )?
            };
            Ok(n == 1)
        })
        .await
    }

    async fn decision_state(
        &self,
        resource: &str,
        group: Option<&str>,
        kill_switch_key: &str,
        since: DateTime<Utc>,
    ) -> Result<DecisionState, StoreError> {
        let (resource, group, key) = (
            Scope::Resource(resource.to_owned()),
            group.map(|g| Scope::Group(g.to_owned())),
            kill_switch_key.to_owned(),
        );
        // One lock and one read transaction: a consistent snapshot.
        self.run(move |conn| {
            let tx = conn.transaction()?;
            let state = DecisionState {
                actions: actions_since(&tx, &Scope::All, since)?,
                kill_switch: governor_get(&tx, &key)?.0,
                resource_configs: resource_configs(&tx)?,
                incidents_resource: incidents_of_since(&tx, &resource, Some(since))?,
                incidents_group: match &group {
                    Some(g) => incidents_of_since(&tx, g, Some(since))?,
                    None => Vec::new(),
                },
            };
            tx.finish()?;
            Ok(state)
        })
        .await
    }

    async fn put_policy_version(
        &self,
        name: &str,
        version: &str,
        sha256: &str,
        uploaded_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (name, version, sha256) = (name.to_owned(), version.to_owned(), sha256.to_owned());
        self.run(move |conn| {
            conn.prepare_cached("INSERT OR IGNORE INTO policy_versions (name, sha256, version, uploaded_at) VALUES (?1, ?2, ?3, ?4)")?.execute(params![name, sha256, version, ms(uploaded_at)],
            )?;
            Ok(())
        })
        .await
    }

    async fn policy_versions(
        &self,
    ) -> Result<Vec<(String, String, String, DateTime<Utc>)>, StoreError> {
        self.run(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT name, version, sha256, uploaded_at FROM policy_versions ORDER BY name, uploaded_at",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, from_ms(r.get(3)?)))
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}
