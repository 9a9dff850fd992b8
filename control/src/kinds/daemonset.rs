//! DaemonSets: kube-apiserver's defaults (RollingUpdate with maxUnavailable
//! 1 and maxSurge 0, ten revisions kept, the template's restart policy
//! Always), its validation (a selector that selects the template, pods
//! that always restart, a rolling update that can make progress) and the
//! update rule that the selector is fixed. A status subresource.

use serde_json::{Value, json};

use super::env::Env;
use super::refusal::Refusal;
use super::strategy::{Strategy, Subresource};
use super::workload::{go_selector, validate_selector, validate_selector_matches_template};
use crate::validation::{FieldError, Rendered, go_quote};

const NONNEGATIVE: &str = "must be greater than or equal to 0";
const PERCENT_MESSAGE: &str = "a valid percent string must be a numeric string followed by an \
     ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')";

#[derive(Debug)]
pub struct DaemonSetStrategy;

impl Strategy for DaemonSetStrategy {
    fn subresources(&self) -> &'static [Subresource] {
        &[Subresource::Status]
    }

    fn prepare_for_create(&self, set: &mut Value) {
        default_spec(&mut set["spec"]);
    }

    fn prepare_for_update(&self, set: &mut Value, _old: &Value) {
        default_spec(&mut set["spec"]);
    }

    fn validate(&self, _env: &Env, set: &Value) -> Result<(), Refusal> {
        Refusal::unless_valid(validate_spec(&set["spec"]))
    }

    fn validate_update(&self, _env: &Env, set: &Value, old: &Value) -> Result<(), Refusal> {
        let mut errs = validate_spec(&set["spec"]);
        errs.extend(validate_selector_fixed(&set["spec"], &old["spec"]));
        Refusal::unless_valid(errs)
    }
}

/// The selector decides which pods are the set's: it cannot change.
fn validate_selector_fixed(spec: &Value, old: &Value) -> Option<FieldError> {
    (spec["selector"] != old["selector"]).then(|| {
        FieldError::invalid(
            "spec.selector",
            Rendered(go_selector(&spec["selector"])),
            "field is immutable",
        )
    })
}

/// `SetDefaults_DaemonSet`, and the template's restart policy.
fn default_spec(spec: &mut Value) {
    if !spec.is_object() {
        *spec = json!({});
    }
    if spec["revisionHistoryLimit"].is_null() {
        spec["revisionHistoryLimit"] = json!(10);
    }
    let strategy = &mut spec["updateStrategy"];
    if strategy["type"].is_null() {
        strategy["type"] = json!("RollingUpdate");
    }
    if strategy["type"] == "RollingUpdate" {
        let rolling = &mut strategy["rollingUpdate"];
        if rolling["maxUnavailable"].is_null() {
            rolling["maxUnavailable"] = json!(1);
        }
        if rolling["maxSurge"].is_null() {
            rolling["maxSurge"] = json!(0);
        }
    }
    if spec["template"]["spec"]["restartPolicy"].is_null() {
        spec["template"]["spec"]["restartPolicy"] = json!("Always");
    }
}

fn validate_spec(spec: &Value) -> Vec<FieldError> {
    let mut errs = validate_selector(spec, "spec", "daemonset");
    if errs.is_empty() {
        errs.extend(validate_selector_matches_template(spec, "spec"));
    }
    let pod = &spec["template"]["spec"];
    if pod["containers"].as_array().is_none_or(Vec::is_empty) {
        errs.push(FieldError::required("spec.template.spec.containers", ""));
    }
    if let Some(policy) = pod["restartPolicy"].as_str().filter(|p| *p != "Always") {
        errs.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            policy,
            &["Always"],
        ));
    }
    if !pod["activeDeadlineSeconds"].is_null() {
        errs.push(FieldError::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in DaemonSet is not Supported",
        ));
    }
    for field in [
        "minReadySeconds",
        "templateGeneration",
        "revisionHistoryLimit",
    ] {
        if let Some(number) = spec[field].as_i64().filter(|n| *n < 0) {
            errs.push(FieldError::invalid(
                format!("spec.{field}"),
                number,
                NONNEGATIVE,
            ));
        }
    }
    errs.extend(validate_update_strategy(&spec["updateStrategy"]));
    errs
}

