//! Field readers shared by the normalizers: tolerant time parsing, ARN splitting,
//! region checks and case-insensitive envelope keys. Pure functions of their input.

use super::json::Json as Value;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};

/// Earliest time accepted as real (earlier ones are placeholders like 1970).
const EPOCH_FLOOR_MS: i64 = 1_262_304_000_000; // 2010-01-01

/// Parses the time formats AWS payloads use: RFC 3339 with 0-9 fraction digits,
/// `+0000` offsets, RFC 1123 (Health), epoch milliseconds. Spaces are deleted
/// first (`12: 36: 15.490`). Placeholders and anything before 2010 → `None`.
pub fn parse_time(raw: &str) -> Option<DateTime<Utc>> {
    if raw.len() > 64 {
        return None;
    }
    let t = if let Some((_weekday, rest)) = raw.split_once(',') {
        // RFC 1123 keeps its spaces. The weekday is dropped: published samples
        // get it wrong ("Sat, 05 Jun 2016" was a Sunday) and it adds nothing.
        DateTime::parse_from_rfc2822(rest.trim())
            .ok()
            .map(|t| t.with_timezone(&Utc))
    } else {
        let s: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse::<i64>()
                .ok()
                .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
        } else {
            DateTime::parse_from_rfc3339(&s)
                .or_else(|_| DateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S%.f%z"))
                .map(|t| t.with_timezone(&Utc))
                .ok()
                .or_else(|| {
                    NaiveDateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S%.f")
                        .ok()
                        .map(|n| n.and_utc())
                })
        }
    };
    t.filter(|t| t.timestamp_millis() >= EPOCH_FLOOR_MS)
}

/// A time from a JSON value: string, or epoch milliseconds as a number.
pub fn time_of(v: Option<&Value>) -> Option<DateTime<Utc>> {
    match v? {
        Value::String(s) => parse_time(s),
        Value::Int(ms) => Utc
            .timestamp_millis_opt(*ms)
            .single()
            .filter(|t| t.timestamp_millis() >= EPOCH_FLOOR_MS),
        _ => None,
    }
}

/// The first parseable time among candidates.
pub fn first_time<'a>(
    candidates: impl IntoIterator<Item = Option<&'a Value<'a>>>,
) -> Option<DateTime<Utc>> {
    candidates.into_iter().find_map(time_of)
}

/// Whether `s` looks like a real AWS region (`us-east-1`, `us-gov-west-1`), not a
/// placeholder (`REGION`) or an availability zone (`us-east-1b`).
pub fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    if parts.len() < 3 || parts.len() > 4 {
        return false;
    }
    let Some((last, head)) = parts.split_last() else {
        return false;
    };
    !last.is_empty()
        && last.bytes().all(|b| b.is_ascii_digit())
        && head
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
}

/// The parts of an ARN, with spaces trimmed in fields 1-4 (never in the resource).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn<'a> {
    /// `aws`, `aws-cn`, …
    pub partition: String,
    /// `ecs`, `ec2`, …
    pub service: String,
    /// The region field as written (trimmed), possibly a placeholder.
    pub region_field: String,
    /// The region when it is a real region.
    pub region: Option<String>,
    /// The account (verbatim, may be redacted) when present.
    pub account: Option<String>,
    /// Everything after the fifth colon.
    pub resource: &'a str,
}

impl<'a> Arn<'a> {
    /// Parses `arn:partition:service:region:account:resource`.
    pub fn parse(s: &'a str) -> Option<Self> {
        let mut it = s.splitn(6, ':');
        if it.next()?.trim() != "arn" {
            return None;
        }
        let partition = it.next()?.trim().to_owned();
        let service = it.next()?.trim().to_owned();
        let region = it.next()?.trim();
        let account = it.next()?.trim();
        let resource = it.next()?;
        Some(Arn {
            partition,
            service,
            region_field: region.to_owned(),
            region: is_region(region).then(|| region.to_owned()),
            account: (!account.is_empty()).then(|| account.to_owned()),
            resource,
        })
    }

    /// The ARN rebuilt with trimmed fields.
    pub fn canonical(&self) -> String {
        format!(
            "arn:{}:{}:{}:{}:{}",
            self.partition,
            self.service,
            self.region_field,
            self.account.as_deref().unwrap_or(""),
            self.resource
        )
    }
}

