//! SNS over HTTP(S): the messages an SNS subscription POSTs to
//! `/events/sns`, checked before anything they say is believed.
//!
//! Every message must:
//! - come from a configured topic ARN;
//! - carry `SignatureVersion` 1 (RSA with SHA-1) or 2 (RSA with SHA-256) and a
//!   `Signature` that verifies, over the fields SNS signs, against the
//!   certificate at `SigningCertURL`, which must be `https` on an
//!   `sns.<region>.amazonaws.com` host and end in `.pem` (AWS's guidance: the
//!   TLS connection to SNS's own host is what makes the certificate
//!   trustworthy; certificates are cached by URL);
//! - be younger than the configured maximum age.
//!
//! Only the signed fields are recorded (extra keys in the body are dropped),
//! and a message id already recorded is acknowledged without recording it
//! again (SNS redelivers; a captured message replayed is the same id).
//!
//! A `SubscriptionConfirmation` for a configured topic is confirmed by
//! fetching its `SubscribeURL` (checked like the certificate's).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Limited};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{AlgorithmIdentifier, CertificateDer, InvalidSignature, alg_id};
use serde::Deserialize;

/// Largest certificate fetched.
const MAX_CERT_BYTES: usize = 64 << 10;
/// Certificates kept.
const MAX_CACHED: usize = 32;
/// How long a certificate fetch or a confirmation may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// What the message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum MessageType {
    /// A published message.
    Notification,
    /// The endpoint is asked to confirm a subscription.
    SubscriptionConfirmation,
    /// The subscription was removed.
    UnsubscribeConfirmation,
}

/// One SNS HTTP message (other fields, such as `MessageAttributes`, are
/// allowed and not signed).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnsMessage {
    /// What it is.
    #[serde(rename = "Type")]
    pub kind: MessageType,
    /// Message id.
    pub message_id: String,
    /// Subscription token (confirmations).
    #[serde(default)]
    pub token: Option<String>,
    /// The topic.
    pub topic_arn: String,
    /// Subject (notifications, when set).
    #[serde(default)]
    pub subject: Option<String>,
    /// The message.
    pub message: String,
    /// When SNS sent it, as SNS wrote it (signed verbatim).
    pub timestamp: String,
    /// `1` or `2`.
    pub signature_version: String,
    /// Base64 signature.
    pub signature: String,
    /// Where the signing certificate is.
    #[serde(rename = "SigningCertURL")]
    pub signing_cert_url: String,
    /// Where to confirm (confirmations).
    #[serde(rename = "SubscribeURL", default)]
    pub subscribe_url: Option<String>,
}

/// Why a message was refused; each is answered 403 (or 503 for a
/// certificate that could not be fetched) and counted.
#[derive(Debug, thiserror::Error)]
pub enum SnsRejection {
    /// Not an SNS message.
    #[error("not an SNS message: {0}")]
    Malformed(String),
    /// From a topic not configured.
    #[error("topic {0} is not one this service subscribes to")]
    UnknownTopic(String),
    /// A certificate or subscribe URL not on an SNS host.
    #[error("{0} is not an https URL on an sns.<region>.amazonaws.com host")]
    UntrustedUrl(String),
    /// Older than the maximum age (or dated in the future).
    #[error("message {id} is {age_secs} s old (at most {max_secs} s)")]
    Expired {
        /// Message id.
        id: String,
        /// Its age.
        age_secs: i64,
        /// The limit.
        max_secs: u64,
    },
    /// A timestamp that does not parse.
    #[error("message timestamp {0:?} is not RFC 3339")]
    BadTimestamp(String),
    /// Not version 1 or 2.
    #[error("unsupported SignatureVersion {0:?}")]
    UnsupportedVersion(String),
    /// The signature does not verify.
    #[error("the signature of message {0} does not verify against its certificate")]
    BadSignature(String),
    /// The certificate could not be fetched or read.
    #[error("cannot use the signing certificate {url}: {why}")]
    Certificate {
        /// Its URL.
        url: String,
        /// Why.
        why: String,
    },
    /// The confirmation could not be sent.
    #[error("cannot confirm the subscription: {0}")]
    Confirm(String),
}

