//! The bucket-size distribution per depth as SVG (plotters): each depth's bucket sizes,
//! sorted largest first, against their rank, both axes on a log scale.

use std::path::Path;

use plotters::prelude::*;

use super::buckets::BucketReport;

const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

pub fn plot_svg(report: &BucketReport, path: &Path) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let max_rank = report
        .depths
        .iter()
        .map(|d| d.buckets)
        .max()
        .unwrap_or(1)
        .max(2) as f64;
    let max_size = report
        .depths
        .iter()
        .flat_map(|d| d.sizes.first().map(|b| b.size))
        .max()
        .unwrap_or(1)
        .max(2) as f64;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Bucket sizes per depth ({} documents)", report.documents),
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(
            (1f64..max_rank * 1.2).log_scale(),
            (0.8f64..max_size * 1.5).log_scale(),
        )
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("bucket rank (largest first)")
        .y_desc("documents in bucket")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, d) in report.depths.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points = d
            .sizes
            .iter()
            .enumerate()
            .map(|(rank, b)| ((rank + 1) as f64, b.size as f64));
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(format!(
                "depth {}: {} buckets, perplexity {:.1}",
                d.depth, d.buckets, d.perplexity
            ))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
