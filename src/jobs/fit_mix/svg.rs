//! `fit.svg`: predicted against measured, one panel per metric (up to three across), with the
//! diagonal where a perfect law would put every run; held-out runs drawn apart from the fitted
//! ones.

use std::path::Path;

use plotters::prelude::*;

const FITTED: RGBColor = RGBColor(31, 119, 180);
const HELD_OUT: RGBColor = RGBColor(214, 39, 40);
const PANEL: (u32, u32) = (480, 420);

/// One metric's panel.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    /// `(measured, predicted, held out)` per run.
    pub points: Vec<(f64, f64, bool)>,
}

pub fn plot(panels: &[Panel], path: &Path) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let cols = panels.len().clamp(1, 3);
    let rows = panels.len().div_ceil(cols).max(1);
    let size = (PANEL.0 * cols as u32, PANEL.1 * rows as u32 + 36);
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(
            "fitted mixing law: predicted against measured (diagonal: a perfect fit)",
            ("sans-serif", 18),
        )
        .map_err(|e| err(&e))?;
    let areas = root.split_evenly((rows, cols));
    for (panel, area) in panels.iter().zip(areas) {
        draw(panel, &area).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
}

fn draw<DB: DrawingBackend>(
    panel: &Panel,
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (lo, hi) = panel
        .points
        .iter()
        .flat_map(|(m, p, _)| [*m, *p])
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
    let (lo, hi) = if lo.is_finite() && hi > lo {
        let pad = 0.06 * (hi - lo);
        (lo - pad, hi + pad)
    } else if lo.is_finite() {
        (lo - 1.0, lo + 1.0)
    } else {
        (0.0, 1.0)
    };
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(lo..hi, lo..hi)?;
    let digits = if hi - lo < 0.05 { 4 } else { 3 };
    let fmt = move |v: &f64| format!("{v:.digits$}");
    chart
        .configure_mesh()
        .x_desc("measured")
        .y_desc("predicted")
        .x_labels(5)
        .y_labels(5)
        .x_label_formatter(&fmt)
        .y_label_formatter(&fmt)
        .draw()?;
    chart.draw_series(DashedLineSeries::new(
        [(lo, lo), (hi, hi)],
        6,
        4,
        BLACK.mix(0.5).stroke_width(1),
    ))?;
    let fitted = panel.points.iter().filter(|p| !p.2);
    chart
        .draw_series(fitted.map(|(m, p, _)| Circle::new((*m, *p), 3, FITTED.mix(0.7).filled())))?
        .label("fitted runs")
        .legend(|(x, y)| Circle::new((x + 6, y), 3, FITTED.filled()));
    if panel.points.iter().any(|p| p.2) {
        let held = panel.points.iter().filter(|p| p.2);
        chart
            .draw_series(held.map(|(m, p, _)| TriangleMarker::new((*m, *p), 6, HELD_OUT.filled())))?
            .label("held out")
            .legend(|(x, y)| TriangleMarker::new((x + 6, y), 6, HELD_OUT.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
}
