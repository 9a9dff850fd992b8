//! The `skiff.io/outlier-detection` Service annotation: whether a Service
//! asks for passive health, and with which thresholds. The agent applies
//! it; skiff-control refuses a Service whose value it cannot read.
use core::time::Duration;
use std::string::String;

use serde::Deserialize;

/// The annotation that turns outlier detection on for a Service: `"true"`
/// for Envoy's defaults, `"false"` for off, or a JSON object overriding
/// some of the defaults, e.g.
/// `{"consecutiveFailures":3,"baseEjectionSeconds":10,"maxEjectionPercent":50}`.
pub const ANNOTATION: &str = "skiff.io/outlier-detection";

/// What the annotation asks for (Envoy's outlier detection settings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutlierAnnotation {
    /// Failed connects in a row that eject a backend.
    pub consecutive_failures: u32,
    /// An ejection lasts this long times the number of the backend's
    /// ejections...
    pub base_ejection: Duration,
    /// ...but no longer than this.
    pub max_ejection: Duration,
    /// At most this share of a frontend's backends is ejected at once (one
    /// always may be, the last never).
    pub max_ejection_percent: usize,
}

/// What `"true"` means: Envoy's defaults.
pub const DEFAULTS: OutlierAnnotation = OutlierAnnotation {
    consecutive_failures: 5,
    base_ejection: Duration::from_secs(30),
    max_ejection: Duration::from_secs(300),
    max_ejection_percent: 10,
};

/// Why an annotation value is refused.
#[derive(Debug, thiserror::Error)]
pub enum AnnotationError {
    #[error("must be \"true\", \"false\" or a JSON object: {0}")]
    Syntax(String),
    #[error("consecutiveFailures must be at least 1")]
    NoFailures,
    #[error("baseEjectionSeconds must be at least 1")]
    NoEjectionTime,
    #[error("maxEjectionSeconds must be at least baseEjectionSeconds")]
    MaxBelowBase,
    #[error("maxEjectionPercent must be between 0 and 100")]
    Percent,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Overrides {
    consecutive_failures: Option<u32>,
    base_ejection_seconds: Option<u64>,
    max_ejection_seconds: Option<u64>,
    max_ejection_percent: Option<usize>,
}

/// Reads the annotation's value; `None` when it turns detection off.
pub fn parse(value: &str) -> Result<Option<OutlierAnnotation>, AnnotationError> {
    match value.trim() {
        "true" => return Ok(Some(DEFAULTS)),
        "false" => return Ok(None),
        _ => {}
    }
    let overrides: Overrides = serde_json::from_str(value)
        .map_err(|error| AnnotationError::Syntax(std::string::ToString::to_string(&error)))?;
    let annotation = OutlierAnnotation {
        consecutive_failures: overrides
            .consecutive_failures
            .unwrap_or(DEFAULTS.consecutive_failures),
        base_ejection: overrides
            .base_ejection_seconds
            .map_or(DEFAULTS.base_ejection, Duration::from_secs),
        max_ejection: overrides
            .max_ejection_seconds
            .map_or(DEFAULTS.max_ejection, Duration::from_secs),
        max_ejection_percent: overrides
            .max_ejection_percent
            .unwrap_or(DEFAULTS.max_ejection_percent),
    };
    if annotation.consecutive_failures == 0 {
        Err(AnnotationError::NoFailures)
    } else if annotation.base_ejection.is_zero() {
        Err(AnnotationError::NoEjectionTime)
    } else if annotation.max_ejection < annotation.base_ejection {
        Err(AnnotationError::MaxBelowBase)
    } else if annotation.max_ejection_percent > 100 {
        Err(AnnotationError::Percent)
    } else {
        Ok(Some(annotation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn true_means_envoys_defaults_and_false_off() {
        assert_eq!(parse("true").unwrap(), Some(DEFAULTS));
        assert_eq!(parse("false").unwrap(), None);
    }

    #[test]
    fn json_overrides_some_fields() {
        let annotation =
            parse(r#"{"consecutiveFailures":3,"baseEjectionSeconds":2,"maxEjectionPercent":50}"#)
                .unwrap()
                .unwrap();
        assert_eq!(
            annotation,
            OutlierAnnotation {
                consecutive_failures: 3,
                base_ejection: Duration::from_secs(2),
                max_ejection: Duration::from_secs(300),
                max_ejection_percent: 50,
            }
        );
    }

    #[test]
    fn bad_values_are_refused() {
        for value in [
            "yes",
            "",
            r#"{"consecutiveFailures":0}"#,
            r#"{"baseEjectionSeconds":0}"#,
            r#"{"baseEjectionSeconds":60,"maxEjectionSeconds":30}"#,
            r#"{"maxEjectionPercent":101}"#,
            r#"{"consecutiveFailure":3}"#,
            r#"{"consecutiveFailures":-1}"#,
        ] {
            assert!(parse(value).is_err(), "{value} accepted");
        }
    }
}
