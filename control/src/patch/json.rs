//! RFC 6902 JSON patch with kube-apiserver's bounds: at most
//! [`MAX_OPERATIONS`] operations, and a document that never grows past
//! [`MAX_DOCUMENT_BYTES`] while they apply (a few `copy` operations could
//! otherwise double a document again and again).

use std::io::Write;

use json_patch::PatchOperation;
use serde_json::Value;

use super::error::PatchError;

/// kube-apiserver's `maxJSONPatchOperations`.
pub const MAX_OPERATIONS: usize = 10_000;

/// The largest document a patch may make: kube-apiserver's request body
/// limit, 3 MiB.
pub const MAX_DOCUMENT_BYTES: usize = 3 << 20;

/// Applies `patch` (the array of operations) to `doc`; on error `doc` is
/// left unchanged.
pub fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), PatchError> {
    if let Some(operations) = patch.as_array()
        && operations.len() > MAX_OPERATIONS
    {
        return Err(PatchError::TooManyOperations {
            limit: MAX_OPERATIONS,
            got: operations.len(),
        });
    }
    let operations: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(PatchError::InvalidJsonPatch)?;
    let mut patched = doc.clone();
    // An upper bound of the document's encoded size, kept cheaply per
    // operation; the document is only measured when the bound passes the
    // limit.
    let mut bound = encoded_len(&patched);
    for operation in operations.iter() {
        bound = bound.saturating_add(growth_bound(&patched, operation));
        json_patch::patch(&mut patched, std::slice::from_ref(operation))?;
        if bound > MAX_DOCUMENT_BYTES {
            bound = encoded_len(&patched);
            if bound > MAX_DOCUMENT_BYTES {
                return Err(PatchError::TooLarge {
                    limit: MAX_DOCUMENT_BYTES,
                });
            }
        }
    }
    *doc = patched;
    Ok(())
}

/// At most how many bytes `operation` adds to `doc`'s encoding: the value
/// it writes, and the member name, quotes, colon and comma around it.
fn growth_bound(doc: &Value, operation: &PatchOperation) -> usize {
    let framing = operation.path().as_str().len() + 4;
    match operation {
        PatchOperation::Add(add) => encoded_len(&add.value) + framing,
        PatchOperation::Replace(replace) => encoded_len(&replace.value),
        PatchOperation::Copy(copy) => doc
            .pointer(copy.from.as_str())
            .map_or(0, encoded_len)
            .saturating_add(framing),
        PatchOperation::Move(_) => framing,
        PatchOperation::Remove(_) | PatchOperation::Test(_) => 0,
    }
}

/// The length of `value`'s JSON encoding, counted without building it.
fn encoded_len(value: &Value) -> usize {
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, value).expect("counting cannot fail");
    counter.0
}

struct Counter(usize);

impl Write for Counter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn too_many_operations_are_refused_before_any_applies() {
        let mut doc = json!({"a": 1});
        let patch = Value::Array(vec![
            json!({"op": "test", "path": "/a", "value": 1});
            MAX_OPERATIONS + 1
        ]);
        let error = json_patch(&mut doc, &patch).unwrap_err();
        assert_eq!(
            error.to_string(),
            "The allowed maximum operations in a JSON patch is 10000, got 10001"
        );
        let allowed = Value::Array(vec![
            json!({"op": "test", "path": "/a", "value": 1});
            MAX_OPERATIONS
        ]);
        json_patch(&mut doc, &allowed).unwrap();
    }

    #[test]
    fn copies_that_grow_the_document_past_the_limit_are_refused() {
        let mut doc = json!({"a": "x".repeat(1 << 20)});
        let patch = json!([
            {"op": "copy", "from": "/a", "path": "/b"},
            {"op": "copy", "from": "/a", "path": "/c"},
            {"op": "copy", "from": "/a", "path": "/d"},
        ]);
        let error = json_patch(&mut doc, &patch).unwrap_err();
        assert!(matches!(error, PatchError::TooLarge { .. }), "{error}");
        assert_eq!(
            doc.as_object().unwrap().len(),
            1,
            "the document is unchanged"
        );
        // Growing and shrinking again stays under the limit.
        let patch = json!([
            {"op": "copy", "from": "/a", "path": "/b"},
            {"op": "remove", "path": "/b"},
            {"op": "copy", "from": "/a", "path": "/c"},
            {"op": "remove", "path": "/c"},
            {"op": "copy", "from": "/a", "path": "/d"},
        ]);
        json_patch(&mut doc, &patch).unwrap();
        assert_eq!(doc.as_object().unwrap().len(), 2);
    }
}