impl SnsRejection {
    /// Whether the sender (or SNS's redelivery) may succeed later: the
    /// certificate or confirmation fetch failed, not the message.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SnsRejection::Certificate { .. } | SnsRejection::Confirm(_)
        )
    }
}

/// What `/events/sns` accepts.
#[derive(Debug, Clone)]
pub struct SnsConfig {
    /// Topic ARNs whose messages are accepted and subscriptions confirmed.
    pub topics: Vec<String>,
    /// Oldest message accepted.
    pub max_age: Duration,
    /// Test only: a `host:port` whose plain-http URLs are trusted like an
    /// SNS host (tests serve their own certificate there).
    pub test_trusted_host: Option<String>,
}

/// Checks SNS messages, with a cache of signing certificates.
pub struct SnsVerifier {
    config: SnsConfig,
    certs: Mutex<HashMap<String, Arc<Vec<u8>>>>,
    recorded: Mutex<HashMap<String, DateTime<Utc>>>,
}

/// Message ids remembered before the old ones are pruned.
const MAX_REMEMBERED: usize = 100_000;

impl SnsMessage {
    /// The message as SNS signed it, and nothing else: what is recorded. A
    /// body may carry extra, unsigned keys (`Records`, `Messages`, …) that
    /// the normalizer would otherwise read; they are dropped here.
    pub fn signed_envelope(&self) -> Vec<u8> {
        let mut v = serde_json::json!({
            "Type": "Notification",
            "MessageId": self.message_id,
            "TopicArn": self.topic_arn,
            "Message": self.message,
            "Timestamp": self.timestamp,
        });
        if let Some(s) = &self.subject {
            v["Subject"] = s.clone().into();
        }
        v.to_string().into_bytes()
    }
}

impl std::fmt::Debug for SnsVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnsVerifier")
            .field("topics", &self.config.topics)
            .finish_non_exhaustive()
    }
}

/// The fields SNS signs, in its order, as `name\nvalue\n` pairs.
pub fn string_to_sign(m: &SnsMessage) -> String {
    let mut fields: Vec<(&str, &str)> = vec![("Message", &m.message), ("MessageId", &m.message_id)];
    match m.kind {
        MessageType::Notification => {
            if let Some(s) = &m.subject {
                fields.push(("Subject", s));
            }
            fields.push(("Timestamp", &m.timestamp));
            fields.push(("TopicArn", &m.topic_arn));
            fields.push(("Type", "Notification"));
        }
        MessageType::SubscriptionConfirmation | MessageType::UnsubscribeConfirmation => {
            fields.push((
                "SubscribeURL",
                m.subscribe_url.as_deref().unwrap_or_default(),
            ));
            fields.push(("Timestamp", &m.timestamp));
            fields.push(("Token", m.token.as_deref().unwrap_or_default()));
            fields.push(("TopicArn", &m.topic_arn));
            fields.push((
                "Type",
                if m.kind == MessageType::SubscriptionConfirmation {
                    "SubscriptionConfirmation"
                } else {
                    "UnsubscribeConfirmation"
                },
            ));
        }
    }
    fields
        .into_iter()
        .map(|(k, v)| format!("{k}\n{v}\n"))
        .collect()
}

/// RSA PKCS#1 v1.5 verification, for webpki's certificate-key plumbing (its
/// own algorithms leave SHA-1 out; SNS's SignatureVersion 1 needs it).
#[derive(Debug)]
struct RsaPkcs1(&'static aws_lc_rs::signature::RsaParameters);

impl rustls_pki_types::SignatureVerificationAlgorithm for RsaPkcs1 {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        aws_lc_rs::signature::UnparsedPublicKey::new(self.0, public_key)
            .verify(message, signature)
            .map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::RSA_ENCRYPTION
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::RSA_PKCS1_SHA256
    }
}

static RSA_SHA1: RsaPkcs1 =
    RsaPkcs1(&aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY);
static RSA_SHA256: RsaPkcs1 = RsaPkcs1(&aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256);

impl SnsVerifier {
    /// A verifier accepting `config`.
    pub fn new(config: SnsConfig) -> Self {
        SnsVerifier {
            config,
            certs: Mutex::new(HashMap::new()),
            recorded: Mutex::new(HashMap::new()),
        }
    }