/// Region and account of a resource: the ARN's, else the event's.
pub fn arn_location(arn: Option<&Arn<'_>>, event: &Value) -> (Option<String>, Option<String>) {
    (
        arn.and_then(|a| a.region.clone())
            .or_else(|| event_region(event)),
        arn.and_then(|a| a.account.clone())
            .or_else(|| event_account(event)),
    )
}

/// Canonical form of an ARN-ish string: trimmed ARN fields, or the input trimmed.
pub fn canonical_arn(s: &str) -> String {
    Arn::parse(s).map_or_else(|| s.trim().to_owned(), |a| a.canonical())
}

/// A key matched case-insensitively (for envelope keys whose casing drifts).
pub fn get_ci<'a, 'j>(v: &'a Value<'j>, key: &str) -> Option<&'a Value<'j>> {
    v.get(key).or_else(|| {
        v.as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// A string field, `None` when missing, null or not a string.
pub fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)?.as_str()
}

/// A string field that is present and not blank.
pub fn nonempty<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    str_of(v, key).filter(|s| !s.trim().is_empty())
}

/// An EC2 instance id from `i-…` or an instance ARN.
pub fn instance_id(s: &str) -> Option<String> {
    let id = s.trim().rsplit('/').next()?;
    (id.starts_with("i-") && id.len() > 2).then(|| id.to_owned())
}

/// The event-level region (ignored when it is not a real region).
pub fn event_region(v: &Value) -> Option<String> {
    ["region", "awsRegion", "eventRegion"]
        .iter()
        .find_map(|k| str_of(v, k))
        .map(str::trim)
        .filter(|r| is_region(r))
        .map(str::to_owned)
}

/// The event-level account (verbatim).
pub fn event_account(v: &Value) -> Option<String> {
    ["account", "accountId", "AWSAccountId"]
        .iter()
        .find_map(|k| str_of(v, k))
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_every_shape() {
        let ms = |s: &str| parse_time(s).map(|t| t.timestamp_millis());
        assert_eq!(ms("2020-03-16T15:37:04Z"), Some(1_584_373_024_000));
        assert_eq!(ms("2019-10-02T17:04:40.989+0000"), Some(1_570_035_880_989));
        assert_eq!(
            ms("2023-08-04T12: 36: 15.490+0000"),
            Some(1_691_152_575_490)
        );
        assert_eq!(ms("2020-03-16T15:37:06.8Z"), Some(1_584_373_026_800));
        assert_eq!(
            ms("2020-03-16T15:37:06.123456789Z"),
            Some(1_584_373_026_123)
        );
        assert_eq!(ms("Sat, 05 Jun 2016 15:10:09 GMT"), Some(1_465_139_409_000));
        assert_eq!(ms("1713185156609"), Some(1_713_185_156_609));
        assert_eq!(ms("yyyy-mm-ddThh:mm:ssZ"), None);
        assert_eq!(ms("1970-01-01T00:00:00Z"), None);
        assert_eq!(ms(""), None);
    }

    #[test]
    fn regions_and_arns() {
        assert!(is_region("us-east-1"));
        assert!(is_region("us-gov-west-1"));
        assert!(!is_region("REGION"));
        assert!(!is_region("us-east-1b"));
        assert!(!is_region("region"));
        let a = Arn::parse("arn:aws:cloudwatch:us-east-1: 444455556666:alarm:lambda demo")
            .expect("arn");
        assert_eq!(a.account.as_deref(), Some("444455556666"));
        assert_eq!(a.resource, "alarm:lambda demo");
        assert_eq!(
            a.canonical(),
            "arn:aws:cloudwatch:us-east-1:444455556666:alarm:lambda demo"
        );
        let p = Arn::parse("arn:aws:cloudwatch:REGION:ACCOUNT_NUMBER:alarm:EXAMPLE").expect("arn");
        assert_eq!(p.region, None);
        assert_eq!(p.account.as_deref(), Some("ACCOUNT_NUMBER"));
        assert_eq!(
            instance_id("arn:aws:ec2:us-east-2:1:instance/i-123"),
            Some("i-123".into())
        );
        assert_eq!(instance_id("instance-arn"), None);
    }
}
