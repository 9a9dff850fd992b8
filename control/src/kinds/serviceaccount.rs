//! ServiceAccounts: plain objects (kube validates their metadata only),
//! with the `/token` subresource that issues bound tokens (TokenRequest).

use super::strategy::{Strategy, Subresource};

#[derive(Debug)]
pub struct ServiceAccountStrategy;

impl Strategy for ServiceAccountStrategy {
    fn subresources(&self) -> &'static [Subresource] {
        &[Subresource::Token]
    }
}
