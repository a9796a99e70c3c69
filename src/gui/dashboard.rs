//! The Dashboard: replication lag (the RPO) over time per database against
//! the RPO target with breaches marked, bytes copied per second and
//! requests per minute; RTO and RPO of every failover and drill against
//! their targets.

use eframe::egui::{self, RichText};
use egui_plot::{HLine, HoverPosition, Line, LineStyle, MarkerShape, Plot, PlotPoint, Points};

use super::help::Term;
use super::widgets::{self, human_bytes};
use crate::control::event::{OperationKind, OperationRecord};
use crate::cost::dollars;
use crate::engine::activity::Outcome;
use crate::engine::history::Series;
use crate::engine::{Command, Engine, RequestId, Snapshot};
use crate::metrics::month::{RPO_COLOUR, RTO_COLOUR, SERIES_COLOURS, TARGET_COLOUR};

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
    /// The operation whose report is open (clicked in the RTO plot).
    report: Option<String>,
    /// The monthly report asked for.
    month_report: Option<RequestId>,
}

impl Default for DashboardTab {
    fn default() -> Self {
        DashboardTab {
            window: Window::FiveMinutes,
            report: None,
            month_report: None,
        }
    }
}

/// The points of `series` from `from_s` (Unix seconds) on.
fn recent(series: &Series, from_s: f64) -> Vec<[f64; 2]> {
    let start = series.partition_point(|p| p[0] < from_s);
    series.range(start..).copied().collect()
}

impl DashboardTab {
    pub fn ui(&mut self, ui: &mut egui::Ui, engine: &Engine, snapshot: &Snapshot) {
        // The plots share the window's height; a small window scrolls.
        let height = ui.available_height();
        egui::ScrollArea::vertical()
            .id_salt("dashboard")
            .auto_shrink(false)
            .show(ui, |ui| self.body(ui, engine, snapshot, height));
    }

