//! The three patch flavours (`control::patch::apply`) over a document and
//! a patch: the input is the two JSON texts separated by a NUL byte; the
//! first byte picks the flavour.
#![no_main]

use control::patch::{PatchType, apply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let Some(split) = rest.iter().position(|&byte| byte == 0) else {
        return;
    };
    let (Ok(doc), Ok(patch)) = (
        serde_json::from_slice::<serde_json::Value>(&rest[..split]),
        serde_json::from_slice::<serde_json::Value>(&rest[split + 1..]),
    ) else {
        return;
    };
    let patch_type =
        [PatchType::Json, PatchType::Merge, PatchType::StrategicMerge][usize::from(choice) % 3];
    let mut patched = doc.clone();
    if apply(patch_type, &mut patched, &patch).is_err() {
        assert_eq!(patched, doc, "a failed patch changed the document");
    }
});