    /// Whether message `id` was recorded already (SNS redelivers; a replay
    /// of a captured message is the same id).
    pub fn already_recorded(&self, id: &str) -> bool {
        self.recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(id)
    }

    /// Remembers that message `id` was recorded, for the maximum age.
    pub fn recorded(&self, id: &str, now: DateTime<Utc>) {
        let mut seen = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_REMEMBERED {
            let max = chrono::Duration::seconds(
                i64::try_from(self.config.max_age.as_secs()).unwrap_or(i64::MAX),
            );
            seen.retain(|_, at| now - *at <= max);
            if seen.len() >= MAX_REMEMBERED {
                seen.clear();
            }
        }
        seen.insert(id.to_owned(), now);
    }

    /// Whether `url` is an SNS endpoint: https on `sns.<region>.amazonaws.com`
    /// (or `.amazonaws.com.cn`), or the test-only trusted host over http.
    pub fn trusted_url(&self, url: &str) -> bool {
        if let Some(host) = &self.config.test_trusted_host
            && url
                .strip_prefix("http://")
                .and_then(|rest| rest.strip_prefix(host.as_str()))
                .is_some_and(|rest| rest.starts_with('/'))
        {
            return true;
        }
        let Some(rest) = url.strip_prefix("https://") else {
            return false;
        };
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let region = host.strip_prefix("sns.").and_then(|h| {
            h.strip_suffix(".amazonaws.com")
                .or_else(|| h.strip_suffix(".amazonaws.com.cn"))
        });
        region.is_some_and(|r| {
            !r.is_empty()
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
    }

    /// Checks a message body: topic, URL, age, signature. Returns the message.
    pub async fn verify(
        &self,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<SnsMessage, SnsRejection> {
        let m: SnsMessage =
            serde_json::from_slice(body).map_err(|e| SnsRejection::Malformed(e.to_string()))?;
        if !self.config.topics.iter().any(|t| t == &m.topic_arn) {
            return Err(SnsRejection::UnknownTopic(m.topic_arn));
        }
        let cert_url_ok =
            self.trusted_url(&m.signing_cert_url) && signing_cert_path(&m.signing_cert_url);
        if !cert_url_ok {
            return Err(SnsRejection::UntrustedUrl(m.signing_cert_url));
        }
        let sent = DateTime::parse_from_rfc3339(&m.timestamp)
            .map_err(|_| SnsRejection::BadTimestamp(m.timestamp.clone()))?
            .with_timezone(&Utc);
        let age = (now - sent).num_seconds();
        let max = self.config.max_age.as_secs();
        // A minute of clock skew either way.
        if age > max as i64 || age < -60 {
            return Err(SnsRejection::Expired {
                id: m.message_id,
                age_secs: age,
                max_secs: max,
            });
        }
        let alg: &RsaPkcs1 = match m.signature_version.as_str() {
            "1" => &RSA_SHA1,
            "2" => &RSA_SHA256,
            other => return Err(SnsRejection::UnsupportedVersion(other.to_owned())),
        };
        let signature = base64::engine::general_purpose::STANDARD
            .decode(m.signature.as_bytes())
            .map_err(|_| SnsRejection::BadSignature(m.message_id.clone()))?;
        let der = self.certificate(&m.signing_cert_url).await?;
        let cert_der = CertificateDer::from(der.as_slice());
        let cert =
            webpki::EndEntityCert::try_from(&cert_der).map_err(|e| SnsRejection::Certificate {
                url: m.signing_cert_url.clone(),
                why: format!("not an X.509 certificate: {e}"),
            })?;
        cert.verify_signature(alg, string_to_sign(&m).as_bytes(), &signature)
            .map_err(|_| SnsRejection::BadSignature(m.message_id.clone()))?;
        Ok(m)
    }

    /// Confirms a verified subscription by fetching its `SubscribeURL`.
    pub async fn confirm(&self, m: &SnsMessage) -> Result<(), SnsRejection> {
        let url = m
            .subscribe_url
            .as_deref()
            .ok_or_else(|| SnsRejection::Malformed("a confirmation without SubscribeURL".into()))?;
        if !self.trusted_url(url) {
            return Err(SnsRejection::UntrustedUrl(url.to_owned()));
        }
        fetch(url, MAX_CERT_BYTES)
            .await
            .map_err(SnsRejection::Confirm)?;
        tracing::info!(topic = %m.topic_arn, "SNS subscription confirmed.");
        Ok(())
    }

    /// The DER of the certificate at `url`, fetched once and cached.
    async fn certificate(&self, url: &str) -> Result<Arc<Vec<u8>>, SnsRejection> {
        let cached = self
            .certs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(url)
            .cloned();
        if let Some(der) = cached {
            return Ok(der);
        }
        let fail = |why: String| SnsRejection::Certificate {
            url: url.to_owned(),
            why,
        };
        let pem = fetch(url, MAX_CERT_BYTES).await.map_err(fail)?;
        let der = CertificateDer::from_pem_slice(&pem)
            .map_err(|e| fail(format!("not a PEM certificate: {e}")))?;
        let der = Arc::new(der.as_ref().to_vec());
        let mut certs = self.certs.lock().unwrap_or_else(|p| p.into_inner());
        if certs.len() >= MAX_CACHED {
            certs.clear();
        }
        certs.insert(url.to_owned(), der.clone());
        Ok(der)
    }
}

/// Whether the URL's path is an SNS signing certificate's:
/// `/SimpleNotificationService-<hex>.pem`, with no query or fragment (so a
/// caller cannot make healer fetch arbitrary paths or evict the cache with
/// query strings).
fn signing_cert_path(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let Some((_, path)) = rest.split_once('/') else {
        return false;
    };
    path.strip_prefix("SimpleNotificationService-")
        .and_then(|p| p.strip_suffix(".pem"))
        .is_some_and(|hex| !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// GETs `url` (https with the system's roots, or http), at most `limit`
/// bytes, within [`FETCH_TIMEOUT`].
async fn fetch(url: &str, limit: usize) -> Result<Vec<u8>, String> {
    let client = crate::http::client()?;
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    let get = async {
        let resp = client.get(uri).await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("answered {}", resp.status()));
        }
        let body = Limited::new(resp.into_body(), limit)
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok(body.to_bytes().to_vec())
    };
    tokio::time::timeout(FETCH_TIMEOUT, get)
        .await
        .map_err(|_| format!("no answer within {} s", FETCH_TIMEOUT.as_secs()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier() -> SnsVerifier {
        SnsVerifier::new(SnsConfig {
            topics: vec!["arn:aws:sns:us-east-1:1:t".into()],
            max_age: Duration::from_secs(3600),
            test_trusted_host: None,
        })
    }

    #[test]
    fn only_sns_hosts_are_trusted() {
        let v = verifier();
        assert!(signing_cert_path(
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123abcdef.pem"
        ));
        for bad in [
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-01.pem?x=1",
            "https://sns.us-east-1.amazonaws.com/other.pem",
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-.pem",
            "https://sns.us-east-1.amazonaws.com/a/SimpleNotificationService-01.pem",
        ] {
            assert!(!signing_cert_path(bad), "{bad}");
        }
        assert!(
            v.trusted_url("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem")
        );
        assert!(v.trusted_url("https://sns.cn-north-1.amazonaws.com.cn/x.pem"));
        for bad in [
            "http://sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com.evil.com/x.pem",
            "https://evil.com/sns.us-east-1.amazonaws.com/x.pem",
            "https://sns..amazonaws.com/x.pem",
            "https://s3.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com@evil.com/x.pem",
        ] {
            assert!(!v.trusted_url(bad), "{bad}");
        }
    }

    #[test]
    fn the_signed_string_follows_the_sns_field_order() {
        let m: SnsMessage = serde_json::from_str(
            r#"{"Type":"Notification","MessageId":"m","TopicArn":"t","Subject":"s","Message":"hi",
                "Timestamp":"2024-01-01T00:00:00.000Z","SignatureVersion":"1","Signature":"x",
                "SigningCertURL":"u","UnsubscribeURL":"x","MessageAttributes":{}}"#,
        )
        .expect("parses");
        assert_eq!(
            string_to_sign(&m),
            "Message\nhi\nMessageId\nm\nSubject\ns\nTimestamp\n2024-01-01T00:00:00.000Z\nTopicArn\nt\nType\nNotification\n"
        );
    }
}