    fn body(&mut self, ui: &mut egui::Ui, engine: &Engine, snapshot: &Snapshot, available: f32) {
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
                let points = recent(series, now_s - window_s);
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
            ui.separator();
            self.month_report_ui(ui, engine, snapshot);
        });
        if snapshot.group.is_none() {
            ui.label("Configure replication (Replication tab) to see lag here.");
        }
        let operations = &snapshot.branches.operations;
        let rows = if operations.is_empty() { 2.0 } else { 3.0 };
        let height = ((available - 330.0) / rows).max(150.0);
        if operations.is_empty() {
            ui.label(
                "No drill or failover yet: run a drill (Replication tab, Test failover) and its RTO is plotted here.",
            );
        } else {
            self.operations_ui(ui, operations, target, height);
        }
        egui::CollapsingHeader::new("Drills")
            .id_salt("drills")
            .show(ui, |ui| self.drills_ui(ui, snapshot));
        let title = if plotted_of > PLOTTED_DATABASES {
            format!(
                "Replication lag (RPO): the {PLOTTED_DATABASES} of {plotted_of} databases that lagged most"
            )
        } else {
            "Replication lag (RPO) per database".to_string()
        };
        ui.label(RichText::new(title).strong());
        let (from_s, to_s) = (now_s - window_s, now_s);
        // The time axes slide with the clock while there is a line to show
        // (samples also arrive each second while the group replicates).
        if history.lag_s.values().any(|s| !s.is_empty()) {
            ui.ctx()
                .request_repaint_after(std::time::Duration::from_secs(1));
        }
        let mut keys = Vec::new();
        time_plot("lag", from_s, to_s, height, "lag (s)", |y| {
            format!("{y:.2} s")
        })
        .include_y(target * 1.5)
        .show(ui, |plot| {
            for (i, (db, points, marks)) in lags.into_iter().enumerate() {
                let rgb = colour(SERIES_COLOURS[i % SERIES_COLOURS.len()]);
                plot.line(Line::new(db.clone(), points).color(rgb).width(2.0));
                if !marks.is_empty() {
                    plot.points(
                        Points::new(format!("{db} above the target"), marks)
                            .shape(MarkerShape::Circle)
                            .radius(3.0)
                            .color(colour(TARGET_COLOUR)),
                    );
                }
                keys.push(Key::line(db, rgb));
            }
            plot.hline(
                HLine::new("RPO target", target)
                    .color(colour(TARGET_COLOUR))
                    .style(LineStyle::dashed_loose()),
            );
        });
        keys.push(Key::dashed(
            &format!("RPO target {target} s"),
            colour(TARGET_COLOUR),
        ));
        legend(ui, &keys);
        ui.columns(2, |columns| {
            columns[0].label(RichText::new("Bytes copied per second").strong());
            let copied = recent(&history.copied_bytes_per_s, from_s);
            time_plot("throughput", from_s, to_s, height * 0.8, "bytes/s", |y| {
                format!("{}/s", human_bytes(y.max(0.0) as u64))
            })
            // Steps of whole powers of two: a scale of fractions read "0 B" twice.
            .include_y(1024.0)
            .y_grid_spacer(egui_plot::uniform_grid_spacer(|input| {
                value_steps(input, true)
            }))
            .y_axis_formatter(|mark, _| {
                if mark.value.fract() != 0.0 {
                    String::new()
                } else {
                    human_bytes(mark.value.max(0.0) as u64)
                }
            })
            .show(&mut columns[0], |plot| {
                plot.line(Line::new("copied", copied).color(colour(SERIES_COLOURS[0])));
            });
            columns[1].label(RichText::new("Requests per minute to the regions").strong());
            let requests = recent(&history.requests_per_min, from_s);
            time_plot(
                "requests",
                from_s,
                to_s,
                height * 0.8,
                "requests/min",
                |y| format!("{y:.0} a minute"),
            )
            .show(&mut columns[1], |plot| {
                plot.line(Line::new("requests", requests).color(colour(SERIES_COLOURS[0])));
            });
        });
        self.report_window(ui.ctx(), operations);
    }

    /// The monthly DR report: a button that has the engine write it, then
    /// where it is and a link that opens it.
    fn month_report_ui(&mut self, ui: &mut egui::Ui, engine: &Engine, snapshot: &Snapshot) {
        let running = self.month_report.is_some_and(|id| {
            matches!(
                widgets::outcome_of(snapshot, id),
                None | Some(Outcome::Running)
            )
        });
        let button = ui
            .add_enabled(!running, egui::Button::new("Monthly DR report"))
            .on_hover_text(
                "This month so far: time within the RPO target per database, worst lag, every failover, switchover, failback and drill with RTO and RPO, outages and request costs; Markdown, JSON and a printable HTML page in the data folder's reports/ (or: lifeboat report month)",
            );
        if button.clicked() {
            self.month_report = Some(engine.send(Command::ReportMonth { month: None }));
        }
        if let Some(Outcome::Done(message)) = widgets::feedback(ui, snapshot, self.month_report)
            && let Some((_, path)) = message.rsplit_once(": ")
        {
            ui.hyperlink_to("Open it", format!("file://{path}"));
        }
    }

    /// Every drill the control log records, newest first: when, its
    /// verdict, RTO and the records it verified, and its report; with the
    /// group's schedule.
    fn drills_ui(&mut self, ui: &mut egui::Ui, snapshot: &Snapshot) {
        let schedule = snapshot
            .group
            .as_ref()
            .and_then(|g| g.drill_schedule.as_ref())
            .map_or(
                "The group drills only when asked (lifeboat group drills --schedule weekly)."
                    .to_string(),
                |s| format!("The group drills by itself {}.", s.describe()),
            );
        ui.label(schedule);
        let drills: Vec<&OperationRecord> = snapshot
            .branches
            .operations
            .iter()
            .rev()
            .filter(|r| r.kind == OperationKind::Drill)
            .collect();
        if drills.is_empty() {
            ui.label("No drill yet.");
            return;
        }
        let mut open = None;
        scrolled_grid(ui, "drills-rows", 8.0, 8.0, 5, drills.len(), |ui, at| {
            let r = drills[at];
            ui.label(widgets::clock(r.started_ms * 1000));
            if r.ok {
                ui.label(RichText::new("passed").color(widgets::good(ui)));
            } else {
                ui.label(RichText::new("FAILED").color(widgets::bad(ui)));
            }
            ui.label(r.rto_ms.map_or("RTO —".into(), |ms| {
                format!("RTO {:.2} s", ms as f64 / 1000.0)
            }));
            let verified: Option<u64> = r
                .rpo
                .iter()
                .map(|d| {
                    Some(
                        d.acknowledged?
                            .saturating_sub(d.missing_records.unwrap_or(0)),
                    )
                })
                .sum();
            ui.label(verified.map_or("records —".into(), |n| format!("{n} records verified")));
            if ui
                .button("Report")
                .accessible_name(format!("Report of {}", r.id))
                .clicked()
            {
                open = Some(r.id.clone());
            }
        });
        if open.is_some() {
            self.report = open;
        }
    }

    /// The report of the operation clicked in the RTO plot, in a window.
    fn report_window(&mut self, ctx: &egui::Context, operations: &[OperationRecord]) {
        let Some(id) = self.report.clone() else {
            return;
        };
        let Some(record) = operations.iter().find(|r| r.id == id) else {
            self.report = None;
            return;
        };
        let mut open = true;
        egui::Window::new(format!("Report of {id}"))
            .open(&mut open)
            .default_size([640.0, 480.0])
            .show(ctx, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    ui.label(
                        RichText::new(crate::orchestrator::report::markdown(record)).monospace(),
                    );
                });
            });
        if !open {
            self.report = None;
        }
    }

    /// RTO and RPO of every failover, drill, switchover and failback, each
    /// at its time; a click on one opens its report.
    fn operations_ui(
        &mut self,
        ui: &mut egui::Ui,
        operations: &[OperationRecord],
        rpo_target_s: f64,
        height: f32,
    ) {
        let last = |kind: OperationKind| operations.iter().rev().find(|r| r.kind == kind);
        let rto = |r: Option<&OperationRecord>| {
            r.and_then(|r| r.rto_ms).map_or("—".to_string(), |ms| {
                format!("{:.2} s", ms as f64 / 1000.0)
            })
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
            RichText::new("RTO and RPO of each failover, drill, switchover and failback (click one for its report)")
                .strong(),
        );
        let shown: Vec<&OperationRecord> = operations
            .iter()
            .filter(|r| KINDS.iter().any(|(k, _, _)| *k == r.kind))
            .collect();
        let first_s = shown.first().map_or(0.0, |r| r.started_ms as f64 / 1000.0);
        let now_s = crate::workload::now_us() as f64 / 1e6;
        // A little room either side, so that the first and newest show whole.
        let pad = ((now_s - first_s) * 0.05).max(60.0);
        let dots: Vec<Dot> = shown
            .iter()
            .map(|r| {
                let x = r.started_ms as f64 / 1000.0;
                (
                    *r,
                    [x, 0.0],
                    [
                        r.rto_ms.map(|ms| ms as f64 / 1000.0),
                        r.rpo_ms().map(|ms| ms as f64 / 1000.0),
                    ],
                )
            })
            .collect();
        let response = time_plot(
            "operations",
            first_s - pad,
            now_s + pad,
            height * 0.8,
            "seconds",
            |y| format!("{y:.2} s"),
        )
        .include_y(RTO_TARGET_S * 1.2)
        .include_y(rpo_target_s * 1.2)
        .show(ui, |plot| {
            for (kind, name, shape) in KINDS {
                for (measure, rgb, at) in [("RTO", RTO_COLOUR, 0), ("RPO", RPO_COLOUR, 1)] {
                    let points: Vec<[f64; 2]> = dots
                        .iter()
                        .filter(|(r, _, _)| r.kind == kind)
                        .filter_map(|(_, [x, _], values)| values[at].map(|y| [*x, y]))
                        .collect();
                    if !points.is_empty() {
                        plot.points(
                            Points::new(format!("{name} {measure}"), points)
                                .shape(shape)
                                .filled(true)
                                .radius(5.0)
                                .color(colour(rgb)),
                        );
                    }
                }
            }
            plot.hline(
                HLine::new("RTO target", RTO_TARGET_S)
                    .color(colour(RTO_COLOUR))
                    .style(LineStyle::dashed_loose()),
            );
            plot.hline(
                HLine::new("RPO target", rpo_target_s)
                    .color(colour(TARGET_COLOUR))
                    .style(LineStyle::dashed_loose()),
            );
        });
        if response.response.clicked()
            && let Some(pointer) = response.response.interact_pointer_pos()
        {
            let nearest = dots
                .iter()
                .flat_map(|(r, [x, _], values)| values.iter().flatten().map(move |y| (r, *x, *y)))
                .map(|(r, x, y)| {
                    let at = response
                        .transform
                        .position_from_point(&PlotPoint::new(x, y));
                    (r, at.distance(pointer))
                })
                .min_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((record, distance)) = nearest
                && distance <= 12.0
            {
                self.report = Some(record.id.clone());
            }
        }
        let mut keys = vec![
            Key::dot("RTO", colour(RTO_COLOUR)),
            Key::dot("RPO", colour(RPO_COLOUR)),
        ];
        keys.extend(
            KINDS
                .iter()
                .map(|(_, name, _)| Key::text(&format!("{} {name}", shape_glyph(name)))),
        );
        keys.push(Key::dashed(
            &format!("RTO target {RTO_TARGET_S} s"),
            colour(RTO_COLOUR),
        ));
        keys.push(Key::dashed(
            &format!("RPO target {rpo_target_s} s"),
            colour(TARGET_COLOUR),
        ));
        legend(ui, &keys);
    }
}

