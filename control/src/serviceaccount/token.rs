//! Bound service-account tokens as kube-apiserver issues them: ES256 JWTs
//! signed with the cluster's service-account key (`sa.key`), carrying the
//! service account and the object the token is bound to under the private
//! `kubernetes.io` claim.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// kube-apiserver's default `--service-account-issuer`, also the audience
/// a TokenRequest without `spec.audiences` gets.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The prefix of a service account's user name.
pub const USER_PREFIX: &str = "system:serviceaccount:";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the service-account key: {0}")]
    Key(#[from] jsonwebtoken::errors::Error),
}

/// Why a token is refused; kube answers each with 401.
#[derive(Debug, thiserror::Error)]
pub enum InvalidToken {
    #[error("{0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    #[error("token has no kubernetes.io claim or a malformed subject")]
    Malformed,
}

/// A name and uid, as the `kubernetes.io` claim records each object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ref {
    pub name: String,
    pub uid: String,
}

/// The private `kubernetes.io` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaim {
    pub namespace: String,
    pub serviceaccount: Ref,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Ref>,
}

/// The claims of a token, named as in kube's tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaim,
}

/// What a token is requested for.
#[derive(Debug, Clone)]
pub struct Request {
    pub namespace: String,
    pub service_account: Ref,
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
    pub pod: Option<Ref>,
    pub secret: Option<Ref>,
    pub node: Option<Ref>,
}

impl Claims {
    /// The claims of a new token issued at `now` (Unix seconds).
    pub fn new(request: Request, now: i64) -> Self {
        Self {
            iss: ISSUER.into(),
            sub: format!(
                "{USER_PREFIX}{}:{}",
                request.namespace, request.service_account.name
            ),
            aud: request.audiences,
            exp: now + request.expiration_seconds,
            iat: now,
            nbf: now,
            jti: skiff_etcd::new_uid(),
            kubernetes: KubernetesClaim {
                namespace: request.namespace,
                serviceaccount: request.service_account,
                pod: request.pod,
                secret: request.secret,
                node: request.node,
            },
        }
    }

    /// Whether the subject names the service account of the private claim,
    /// as kube's validator checks.
    fn consistent(&self) -> bool {
        self.sub
            == format!(
                "{USER_PREFIX}{}:{}",
                self.kubernetes.namespace, self.kubernetes.serviceaccount.name
            )
    }
}

/// The service-account signing key pair.
#[derive(Clone)]
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(ES256)")
    }
}

impl Keys {
    /// From the PEM private key (PKCS#8, P-256) and public key (SPKI).
    pub fn from_pem(private: &str, public: &str) -> Result<Self, KeyError> {
        Ok(Self {
            encoding: EncodingKey::from_ec_pem(private.as_bytes())?,
            decoding: DecodingKey::from_ec_pem(public.as_bytes())?,
        })
    }

    /// The signed token of `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), claims, &self.encoding)
            .expect("ES256 signs any claims")
    }

    /// The claims of `token` if this key signed it, it was issued by this
    /// cluster's issuer for one of `audiences`, and it is inside its
    /// validity window (the members share one clock source: no leeway).
    pub fn verify(&self, token: &str, audiences: &[&str]) -> Result<Claims, InvalidToken> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf"]);
        validation.validate_nbf = true;
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)?.claims;
        if !claims.consistent() {
            return Err(InvalidToken::Malformed);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        let pair = rcgen::KeyPair::generate().unwrap();
        Keys::from_pem(&pair.serialize_pem(), &pair.public_key_pem()).unwrap()
    }

    fn request(audiences: &[&str], expiration_seconds: i64) -> Request {
        Request {
            namespace: "ns".into(),
            service_account: Ref {
                name: "default".into(),
                uid: "sa-uid".into(),
            },
            audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
            expiration_seconds,
            pod: Some(Ref {
                name: "p".into(),
                uid: "pod-uid".into(),
            }),
            secret: None,
            node: None,
        }
    }

    #[test]
    fn claims_are_kubes() {
        let claims = Claims::new(request(&[ISSUER], 3600), 1000);
        let json = serde_json::to_value(&claims).unwrap();
        assert_eq!(json["iss"], ISSUER);
        assert_eq!(json["sub"], "system:serviceaccount:ns:default");
        assert_eq!(json["aud"], serde_json::json!([ISSUER]));
        assert_eq!(
            (json["iat"].clone(), json["nbf"].clone()),
            (1000.into(), 1000.into())
        );
        assert_eq!(json["exp"], 4600);
        assert_eq!(json["jti"].as_str().unwrap().len(), 36);
        assert_eq!(
            json["kubernetes.io"],
            serde_json::json!({
                "namespace": "ns",
                "serviceaccount": { "name": "default", "uid": "sa-uid" },
                "pod": { "name": "p", "uid": "pod-uid" },
            })
        );
    }

    #[test]
    fn verifies_signature_issuer_audience_and_time() {
        let keys = keys();
        let now = crate::clock::unix_now();
        let token = keys.sign(&Claims::new(request(&["a", "b"], 600), now));
        let claims = keys.verify(&token, &["b"]).unwrap();
        assert_eq!(claims.kubernetes.serviceaccount.uid, "sa-uid");
        assert!(keys.verify(&token, &[ISSUER]).is_err(), "wrong audience");
        assert!(other_keys_refuse(&token));

        let expired = keys.sign(&Claims::new(request(&["a"], 600), now - 700));
        assert!(keys.verify(&expired, &["a"]).is_err());
        let future = keys.sign(&Claims::new(request(&["a"], 600), now + 300));
        assert!(keys.verify(&future, &["a"]).is_err());

        let mut foreign = Claims::new(request(&["a"], 600), now);
        foreign.iss = "https://elsewhere".into();
        assert!(keys.verify(&keys.sign(&foreign), &["a"]).is_err());
        let mut forged = Claims::new(request(&["a"], 600), now);
        forged.sub = "system:serviceaccount:kube-system:admin".into();
        assert!(matches!(
            keys.verify(&keys.sign(&forged), &["a"]),
            Err(InvalidToken::Malformed)
        ));

        let mut tampered = token.clone();
        tampered.insert(tampered.find('.').unwrap() + 3, 'x');
        assert!(keys.verify(&tampered, &["a"]).is_err());
    }

    fn other_keys_refuse(token: &str) -> bool {
        keys().verify(token, &["a"]).is_err()
    }
}
