//! `plan.svg`: each stage-1 bucket's target share beside its selected share.

use std::path::Path;

use plotters::prelude::*;

use super::plan::Plan;

const TARGET: RGBColor = RGBColor(31, 119, 180);
const SELECTED: RGBColor = RGBColor(255, 127, 14);

pub fn plot(plan: &Plan, path: &Path) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let n = plan.buckets.len().max(1);
    let top = plan
        .buckets
        .iter()
        .flat_map(|b| [b.target_share, b.selected_share])
        .fold(0.0, f64::max)
        .max(1e-6)
        * 1.15;
    let width = (160 + 18 * n as u32).clamp(640, 2400);
    let root = SVGBackend::new(path, (width, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let caption = format!(
        "Target and selected share per bucket at depth {} ({} {}{})",
        plan.spec.depth,
        plan.totals.selected_size,
        plan.unit,
        if plan.short { ", short" } else { "" }
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..n as f64, 0f64..top)
        .map_err(|e| err(&e))?;
    let labels: Vec<String> = plan.buckets.iter().map(|b| b.label.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n.min(64))
        .x_label_formatter(&|x| labels.get(x.floor() as usize).cloned().unwrap_or_default())
        .x_desc("bucket")
        .y_desc("share")
        .y_label_formatter(&|y| format!("{y:.3}"))
        .draw()
        .map_err(|e| err(&e))?;
    let bars = |pick: fn(&super::plan::Line) -> f64, offset: f64, colour: RGBColor| {
        plan.buckets.iter().enumerate().map(move |(i, b)| {
            let x = i as f64 + offset;
            Rectangle::new([(x, 0.0), (x + 0.4, pick(b))], colour.filled())
        })
    };
    chart
        .draw_series(bars(|b| b.target_share, 0.1, TARGET))
        .map_err(|e| err(&e))?
        .label("target")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], TARGET.filled()));
    chart
        .draw_series(bars(|b| b.selected_share, 0.5, SELECTED))
        .map_err(|e| err(&e))?
        .label("selected")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], SELECTED.filled()));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}
