//! Completion indexes of Indexed jobs: the pod annotation that carries
//! one, and `status.completedIndexes` written as ranges ("0-2,4").

use std::collections::BTreeSet;

use serde_json::Value;

/// The annotation (and label) with a pod's completion index.
pub const INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";

/// The pod's index, when it has a valid one below `completions`.
pub fn of_pod(pod: &Value, completions: u64) -> Option<u64> {
    pod["metadata"]["annotations"][INDEX_ANNOTATION]
        .as_str()?
        .parse()
        .ok()
        .filter(|&index| index < completions)
}

/// The indexes of `text` ("0-2,4") below `completions`; malformed parts
/// are skipped, as upstream does.
pub fn parse(text: &str, completions: u64) -> BTreeSet<u64> {
    let mut indexes = BTreeSet::new();
    for part in text.split(',').filter(|part| !part.is_empty()) {
        let bounds: Option<(u64, u64)> = match part.split_once('-') {
            Some((first, last)) => first.parse().ok().zip(last.parse().ok()),
            None => part.parse().ok().map(|single| (single, single)),
        };
        if let Some((first, last)) = bounds {
            indexes.extend((first..=last).take_while(|&index| index < completions));
        }
    }
    indexes
}

/// `indexes` as ranges: consecutive runs of three or more as `a-b`, others
/// listed ("0-2,4,5").
pub fn format(indexes: &BTreeSet<u64>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.peek() == Some(&(last + 1)) {
            last += 1;
            iter.next();
        }
        match last - first {
            0 => parts.push(first.to_string()),
            1 => parts.extend([first.to_string(), last.to_string()]),
            _ => parts.push(format!("{first}-{last}")),
        }
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_round_trip() {
        let indexes: BTreeSet<u64> = [0, 1, 2, 4, 6, 7].into();
        assert_eq!(format(&indexes), "0-2,4,6,7");
        assert_eq!(parse("0-2,4,6,7", 10), indexes);
        assert_eq!(format(&BTreeSet::new()), "");
        assert!(parse("", 3).is_empty());
    }

    #[test]
    fn out_of_range_and_malformed_parts_are_dropped() {
        assert_eq!(parse("1-5,x,2-", 3), [1, 2].into());
    }
}
