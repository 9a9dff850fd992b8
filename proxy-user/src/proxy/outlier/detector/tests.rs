use super::*;

const FRONTEND: u32 = 1;

fn config(failures: u32, percent: usize) -> OutlierConfig {
    OutlierConfig {
        consecutive_failures: failures,
        base_ejection: Duration::from_secs(10),
        max_ejection: Duration::from_secs(300),
        max_ejection_percent: percent,
    }
}

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([10, 244, 1, last], 8080))
}

fn addrs(lasts: &[u8]) -> Vec<SocketAddr> {
    lasts.iter().map(|last| addr(*last)).collect()
}

fn set(lasts: &[u8]) -> HashSet<SocketAddr> {
    addrs(lasts).into_iter().collect()
}

fn fail(detector: &mut Detector<u32>, last: u8, times: u32, now: Instant) -> Option<Duration> {
    (0..times)
        .map(|_| detector.observe(FRONTEND, addr(last), true, now))
        .last()
        .flatten()
}

#[test]
fn an_ejected_backend_leaves_the_frontend_until_its_time_is_over() {
    let now = Instant::now();
    let mut detector = Detector::default();
    let backends = addrs(&[1, 2, 3]);
    detector.track(FRONTEND, config(3, 50), &backends, now);
    assert_eq!(fail(&mut detector, 1, 2, now), None);
    detector.observe(FRONTEND, addr(1), false, now);
    assert_eq!(fail(&mut detector, 1, 2, now), None);
    assert_eq!(
        fail(&mut detector, 1, 1, now),
        Some(Duration::from_secs(10))
    );
    let track =
        |detector: &mut Detector<u32>, at| detector.track(FRONTEND, config(3, 50), &backends, at);
    assert_eq!(track(&mut detector, now), set(&[2, 3]));
    assert_eq!(
        detector.ejected(now).collect::<Vec<_>>(),
        vec![(FRONTEND, 1)]
    );

    let back = now + Duration::from_secs(10);
    assert_eq!(detector.next_return(), Some(back));
    assert!(
        detector
            .end_ejections(back - Duration::from_secs(1))
            .is_empty()
    );
    assert_eq!(detector.end_ejections(back), vec![(FRONTEND, addr(1))]);
    assert_eq!(detector.next_return(), None);
    assert_eq!(track(&mut detector, back), set(&[1, 2, 3]));
}

#[test]
fn the_last_backends_are_never_ejected() {
    let now = Instant::now();
    let mut detector = Detector::default();
    detector.track(FRONTEND, config(1, 100), &addrs(&[1]), now);
    assert_eq!(fail(&mut detector, 1, 10, now), None);

    let backends = addrs(&[1, 2, 3]);
    detector.track(FRONTEND, config(1, 100), &backends, now);
    assert!(fail(&mut detector, 1, 1, now).is_some());
    assert!(fail(&mut detector, 2, 1, now).is_some());
    assert_eq!(fail(&mut detector, 3, 10, now), None);
    assert_eq!(
        detector.track(FRONTEND, config(1, 100), &backends, now),
        set(&[3])
    );
    // The one backend left goes away: the ejected ones serve again.
    assert_eq!(
        detector.track(FRONTEND, config(1, 100), &addrs(&[1, 2]), now),
        set(&[1, 2])
    );
}

#[test]
fn untracked_frontends_change_nothing_and_new_thresholds_start_afresh() {
    let now = Instant::now();
    let mut detector = Detector::default();
    assert_eq!(detector.observe(7, addr(1), true, now), None);
    let backends = addrs(&[1, 2]);
    detector.track(FRONTEND, config(1, 50), &backends, now);
    assert!(fail(&mut detector, 1, 1, now).is_some());
    assert_eq!(
        detector.track(FRONTEND, config(2, 50), &backends, now),
        set(&[1, 2])
    );
    detector.forget(&FRONTEND);
    assert_eq!(fail(&mut detector, 2, 5, now), None);
    assert_eq!(detector.next_return(), None);
}
