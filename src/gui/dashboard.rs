//! The Dashboard: replication lag (the RPO) over time per database against
//! the RPO target with breaches marked, bytes copied per second and
//! requests per minute; RTO and RPO of every failover and drill against
//! their targets.

use eframe::egui::{self, RichText};
use egui_plot::{HLine, Legend, Line, MarkerShape, Plot, Points};

use super::help::Term;
use super::widgets::{self, human_bytes};
use crate::cost::dollars;
use crate::engine::Snapshot;
use crate::engine::history::Series;

/// How far back the plots look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Window {
    FiveMinutes,
    FifteenMinutes,
    Hour,
}

impl Window {
    fn seconds(self) -> f64 {
        match self {
            Window::FiveMinutes => 300.0,
            Window::FifteenMinutes => 900.0,
            Window::Hour => 3600.0,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Window::FiveMinutes => "5 min",
            Window::FifteenMinutes => "15 min",
            Window::Hour => "1 hour",
        }
    }
}

/// The tab's own state.
pub struct DashboardTab {
    window: Window,
}

impl Default for DashboardTab {
    fn default() -> Self {
        DashboardTab {
            window: Window::FiveMinutes,
        }
    }
}

/// The points of `series` within the window, as seconds before `now_s`.
fn recent(series: &Series, now_s: f64, window_s: f64) -> Vec<[f64; 2]> {
    let from = now_s - window_s;
    let start = series.partition_point(|p| p[0] < from);
    series
        .range(start..)
        .map(|p| [p[0] - now_s, p[1]])
        .collect()
}

