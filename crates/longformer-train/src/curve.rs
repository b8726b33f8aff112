//! The training-curve picture: loss (train, dev) and accuracy (train, dev, chance) against the
//! optimizer step, as a self-contained SVG file.

use std::fmt::Write as _;

use crate::metrics::History;

const WIDTH: f64 = 900.0;
const PANEL_HEIGHT: f64 = 300.0;
const MARGIN_LEFT: f64 = 70.0;
const MARGIN_RIGHT: f64 = 150.0;
const MARGIN_TOP: f64 = 40.0;
const GAP: f64 = 70.0;

struct Series<'a> {
    label: &'a str,
    color: &'a str,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

const TRAIN_COLOR: &str = "#1f77b4";
const DEV_COLOR: &str = "#d62728";

impl<'a> Series<'a> {
    fn solid(label: &'a str, color: &'a str, points: impl Iterator<Item = (f64, f64)>) -> Self {
        Self {
            label,
            color,
            dashed: false,
            points: points.collect(),
        }
    }
}

/// An SVG document with two panels (loss above, accuracy below). `chance` draws a dashed line.
pub fn training_curve_svg(history: &History, chance: Option<f64>, title: &str) -> String {
    let train_loss = Series::solid(
        "train loss",
        TRAIN_COLOR,
        history.train.iter().map(|p| (p.step as f64, p.loss)),
    );
    let dev_loss = Series::solid(
        "dev loss",
        DEV_COLOR,
        history.dev.iter().map(|p| (p.step as f64, p.loss)),
    );
    let train_acc = Series::solid(
        "train accuracy",
        TRAIN_COLOR,
        history.train.iter().map(|p| (p.step as f64, p.accuracy)),
    );
    let dev_acc = Series::solid(
        "dev accuracy",
        DEV_COLOR,
        history.dev.iter().map(|p| (p.step as f64, p.accuracy)),
    );
    let max_step = history
        .train
        .iter()
        .map(|p| p.step)
        .chain(history.dev.iter().map(|p| p.step))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut accuracy = vec![train_acc, dev_acc];
    if let Some(chance) = chance {
        accuracy.push(Series {
            label: "chance",
            color: "#7f7f7f",
            dashed: true,
            points: vec![(0.0, chance), (max_step, chance)],
        });
    }
    let height = MARGIN_TOP + 2.0 * PANEL_HEIGHT + GAP + 50.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    panel(
        &mut svg,
        MARGIN_TOP,
        "loss",
        &[train_loss, dev_loss],
        max_step,
        None,
    );
    panel(
        &mut svg,
        MARGIN_TOP + PANEL_HEIGHT + GAP,
        "accuracy",
        &accuracy,
        max_step,
        Some((0.0, 1.0)),
    );
    svg.push_str("</svg>\n");
    svg
}

fn panel(
    svg: &mut String,
    top: f64,
    name: &str,
    series: &[Series],
    max_step: f64,
    fixed: Option<(f64, f64)>,
) {
    let left = MARGIN_LEFT;
    let plot_width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let (lo, hi) = fixed.unwrap_or_else(|| {
        let values = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
        let (lo, hi) = values
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
        if lo.is_finite() && hi > lo {
            (lo.min(0.0), hi * 1.05)
        } else {
            (0.0, 1.0)
        }
    });
    let x = |step: f64| left + plot_width * step / max_step;
    let y = |v: f64| top + PANEL_HEIGHT * (1.0 - (v - lo) / (hi - lo));
    let _ = writeln!(
        svg,
        r##"<rect x="{left}" y="{top}" width="{plot_width}" height="{PANEL_HEIGHT}" fill="none" stroke="#333"/>"##
    );
    for i in 0..=4 {
        let v = lo + (hi - lo) * f64::from(i) / 4.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{v:.3}</text>"##,
            left + plot_width,
            left - 6.0,
            y(v) + 4.0,
            y = y(v),
        );
        let s = max_step * f64::from(i) / 4.0;
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{s:.0}</text>"#,
            x(s),
            top + PANEL_HEIGHT + 16.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{}" text-anchor="middle">optimizer step</text><text x="16" y="{:.1}" transform="rotate(-90 16 {:.1})" text-anchor="middle">{name}</text>"#,
        left + plot_width / 2.0,
        top + PANEL_HEIGHT + 34.0,
        top + PANEL_HEIGHT / 2.0,
        top + PANEL_HEIGHT / 2.0,
    );
    for (i, s) in series.iter().enumerate() {
        let dash = if s.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        if !s.points.is_empty() {
            let points: Vec<String> = s
                .points
                .iter()
                .filter(|p| p.1.is_finite())
                .map(|&(step, v)| format!("{:.1},{:.1}", x(step), y(v.clamp(lo, hi))))
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.8"{dash} points="{}"/>"#,
                s.color,
                points.join(" ")
            );
        }
        let ly = top + 16.0 + 18.0 * i as f64;
        let lx = left + plot_width + 12.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
            lx + 22.0,
            s.color,
            lx + 28.0,
            ly + 4.0,
            escape(s.label)
        );
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{DevPoint, TrainPoint};

    #[test]
    fn draws_every_series() {
        let history = History {
            train: (1..=3)
                .map(|s| TrainPoint {
                    step: s * 10,
                    epoch: 0.0,
                    loss: 2.0 / s as f64,
                    accuracy: 0.2 * s as f64,
                    lr: 1e-3,
                    examples_per_s: 1.0,
                    grad_norm: 1.0,
                    skipped_steps: 0,
                    loss_scale: None,
                })
                .collect(),
            dev: vec![DevPoint {
                step: 30,
                loss: 0.9,
                accuracy: 0.5,
            }],
        };
        let svg = training_curve_svg(&history, Some(0.25), "run <1>");
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<polyline").count(), 5);
        assert!(svg.contains("run &lt;1&gt;"));
        assert!(svg.contains("chance"));
    }
}