fn validate_update_strategy(strategy: &Value) -> Vec<FieldError> {
    let rolling = &strategy["rollingUpdate"];
    match strategy["type"].as_str().unwrap_or_default() {
        "OnDelete" => vec![],
        "RollingUpdate" if rolling.is_null() => vec![FieldError::required(
            "spec.updateStrategy.rollingUpdate",
            "",
        )],
        "RollingUpdate" => validate_rolling_update(rolling),
        kind => vec![FieldError::not_supported(
            "spec.updateStrategy",
            Rendered(format!(
                "&apps.DaemonSetUpdateStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}}",
                go_quote(kind)
            )),
            &["OnDelete", "RollingUpdate"],
        )],
    }
}

/// `ValidateRollingUpdateDaemonSet`: both fields a non-negative number or
/// a percentage up to 100%, and exactly one of them not zero.
fn validate_rolling_update(rolling: &Value) -> Vec<FieldError> {
    const PATH: &str = "spec.updateStrategy.rollingUpdate";
    let mut errs = Vec::new();
    let mut set = [false; 2];
    for (i, field) in ["maxUnavailable", "maxSurge"].into_iter().enumerate() {
        let value = &rolling[field];
        let path = format!("{PATH}.{field}");
        match IntOrPercent::of(value) {
            Some(IntOrPercent::Int(number)) if number < 0 => {
                errs.push(FieldError::invalid(&path, number, NONNEGATIVE));
            }
            Some(IntOrPercent::Percent(percent)) if percent > 100 => {
                errs.push(FieldError::invalid(
                    &path,
                    Rendered(go_int_or_string(value)),
                    "must not be greater than 100%",
                ));
            }
            Some(parsed) => set[i] = parsed.value() != 0,
            None => errs.push(FieldError::invalid(
                &path,
                Rendered(go_int_or_string(value)),
                PERCENT_MESSAGE,
            )),
        }
    }
    match set {
        [true, true] => errs.push(FieldError::invalid(
            format!("{PATH}.maxSurge"),
            Rendered(go_int_or_string(&rolling["maxSurge"])),
            "may not be set when maxUnavailable is non-zero",
        )),
        [false, false] if errs.is_empty() => errs.push(FieldError::required(
            format!("{PATH}.maxUnavailable"),
            "cannot be 0 when maxSurge is 0",
        )),
        _ => {}
    }
    errs
}

/// A rolling update's `maxUnavailable` or `maxSurge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntOrPercent {
    Int(i64),
    Percent(i64),
}

impl IntOrPercent {
    /// Absent is 0; a string must be digits and `%`.
    pub fn of(value: &Value) -> Option<Self> {
        match value {
            Value::Null => Some(Self::Int(0)),
            Value::Number(number) => number.as_i64().map(Self::Int),
            Value::String(text) => {
                let digits = text.strip_suffix('%')?;
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                digits.parse().ok().map(Self::Percent)
            }
            _ => None,
        }
    }

    fn value(self) -> i64 {
        match self {
            Self::Int(value) | Self::Percent(value) => value,
        }
    }

    /// `GetScaledValueFromIntOrPercent` of `total`, rounded up as the
    /// DaemonSet controller does.
    pub fn scaled_up(self, total: usize) -> usize {
        match self {
            Self::Int(value) => usize::try_from(value).unwrap_or(0),
            Self::Percent(percent) => (total * usize::try_from(percent).unwrap_or(0)).div_ceil(100),
        }
    }
}

