//! Which Ingresses this proxy serves: those of its class, by
//! `spec.ingressClassName` or the legacy annotation, and those naming no
//! class while its class is the default one.
use std::collections::BTreeMap;

use super::objects::{ClassChoice, ClassRecord};

/// Whether an Ingress with `choice` belongs to class `ours`, given the
/// IngressClasses stored. A class-less Ingress is ours when our class is
/// marked default, or when it is not stored and no other class is the
/// default (a cluster that has not created its IngressClasses yet).
pub fn is_ours(choice: &ClassChoice, ours: &str, classes: &BTreeMap<String, ClassRecord>) -> bool {
    match choice {
        ClassChoice::Named(name) | ClassChoice::Annotated(name) => name == ours,
        ClassChoice::Unset => match classes.get(ours) {
            Some(class) => class.is_default,
            None => !classes.values().any(|class| class.is_default),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(list: &[(&str, bool)]) -> BTreeMap<String, ClassRecord> {
        list.iter()
            .map(|(name, is_default)| {
                (
                    name.to_string(),
                    ClassRecord {
                        is_default: *is_default,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn named_classes_pick_their_controller() {
        let none = classes(&[]);
        assert!(is_ours(&ClassChoice::Named("skiff".into()), "skiff", &none));
        assert!(is_ours(
            &ClassChoice::Annotated("skiff".into()),
            "skiff",
            &none
        ));
        assert!(!is_ours(
            &ClassChoice::Named("nginx".into()),
            "skiff",
            &none
        ));
        assert!(!is_ours(
            &ClassChoice::Annotated("nginx".into()),
            "skiff",
            &none
        ));
    }

    #[test]
    fn unset_class_goes_to_the_default() {
        let unset = ClassChoice::Unset;
        assert!(is_ours(&unset, "skiff", &classes(&[])));
        assert!(is_ours(&unset, "skiff", &classes(&[("skiff", true)])));
        assert!(!is_ours(&unset, "skiff", &classes(&[("skiff", false)])));
        assert!(!is_ours(&unset, "skiff", &classes(&[("nginx", true)])));
        assert!(is_ours(&unset, "skiff", &classes(&[("nginx", false)])));
    }
}
