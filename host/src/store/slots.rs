//! Reservations: the places an approved mutating step holds under the
//! governor's counted limits (blast radius per group, actions in flight per
//! group and globally, actions per hour per kind and globally), taken
//! atomically across every limit the step counts against, so two replicas (or
//! two incidents in one burst) can never both take the last place.
//!
//! A limit is one record: the set of holders with the time each place frees
//! up. Taking places is all or nothing: SQLite in one `BEGIN IMMEDIATE`
//! transaction, DynamoDB in one `TransactWriteItems` whose every put is
//! conditioned on the version it read (strongly consistent), retried when
//! another writer won. This module owns the data model and its pure rules;
//! the backends only move records.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::decision::ActionKind;

/// Governor state keys of the limits start with this.
pub(crate) const SLOT_KEY_PREFIX: &str = "slots#";

/// A counted limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "limit", content = "of")]
pub enum SlotLimit {
    /// Members of a group acted on within the blast window.
    BlastRadius(String),
    /// Actions in flight on members of a group.
    InFlightGroup(String),
    /// Actions in flight anywhere.
    InFlight,
    /// Mutating actions of one kind per hour.
    RateKind(ActionKind),
    /// Mutating actions per hour, all kinds.
    RateGlobal,
}

impl SlotLimit {
    /// The governor state key the limit's record lives under.
    pub fn key(&self) -> String {
        match self {
            SlotLimit::BlastRadius(g) => format!("{SLOT_KEY_PREFIX}blast#{g}"),
            SlotLimit::InFlightGroup(g) => format!("{SLOT_KEY_PREFIX}in-flight#{g}"),
            SlotLimit::InFlight => format!("{SLOT_KEY_PREFIX}in-flight"),
            SlotLimit::RateKind(k) => format!("{SLOT_KEY_PREFIX}rate#{k}"),
            SlotLimit::RateGlobal => format!("{SLOT_KEY_PREFIX}rate"),
        }
    }
}

/// One place a step needs under one limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotClaim {
    /// The limit.
    pub limit: SlotLimit,
    /// How many holders the limit admits at once.
    pub capacity: u32,
    /// Who holds the place: the member for the blast radius (two steps on one
    /// member count once), the step (`<incident>#<index>`) for the others.
    pub holder: String,
    /// How long the place is held.
    pub ttl: Duration,
}

/// What a reservation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Every place is taken (or was already this holder's).
    Held,
    /// This limit had no free place; nothing was taken.
    Full(SlotLimit),
}

/// The stored record of one limit: holder → when its place frees (ms).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SlotSet {
    holders: BTreeMap<String, i64>,
}

impl SlotSet {
    /// Parses a stored record; a corrupt one counts as full (fail safe).
    pub(crate) fn parse(json: Option<&str>) -> Option<SlotSet> {
        match json {
            None => Some(SlotSet::default()),
            Some(j) => serde_json::from_str(j).ok(),
        }
    }

    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Takes a place for `claim.holder` at `now`: drops expired places, keeps
    /// (and renews) one the holder has, else takes a free one. `false` when
    /// the limit is full.
    pub(crate) fn take(&mut self, claim: &SlotClaim, now: DateTime<Utc>) -> bool {
        let now_ms = now.timestamp_millis();
        self.holders.retain(|_, until| *until > now_ms);
        let until =
            now_ms.saturating_add(i64::try_from(claim.ttl.as_millis()).unwrap_or(i64::MAX / 2));
        if let Some(held) = self.holders.get_mut(&claim.holder) {
            *held = (*held).max(until);
            return true;
        }
        if self.holders.len() >= claim.capacity as usize {
            return false;
        }
        self.holders.insert(claim.holder.clone(), until);
        true
    }

    /// Live holders at `now`.
    #[cfg(test)]
    pub(crate) fn live(&self, now: DateTime<Utc>) -> usize {
        let now_ms = now.timestamp_millis();
        self.holders.values().filter(|u| **u > now_ms).count()
    }
}

/// Groups claims by limit (several steps of one decision may count against
/// one limit), so each limit's record is read and written once.
pub(crate) fn by_limit(claims: &[SlotClaim]) -> BTreeMap<SlotLimit, Vec<&SlotClaim>> {
    let mut out: BTreeMap<SlotLimit, Vec<&SlotClaim>> = BTreeMap::new();
    for c in claims {
        out.entry(c.limit.clone()).or_default().push(c);
    }
    out
}

/// The record of one limit after taking every claim on it, from the stored
/// JSON (`None`: no record yet); `None` when the limit is full or its record
/// is corrupt (fail safe). Both backends write what this returns.
pub(crate) fn taken(
    stored: Option<&str>,
    claims: &[&SlotClaim],
    now: DateTime<Utc>,
) -> Option<SlotSet> {
    let mut set = SlotSet::parse(stored)?;
    claims.iter().all(|c| set.take(c, now)).then_some(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(holder: &str, capacity: u32) -> SlotClaim {
        SlotClaim {
            limit: SlotLimit::BlastRadius("g".into()),
            capacity,
            holder: holder.into(),
            ttl: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_limit_admits_its_capacity_and_frees_places_when_they_expire() {
        let t0 = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::days(1);
        let mut s = SlotSet::default();
        assert!(s.take(&claim("i-1", 2), t0));
        assert!(s.take(&claim("i-2", 2), t0));
        assert!(!s.take(&claim("i-3", 2), t0), "full");
        assert!(s.take(&claim("i-1", 2), t0), "a holder keeps its place");
        assert_eq!(s.live(t0), 2);
        let later = t0 + chrono::Duration::seconds(61);
        assert!(s.take(&claim("i-3", 2), later), "expired places free up");
        assert_eq!(s.live(later), 1);
    }

    #[test]
    fn a_corrupt_record_is_full() {
        assert_eq!(SlotSet::parse(Some("{not json")), None);
        assert_eq!(SlotSet::parse(None), Some(SlotSet::default()));
    }
}