/// An operation in the RTO plot: its record, `[time, 0]`, and its RTO
/// and RPO in seconds when measured.
type Dot<'a> = (&'a OperationRecord, [f64; 2], [Option<f64>; 2]);

/// The operations the RTO plot shows, each with its marker.
const KINDS: [(OperationKind, &str, MarkerShape); 4] = [
    (OperationKind::Failover, "failover", MarkerShape::Diamond),
    (OperationKind::Drill, "drill", MarkerShape::Circle),
    (OperationKind::Switchover, "switchover", MarkerShape::Square),
    (OperationKind::Failback, "failback", MarkerShape::Up),
];

/// The legend's glyph of each marker.
fn shape_glyph(kind: &str) -> &'static str {
    match kind {
        "failover" => "◆",
        "drill" => "●",
        "switchover" => "■",
        _ => "▲",
    }
}

/// Databases the lag plot draws at most.
const PLOTTED_DATABASES: usize = 20;

/// RTO targets the product promises: a failover with a workspace made on
/// demand, and with one pre-provisioned.
pub const RTO_TARGET_S: f64 = 5.0;

fn colour((r, g, b): (u8, u8, u8)) -> egui::Color32 {
    egui::Color32::from_rgb(r, g, b)
}

/// The local time zone as an offset from UTC: `UTC+01:00`.
fn zone() -> String {
    chrono::Local::now().format("UTC%:z").to_string()
}

