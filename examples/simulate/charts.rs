//! The simulator's SVG charts (plotters, SVG backend only).

use std::error::Error;
use std::path::Path;
use std::time::Duration;

use plotters::chart::SeriesAnno;
use plotters::coord::ranged1d::SegmentValue;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::config::Config;
use crate::report::Outcome;

type Drawn = Result<(), Box<dyn Error>>;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Tableau 10 (matplotlib's `tab10`), then black: eleven colours distinct on white.
const PALETTE: [RGBColor; 11] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(0, 0, 0),
];

/// The policy a row runs: `ring` for the bounded-load row `ring+bound 1.25` (as `main.rs`
/// names those rows).
fn base(policy: &str) -> &str {
    policy.split_once('+').map_or(policy, |(base, _)| base)
}

/// Whether the row is a policy's bounded-load row.
fn bounded(policy: &str) -> bool {
    base(policy) != policy
}

/// Whether the row's policy places requests by key.
fn hashing(policy: &str) -> bool {
    crate::policies::find::<usize>(base(policy)).is_some_and(|p| p.hashing)
}

/// How one row's series is drawn: a colour per policy, shared by its bounded-load row, which
/// is dashed; once the palette's colours are used up, they come back dotted (and long-dashed
/// for bounded rows), so every row of the table looks different.
#[derive(Clone, Copy)]
struct Look {
    color: RGBColor,
    /// Dash and gap lengths in pixels; `None`: a solid line.
    dash: Option<(u32, u32)>,
}

impl Look {
    /// The look of every outcome, in order.
    fn of(outcomes: &[Outcome]) -> Vec<Look> {
        let mut policies: Vec<&str> = Vec::new();
        outcomes
            .iter()
            .map(|o| {
                let name = base(&o.policy);
                let i = policies.iter().position(|&p| p == name).unwrap_or_else(|| {
                    policies.push(name);
                    policies.len() - 1
                });
                let round = i / PALETTE.len();
                let dash = match (round, bounded(&o.policy)) {
                    (0, false) => None,
                    (0, true) => Some((9, 5)),
                    (_, false) => Some((2, 4)),
                    (_, true) => Some((16, 4)),
                };
                Look {
                    color: PALETTE[i % PALETTE.len()],
                    dash,
                }
            })
            .collect()
    }

    fn style(self) -> ShapeStyle {
        self.color.stroke_width(2)
    }

    /// Draws `points` in this look on `chart`.
    fn draw<'c, 'a: 'c, DB: DrawingBackend + 'a, X, Y>(
        self,
        chart: &'c mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
        points: Vec<(X::ValueType, Y::ValueType)>,
    ) -> Result<&'c mut SeriesAnno<'a, DB>, DrawingAreaErrorKind<DB::ErrorType>>
    where
        X: Ranged,
        Y: Ranged,
        X::ValueType: Clone + 'static,
        Y::ValueType: Clone + 'static,
    {
        match self.dash {
            None => chart.draw_series(LineSeries::new(points, self.style())),
            Some((on, off)) => {
                chart.draw_series(DashedLineSeries::new(points, on, off, self.style()))
            }
        }
    }

    /// The legend's sample of this look, starting at `(x, y)`.
    fn sample<DB: DrawingBackend>(self, (x, y): (i32, i32)) -> DynElement<'static, DB, (i32, i32)> {
        let line = vec![(x, y), (x + 30, y)];
        match self.dash {
            None => PathElement::new(line, self.style()).into_dyn(),
            Some((on, off)) => DashedPathElement::new(line, on, off, self.style()).into_dyn(),
        }
    }
}

