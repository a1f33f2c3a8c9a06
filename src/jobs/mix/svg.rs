//! `plan.svg`: each stage-1 bucket's target share beside its selected share.

use std::path::Path;

use plotters::prelude::*;

use super::plan::Plan;

const TARGET: RGBColor = RGBColor(31, 119, 180);
const SELECTED: RGBColor = RGBColor(255, 127, 14);

/// Buckets drawn as bars in code order at most; beyond, a distribution by rank.
const MAX_BARS: usize = 64;

pub fn plot(plan: &Plan, path: &Path) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let n = plan.buckets.len().max(1);
    // Headroom above the tallest bar keeps the legend off the bars.
    let top = plan
        .buckets
        .iter()
        .flat_map(|b| [b.target_share, b.selected_share])
        .fold(0.0, f64::max)
        .max(1e-6)
        * 1.4;
    let bars = n <= MAX_BARS;
    let width = if bars {
        (160 + 18 * n as u32).clamp(640, 2400)
    } else {
        960
    };
    let root = SVGBackend::new(path, (width, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let caption = format!(
        "{} buckets at depth {}: selected {} of a budget of {} {}{}",
        plan.buckets.len(),
        plan.spec.depth,
        number(plan.totals.selected_size),
        number(plan.totals.budget),
        plan.unit,
        if plan.short { " (short)" } else { "" }
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(72)
        .build_cartesian_2d(0f64..n as f64, 0f64..top)
        .map_err(|e| err(&e))?;
    // Shares of a thousand buckets are small: ticks in scientific notation there.
    let share = |y: &f64| {
        if top < 0.01 {
            format!("{y:.1e}")
        } else {
            format!("{y:.3}")
        }
    };
    if bars {
        let labels: Vec<String> = plan.buckets.iter().map(|b| b.label.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| labels.get(x.floor() as usize).cloned().unwrap_or_default())
            .x_desc("bucket")
            .y_desc("share")
            .y_label_formatter(&share)
            .draw()
            .map_err(|e| err(&e))?;
        let bar = |pick: fn(&super::plan::Line) -> f64, offset: f64, colour: RGBColor| {
            plan.buckets.iter().enumerate().map(move |(i, b)| {
                let x = i as f64 + offset;
                Rectangle::new([(x, 0.0), (x + 0.4, pick(b))], colour.filled())
            })
        };
        chart
            .draw_series(bar(|b| b.target_share, 0.1, TARGET))
            .map_err(|e| err(&e))?
            .label("target")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], TARGET.filled()));
        chart
            .draw_series(bar(|b| b.selected_share, 0.5, SELECTED))
            .map_err(|e| err(&e))?
            .label("selected")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], SELECTED.filled()));
    } else {
        // Too many buckets to name: buckets ranked by target share, the target as a line
        // and each bucket's selected share as a dot, so misses stand out.
        let mut ranked: Vec<&super::plan::Line> = plan.buckets.iter().collect();
        ranked.sort_by(|a, b| b.target_share.total_cmp(&a.target_share));
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("bucket rank by target share")
            .y_desc("share")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&share)
            .draw()
            .map_err(|e| err(&e))?;
        chart
            .draw_series(LineSeries::new(
                ranked
                    .iter()
                    .enumerate()
                    .map(|(i, b)| (i as f64 + 0.5, b.target_share)),
                TARGET.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label("target")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], TARGET.stroke_width(2)));
        chart
            .draw_series(ranked.iter().enumerate().map(|(i, b)| {
                Circle::new((i as f64 + 0.5, b.selected_share), 2, SELECTED.filled())
            }))
            .map_err(|e| err(&e))?
            .label("selected")
            .legend(|(x, y)| Circle::new((x + 6, y), 3, SELECTED.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

/// A size for the caption: whole numbers as such, large or fractional ones with 4 digits.
fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        format!("{x:.4e}")
    }
}
