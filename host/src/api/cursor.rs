//! Opaque, signed page cursors for the read API: the store's page token and
//! the query it belongs to, MACed (HMAC-SHA256) with a key every replica
//! shares through the store, so a cursor from one replica works on another
//! and a forged or altered one, or one reused with another query, is refused.

use sha2::{Digest, Sha256};

use crate::store::{Store, StoreError};

/// The control-state key holding the cursor key (hex).
pub const CURSOR_KEY: &str = "api-cursor-key";
const VERSION: &str = "c1";
const BLOCK: usize = 64;

/// HMAC-SHA256 (RFC 2104) with a key of at most one block.
fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut k = [0u8; BLOCK];
    let n = key.len().min(BLOCK);
    k[..n].copy_from_slice(&key[..n]);
    let pad = |byte: u8| k.map(|b| b ^ byte);
    let mut inner = Sha256::new();
    inner.update(pad(0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(pad(0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// The parts a cursor's MAC covers, each length-prefixed (so no two
/// different splits encode alike).
fn encode(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(&(p.len() as u64).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// Signs and checks cursors.
#[derive(Clone)]
pub struct Cursors {
    key: [u8; 32],
}

impl std::fmt::Debug for Cursors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cursors(..)")
    }
}

impl Cursors {
    /// Cursors under `key`.
    pub fn new(key: [u8; 32]) -> Self {
        Cursors { key }
    }

    /// The key the replicas share, created by the first one that needs it.
    pub async fn shared(store: &dyn Store) -> Result<Self, StoreError> {
        for _ in 0..8 {
            let (value, version) = store.governor_get(CURSOR_KEY).await?;
            if let Some(key) = value.as_deref().and_then(parse_key) {
                return Ok(Cursors::new(key));
            }
            let mut key = [0u8; 32];
            getrandom::getrandom(&mut key).map_err(|e| {
                StoreError::Invalid(format!("no randomness for the cursor key: {e}"))
            })?;
            if store
                .governor_cas(CURSOR_KEY, &hex::encode(key), version)
                .await?
            {
                return Ok(Cursors::new(key));
            }
        }
        Err(StoreError::Contention(CURSOR_KEY.to_owned()))
    }

    fn mac(&self, query: &str, token: &str) -> [u8; 32] {
        let message = encode(&[VERSION.as_bytes(), query.as_bytes(), token.as_bytes()]);
        hmac(&self.key, &message)
    }

    /// A cursor carrying `token` for `query` (a canonical form of the filters).
    pub fn sign(&self, query: &str, token: &str) -> String {
        let mac = self.mac(query, token);
        format!(
            "{VERSION}.{}.{}",
            hex::encode(token),
            hex::encode(&mac[..16])
        )
    }

    /// The store token of a cursor signed for `query`, or `None` when it was
    /// not signed here for it.
    pub fn open(&self, query: &str, cursor: &str) -> Option<String> {
        let mut parts = cursor.split('.');
        let (v, token, mac) = (parts.next()?, parts.next()?, parts.next()?);
        if v != VERSION || parts.next().is_some() {
            return None;
        }
        let token = String::from_utf8(hex::decode(token).ok()?).ok()?;
        let given = hex::decode(mac).ok()?;
        let want = self.mac(query, &token);
        super::auth::same_bytes(&given, &want[..16]).then_some(token)
    }
}

fn parse_key(hex_key: &str) -> Option<[u8; 32]> {
    hex::decode(hex_key).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_and_cursors_refuse_tampering() {
        // RFC 4231, test case 1.
        assert_eq!(
            hex::encode(hmac(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_ne!(encode(&[b"ab"]), encode(&[b"a", b"b"]));
        let key = [7u8; 32];
        let c = Cursors::new(key);
        let cursor = c.sign("kind=alarm", "token-9");
        assert_eq!(c.open("kind=alarm", &cursor).as_deref(), Some("token-9"));
        assert_eq!(c.open("kind=ecs", &cursor), None, "another query");
        assert_eq!(
            Cursors::new([8u8; 32]).open("kind=alarm", &cursor),
            None,
            "another key"
        );
        let mut forged = cursor.clone();
        forged.replace_range(3..5, "ff");
        assert_eq!(c.open("kind=alarm", &forged), None);
        assert_eq!(c.open("kind=alarm", "garbage"), None);
    }
}
