//! Reading the agent's Prometheus text: gauges and the change-to-datapath
//! histogram's quantiles.

/// The value of an unlabelled sample `name`.
pub fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// The `q` quantile (0..1) of histogram `name`, interpolated linearly inside
/// the bucket it falls in, as Prometheus' histogram_quantile does; `None`
/// without observations. Past the last finite bound it returns that bound.
pub fn histogram_quantile(text: &str, name: &str, q: f64) -> Option<f64> {
    let prefix = format!("{name}_bucket{{le=\"");
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (bound, count) = rest.split_once("\"} ")?;
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().ok()?
            };
            Some((bound, count.trim().parse().ok()?))
        })
        .collect();
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(bound, cumulative) in &buckets {
        if cumulative >= rank {
            if bound.is_infinite() {
                return Some(lower);
            }
            let inside = cumulative - below;
            let fraction = if inside > 0.0 {
                (rank - below) / inside
            } else {
                1.0
            };
            return Some(lower + (bound - lower) * fraction);
        }
        (lower, below) = (bound, cumulative);
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "skiff_last_full_sync_seconds 1.25
skiff_change_to_datapath_seconds_bucket{le=\"0.001\"} 50
skiff_change_to_datapath_seconds_bucket{le=\"0.01\"} 90
skiff_change_to_datapath_seconds_bucket{le=\"0.1\"} 100
skiff_change_to_datapath_seconds_bucket{le=\"+Inf\"} 100
skiff_change_to_datapath_seconds_count 100
";

    #[test]
    fn reads_gauges_and_quantiles() {
        assert_eq!(gauge(TEXT, "skiff_last_full_sync_seconds"), Some(1.25));
        assert_eq!(gauge(TEXT, "skiff_last_full_sync"), None);
        let name = "skiff_change_to_datapath_seconds";
        let p50 = histogram_quantile(TEXT, name, 0.5).unwrap();
        assert!((p50 - 0.001).abs() < 1e-12, "{p50}");
        let p99 = histogram_quantile(TEXT, name, 0.99).unwrap();
        assert!((p99 - 0.091).abs() < 1e-9, "{p99}");
        assert_eq!(histogram_quantile("", name, 0.99), None);
    }
}
