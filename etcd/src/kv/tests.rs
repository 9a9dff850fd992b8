//! The typed layer against a real etcd.

use super::*;
use crate::testing::etcd;

#[tokio::test]
async fn create_update_delete_compare_and_swap() {
    let (_etcd, kv) = etcd().await;
    let Written::Done { revision: created } = kv.create("/t/a", "1").await.unwrap() else {
        panic!("the first create writes")
    };
    assert_eq!(kv.create("/t/a", "2").await.unwrap(), Written::Conflict);
    let entry = kv.get("/t/a").await.unwrap().unwrap();
    assert_eq!(
        (
            entry.value.as_slice(),
            entry.mod_revision,
            entry.create_revision
        ),
        (b"1".as_slice(), created, created)
    );
    assert_eq!(entry.key_str(), "/t/a");

    // An update on a stale revision loses; on the current one it wins.
    let updated = kv.update("/t/a", "3", created).await.unwrap();
    assert!(matches!(updated, Written::Done { revision } if revision > created));
    assert_eq!(
        kv.update("/t/a", "4", created).await.unwrap(),
        Written::Conflict
    );
    assert_eq!(kv.delete("/t/a", created).await.unwrap(), Written::Conflict);
    assert_eq!(kv.get("/t/a").await.unwrap().unwrap().value, b"3");

    let current = kv.get("/t/a").await.unwrap().unwrap().mod_revision;
    assert!(matches!(
        kv.delete("/t/a", current).await.unwrap(),
        Written::Done { .. }
    ));
    assert_eq!(kv.get("/t/a").await.unwrap(), None);
    assert_eq!(
        kv.update("/t/a", "5", current).await.unwrap(),
        Written::Missing
    );
    assert_eq!(kv.delete("/t/a", current).await.unwrap(), Written::Missing);
}

