//! The fleet simulator's SVG charts (plotters, SVG backend only): connections per server and
//! load per server, one series per mode, servers sorted from the most to the least.

use std::error::Error;
use std::path::Path;

use plotters::element::DashedPathElement;
use plotters::prelude::*;

use crate::sim::Outcome;

type Drawn = Result<(), Box<dyn Error>>;

/// One colour per mode (the first three of Tableau 10, as `examples/simulate`).
const PALETTE: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
];

/// `values` sorted from the highest, as `(rank, value)` points.
fn ranked(values: impl Iterator<Item = f64>) -> Vec<(f64, f64)> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(|a, b| b.total_cmp(a));
    v.into_iter()
        .enumerate()
        .map(|(i, y)| (i as f64, y))
        .collect()
}

/// One line of a chart: its legend, the mode's colour index, whether it is dashed, and its
/// value per server.
struct Series {
    name: String,
    color: usize,
    dashed: bool,
    values: Vec<f64>,
}

/// Draws `series` on a chart titled `title`, each sorted from the highest value.
fn per_server(path: &Path, title: &str, y_desc: &str, log: bool, series: Vec<Series>) -> Drawn {
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let series: Vec<(Series, Vec<(f64, f64)>)> = series
        .into_iter()
        .map(|s| {
            let points = ranked(s.values.iter().copied());
            (s, points)
        })
        .collect();
    let servers = series.iter().map(|(_, p)| p.len()).max().unwrap_or(1) as f64;
    let values = || series.iter().flat_map(|(_, p)| p.iter().map(|&(_, y)| y));
    let top = values().fold(1.0, f64::max);
    let bottom = values().filter(|&y| y > 0.0).fold(top, f64::min);
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56);
    let x = 0f64..servers;
    macro_rules! lines {
        ($chart:expr, $position:expr) => {{
            for (s, points) in series {
                let color = PALETTE[s.color % PALETTE.len()];
                let style = color.stroke_width(2);
                let drawn = if s.dashed {
                    $chart.draw_series(DashedLineSeries::new(points, 8, 5, style))?
                } else {
                    $chart.draw_series(LineSeries::new(points, style))?
                };
                let dashed = s.dashed;
                drawn.label(s.name).legend(move |(x, y)| {
                    if dashed {
                        DashedPathElement::new(vec![(x, y), (x + 24, y)], 8, 5, style).into_dyn()
                    } else {
                        PathElement::new(vec![(x, y), (x + 24, y)], style).into_dyn()
                    }
                });
            }
            $chart
                .configure_series_labels()
                .position($position)
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .draw()?;
        }};
    }
    if log {
        let mut chart =
            builder.build_cartesian_2d(x, ((bottom * 0.8).max(0.5)..top * 1.5).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("servers, from the most to the least")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc(y_desc)
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()?;
        lines!(chart, SeriesLabelPosition::UpperRight);
    } else {
        let mut chart = builder.build_cartesian_2d(x, 0f64..top * 1.05)?;
        chart
            .configure_mesh()
            .x_desc("servers, from the most to the least")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc(y_desc)
            .y_label_formatter(&|y| format!("{y:.2}"))
            .draw()?;
        lines!(chart, SeriesLabelPosition::LowerLeft);
    }
    root.present()?;
    Ok(())
}

/// Connections per server, log axis: distinct clients that picked it (solid), and clients
/// whose subset holds it (dashed): the full mesh's `clients` against the subsets' dozen.
pub fn connections(path: &Path, outcomes: &[Outcome]) -> Drawn {
    let mut series = Vec::new();
    for (i, o) in outcomes.iter().enumerate() {
        series.push(Series {
            name: format!("{}: picked by", o.mode.name()),
            color: i,
            dashed: false,
            values: o.connections.iter().map(|&c| c as f64).collect(),
        });
        series.push(Series {
            name: format!("{}: in subsets", o.mode.name()),
            color: i,
            dashed: true,
            values: o.in_subsets.iter().map(|&c| c as f64).collect(),
        });
    }
    per_server(
        path,
        "Connections per server (solid: clients that picked it; dashed: in their subset)",
        "clients (log)",
        true,
        series,
    )
}

/// Load per server (picks served) over the mean.
pub fn load(path: &Path, outcomes: &[Outcome]) -> Drawn {
    let series = outcomes
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let m = o.load_mean().max(1e-9);
            Series {
                name: o.mode.name().to_string(),
                color: i,
                dashed: false,
                values: o.load.iter().map(|&l| l as f64 / m).collect(),
            }
        })
        .collect();
    per_server(
        path,
        "Load per server (picks served / mean)",
        "load / mean",
        false,
        series,
    )
}