/// A clock time in local time from Unix seconds: `14:03:07`, or `14:03`
/// on a grid of minutes, or `Dec 8 14:03` on a grid of hours or more.
fn clock_label(t_s: f64, step_s: f64) -> String {
    use chrono::TimeZone;
    let Some(t) = chrono::Local.timestamp_opt(t_s.floor() as i64, 0).single() else {
        return String::new();
    };
    let format = match step_s {
        s if s < 60.0 => "%H:%M:%S",
        s if s < 3600.0 => "%H:%M",
        _ => "%b %-d %H:%M",
    };
    t.format(format).to_string()
}

/// Grid steps on round clock times for a span of `bounds` seconds: the
/// coarsest showing about five lines, and the two finer ones under it.
fn time_steps(input: egui_plot::GridInput) -> [f64; 3] {
    const STEPS: [f64; 14] = [
        1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 10_800.0, 21_600.0, 43_200.0,
        86_400.0, 604_800.0,
    ];
    let span = (input.bounds.1 - input.bounds.0).abs();
    let large = STEPS
        .iter()
        .position(|step| span / step <= 6.0)
        .unwrap_or(STEPS.len() - 1);
    [
        STEPS[large.saturating_sub(2)],
        STEPS[large.saturating_sub(1)],
        STEPS[large],
    ]
}

/// Grid steps for a value axis showing about four labelled lines: the
/// step a round 1, 2 or 5 times a power of ten (of two for bytes, so that
/// they read 64 KiB, 128 KiB).
fn value_steps(input: egui_plot::GridInput, binary: bool) -> [f64; 3] {
    let wanted = ((input.bounds.1 - input.bounds.0).abs() / 4.0).max(1e-9);
    let step = if binary {
        2f64.powf(wanted.log2().ceil()).max(1.0)
    } else {
        let power = 10f64.powf(wanted.log10().floor());
        [1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .map(|m| m * power)
            .find(|s| *s >= wanted)
            .unwrap_or(10.0 * power)
    };
    [step / 4.0, step / 2.0, step]
}

/// A grid line's value with the decimals its step needs (`0.5`, `1`,
/// `1.5`; never `0` twice).
fn axis_number(value: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10()).ceil().clamp(0.0, 6.0) as usize
    };
    format!("{value:.decimals$}")
}

