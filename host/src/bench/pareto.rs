//! `sluice pareto`: several runs (configurations) side by side. A
//! configuration is Pareto-optimal when no other is at least as good on p95
//! latency, cost per 1k requests and quality, and better on one. With
//! constraints (`--max-latency`, `--max-cost`, `--min-quality`) it picks the
//! best feasible configuration by the preferred objective and says why each
//! other one loses. An axis no report measured is left out; a value missing
//! from some reports counts as the worst on its axis.

use std::fmt::Write as _;

use clap::ValueEnum;

use super::report::{Report, render};

/// What "best" means among the configurations that meet the constraints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Objective {
    /// The cheapest (then the best quality, then the fastest).
    #[default]
    Cost,
    /// The lowest p95 latency (then the cheapest, then the best quality).
    Latency,
    /// The best quality (then the cheapest, then the fastest).
    Quality,
}

/// Limits a configuration must meet.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Constraints {
    pub max_latency_ms: Option<f64>,
    pub max_cost_per_1k: Option<f64>,
    pub min_quality: Option<f64>,
}

/// One configuration's place among the others.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub label: String,
    pub p95_ms: f64,
    pub cost_per_1k: Option<f64>,
    pub quality: Option<f64>,
    pub pareto: bool,
    /// Labels of the configurations that dominate this one.
    pub dominated_by: Vec<String>,
    /// Constraints this configuration breaks, in words.
    pub violations: Vec<String>,
}

impl Point {
    pub fn feasible(&self) -> bool {
        self.violations.is_empty()
    }
}

/// The comparison of several configurations.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub points: Vec<Point>,
    /// Index of the best feasible configuration, when constraints were given or
    /// not: without constraints every configuration is feasible.
    pub best: Option<usize>,
    /// Why each configuration other than the best loses, by index.
    pub why_not: Vec<String>,
    pub objective: Objective,
    pub uses_cost: bool,
    pub uses_quality: bool,
}

/// Worst-case stand-ins for missing values.
fn cost_key(p: &Point) -> f64 {
    p.cost_per_1k.unwrap_or(f64::INFINITY)
}
fn quality_key(p: &Point) -> f64 {
    p.quality.unwrap_or(f64::NEG_INFINITY)
}

/// `a` is at least as good as `b` everywhere and better somewhere (within 1%).
fn dominates(a: &Point, b: &Point, cost: bool, quality: bool) -> bool {
    use std::cmp::Ordering::{Greater, Less};
    let axes = [
        Some(rough_cmp(a.p95_ms, b.p95_ms)),
        cost.then(|| rough_cmp(cost_key(a), cost_key(b))),
        quality.then(|| rough_cmp(quality_key(b), quality_key(a))),
    ];
    let axes: Vec<_> = axes.into_iter().flatten().collect();
    !axes.contains(&Greater) && axes.contains(&Less)
}

/// Orders two figures, taking values within 1% of each other as equal:
/// measurements are not more precise than that, and a tie goes to the next key.
fn rough_cmp(a: f64, b: f64) -> std::cmp::Ordering {
    if a == b || (a - b).abs() <= 0.01 * a.abs().max(b.abs()) { std::cmp::Ordering::Equal } else { a.total_cmp(&b) }
}

/// Compares the runs in `reports`.
pub fn analyse(reports: &[Report], constraints: Constraints, objective: Objective) -> Analysis {
    let mut points: Vec<Point> = reports
        .iter()
        .map(|r| Point {
            label: r.label.clone(),
            p95_ms: r.overall.latency_ms.as_ref().map_or(f64::INFINITY, |d| d.p95),
            cost_per_1k: r.overall.cost_per_1k_requests,
            quality: r.overall.quality,
            pareto: false,
            dominated_by: vec![],
            violations: vec![],
        })
        .collect();
    let uses_cost = points.iter().any(|p| p.cost_per_1k.is_some());
    let uses_quality = points.iter().any(|p| p.quality.is_some());
    for i in 0..points.len() {
        let dominated_by: Vec<String> = (0..points.len())
            .filter(|&j| j != i && dominates(&points[j], &points[i], uses_cost, uses_quality))
            .map(|j| points[j].label.clone())
            .collect();
        let p = &mut points[i];
        p.pareto = dominated_by.is_empty();
        p.dominated_by = dominated_by;
        p.violations = violations(p, &constraints);
    }
    let best = choose(&points, objective);
    let why_not = points
        .iter()
        .enumerate()
        .map(
            |(i, p)| {
                if Some(i) == best { "chosen".to_owned() } else { why_not(p, best.map(|b| &points[b]), objective) }
            },
        )
        .collect();
    Analysis { points, best, why_not, objective, uses_cost, uses_quality }
}

