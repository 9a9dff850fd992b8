//! The `skiff.io/outlier-detection` annotation: whether a Service asks for
//! passive health, and with which thresholds.
use std::time::Duration;

use serde::Deserialize;

use super::ejection::OutlierConfig;

/// The annotation that turns outlier detection on for a Service: `"true"`
/// for Envoy's defaults, `"false"` for off, or a JSON object overriding
/// some of the defaults, e.g.
/// `{"consecutiveFailures":3,"baseEjectionSeconds":10,"maxEjectionPercent":50}`.
pub const ANNOTATION: &str = "skiff.io/outlier-detection";

/// What `"true"` means: Envoy's defaults, with its 10 % share (a
/// frontend may always eject one backend, so two backends are enough).
fn service_defaults() -> OutlierConfig {
    OutlierConfig {
        max_ejection_percent: 10,
        ..OutlierConfig::default()
    }
}

/// Why an annotation value is refused.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("must be \"true\", \"false\" or a JSON object: {0}")]
    Syntax(#[from] serde_json::Error),
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
pub fn parse(value: &str) -> Result<Option<OutlierConfig>, SettingsError> {
    match value.trim() {
        "true" => return Ok(Some(service_defaults())),
        "false" => return Ok(None),
        _ => {}
    }
    let overrides: Overrides = serde_json::from_str(value)?;
    let defaults = service_defaults();
    let config = OutlierConfig {
        consecutive_failures: overrides
            .consecutive_failures
            .unwrap_or(defaults.consecutive_failures),
        base_ejection: overrides
            .base_ejection_seconds
            .map_or(defaults.base_ejection, Duration::from_secs),
        max_ejection: overrides
            .max_ejection_seconds
            .map_or(defaults.max_ejection, Duration::from_secs),
        max_ejection_percent: overrides
            .max_ejection_percent
            .unwrap_or(defaults.max_ejection_percent),
    };
    if config.consecutive_failures == 0 {
        Err(SettingsError::NoFailures)
    } else if config.base_ejection.is_zero() {
        Err(SettingsError::NoEjectionTime)
    } else if config.max_ejection < config.base_ejection {
        Err(SettingsError::MaxBelowBase)
    } else if config.max_ejection_percent > 100 {
        Err(SettingsError::Percent)
    } else {
        Ok(Some(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn true_means_envoys_defaults() {
        let config = parse("true").unwrap().unwrap();
        assert_eq!(config.consecutive_failures, 5);
        assert_eq!(config.base_ejection, Duration::from_secs(30));
        assert_eq!(config.max_ejection, Duration::from_secs(300));
        assert_eq!(config.max_ejection_percent, 10);
        assert!(parse("false").unwrap().is_none());
    }

    #[test]
    fn json_overrides_some_fields() {
        let config =
            parse(r#"{"consecutiveFailures":3,"baseEjectionSeconds":2,"maxEjectionPercent":50}"#)
                .unwrap()
                .unwrap();
        assert_eq!(config.consecutive_failures, 3);
        assert_eq!(config.base_ejection, Duration::from_secs(2));
        assert_eq!(config.max_ejection, Duration::from_secs(300));
        assert_eq!(config.max_ejection_percent, 50);
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
