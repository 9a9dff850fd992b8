//! Why a kind's strategy refuses a request; the API turns it into the
//! `Status` kube-apiserver answers with.

use crate::store::StoreError;
use crate::validation::FieldError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 422: the fields that fail validation.
    Invalid(Vec<FieldError>),
    /// 400: the object cannot be read as its kind.
    BadRequest(String),
    /// 403: the object may not be changed this way.
    Forbidden(String),
    /// 409: the object's state does not allow the change.
    Conflict(String),
    /// 500: the server failed (e.g. an allocator).
    Internal(String),
    /// 503: etcd cannot be reached; the client should retry.
    Unavailable(String),
}

/// A storage failure while the strategy read or wrote: 503 while etcd is
/// unavailable, else 500.
impl From<StoreError> for Refusal {
    fn from(error: StoreError) -> Self {
        if error.is_unavailable() {
            Refusal::Unavailable(error.to_string())
        } else {
            Refusal::Internal(error.to_string())
        }
    }
}

impl Refusal {
    /// A 422 unless `errors` is empty.
    pub fn unless_valid(errors: Vec<FieldError>) -> Result<(), Refusal> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Refusal::Invalid(errors))
        }
    }

    /// The outcome of checking the metadata (`metadata`, the errors there)
    /// and then the rest (`rest`): one 422 naming all the invalid fields,
    /// metadata first.
    pub fn combine(
        mut metadata: Vec<FieldError>,
        rest: Result<(), Refusal>,
    ) -> Result<(), Refusal> {
        match rest {
            Err(Refusal::Invalid(errors)) => {
                metadata.extend(errors);
                Err(Refusal::Invalid(metadata))
            }
            rest if metadata.is_empty() => rest,
            _ => Err(Refusal::Invalid(metadata)),
        }
    }
}
