//! The Pareto scatter plot, as SVG: p95 latency across, cost per 1k requests
//! up (or quality, when no run measured cost), one labelled point per
//! configuration, the Pareto-optimal ones joined by the frontier line and the
//! chosen one ringed. SVG only: the bitmap backend would need a font
//! rasteriser and an image encoder, and SVG opens in any browser.

use std::path::Path;

use plotters::prelude::*;

use super::error::BenchError;
use super::pareto::Analysis;

fn padded(lo: f64, hi: f64) -> (f64, f64) {
    let span = (hi - lo).abs().max(hi.abs() * 0.1).max(1e-9);
    ((lo - span * 0.15).max(0.0), hi + span * 0.15)
}

/// Writes the plot of `analysis` to `path` (`.svg`).
pub fn write_svg(analysis: &Analysis, path: &Path) -> Result<(), BenchError> {
    if path.extension().and_then(|e| e.to_str()) != Some("svg") {
        return Err(BenchError::Usage(format!(
            "--plot {}: only SVG plots are written; name the file *.svg",
            path.display()
        )));
    }
    let fail = |e: String| BenchError::Plot { path: path.display().to_string(), message: e };
    let by_cost = analysis.uses_cost;
    let y_of = |p: &super::pareto::Point| if by_cost { p.cost_per_1k } else { p.quality };
    let points: Vec<(usize, f64, f64)> = analysis
        .points
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((i, p.p95_ms, y_of(p)?)).filter(|(_, x, _)| x.is_finite()))
        .collect();
    if points.is_empty() {
        return Err(fail(
            "no configuration has both a p95 latency and a cost or quality to plot (give `sluice bench` \
             --price-in/--price-out, or reference answers, or run it through a gateway that reports them)"
                .into(),
        ));
    }
    let (x0, x1) = padded(
        points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min),
        points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max),
    );
    let (y0, y1) = padded(
        points.iter().map(|p| p.2).fold(f64::INFINITY, f64::min),
        points.iter().map(|p| p.2).fold(f64::NEG_INFINITY, f64::max),
    );
    let root = SVGBackend::new(path, (900, 620)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let title = if by_cost {
            "Latency against cost (frontier in red)"
        } else {
            "Latency against quality (frontier in red)"
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(20)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc("p95 latency (ms)")
            .y_desc(if by_cost { "cost (USD per 1k requests)" } else { "quality" })
            .draw()?;
        let mut front: Vec<(f64, f64)> =
            points.iter().filter(|(i, _, _)| analysis.points[*i].pareto).map(|(_, x, y)| (*x, *y)).collect();
        front.sort_by(|a, b| a.0.total_cmp(&b.0));
        if front.len() > 1 {
            chart.draw_series(LineSeries::new(front, RED.stroke_width(2)))?;
        }
        for &(i, x, y) in &points {
            let p = &analysis.points[i];
            let color = if p.pareto { RED } else { RGBColor(90, 90, 90) };
            chart.draw_series(std::iter::once(Circle::new((x, y), 6, color.filled())))?;
            if analysis.best == Some(i) {
                chart.draw_series(std::iter::once(Circle::new((x, y), 11, BLUE.stroke_width(2))))?;
            }
            let quality = match (by_cost, p.quality) {
                (true, Some(q)) => format!(" (q {q:.2})"),
                _ => String::new(),
            };
            chart.draw_series(std::iter::once(Text::new(
                format!("{}{quality}", p.label),
                (x, y),
                ("sans-serif", 14).into_font().color(&BLACK).pos(plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Left,
                    plotters::style::text_anchor::VPos::Bottom,
                )),
            )))?;
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| fail(e.to_string()))
}
