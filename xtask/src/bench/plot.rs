//! SVG plots of the scale sweep (plotters' SVG backend: text is left to
//! the viewer's fonts, so nothing needs fontconfig). Axes are log10 of the
//! value, labelled with the value, so one chart type serves every plot.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::results::ScalePoint;

struct Series {
    name: &'static str,
    points: Vec<(f64, f64)>,
}

/// Writes the sweep's plots into `dir`; returns (title, file name) of each.
pub fn scale_plots(points: &[ScalePoint], dir: &Path) -> Result<Vec<(String, String)>> {
    let n = |p: &ScalePoint| p.services as f64;
    let series = |name, value: fn(&ScalePoint) -> Option<f64>| Series {
        name,
        points: points
            .iter()
            .filter_map(|p| Some((n(p), value(p)?)))
            .collect(),
    };
    let plots = [
        (
            "scale-sync.svg",
            "Time to program N Services (full sync)",
            "seconds",
            vec![
                series("skiff agent", |p| p.skiff.full_sync_seconds),
                series("kube-proxy (iptables)", |p| p.iptables.sync_seconds),
                series("nft -f", |p| p.nftables.sync_seconds),
            ],
        ),
        (
            "scale-connect.svg",
            "Connect p50 to the last Service",
            "µs",
            vec![
                series("direct", |p| {
                    Some(p.skiff.connect.as_ref()?.direct_connect_p50_us)
                }),
                series("skiff", |p| Some(p.skiff.connect.as_ref()?.connect_p50_us)),
                series("kube-proxy (iptables)", |p| {
                    Some(p.iptables.connect.as_ref()?.connect_p50_us)
                }),
                series("nftables", |p| {
                    Some(p.nftables.connect.as_ref()?.connect_p50_us)
                }),
            ],
        ),
        (
            "scale-change.svg",
            "skiff change→datapath p99",
            "seconds",
            vec![series("skiff agent", |p| p.skiff.change_p99_seconds)],
        ),
        (
            "scale-rss.svg",
            "Resident memory",
            "MB",
            vec![
                series("skiff agent", |p| p.skiff.agent_rss_mb),
                series("etcd", |p| p.etcd_rss_mb),
            ],
        ),
    ];
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (file, title, unit, series) in plots {
        chart(&dir.join(file), title, unit, &series)
            .map_err(|error| anyhow!("drawing {file}: {error}"))?;
        written.push((title.to_owned(), file.to_owned()));
    }
    Ok(written)
}

fn chart(
    path: &Path,
    title: &str,
    unit: &str,
    series: &[Series],
) -> Result<(), Box<dyn std::error::Error>> {
    let logs: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            s.points
                .iter()
                .filter(|(x, y)| *x > 0.0 && *y > 0.0)
                .map(|(x, y)| (x.log10(), y.log10()))
                .collect()
        })
        .collect();
    let all = logs.iter().flatten();
    let (mut x_max, mut y_min, mut y_max) = (1.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for (x, y) in all {
        x_max = x_max.max(*x);
        y_min = y_min.min(*y);
        y_max = y_max.max(*y);
    }
    if !y_min.is_finite() {
        (y_min, y_max) = (0.0, 1.0);
    }
    let (y_low, y_high) = (y_min.floor(), y_max.ceil().max(y_min.floor() + 1.0));

    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max.ceil(), y_low..y_high)?;
    let power = |v: &f64| {
        let value = 10f64.powf(*v);
        if !(0.01..1000.0).contains(&value) {
            format!("{value:.0e}")
        } else {
            format!("{value}")
        }
    };
    chart
        .configure_mesh()
        .x_desc("Services (N, log scale)")
        .y_desc(format!("{unit} (log scale)"))
        .x_labels(x_max.ceil() as usize + 1)
        .y_labels((y_high - y_low) as usize + 1)
        .x_label_formatter(&power)
        .y_label_formatter(&power)
        .draw()?;
    for (i, (series, points)) in series.iter().zip(logs).enumerate() {
        if points.is_empty() {
            continue;
        }
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(series.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