/// Latency per policy: the CDF (log latency axis) beside the tail (fraction of requests
/// slower than a latency, both axes log), where p99 and p99.9 differ.
pub fn latency_cdf(path: &Path, outcomes: &[Outcome]) -> Drawn {
    let root = SVGBackend::new(path, (1100, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "Latency per policy (the same arrivals for every policy; dashed: with bounded loads)",
        ("sans-serif", 20),
    )?;
    let (left, right) = root.split_horizontally(550);
    let looks = Look::of(outcomes);
    let lo = outcomes
        .iter()
        .map(|o| ms(o.quantile(0.001)))
        .fold(f64::INFINITY, f64::min)
        .max(0.01);
    let hi = outcomes
        .iter()
        .map(|o| ms(o.quantile(1.0)))
        .fold(lo * 10.0, f64::max);
    // Evenly spaced quantiles, plus a log-spaced run into the tail (p99, p99.9, p99.99).
    let mut qs: Vec<f64> = (0..=200).map(|j| j as f64 / 200.0).collect();
    qs.extend((0..=120).map(|j| 1.0 - 10f64.powf(-1.0 - j as f64 / 40.0)));
    qs.sort_by(f64::total_cmp);

    let mut cdf = ChartBuilder::on(&left)
        .caption("CDF", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..1f64)?;
    cdf.configure_mesh()
        .x_desc("latency, ms")
        .y_desc("fraction of requests at or below")
        .x_label_formatter(&|x| format!("{x}"))
        .draw()?;
    for (o, &look) in outcomes.iter().zip(&looks) {
        let points = qs.iter().map(|&q| (ms(o.quantile(q)).max(lo), q)).collect();
        look.draw(&mut cdf, points)?
            .label(o.policy.as_str())
            .legend(move |at| look.sample(at));
    }
    // Lower right: no curve is there (below 0.75 only at latencies under about 30 ms).
    cdf.configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .legend_area_size(40)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;

    let floor = 1e-4;
    let mut tail = ChartBuilder::on(&right)
        .caption("tail", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((lo..hi).log_scale(), (floor..1f64).log_scale())?;
    tail.configure_mesh()
        .x_desc("latency, ms")
        .y_desc("fraction of requests slower")
        .x_label_formatter(&|x| format!("{x}"))
        .y_label_formatter(&|y| format!("{y}"))
        .draw()?;
    for (o, &look) in outcomes.iter().zip(&looks) {
        let points = qs
            .iter()
            .filter(|&&q| 1.0 - q >= floor)
            .map(|&q| (ms(o.quantile(q)).max(lo), 1.0 - q))
            .collect();
        look.draw(&mut tail, points)?;
    }
    root.present()?;
    Ok(())
}

/// In-flight requests per backend over time, one panel per policy, coloured by role.
pub fn load_over_time(path: &Path, config: &Config, outcomes: &[Outcome]) -> Drawn {
    let cols = 2;
    let rows = outcomes.len().div_ceil(cols).max(1);
    let root = SVGBackend::new(path, (1000, 40 + 260 * rows as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "In flight per backend over time (grey: normal, red: 3x slow from the start, \
         orange: turns slow at 50%, black: fails at 30%, green: joins at 70%)",
        ("sans-serif", 14),
    )?;
    let (failing, slowing) = config.victims();
    let role = |b: usize| -> (RGBColor, u32) {
        if b >= config.backends {
            (RGBColor(44, 160, 44), 2)
        } else if config.fail && b == failing {
            (BLACK, 2)
        } else if config.slowdown.is_some() && b == slowing {
            (RGBColor(255, 127, 14), 2)
        } else if b >= config.backends - config.slow_backends {
            (RGBColor(214, 39, 40), 1)
        } else {
            (RGBColor(160, 160, 160), 1)
        }
    };
    for (panel, o) in root.split_evenly((rows, cols)).iter().zip(outcomes) {
        let end = o
            .load
            .last()
            .map_or(1.0, |(t, _)| t.as_secs_f64())
            .max(1e-3);
        let top = o
            .load
            .iter()
            .flat_map(|(_, row)| row.iter().copied())
            .max()
            .unwrap_or(0)
            .max(1) as f64;
        let mut chart = ChartBuilder::on(panel)
            .caption(o.policy.as_str(), ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(40)
            .build_cartesian_2d(0f64..end, 0f64..top * 1.05)?;
        chart
            .configure_mesh()
            .x_desc("simulated time, s")
            .y_labels(5)
            .y_label_formatter(&|y| format!("{y:.0}"))
            .x_labels(6)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()?;
        let backends = o.load.iter().map(|(_, r)| r.len()).max().unwrap_or(0);
        // Normal backends first, so the highlighted ones are drawn on top.
        let mut order: Vec<usize> = (0..backends).collect();
        order.sort_by_key(|&b| role(b).1);
        for b in order {
            let (c, width) = role(b);
            let points = o
                .load
                .iter()
                .map(|(t, row)| (t.as_secs_f64(), row.get(b).copied().unwrap_or(0) as f64));
            chart.draw_series(LineSeries::new(points, c.stroke_width(width)))?;
        }
    }
    root.present()?;
    Ok(())
}

/// Keys moved by each membership change, per policy, against the minimum (black tick).
///
/// Request policies move most keys (their axis runs to 100%), hashing policies a few percent:
/// on one axis their bars would be a tenth of its width, and what matters for them, how far
/// a bar ends from its tick, would not show. So each family gets its own panels with its own
/// linear axis (bar lengths stay proportional to the keys moved, and 0% still shows, which a
/// log axis could not), and every bar is labelled with its value.
pub fn keys_moved(path: &Path, outcomes: &[Outcome]) -> Drawn {
    let mut changes: Vec<&'static str> = Vec::new();
    for o in outcomes {
        for m in &o.moves {
            if !changes.contains(&m.change) {
                changes.push(m.change);
            }
        }
    }
    let looks = Look::of(outcomes);
    let families: Vec<(&str, Vec<usize>)> =
        [("request policies", false), ("hashing policies", true)]
            .into_iter()
            .map(|(family, keyed)| {
                let rows = (0..outcomes.len())
                    .filter(|&i| {
                        !outcomes[i].moves.is_empty() && hashing(&outcomes[i].policy) == keyed
                    })
                    .collect();
                (family, rows)
            })
            .filter(|(_, rows): &(_, Vec<usize>)| !rows.is_empty())
            .collect();
    // Pixels: the width, the names' column, a bar's row, a family's title, captions and axis.
    let (width, names_width, row_height, frame) = (1000u32, 150u32, 26u32, 100u32);
    let heights: Vec<u32> = families
        .iter()
        .map(|(_, rows)| frame + row_height * rows.len() as u32)
        .collect();
    let root = SVGBackend::new(path, (width, 40 + heights.iter().sum::<u32>())).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "Probe keys routed elsewhere after a membership change (bar) vs the minimum (black tick)",
        ("sans-serif", 15),
    )?;
    let breaks: Vec<u32> = heights
        .iter()
        .scan(0, |y, h| {
            *y += h;
            Some(*y)
        })
        .collect();
    let areas = root.split_by_breakpoints(Vec::<u32>::new(), &breaks[..breaks.len() - 1]);
    for ((family, rows), area) in families.iter().zip(&areas) {
        let largest = rows
            .iter()
            .flat_map(|&i| &outcomes[i].moves)
            .map(|m| m.moved.max(m.minimum) * 100.0)
            .fold(0.0, f64::max);
        let end = axis_end(largest);
        let area = area.titled(
            &format!("{family}: axis 0 to {end}%"),
            ("sans-serif", 15).into_font().style(FontStyle::Bold),
        )?;
        // The same plotting width for every change; the first panel also holds the names.
        let plot_width = (width - names_width) / changes.len().max(1) as u32;
        let columns: Vec<u32> = (1..changes.len() as u32)
            .map(|j| names_width + j * plot_width)
            .collect();
        let panels = area.split_by_breakpoints(&columns, Vec::<u32>::new());
        for (j, (panel, change)) in panels.iter().zip(&changes).enumerate() {
            let first = j == 0;
            let n = rows.len() as i32;
            let mut chart = ChartBuilder::on(panel)
                .caption(format!("on {change}"), ("sans-serif", 14))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(if first { names_width } else { 0 })
                // n rows: 0 to n - 1.
                .build_cartesian_2d(0f64..end, (0..n - 1).into_segmented())?;
            chart
                .configure_mesh()
                .disable_y_mesh()
                .x_desc("% of keys moved")
                .x_labels(11)
                .x_label_formatter(&|x| format!("{}", (x * 10.0).round() / 10.0))
                .y_labels(rows.len().max(1))
                .y_label_formatter(&|v| match v {
                    SegmentValue::CenterOf(row) if first => rows
                        .get((n - 1 - *row) as usize)
                        .map(|&i| outcomes[i].policy.clone())
                        .unwrap_or_default(),
                    _ => String::new(),
                })
                .draw()?;
            for (k, &i) in rows.iter().enumerate() {
                let Some(m) = outcomes[i].moves.iter().find(|m| m.change == *change) else {
                    continue;
                };
                let (moved, minimum) = (m.moved * 100.0, m.minimum * 100.0);
                // The first policy at the top.
                let row = n - 1 - k as i32;
                let (y0, y1) = (SegmentValue::Exact(row), SegmentValue::Exact(row + 1));
                // A bounded-load row: its policy's colour, lighter inside.
                let color = looks[i].color;
                let fill = if bounded(&outcomes[i].policy) {
                    lighter(color)
                } else {
                    color
                };
                let mut bar =
                    Rectangle::new([(0.0, y0.clone()), (moved, y1.clone())], fill.filled());
                bar.set_margin(4, 4, 0, 0);
                let mut outline = Rectangle::new(
                    [(0.0, y0.clone()), (moved, y1.clone())],
                    color.stroke_width(2),
                );
                outline.set_margin(4, 4, 0, 0);
                let tick =
                    PathElement::new(vec![(minimum, y0), (minimum, y1)], BLACK.stroke_width(3));
                // The value past the bar and its tick, or inside the bar where no room is left.
                let inside = moved > end * 0.8;
                let (at, anchor, ink) = if inside {
                    (moved - end * 0.01, HPos::Right, &WHITE)
                } else {
                    (moved.max(minimum) + end * 0.012, HPos::Left, &BLACK)
                };
                let label = Text::new(
                    format!("{moved:.1}%"),
                    (at, SegmentValue::CenterOf(row)),
                    ("sans-serif", 12)
                        .into_font()
                        .color(ink)
                        .pos(Pos::new(anchor, VPos::Center)),
                );
                chart.draw_series([
                    bar.into_dyn(),
                    outline.into_dyn(),
                    tick.into_dyn(),
                    label.into_dyn(),
                ])?;
            }
        }
    }
    root.present()?;
    Ok(())
}

/// `color` mixed half and half with white.
fn lighter(RGBColor(r, g, b): RGBColor) -> RGBColor {
    let half = |c: u8| ((u16::from(c) + 255) / 2) as u8;
    RGBColor(half(r), half(g), half(b))
}

/// Where an axis of percentages ends: 100 for the request policies, else a round number a
/// fifth or more above `largest`, room for the labels past the bars.
fn axis_end(largest: f64) -> f64 {
    let end = (largest * 1.2).max(1.0);
    if end > 50.0 {
        return 100.0;
    }
    let step = if end <= 10.0 {
        1.0
    } else if end <= 20.0 {
        2.0
    } else {
        5.0
    };
    (end / step).ceil() * step
}

/// The failover of the two-tier scenario (`--tiers`): the DR tier's share of the picks at each
/// phase, per policy, against Envoy's arithmetic (black, dashed), beside the p99 latency.
pub fn tiers_failover(
    path: &Path,
    tiers: &crate::tiers::Tiers,
    runs: &[(String, Vec<crate::tiers::Measured>)],
) -> Drawn {
    let labels: Vec<String> = runs
        .first()
        .map(|(_, phases)| phases.iter().map(|m| m.label.clone()).collect())
        .unwrap_or_default();
    let n = labels.len().max(1);
    let root = SVGBackend::new(path, (1100, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "Primary tier failing step by step: DR tier's share and p99 (zone-aware, callers 50/50)",
        ("sans-serif", 15),
    )?;
    let (left, right) = root.split_horizontally(550);
    let label_of = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-9 && i >= 0.0 {
            labels
                .get(i as usize)
                .map(|l| {
                    l.replace(" down", "")
                        .replace(", 20% degraded", " +20% degr.")
                })
                .unwrap_or_default()
        } else {
            String::new()
        }
    };
    let x_range = -0.3f64..(n as f64 - 0.7);
    let mut share = ChartBuilder::on(&left)
        .caption("DR share of the picks (%)", ("sans-serif", 14))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(45)
        .build_cartesian_2d(x_range.clone(), 0f64..100.0)?;
    share
        .configure_mesh()
        .x_labels(n)
        .x_label_formatter(&label_of)
        .x_label_style(("sans-serif", 11))
        .x_desc("primary backends down")
        .y_desc("%")
        .draw()?;
    let tail_max = runs
        .iter()
        .flat_map(|(_, p)| p)
        .map(|m| ms(m.quantile(0.99)))
        .fold(1.0, f64::max);
    let mut tail = ChartBuilder::on(&right)
        .caption("p99 latency (ms)", ("sans-serif", 14))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(45)
        .build_cartesian_2d(x_range, 0f64..tail_max * 1.15)?;
    tail.configure_mesh()
        .x_labels(n)
        .x_label_formatter(&label_of)
        .x_label_style(("sans-serif", 11))
        .x_desc("primary backends down")
        .y_desc("ms")
        .draw()?;
    for (k, (policy, phases)) in runs.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let points: Vec<(f64, f64)> = phases
            .iter()
            .enumerate()
            .map(|(i, m)| (i as f64, m.dr_share() * 100.0))
            .collect();
        share
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(policy.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 30, y)], color));
        share.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 4, color.filled())),
        )?;
        let points: Vec<(f64, f64)> = phases
            .iter()
            .enumerate()
            .map(|(i, m)| (i as f64, ms(m.quantile(0.99))))
            .collect();
        tail.draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?;
        tail.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 4, color.filled())),
        )?;
    }
    if let Some((_, phases)) = runs.first() {
        let envoy: Vec<(f64, f64)> = phases
            .iter()
            .enumerate()
            .map(|(i, m)| (i as f64, m.envoy_dr_share(tiers.primary) * 100.0))
            .collect();
        share
            .draw_series(DashedLineSeries::new(envoy, 6, 4, BLACK.stroke_width(2)))?
            .label("Envoy's arithmetic")
            .legend(|(x, y)| DashedPathElement::new(vec![(x, y), (x + 30, y)], 6, 4, BLACK));
    }
    share
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// The zone table of the two-tier scenario (`--tiers`): per fleet, routing and policy, the
/// share of the picks that crossed zones beside the busiest primary backend's load over the
/// mean.
pub fn tiers_zones(path: &Path, rows: &[crate::tiers::ZoneRow]) -> Drawn {
    let n = rows.len().max(1) as i32;
    // Wide enough for the longest label, "callers 50/50, 4 of zone a's 10 down, load-aware
    // (reports), ring".
    let (names_width, row_height) = (380u32, 22u32);
    let root = SVGBackend::new(path, (1150, 90 + row_height * n as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "Zone awareness: picks that crossed zones, and load max/mean over the primary backends up",
        ("sans-serif", 15),
    )?;
    let (left, right) = root.split_horizontally(names_width + 385);
    let max_ratio = rows
        .iter()
        .map(|r| r.measured.max_over_mean())
        .fold(1.0, f64::max);
    let panels: [(&DrawingArea<SVGBackend, _>, &str, f64, bool); 2] = [
        (&left, "cross-zone share (%)", 100.0, true),
        (&right, "load max/mean", (max_ratio * 1.15).ceil(), false),
    ];
    for (area, caption, end, first) in panels {
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 14))
            .margin(8)
            .x_label_area_size(25)
            .y_label_area_size(if first { names_width } else { 0 })
            .build_cartesian_2d(0f64..end, (0..n - 1).into_segmented())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows.len().max(1))
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(row) if first => rows
                    .get((n - 1 - *row) as usize)
                    .map(|r| format!("{}, {}, {}", r.fleet, r.routing.name(), r.policy))
                    .unwrap_or_default(),
                _ => String::new(),
            })
            .draw()?;
        for (k, r) in rows.iter().enumerate() {
            let value = if first {
                r.measured.cross_share() * 100.0
            } else {
                r.measured.max_over_mean()
            };
            let row = n - 1 - k as i32;
            let color = PALETTE[crate::tiers::Routing::ALL
                .iter()
                .position(|&x| x == r.routing)
                .unwrap_or(0)];
            let mut bar = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(row)),
                    (value, SegmentValue::Exact(row + 1)),
                ],
                color.filled(),
            );
            bar.set_margin(3, 3, 0, 0);
            let label = Text::new(
                if first {
                    format!("{value:.1}%")
                } else {
                    format!("{value:.2}")
                },
                (value + end * 0.01, SegmentValue::CenterOf(row)),
                ("sans-serif", 11)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            );
            chart.draw_series([bar.into_dyn(), label.into_dyn()])?;
        }
    }
    root.present()?;
    Ok(())
}