impl DashboardTab {
    pub fn ui(&mut self, ui: &mut egui::Ui, snapshot: &Snapshot) {
        widgets::section(
            ui,
            "Dashboard",
            "RPO is how far each replica trails its home: the seconds of acknowledged writes a failover now would lose.",
        );
        let target = snapshot.group.as_ref().map_or(1.0, |g| g.rpo_target_s);
        let now_s = crate::workload::now_us() as f64 / 1e6;
        let window_s = self.window.seconds();
        let history = &snapshot.history;
        let worst = snapshot
            .flows
            .iter()
            .filter_map(|f| f.status.lag_s)
            .fold(None, |w: Option<f64>, l| Some(w.map_or(l, |w| w.max(l))));
        // Each database's lag within the window, and its breaches, once a frame.
        let mut lags: Vec<_> = history
            .lag_s
            .iter()
            .map(|(db, series)| {
                let points = recent(series, now_s, window_s);
                let marks: Vec<[f64; 2]> =
                    points.iter().filter(|p| p[1] > target).copied().collect();
                (db, points, marks)
            })
            .collect();
        let breaches: usize = lags.iter().map(|(_, _, marks)| marks.len()).sum();
        // A thousand lines are no plot: those that lagged most.
        let plotted_of = lags.len();
        if plotted_of > PLOTTED_DATABASES {
            let worst = |points: &[[f64; 2]]| points.iter().map(|p| p[1]).fold(0.0, f64::max);
            lags.sort_by(|a, b| worst(&b.1).total_cmp(&worst(&a.1)));
            lags.truncate(PLOTTED_DATABASES);
        }
        let in_sync = snapshot
            .flows
            .iter()
            .filter(|f| f.state_label() == "In sync")
            .count();
        ui.horizontal_wrapped(|ui| {
            stat(ui, "Worst lag now", &widgets::lag(worst)).on_hover_text(Term::Lag.tip());
            stat(ui, "RPO target", &format!("{target} s")).on_hover_text(Term::Rpo.tip());
            stat(
                ui,
                &format!("Breaches, last {}", self.window.label()),
                &format!("{breaches} s"),
            );
            stat(
                ui,
                "In sync",
                &format!("{in_sync} of {}", snapshot.flows.len()),
            );
            let rate = history.copied_bytes_per_s.back().map_or(0.0, |p| p[1]);
            stat(ui, "Copying", &format!("{}/s", human_bytes(rate as u64)));
            let rpm = history.requests_per_min.back().map_or(0.0, |p| p[1]);
            stat(ui, "Requests/min", &format!("{rpm:.0}"));
            if let Some(bill) = primary_bill(snapshot) {
                stat(ui, "Forecast a month", &dollars(bill.total)).on_hover_text(format!(
                    "The group as configured at {} prices: requests, both regions' storage and transfer (Cost, below)",
                    bill.store
                ));
            }
        });
        egui::CollapsingHeader::new("Cost and forecast")
            .id_salt("cost")
            .show(ui, |ui| cost_ui(ui, snapshot));
        ui.horizontal(|ui| {
            ui.label("Show the last");
            for window in [Window::FiveMinutes, Window::FifteenMinutes, Window::Hour] {
                ui.selectable_value(&mut self.window, window, window.label());
            }
        });
        if snapshot.group.is_none() {
            ui.label("Configure replication (Replication tab) to see lag here.");
        }
        let operations = &snapshot.branches.operations;
        let rows = if operations.is_empty() { 2.0 } else { 2.6 };
        let height = ((ui.available_height() - 60.0) / rows).max(110.0);
        if operations.is_empty() {
            ui.label(
                "No drill or failover yet: run a drill (Replication tab, Test failover) and its RTO is plotted here.",
            );
        } else {
            operations_ui(ui, operations, target, height * 0.6);
        }
        let title = if plotted_of > PLOTTED_DATABASES {
            format!(
                "Replication lag (RPO), seconds: the {PLOTTED_DATABASES} of {plotted_of} databases that lagged most"
            )
        } else {
            "Replication lag (RPO) per database, seconds".to_string()
        };
        ui.label(RichText::new(title).strong());
        let bad = widgets::bad(ui);
        Plot::new("lag")
            .height(height)
            .legend(Legend::default())
            .include_y(0.0)
            .include_y(target * 1.5)
            .include_x(-window_s)
            .include_x(0.0)
            .x_axis_label("seconds ago")
            .allow_scroll(false)
            .show(ui, |plot| {
                for (db, points, marks) in lags {
                    plot.line(Line::new(db.clone(), points));
                    if !marks.is_empty() {
                        plot.points(
                            Points::new(format!("{db} breaches"), marks)
                                .shape(MarkerShape::Circle)
                                .radius(3.0)
                                .color(bad),
                        );
                    }
                }
                plot.hline(HLine::new("RPO target", target).color(bad));
            });
        ui.columns(2, |columns| {
            columns[0].label(RichText::new("Bytes copied per second").strong());
            Plot::new("throughput")
                .height(height * 0.8)
                .include_y(0.0)
                .include_x(-window_s)
                .include_x(0.0)
                .allow_scroll(false)
                .y_axis_formatter(|mark, _| human_bytes(mark.value.max(0.0) as u64))
                .show(&mut columns[0], |plot| {
                    plot.line(Line::new(
                        "copied",
                        recent(&history.copied_bytes_per_s, now_s, window_s),
                    ));
                });
            columns[1].label(RichText::new("Requests per minute to the regions").strong());
            Plot::new("requests")
                .height(height * 0.8)
                .include_y(0.0)
                .include_x(-window_s)
                .include_x(0.0)
                .allow_scroll(false)
                .show(&mut columns[1], |plot| {
                    plot.line(Line::new(
                        "requests/min",
                        recent(&history.requests_per_min, now_s, window_s),
                    ));
                });
        });
    }
}

/// Databases the lag plot draws at most.
const PLOTTED_DATABASES: usize = 20;

/// RTO targets the product promises: a failover with a workspace made on
/// demand, and with one pre-provisioned.
pub const RTO_TARGET_S: f64 = 5.0;

