//! The store against a real etcd.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::test_support::Etcd;

const BASE: &str = skiff_etcd::keys::CONFIG_MAPS;

fn configmap(name: &str, value: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": name, "namespace": "default" },
        "data": { "key": value },
    })
}

fn key(name: &str) -> String {
    object_key(BASE, Some("default"), name)
}

#[tokio::test]
async fn create_get_update_delete_with_revisions() {
    let etcd = Etcd::start();
    let store = etcd.store().await;

    let created = store.create(&key("a"), &configmap("a", "1")).await.unwrap();
    let revision = resource_version_of(&created);
    assert!(revision > 0);
    let read = store.get(&key("a")).await.unwrap();
    assert_eq!(read, created);

    let again = store.create(&key("a"), &configmap("a", "2")).await;
    assert!(matches!(again, Err(StoreError::AlreadyExists { .. })));

    // The raw etcd value has no resourceVersion: it is the key's revision.
    let mut client = etcd.client().await;
    let raw = client.get(key("a"), None).await.unwrap();
    let stored: Value = serde_json::from_slice(raw.kvs()[0].value()).unwrap();
    assert!(stored["metadata"].get("resourceVersion").is_none());

    let updated = store
        .update(&key("a"), &configmap("a", "2"), revision)
        .await
        .unwrap();
    assert!(resource_version_of(&updated) > revision);
    let stale = store
        .update(&key("a"), &configmap("a", "3"), revision)
        .await;
    let error = stale.unwrap_err();
    assert!(matches!(error, StoreError::Conflict { .. }));
    assert!(error.to_string().contains("the object has been modified"));
    let missing = store.update(&key("b"), &configmap("b", "1"), 1).await;
    assert!(matches!(missing, Err(StoreError::NotFound { .. })));

    let wrong_uid = Preconditions {
        uid: Some("nope".into()),
        ..Default::default()
    };
    let refused = store.delete(&key("a"), &wrong_uid).await;
    assert!(matches!(
        refused,
        Err(StoreError::PreconditionFailed { .. })
    ));
    let deleted = store
        .delete(&key("a"), &Preconditions::default())
        .await
        .unwrap();
    assert_eq!(deleted["data"]["key"], "2");
    assert!(matches!(
        store.get(&key("a")).await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn lists_page_through_one_revision_with_filters() {
    let etcd = Etcd::start();
    let store = etcd.store().await;
    for index in 0..7 {
        let name = format!("cm{index}");
        store
            .create(&key(&name), &configmap(&name, &(index % 2).to_string()))
            .await
            .unwrap();
    }
    // Another namespace sharing the name prefix must not leak in.
    store
        .create(
            &object_key(BASE, Some("default2"), "x"),
            &configmap("x", "1"),
        )
        .await
        .unwrap();
    let prefix = collection_prefix(BASE, Some("default"));
    let odd = |object: &Value| object["data"]["key"] == "1";

    let first = store
        .list(
            &prefix,
            ListRequest {
                limit: Some(2),
                continue_token: None,
            },
            odd,
        )
        .await
        .unwrap();
    let names = |page: &ListPage| -> Vec<String> {
        page.items
            .iter()
            .map(|item| item["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&first), ["cm1", "cm3"]);
    let token = first.continue_token.clone().expect("more pages");

    // A write after the first page is not seen by the later pages.
    store
        .create(&key("cm9"), &configmap("cm9", "1"))
        .await
        .unwrap();
    let second = store
        .list(
            &prefix,
            ListRequest {
                limit: Some(2),
                continue_token: Some(&token),
            },
            odd,
        )
        .await
        .unwrap();
    assert_eq!(names(&second), ["cm5"]);
    assert_eq!(second.revision, first.revision);
    assert_eq!(second.continue_token, None);

    let everything = store
        .list(&prefix, ListRequest::default(), |_| true)
        .await
        .unwrap();
    assert_eq!(everything.items.len(), 8);
    assert!(everything.revision > first.revision);
}

#[tokio::test]
async fn watch_reports_changes_progress_and_compaction() {
    let etcd = Etcd::start();
    let store = etcd.store().await;
    let start = store.current_revision().await.unwrap() + 1;
    let prefix = collection_prefix(BASE, None);
    let mut watch = store
        .watch(&prefix, start, Some(Duration::from_millis(200)))
        .await
        .unwrap();

    let created = store.create(&key("a"), &configmap("a", "1")).await.unwrap();
    let updated = store
        .update(
            &key("a"),
            &configmap("a", "2"),
            resource_version_of(&created),
        )
        .await
        .unwrap();
    store
        .delete(&key("a"), &Preconditions::default())
        .await
        .unwrap();

    let mut events = Vec::new();
    let mut progress = None;
    while events.len() < 3 || progress.is_none() {
        let batch = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .expect("watch answers")
            .unwrap();
        match batch {
            WatchBatch::Events(batch) => events.extend(batch),
            WatchBatch::Progress { revision } if events.len() == 3 => progress = Some(revision),
            WatchBatch::Progress { .. } => {}
        }
    }
    let types: Vec<EventType> = events.iter().map(|event| event.event_type).collect();
    assert_eq!(
        types,
        [EventType::Added, EventType::Modified, EventType::Deleted]
    );
    assert_eq!(events[0].object, created);
    assert_eq!(events[1].object, updated);
    assert_eq!(events[2].object["data"]["key"], "2");
    let deleted_at = resource_version_of(&events[2].object);
    assert!(deleted_at > resource_version_of(&updated));
    assert_eq!(progress, Some(deleted_at));

    let mut client = etcd.client().await;
    client.compact(deleted_at, None).await.unwrap();
    let mut old = store.watch(&prefix, start, None).await.unwrap();
    let error = tokio::time::timeout(Duration::from_secs(5), old.next())
        .await
        .expect("watch answers")
        .unwrap_err();
    assert!(matches!(error, StoreError::Compacted { .. }), "{error}");
}

#[tokio::test]
async fn continue_token_from_compacted_revision_is_gone() {
    let etcd = Etcd::start();
    let store = etcd.store().await;
    for name in ["a", "b"] {
        store
            .create(&key(name), &configmap(name, "1"))
            .await
            .unwrap();
    }
    let prefix = collection_prefix(BASE, None);
    let first = store
        .list(
            &prefix,
            ListRequest {
                limit: Some(1),
                continue_token: None,
            },
            |_| true,
        )
        .await
        .unwrap();
    store.create(&key("c"), &configmap("c", "1")).await.unwrap();
    let latest = store.current_revision().await.unwrap();
    etcd.client().await.compact(latest, None).await.unwrap();
    let result = store
        .list(
            &prefix,
            ListRequest {
                limit: Some(1),
                continue_token: first.continue_token.as_deref(),
            },
            |_| true,
        )
        .await;
    assert!(matches!(result, Err(StoreError::Compacted { .. })));
}