#[tokio::test]
async fn guarded_writes_happen_together_or_not_at_all() {
    let (_etcd, kv) = etcd().await;
    kv.create("/t/node", "{}").await.unwrap();
    let node = kv.get("/t/node").await.unwrap().unwrap();
    let claim = |value: &'static str| {
        Guarded::new()
            .unchanged("/t/node", node.mod_revision)
            .absent("/t/claim")
            .put("/t/node", value)
            .put("/t/claim", "node")
    };
    assert!(matches!(
        kv.commit(claim("a")).await.unwrap(),
        Written::Done { .. }
    ));
    // Both guards now fail; neither write happens.
    assert_eq!(kv.commit(claim("b")).await.unwrap(), Written::Conflict);
    assert_eq!(kv.get("/t/node").await.unwrap().unwrap().value, b"a");

    // One failing guard is enough.
    let release = Guarded::new().absent("/t/claim").delete("/t/node");
    assert_eq!(kv.commit(release).await.unwrap(), Written::Conflict);
    assert!(kv.get("/t/node").await.unwrap().is_some());
    let release = Guarded::new().delete("/t/claim").delete("/t/node");
    assert!(matches!(
        kv.commit(release).await.unwrap(),
        Written::Done { .. }
    ));
    assert_eq!(kv.keys("/t/").await.unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn lists_page_through_one_revision() {
    let (_etcd, kv) = etcd().await;
    for name in ["a", "b", "c", "d", "e"] {
        kv.create(&format!("/p/{name}"), name).await.unwrap();
    }
    // Neighbours that share the prefix's text but not its `/`.
    kv.create("/p0", "x").await.unwrap();
    kv.create("/o/z", "x").await.unwrap();
    let revision = kv.revision().await.unwrap();

    let page = kv.page(&KeyRange::prefix("/p/"), 0, Some(2)).await.unwrap();
    assert_eq!(page.revision, revision);
    assert!(page.more);
    assert_eq!(page.entries.len(), 2);

    // Written after the first page: not in the pages read at its revision.
    kv.create("/p/f", "f").await.unwrap();
    let rest = KeyRange::prefix("/p/").after(&page.entries[1].key);
    let next = kv.page(&rest, revision, None).await.unwrap();
    let names: Vec<String> = next.entries.iter().map(Entry::key_str).collect();
    assert_eq!(names, ["/p/c", "/p/d", "/p/e"]);
    assert!(!next.more);

    let all = kv.list("/p/", 2).await.unwrap();
    let names: Vec<String> = all.entries.iter().map(Entry::key_str).collect();
    assert_eq!(names, ["/p/a", "/p/b", "/p/c", "/p/d", "/p/e", "/p/f"]);
    assert!(all.revision > revision);
    assert_eq!(kv.keys("/p/").await.unwrap(), names);
}

#[tokio::test]
async fn reads_below_the_compaction_say_so() {
    let (_etcd, kv) = etcd().await;
    kv.create("/c/a", "1").await.unwrap();
    let old = kv.revision().await.unwrap();
    let entry = kv.get("/c/a").await.unwrap().unwrap();
    kv.update("/c/a", "2", entry.mod_revision).await.unwrap();
    let latest = kv.revision().await.unwrap();
    kv.client().compact(latest, None).await.unwrap();
    let error = kv
        .page(&KeyRange::prefix("/c/"), old, None)
        .await
        .unwrap_err();
    assert!(
        matches!(error, EtcdError::Compacted { revision } if revision == old),
        "{error}"
    );
}

/// The lease a key is attached to (0: none) and that lease's granted TTL.
async fn lease_of(kv: &Kv, key: &str) -> (i64, i64) {
    let mut client = kv.client();
    let response = client.get(key, None).await.unwrap();
    let lease = response.kvs()[0].lease();
    if lease == 0 {
        return (0, 0);
    }
    let ttl = client.lease_time_to_live(lease, None).await.unwrap();
    (lease, ttl.granted_ttl())
}

#[tokio::test]
async fn events_expire_through_a_shared_lease_of_an_hour() {
    let (_etcd, kv) = etcd().await;
    let first = "/registry/events/default/web.1";
    let second = "/registry/events.k8s.io/events/default/web.2";
    let pod = "/registry/pods/default/web";
    kv.create(first, "{}").await.unwrap();
    kv.commit(Guarded::new().absent(second).put(second, "{}"))
        .await
        .unwrap();
    kv.create(pod, "{}").await.unwrap();

    let (lease, granted) = lease_of(&kv, first).await;
    let hour = crate::keys::EVENT_TTL.as_secs() as i64;
    assert!(
        (hour..=hour + 60).contains(&granted),
        "an Event's lease lasts an hour (and at most the reuse minute more): {granted} s"
    );
    assert_eq!(
        lease_of(&kv, second).await.0,
        lease,
        "writes of one minute share a lease"
    );
    assert_eq!(lease_of(&kv, pod).await, (0, 0), "a Pod does not expire");

    // An update (a repeated Event's count) keeps it under a lease.
    let revision = kv.get(first).await.unwrap().unwrap().mod_revision;
    kv.update(first, "{\"count\":2}", revision).await.unwrap();
    assert_eq!(lease_of(&kv, first).await.0, lease);

    // When the lease ends, etcd removes the Events with it.
    kv.client().lease_revoke(lease).await.unwrap();
    assert_eq!(kv.get(first).await.unwrap(), None);
    assert_eq!(kv.get(second).await.unwrap(), None);
    assert!(kv.get(pod).await.unwrap().is_some());
}

#[tokio::test]
async fn fenced_writes_apply_only_while_the_fence_holds() {
    let (_etcd, kv) = etcd().await;
    let Written::Done { revision: term } = kv.create("/t/fence", "first").await.unwrap() else {
        panic!("the fence is created")
    };
    let fenced = kv.fenced(Fence {
        key: "/t/fence".into(),
        mod_revision: term,
    });
    let Written::Done { revision: created } = fenced.create("/t/a", "1").await.unwrap() else {
        panic!("a write within the term applies")
    };
    // A plain conflict stays a conflict while the fence holds.
    assert_eq!(fenced.create("/t/a", "2").await.unwrap(), Written::Conflict);
    assert_eq!(
        fenced.update("/t/gone", "1", 5).await.unwrap(),
        Written::Missing
    );

    // Another holder moves the fence: every kind of write is refused.
    kv.update("/t/fence", "second", term).await.unwrap();
    let refused = |result: Result<Written, EtcdError>| matches!(result, Err(EtcdError::Fenced { revision, .. }) if revision == term);
    assert!(refused(fenced.create("/t/b", "1").await));
    assert!(refused(fenced.update("/t/a", "2", created).await));
    assert!(refused(fenced.delete("/t/a", created).await));
    assert!(refused(
        fenced.commit(Guarded::new().put("/t/c", "1")).await
    ));
    assert_eq!(kv.get("/t/b").await.unwrap(), None);
    assert_eq!(kv.get("/t/a").await.unwrap().unwrap().value, b"1");
}