/// The limits `p` breaks.
fn violations(p: &Point, constraints: &Constraints) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(max) = constraints.max_latency_ms
        && (p.p95_ms > max || p.p95_ms.is_nan())
    {
        out.push(format!("p95 {:.1} ms > {max} ms", p.p95_ms));
    }
    if let Some(max) = constraints.max_cost_per_1k {
        match p.cost_per_1k {
            Some(c) if c <= max => {}
            Some(c) => out.push(format!("cost {c:.4} > {max} USD/1k requests")),
            None => out.push("cost unknown".into()),
        }
    }
    if let Some(min) = constraints.min_quality {
        match p.quality {
            Some(q) if q >= min => {}
            Some(q) => out.push(format!("quality {q:.3} < {min}")),
            None => out.push("quality unknown".into()),
        }
    }
    out
}

/// The best feasible point for `objective`, ties (within 1%) going to the
/// next figure.
fn choose(points: &[Point], objective: Objective) -> Option<usize> {
    let key = |p: &Point| -> [f64; 3] {
        let (l, c, q) = (p.p95_ms, cost_key(p), -quality_key(p));
        match objective {
            Objective::Cost => [c, q, l],
            Objective::Latency => [l, c, q],
            Objective::Quality => [q, c, l],
        }
    };
    (0..points.len()).filter(|&i| points[i].feasible()).min_by(|&a, &b| {
        key(&points[a])
            .iter()
            .zip(key(&points[b]).iter())
            .map(|(x, y)| rough_cmp(*x, *y))
            .fold(std::cmp::Ordering::Equal, std::cmp::Ordering::then)
    })
}

/// Why `p`, not the chosen point, loses.
fn why_not(p: &Point, best: Option<&Point>, objective: Objective) -> String {
    let mut why = Vec::new();
    if !p.feasible() {
        why.push(format!("infeasible: {}", p.violations.join(", ")));
    }
    if !p.dominated_by.is_empty() {
        why.push(format!("dominated by {}", p.dominated_by.join(", ")));
    }
    if why.is_empty()
        && let Some(b) = best
    {
        why.push(match objective {
            Objective::Cost if rough_cmp(cost_key(p), cost_key(b)).is_gt() => format!("costs more than {}", b.label),
            Objective::Latency if rough_cmp(p.p95_ms, b.p95_ms).is_gt() => {
                format!("slower at p95 than {}", b.label)
            }
            Objective::Quality if rough_cmp(quality_key(p), quality_key(b)).is_lt() => {
                format!("lower quality than {}", b.label)
            }
            _ => format!("ties with {} on {:?} (within 1%) and loses on the next figure", b.label, objective),
        });
    }
    why.join("; ")
}

impl Analysis {
    /// The comparison as Markdown: the table and the verdict.
    pub fn markdown(&self) -> String {
        let fmt = |v: Option<f64>, d: usize| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.d$}"));
        let mut lines = vec![
            ["configuration", "p95 ms", "$/1k req", "quality", "Pareto-optimal", "verdict"].map(str::to_owned).to_vec(),
        ];
        for (i, p) in self.points.iter().enumerate() {
            lines.push(vec![
                p.label.clone(),
                format!("{:.1}", p.p95_ms),
                fmt(p.cost_per_1k, 4),
                fmt(p.quality, 3),
                if p.pareto { "yes".into() } else { "no".into() },
                if Some(i) == self.best { "**best**".into() } else { self.why_not[i].clone() },
            ]);
        }
        let mut out = render(&lines, true);
        let axes = [Some("p95 latency"), self.uses_cost.then_some("cost"), self.uses_quality.then_some("quality")];
        let axes: Vec<&str> = axes.into_iter().flatten().collect();
        let _ = writeln!(out, "\nPareto front over {}.", axes.join(", "));
        match self.best {
            Some(b) => {
                let _ = writeln!(
                    out,
                    "Best feasible configuration ({:?} first): **{}**.",
                    self.objective, self.points[b].label
                );
            }
            None => {
                let _ = writeln!(out, "No configuration meets the constraints.");
            }
        }
        out
    }
}