/// A plot over clock time from `from_s` to `to_s` (Unix seconds): the
/// axis in local time with its zone, the y axis labelled with its unit,
/// and hovering a line shows its name, time and value (`value` formats it).
fn time_plot<'a>(
    id: &'a str,
    from_s: f64,
    to_s: f64,
    height: f32,
    y_label: &'a str,
    value: impl Fn(f64) -> String + 'a,
) -> Plot<'a> {
    Plot::new(id)
        .height(height)
        .include_x(from_s)
        .include_x(to_s)
        .include_y(0.0)
        .x_axis_label(format!("local time ({})", zone()))
        .y_axis_label(y_label)
        .x_grid_spacer(egui_plot::uniform_grid_spacer(time_steps))
        .y_grid_spacer(egui_plot::uniform_grid_spacer(|input| {
            value_steps(input, false)
        }))
        .y_axis_formatter(|mark, _| axis_number(mark.value, mark.step_size))
        .x_axis_formatter(|mark, _| clock_label(mark.value, mark.step_size))
        .label_formatter(move |hover| match hover {
            HoverPosition::NearDataPoint {
                plot_name,
                position,
                ..
            } => Some(format!(
                "{plot_name}\n{}\n{}",
                clock_label(position.x, 1.0),
                value(position.y)
            )),
            HoverPosition::Elsewhere { .. } => None,
        })
        .allow_scroll(false)
}

/// One entry of a legend drawn under its plot (never over the data).
struct Key {
    mark: &'static str,
    name: String,
    colour: Option<egui::Color32>,
}

impl Key {
    fn line(name: &str, colour: egui::Color32) -> Key {
        Key {
            mark: "━━",
            name: name.into(),
            colour: Some(colour),
        }
    }

    fn dashed(name: &str, colour: egui::Color32) -> Key {
        Key {
            mark: "╍╍",
            name: name.into(),
            colour: Some(colour),
        }
    }

    fn dot(name: &str, colour: egui::Color32) -> Key {
        Key {
            mark: "●",
            name: name.into(),
            colour: Some(colour),
        }
    }

    fn text(name: &str) -> Key {
        Key {
            mark: "",
            name: name.into(),
            colour: None,
        }
    }
}

fn legend(ui: &mut egui::Ui, keys: &[Key]) {
    ui.horizontal_wrapped(|ui| {
        for key in keys {
            if let Some(colour) = key.colour {
                ui.label(RichText::new(key.mark).color(colour).strong());
            }
            ui.label(&key.name);
            ui.add_space(12.0);
        }
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
    scrolled_grid(
        ui,
        "cost-flows",
        COST_ROWS_SHOWN,
        4.0,
        4,
        bill.flows.len(),
        |ui, at| {
            let f = &bill.flows[at];
            ui.label(format!("{}/{}", f.db, f.branch));
            ui.label(format!("{} → {}", f.home, f.replica));
            let r = &f.per_min;
            ui.label(format!(
                "{:.0} LIST · {:.0} PUT · {:.0} GET · {:.0} DELETE",
                r.list, r.put, r.get, r.delete
            ));
            ui.label(format!("{} a month at {}", dollars(f.month), f.store));
        },
    );
}

/// A striped grid of `len` rows of `columns` cells, at most `shown` rows
/// on screen (the rest scroll) and only those drawn; `row` draws row
/// `at`'s cells. `padding` is added to the text height for a row's.
fn scrolled_grid(
    ui: &mut egui::Ui,
    id: &str,
    shown: f32,
    padding: f32,
    columns: usize,
    len: usize,
    mut row: impl FnMut(&mut egui::Ui, usize),
) {
    let row_height = ui.text_style_height(&egui::TextStyle::Body) + padding;
    egui::ScrollArea::vertical()
        .id_salt(id)
        .max_height(row_height * shown)
        .auto_shrink([false, true])
        .show_rows(ui, row_height, len, |ui, rows| {
            egui::Grid::new(format!("{id}-grid"))
                .num_columns(columns)
                .striped(true)
                .spacing([16.0, 4.0])
                .start_row(rows.start)
                .show(ui, |ui| {
                    for at in rows {
                        row(ui, at);
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
