//! Label and field selectors as a query string brings them: any text
//! parses or is refused, and a parsed label selector prints as text that
//! parses back to it.
#![no_main]

use control::api::{FieldSelector, LabelSelector, find_resource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(selector) = LabelSelector::parse(text) {
        let printed = selector.to_string();
        assert_eq!(
            LabelSelector::parse(&printed).ok(),
            Some(selector),
            "{printed:?}"
        );
    }
    let pods = find_resource("", "v1", "pods").expect("served");
    if let Ok(selector) = FieldSelector::parse(text, pods) {
        selector.matches(&serde_json::json!({ "metadata": { "name": text } }));
    }
});
