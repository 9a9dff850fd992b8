//! A TokenRequest issuer for the volumes' tests.
use std::sync::Mutex as StdMutex;

use k8s_openapi::{
    api::authentication::v1::{TokenRequest, TokenRequestStatus},
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::{SignedDuration, Timestamp},
};

use super::token::{TokenError, TokenIssuer};

/// Answers each request with token `t<n>`, valid for what was asked
/// (or `granted` seconds), issued at `now`; records the requests.
pub struct Fake {
    pub now: Timestamp,
    pub granted: Option<i64>,
    pub asked: StdMutex<Vec<(String, String, TokenRequest)>>,
}

impl Fake {
    pub fn new(now: Timestamp) -> Fake {
        Fake {
            now,
            granted: None,
            asked: StdMutex::new(Vec::new()),
        }
    }
}

impl TokenIssuer for Fake {
    async fn issue(
        &self,
        namespace: &str,
        name: &str,
        request: &TokenRequest,
    ) -> Result<TokenRequest, TokenError> {
        let mut asked = self.asked.lock().unwrap();
        asked.push((namespace.to_owned(), name.to_owned(), request.clone()));
        let mut answer = request.clone();
        let spec = answer.spec.as_mut().unwrap();
        let lifetime = self.granted.or(spec.expiration_seconds).unwrap();
        spec.expiration_seconds = Some(lifetime);
        answer.status = Some(TokenRequestStatus {
            token: Some(format!("t{}", asked.len())),
            expiration_timestamp: Some(Time(self.now + SignedDuration::from_secs(lifetime))),
        });
        Ok(answer)
    }
}
