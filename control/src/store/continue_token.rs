//! The opaque `continue` token of a paged list: the revision the first page
//! was read at and the key the next page starts from, so every page of one
//! list shows the same snapshot.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::error::StoreError;

/// What a `continue` token carries. The key is relative to the collection
/// prefix, so a token cannot be replayed against another collection's keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContinueToken {
    #[serde(rename = "rv")]
    pub revision: i64,
    #[serde(rename = "start")]
    pub start_after_prefix: String,
}

impl ContinueToken {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("a token always serializes");
        URL_SAFE_NO_PAD.encode(json)
    }

    pub fn decode(token: &str) -> Result<Self, StoreError> {
        let invalid = |reason| StoreError::InvalidContinue { reason };
        let json = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| invalid("not base64"))?;
        let token: Self = serde_json::from_slice(&json).map_err(|_| invalid("not a token"))?;
        if token.revision <= 0 {
            return Err(invalid("no revision"));
        }
        // A relative key that climbs out of the prefix would read another
        // collection.
        if token.start_after_prefix.starts_with('/') || token.start_after_prefix.contains("..") {
            return Err(invalid("key outside the collection"));
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let token = ContinueToken {
            revision: 42,
            start_after_prefix: "default/web\0".into(),
        };
        assert_eq!(ContinueToken::decode(&token.encode()).unwrap(), token);
        for bad in [
            "",
            "!!",
            "e30",
            &URL_SAFE_NO_PAD.encode(r#"{"rv":0,"start":""}"#),
        ] {
            assert!(
                matches!(
                    ContinueToken::decode(bad),
                    Err(StoreError::InvalidContinue { .. })
                ),
                "{bad}"
            );
        }
        let escaping = ContinueToken {
            revision: 1,
            start_after_prefix: "/registry/secrets/".into(),
        };
        assert!(ContinueToken::decode(&escaping.encode()).is_err());
    }
}