/// RTO and RPO of every failover and drill, oldest left.
fn operations_ui(
    ui: &mut egui::Ui,
    operations: &[crate::control::event::OperationRecord],
    rpo_target_s: f64,
    height: f32,
) {
    use crate::control::event::OperationKind;
    let last = |kind: OperationKind| operations.iter().rev().find(|r| r.kind == kind);
    let rto = |r: Option<&crate::control::event::OperationRecord>| {
        r.and_then(|r| r.rto_ms).map_or("—".to_string(), |ms| {
            format!("{:.2} s", ms as f64 / 1000.0)
        })
    };
    let rpo_s = |r: &crate::control::event::OperationRecord| {
        r.rpo
            .iter()
            .filter_map(|d| d.missing_span_ms.or(d.lag_ms))
            .max()
            .map(|ms| ms as f64 / 1000.0)
    };
    ui.horizontal_wrapped(|ui| {
        stat(ui, "Last failover RTO", &rto(last(OperationKind::Failover)))
            .on_hover_text(Term::Rto.tip());
        stat(ui, "Last drill RTO", &rto(last(OperationKind::Drill)))
            .on_hover_text(Term::Drill.tip());
        let moved = operations
            .iter()
            .rev()
            .find(|r| matches!(r.kind, OperationKind::Switchover | OperationKind::Failback));
        stat(ui, "Last switchover or failback RTO", &rto(moved))
            .on_hover_text(Term::Failback.tip());
        let lost: u64 = last(OperationKind::Failover)
            .map(|r| r.rpo.iter().filter_map(|d| d.missing_records).sum())
            .unwrap_or(0);
        stat(ui, "Records lost, last failover", &lost.to_string());
        let passed = operations
            .iter()
            .filter(|r| r.kind == OperationKind::Drill && r.ok)
            .count();
        let drills = operations
            .iter()
            .filter(|r| r.kind == OperationKind::Drill)
            .count();
        stat(ui, "Drills passed", &format!("{passed} of {drills}"));
    });
    ui.label(
        RichText::new(
            "RTO (points) and RPO (crosses) per failover, drill, switchover and failback, seconds",
        )
        .strong(),
    );
    let bad = widgets::bad(ui);
    let warn = widgets::warn(ui);
    let series =
        |kind: OperationKind,
         f: &dyn Fn(&crate::control::event::OperationRecord) -> Option<f64>| {
            operations
                .iter()
                .enumerate()
                .filter(|(_, r)| r.kind == kind)
                .filter_map(|(i, r)| f(r).map(|y| [i as f64 + 1.0, y]))
                .collect::<Vec<[f64; 2]>>()
        };
    let rto_s = |r: &crate::control::event::OperationRecord| r.rto_ms.map(|ms| ms as f64 / 1000.0);
    Plot::new("operations")
        .height(height)
        .legend(Legend::default())
        .include_y(0.0)
        .include_y(RTO_TARGET_S * 1.2)
        .include_x(0.0)
        .include_x(operations.len() as f64 + 1.0)
        .x_axis_label("operation, oldest first")
        .allow_scroll(false)
        .show(ui, |plot| {
            for (kind, name) in [
                (OperationKind::Failover, "failover"),
                (OperationKind::Drill, "drill"),
                (OperationKind::Switchover, "switchover"),
                (OperationKind::Failback, "failback"),
            ] {
                plot.points(
                    Points::new(format!("{name} RTO"), series(kind, &rto_s))
                        .shape(MarkerShape::Circle)
                        .radius(4.0),
                );
                plot.points(
                    Points::new(format!("{name} RPO"), series(kind, &rpo_s))
                        .shape(MarkerShape::Cross)
                        .radius(4.0),
                );
            }
            plot.hline(HLine::new("RTO target", RTO_TARGET_S).color(bad));
            plot.hline(HLine::new("RPO target", rpo_target_s).color(warn));
        });
}

/// The forecast at the prices of the store the primary is in.
fn primary_bill(snapshot: &Snapshot) -> Option<&crate::cost::MonthlyBill> {
    let cost = &snapshot.cost;
    let group = snapshot.group.as_ref()?;
    let spec = &snapshot
        .regions
        .iter()
        .find(|r| r.spec.name == group.primary)?
        .spec;
    let (row, _) = crate::cost::row_for_spec(&cost.prices, spec);
    cost.bill.bills.iter().find(|b| b.store == row.store)
}

/// Rows of the per-database cost table shown at once (the rest scroll).
const COST_ROWS_SHOWN: f32 = 8.0;