/// An `intstr.IntOrString` as Go's `%#v` prints it.
fn go_int_or_string(value: &Value) -> String {
    match value {
        Value::String(text) => format!(
            "intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}",
            go_quote(text)
        ),
        other => format!(
            "intstr.IntOrString{{Type:0, IntVal:{}, StrVal:\"\"}}",
            other.as_i64().unwrap_or(0)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(spec: Value) -> Value {
        let mut set =
            json!({ "metadata": { "name": "agent", "namespace": "default" }, "spec": spec });
        default_spec(&mut set["spec"]);
        set
    }

    fn valid_spec() -> Value {
        json!({
            "selector": { "matchLabels": { "app": "agent" } },
            "template": {
                "metadata": { "labels": { "app": "agent" } },
                "spec": { "containers": [{ "name": "c", "image": "i" }] },
            },
        })
    }

    fn messages(spec: Value) -> Vec<String> {
        validate_spec(&set(spec)["spec"])
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn defaults_are_kube_apiservers() {
        let set = set(valid_spec());
        assert_eq!(set["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(
            set["spec"]["updateStrategy"],
            json!({ "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 1, "maxSurge": 0 } })
        );
        assert_eq!(set["spec"]["template"]["spec"]["restartPolicy"], "Always");
        assert!(validate_spec(&set["spec"]).is_empty());
        let on_delete = self::set(json!({ "updateStrategy": { "type": "OnDelete" } }));
        assert!(on_delete["spec"]["updateStrategy"]["rollingUpdate"].is_null());
    }

    #[test]
    fn bad_specs_are_named() {
        let mut spec = valid_spec();
        spec["template"]["spec"]["restartPolicy"] = json!("Never");
        spec["template"]["metadata"]["labels"] = json!({ "app": "other" });
        spec["minReadySeconds"] = json!(-1);
        assert_eq!(
            messages(spec),
            [
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: \
                 `selector` does not match template `labels`",
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
                "spec.minReadySeconds: Invalid value: -1: must be greater than or equal to 0",
            ]
        );
        let mut spec = valid_spec();
        spec.as_object_mut().unwrap().remove("selector");
        assert_eq!(messages(spec), ["spec.selector: Required value"]);
    }

    #[test]
    fn rolling_updates_must_make_progress() {
        let rolling = |update: Value| {
            let mut spec = valid_spec();
            spec["updateStrategy"] = json!({ "type": "RollingUpdate", "rollingUpdate": update });
            messages(spec)
        };
        assert_eq!(
            rolling(json!({ "maxUnavailable": 0, "maxSurge": 0 })),
            [
                "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"
            ]
        );
        assert_eq!(
            rolling(json!({ "maxUnavailable": 1, "maxSurge": "10%" })),
            [
                "spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: \
                 intstr.IntOrString{Type:1, IntVal:0, StrVal:\"10%\"}: may not be set when maxUnavailable is non-zero"
            ]
        );
        assert_eq!(
            rolling(json!({ "maxUnavailable": "150%" })),
            [
                "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: \
                 intstr.IntOrString{Type:1, IntVal:0, StrVal:\"150%\"}: must not be greater than 100%"
            ]
        );
        assert!(rolling(json!({ "maxUnavailable": 0, "maxSurge": "25%" })).is_empty());
        assert_eq!(
            rolling(json!({ "maxUnavailable": "x" }))[0],
            format!(
                "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: \
                 intstr.IntOrString{{Type:1, IntVal:0, StrVal:\"x\"}}: {PERCENT_MESSAGE}"
            )
        );
        let mut spec = valid_spec();
        spec["updateStrategy"] = json!({ "type": "Sometimes" });
        assert_eq!(
            messages(spec),
            [
                "spec.updateStrategy: Unsupported value: &apps.DaemonSetUpdateStrategy{Type:\"Sometimes\", \
                 RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}: supported values: \"OnDelete\", \"RollingUpdate\""
            ]
        );
    }

    #[test]
    fn percentages_round_up() {
        let percent = IntOrPercent::of(&json!("25%")).unwrap();
        assert_eq!(percent.scaled_up(3), 1);
        assert_eq!(percent.scaled_up(5), 2);
        assert_eq!(percent.scaled_up(0), 0);
        assert_eq!(IntOrPercent::of(&json!(2)).unwrap().scaled_up(10), 2);
        assert_eq!(IntOrPercent::of(&Value::Null), Some(IntOrPercent::Int(0)));
        assert_eq!(IntOrPercent::of(&json!("%")), None);
    }

    #[test]
    fn the_selector_is_fixed() {
        let old = set(valid_spec());
        let mut new = old.clone();
        new["spec"]["selector"] = json!({ "matchLabels": { "app": "agent", "x": "y" } });
        new["spec"]["template"]["metadata"]["labels"]["x"] = json!("y");
        assert!(validate_spec(&new["spec"]).is_empty());
        let error = validate_selector_fixed(&new["spec"], &old["spec"])
            .unwrap()
            .to_string();
        assert!(error.starts_with("spec.selector: Invalid value: v1.LabelSelector{"));
        assert!(error.ends_with(": field is immutable"));
        assert!(validate_selector_fixed(&old["spec"], &old["spec"]).is_none());
    }
}