/// The bill: a month of the group as configured at each store, what it
/// starts from, and each replicated branch's requests now.
fn cost_ui(ui: &mut egui::Ui, snapshot: &Snapshot) {
    let cost = &snapshot.cost;
    let bill = &cost.bill;
    if snapshot.group.is_none() || bill.bills.is_empty() {
        ui.label("Configure replication (Replication tab) to see what it costs.");
        return;
    }
    let forecast = &bill.forecast;
    let now_at = |store: &str| {
        cost.prices
            .iter()
            .find(|p| p.store == store)
            .map_or(0.0, |p| p.requests_per_month(&bill.per_min))
    };
    egui::Grid::new("cost-bills")
        .num_columns(6)
        .striped(true)
        .spacing([16.0, 4.0])
        .show(ui, |ui| {
            for head in [
                "Store",
                "Requests now, a month",
                "Forecast: requests",
                "Storage, both regions",
                "Transfer",
                "Forecast a month",
            ] {
                ui.label(RichText::new(head).strong());
            }
            ui.end_row();
            for b in &bill.bills {
                ui.label(&b.store);
                ui.label(dollars(now_at(&b.store)));
                ui.label(dollars(b.requests));
                ui.label(dollars(b.storage));
                ui.label(dollars(b.transfer));
                ui.label(RichText::new(dollars(b.total)).strong());
                ui.end_row();
            }
        });
    let target = snapshot.group.as_ref().map_or(1.0, |g| g.rpo_target_s);
    let muted = widgets::muted(ui);
    ui.label(
        RichText::new(format!(
            "Forecast: {} replicated branches, each at least what a quiet one costs at the {target} s RPO target ({:.0} requests a minute in all); {} at the primary, stored in both regions; {}/s copied over the last hour, crossing between regions all month. Prices: {}.",
            bill.flows.len(),
            forecast.requests_per_min.total(),
            human_bytes(forecast.stored_bytes_per_region as u64),
            human_bytes((forecast.written_bytes_per_month / crate::cost::MINUTES_PER_MONTH / 60.0) as u64),
            cost.prices_from
        ))
        .small()
        .color(muted),
    );
    if let Some(error) = &cost.prices_error {
        ui.label(
            RichText::new(format!("{error}; the published prices are used"))
                .color(widgets::warn(ui)),
        );
    }
    if bill.flows.iter().any(|f| f.what_if) {
        ui.label(
            RichText::new("Local folders bill nothing: their rows show what the same requests would cost at the first store's prices.")
                .small()
                .color(muted),
        );
    }
    ui.add_space(4.0);
    ui.label(RichText::new("Each replicated branch, over the last minute").strong());
    let row_height = ui.text_style_height(&egui::TextStyle::Body) + 4.0;
    egui::ScrollArea::vertical()
        .id_salt("cost-flows")
        .max_height(row_height * COST_ROWS_SHOWN)
        .auto_shrink([false, true])
        .show_rows(ui, row_height, bill.flows.len(), |ui, rows| {
            egui::Grid::new("cost-flows-grid")
                .num_columns(4)
                .striped(true)
                .spacing([16.0, 4.0])
                .start_row(rows.start)
                .show(ui, |ui| {
                    for f in &bill.flows[rows] {
                        ui.label(format!("{}/{}", f.db, f.branch));
                        ui.label(format!("{} → {}", f.home, f.replica));
                        let r = &f.per_min;
                        ui.label(format!(
                            "{:.0} LIST · {:.0} PUT · {:.0} GET · {:.0} DELETE",
                            r.list, r.put, r.get, r.delete
                        ));
                        ui.label(format!("{} a month at {}", dollars(f.month), f.store));
                        ui.end_row();
                    }
                });
        });
}

fn stat(ui: &mut egui::Ui, title: &str, value: &str) -> egui::Response {
    ui.group(|ui| {
        ui.vertical(|ui| {
            ui.label(RichText::new(title).small().color(widgets::muted(ui)));
            ui.label(RichText::new(value).heading());
        });
    })
    .response
}
