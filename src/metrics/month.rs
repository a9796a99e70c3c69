//! The monthly DR report: for a calendar month in local time, the share of
//! time each database was within its RPO target, its worst lag and when,
//! every failover, switchover, failback and drill with its RTO and RPO, the
//! outages seen and what the requests cost; as Markdown, JSON and a
//! PDF-friendly HTML page with the plots as SVG images.
//!
//! Everything comes from the engine's kept samples (`samples.rs`) and the
//! control log's operation records: what was measured, never what a
//! copier last did. Time between two samples counts as the later sample
//! saw it; a gap over [`MAX_GAP_S`] (the engine stopped, the machine
//! slept) is not counted and is shown as time not monitored.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{Datelike, Local, NaiveDate, TimeZone};
use serde::{Deserialize, Serialize};

use super::samples::{self, MAX_GAP_S, ReadNotes, Sample};
use crate::control::event::{OperationKind, OperationRecord};
use crate::error::{Error, Result};
use crate::region::meter::ClassCounts;

/// Points per database in the report's lag plot (about an hour each over
/// a month: the worst lag of each hour).
const PLOT_POINTS: f64 = 744.0;
/// Databases plotted at most (those that lagged most); the tables hold all.
const PLOTTED: usize = 8;
/// The colour of the RPO target, in every chart of the app and the report.
pub const TARGET_COLOUR: (u8, u8, u8) = (214, 39, 40);
/// The colour of an operation's RTO.
pub const RTO_COLOUR: (u8, u8, u8) = (148, 103, 189);
/// The colour of an operation's RPO.
pub const RPO_COLOUR: (u8, u8, u8) = (255, 127, 14);
/// The colours of databases' series, in order (none of the above).
pub const SERIES_COLOURS: [(u8, u8, u8); 8] = [
    (31, 119, 180),
    (44, 160, 44),
    (140, 86, 75),
    (0, 0, 128),
    (23, 190, 207),
    (127, 127, 127),
    (188, 189, 34),
    (227, 119, 194),
];

/// A month's report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MonthReport {
    /// `2026-12`.
    pub month: String,
    /// The local time zone the month and every time in the report are in,
    /// as an offset from UTC at the month's start (`UTC+01:00`).
    pub time_zone: String,
    /// The month's start and end (Unix milliseconds); the end is now for
    /// the current month.
    pub from_ms: u64,
    pub to_ms: u64,
    pub made_ms: u64,
    /// Seconds with samples (the engine ran the group), and without.
    pub monitored_s: f64,
    pub not_monitored_s: f64,
    /// The newest RPO target seen.
    pub target_s: Option<f64>,
    pub databases: Vec<DbMonth>,
    pub operations: Vec<OperationRow>,
    /// Why the operations could not be read, when they could not (the
    /// control log is in the regions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operations_unknown: Option<String>,
    pub outages: Vec<Outage>,
    pub cost: MonthCost,
    /// Per database plotted, the worst lag of each stretch of the month:
    /// `[Unix milliseconds, seconds]`.
    pub lag_plot: BTreeMap<String, Vec<[f64; 2]>>,
    pub notes: ReadNotes,
}

/// One database's month.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DbMonth {
    pub db: String,
    /// Seconds sampled with an RPO target set.
    pub sampled_s: f64,
    /// Of those, at or under the target.
    pub within_s: f64,
    /// `within_s / sampled_s` (1 when nothing was sampled).
    pub within_share: f64,
    /// Times the lag went above the target.
    pub breaches: u64,
    pub worst_lag_s: f64,
    pub worst_at_ms: u64,
}

/// An operation of the month, as its record says.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OperationRow {
    pub id: String,
    /// failover, drill, switchover, failback.
    pub kind: String,
    pub started_ms: u64,
    pub from: String,
    pub to: String,
    pub rto_ms: Option<u64>,
    /// The worst database's: how long before the fork the oldest missing
    /// acknowledged write was made, else its replica's lag at the fork.
    pub rpo_ms: Option<u64>,
    pub ok: bool,
    pub outcome: String,
}

/// A region that did not answer, from the first sample that saw it down
/// to the first that saw it back (or the end of monitoring).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outage {
    pub region: String,
    pub from_ms: u64,
    pub to_ms: u64,
    pub seconds: f64,
    /// Still down at the report's end.
    pub ongoing: bool,
}

/// What this engine's requests to the regions cost in the month.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MonthCost {
    /// Requests by class.
    pub requests: ClassCounts,
    /// Dollars at the prices in use then.
    pub dollars: f64,
}

/// The month named by `text` (`2026-12`): its first day.
pub fn parse_month(text: &str, fix: &str) -> std::result::Result<NaiveDate, String> {
    NaiveDate::parse_from_str(&format!("{}-01", text.trim()), "%Y-%m-%d")
        .map_err(|_| format!("`{text}` is not a month; {fix}"))
}

/// The first day of the local month holding `now_ms`.
pub fn this_month(now_ms: u64) -> NaiveDate {
    let today = Local
        .timestamp_millis_opt(now_ms as i64)
        .single()
        .map_or_else(|| chrono::Utc::now().date_naive(), |t| t.date_naive());
    today.with_day(1).unwrap_or(today)
}

/// The Unix milliseconds of local midnight starting `day`.
/// Where a clock jumps forward at midnight (a day that starts at 01:00),
/// the day's first hour that exists.
fn local_midnight_ms(day: NaiveDate) -> u64 {
    (0..=3)
        .filter_map(|hour| day.and_hms_opt(hour, 0, 0))
        .find_map(|naive| Local.from_local_datetime(&naive).earliest())
        .map_or(0, |t| t.timestamp_millis().max(0) as u64)
}

/// The first day of the month after `first`.
fn next_month(first: NaiveDate) -> NaiveDate {
    let (y, m) = if first.month() == 12 {
        (first.year() + 1, 1)
    } else {
        (first.year(), first.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(NaiveDate::MAX)
}

/// `UTC+01:00` for the local offset at `ms`.
fn zone_at(ms: u64) -> String {
    Local
        .timestamp_millis_opt(ms as i64)
        .single()
        .map_or("UTC".into(), |t| format!("UTC{}", t.format("%:z")))
}

/// `2026-12-08 14:03` in local time.
pub fn local_minute(ms: u64) -> String {
    Local.timestamp_millis_opt(ms as i64).single().map_or_else(
        || format!("{ms} ms"),
        |t| t.format("%Y-%m-%d %H:%M").to_string(),
    )
}

/// What the report is made from.
pub struct Inputs<'a> {
    /// The data folder (its `samples/`).
    pub data_dir: &'a Path,
    /// Every operation the control log records.
    pub operations: &'a [OperationRecord],
    /// Unix milliseconds now.
    pub now_ms: u64,
}

/// The report of the month starting `first` (a first of a month).
pub fn build(first: NaiveDate, inputs: &Inputs) -> Result<MonthReport> {
    let month = first.format("%Y-%m").to_string();
    let from_ms = local_midnight_ms(first);
    if from_ms > inputs.now_ms {
        return Err(Error::Invalid(format!(
            "{month} has not begun; give a month up to this one"
        )));
    }
    let to_ms = local_midnight_ms(next_month(first))
        .min(inputs.now_ms)
        .max(from_ms);
    let mut tally = Tally::new(from_ms as f64 / 1000.0, to_ms as f64 / 1000.0);
    let notes = samples::for_each(
        &samples::dir(inputs.data_dir),
        from_ms as f64 / 1000.0,
        to_ms as f64 / 1000.0,
        |s| tally.add(s),
    );
    let mut report = tally.finish(notes);
    report.month = month;
    report.time_zone = zone_at(from_ms);
    report.from_ms = from_ms;
    report.to_ms = to_ms;
    report.made_ms = inputs.now_ms;
    report.not_monitored_s =
        (to_ms.saturating_sub(from_ms) as f64 / 1000.0 - report.monitored_s).max(0.0);
    report.operations = inputs
        .operations
        .iter()
        .filter(|r| r.started_ms >= from_ms && r.started_ms < to_ms)
        .filter(|r| !matches!(r.kind, OperationKind::Recovery | OperationKind::Merge))
        .map(operation_row)
        .collect();
    report.operations.sort_by_key(|r| r.started_ms);
    Ok(report)
}

fn operation_row(r: &OperationRecord) -> OperationRow {
    OperationRow {
        id: r.id.clone(),
        kind: r.kind.name().to_string(),
        started_ms: r.started_ms,
        from: r.from.clone(),
        to: r.to.clone(),
        rto_ms: r.rto_ms,
        rpo_ms: r.rpo_ms(),
        ok: r.ok,
        outcome: r.outcome.clone(),
    }
}

/// The month's sums, one sample at a time.
struct Tally {
    from_s: f64,
    bucket_s: f64,
    previous_t: Option<f64>,
    monitored_s: f64,
    target_s: Option<f64>,
    databases: BTreeMap<String, DbTally>,
    open: BTreeMap<String, f64>,
    outages: Vec<Outage>,
    cost: MonthCost,
}

#[derive(Default)]
struct DbTally {
    month: DbMonth,
    above: bool,
    /// bucket → worst lag in it.
    plot: BTreeMap<u64, f64>,
}

fn ms(t_s: f64) -> u64 {
    (t_s * 1000.0).max(0.0) as u64
}

impl Tally {
    fn new(from_s: f64, to_s: f64) -> Tally {
        Tally {
            from_s,
            bucket_s: ((to_s - from_s) / PLOT_POINTS).max(1.0),
            previous_t: None,
            monitored_s: 0.0,
            target_s: None,
            databases: BTreeMap::new(),
            open: BTreeMap::new(),
            outages: Vec::new(),
            cost: MonthCost::default(),
        }
    }

    fn add(&mut self, s: &Sample) {
        let dt = self
            .previous_t
            .map(|t| s.t - t)
            .filter(|dt| *dt > 0.0 && *dt <= MAX_GAP_S);
        if dt.is_none()
            && let Some(t) = self.previous_t
        {
            // A gap: what was down is known to have been down until the
            // last sample before it, no longer.
            self.close_outages(|_| true, t);
        }
        self.previous_t = Some(s.t);
        if s.target.is_some() {
            self.target_s = s.target;
        }
        let dt = dt.unwrap_or(0.0);
        self.monitored_s += dt;
        let bucket = ((s.t - self.from_s) / self.bucket_s).max(0.0) as u64;
        for (db, lag) in &s.lag {
            let entry = self.databases.entry(db.clone()).or_default();
            let month = &mut entry.month;
            if let Some(target) = s.target {
                month.sampled_s += dt;
                let above = *lag > target;
                if above {
                    month.breaches += u64::from(!entry.above);
                } else {
                    month.within_s += dt;
                }
                entry.above = above;
            }
            if *lag > month.worst_lag_s || month.worst_at_ms == 0 {
                month.worst_lag_s = *lag;
                month.worst_at_ms = ms(s.t);
            }
            let worst = entry.plot.entry(bucket).or_insert(0.0);
            *worst = worst.max(*lag);
        }
        self.close_outages(|region| !s.down.iter().any(|d| d == region), s.t);
        for region in &s.down {
            self.open.entry(region.clone()).or_insert(s.t);
        }
        self.cost.requests = self.cost.requests.plus(&s.requests);
        self.cost.dollars += s.dollars;
    }

    /// Ends, at `t`, the open outages of the regions `which` picks.
    fn close_outages(&mut self, which: impl Fn(&str) -> bool, t: f64) {
        let ended: Vec<String> = self.open.keys().filter(|r| which(r)).cloned().collect();
        for region in ended {
            if let Some(from) = self.open.remove(&region) {
                self.outages.push(Outage {
                    region,
                    from_ms: ms(from),
                    to_ms: ms(t),
                    seconds: t - from,
                    ongoing: false,
                });
            }
        }
    }

    fn finish(mut self, notes: ReadNotes) -> MonthReport {
        if let Some(t) = self.previous_t {
            let open = std::mem::take(&mut self.open);
            for (region, from) in open {
                self.outages.push(Outage {
                    region,
                    from_ms: ms(from),
                    to_ms: ms(t),
                    seconds: t - from,
                    ongoing: true,
                });
            }
        }
        self.outages.sort_by_key(|o| o.from_ms);
        let mut plotted: Vec<(&String, f64)> = self
            .databases
            .iter()
            .map(|(db, t)| (db, t.month.worst_lag_s))
            .collect();
        plotted.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let lag_plot = plotted
            .into_iter()
            .take(PLOTTED)
            .map(|(db, _)| {
                let points = self.databases[db]
                    .plot
                    .iter()
                    .map(|(bucket, lag)| {
                        let t_s = self.from_s + (*bucket as f64 + 0.5) * self.bucket_s;
                        [t_s * 1000.0, *lag]
                    })
                    .collect();
                (db.clone(), points)
            })
            .collect();
        let databases = self
            .databases
            .into_iter()
            .map(|(db, t)| {
                let mut month = t.month;
                month.db = db;
                month.within_share = if month.sampled_s > 0.0 {
                    month.within_s / month.sampled_s
                } else {
                    1.0
                };
                month
            })
            .collect::<Vec<_>>();
        MonthReport {
            monitored_s: self.monitored_s,
            target_s: self.target_s,
            databases,
            outages: self.outages,
            cost: self.cost,
            lag_plot,
            notes,
            ..MonthReport::default()
        }
    }
}

/// `3 h 12 min`, `41 s`: a duration as a report reads.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86_400 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn percent(share: f64) -> String {
    if share >= 1.0 {
        "100%".into()
    } else {
        // Never round a breach up to 100%.
        format!("{:.3}%", (share * 100_000.0).floor() / 1000.0)
    }
}

fn or_dash(ms: Option<u64>) -> String {
    ms.map_or("–".into(), |ms| format!("{:.2} s", ms as f64 / 1000.0))
}

impl MonthReport {
    /// The month as a title reads: `December 2026`.
    pub fn title(&self) -> String {
        NaiveDate::parse_from_str(&format!("{}-01", self.month), "%Y-%m-%d")
            .map_or(self.month.clone(), |d| d.format("%B %Y").to_string())
    }

    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = self.write_markdown(&mut out);
        out
    }

    fn write_markdown(&self, out: &mut String) -> std::fmt::Result {
        writeln!(out, "# Lifeboat DR report: {}\n", self.title())?;
        writeln!(
            out,
            "Times are local ({}). From {} to {}{}; made {}.\n",
            self.time_zone,
            local_minute(self.from_ms),
            local_minute(self.to_ms),
            if self.to_ms >= self.made_ms {
                " (so far)"
            } else {
                ""
            },
            local_minute(self.made_ms),
        )?;
        writeln!(
            out,
            "Monitored {} of the month; {} without samples (the engine was not running the group).\n",
            duration(self.monitored_s),
            duration(self.not_monitored_s)
        )?;
        let target = self.target_s.map_or("no RPO target set".to_string(), |t| {
            format!("RPO target {t} s")
        });
        writeln!(out, "## RPO per database ({target})\n")?;
        if self.databases.is_empty() {
            writeln!(out, "No database was replicated this month.\n")?;
        } else {
            writeln!(
                out,
                "| database | within target | time above | times above | worst lag | when |\n|---|---|---|---|---|---|"
            )?;
            for d in &self.databases {
                writeln!(
                    out,
                    "| {} | {} | {} | {} | {:.1} s | {} |",
                    d.db,
                    percent(d.within_share),
                    duration(d.sampled_s - d.within_s),
                    d.breaches,
                    d.worst_lag_s,
                    local_minute(d.worst_at_ms)
                )?;
            }
            writeln!(out)?;
        }
        writeln!(out, "## Failovers, switchovers, failbacks and drills\n")?;
        if let Some(why) = &self.operations_unknown {
            writeln!(
                out,
                "Not known: the control log could not be read ({why}).\n"
            )?;
        } else if self.operations.is_empty() {
            writeln!(out, "None this month.\n")?;
        } else {
            writeln!(
                out,
                "| when | operation | from → to | RTO | RPO | outcome |\n|---|---|---|---|---|---|"
            )?;
            for o in &self.operations {
                writeln!(
                    out,
                    "| {} | {} `{}` | {} → {} | {} | {} | {}{} |",
                    local_minute(o.started_ms),
                    o.kind,
                    o.id,
                    o.from,
                    o.to,
                    or_dash(o.rto_ms),
                    or_dash(o.rpo_ms),
                    if o.ok { "" } else { "FAILED: " },
                    o.outcome.replace('|', "\\|")
                )?;
            }
            writeln!(out)?;
        }
        writeln!(out, "## Outages seen\n")?;
        if self.outages.is_empty() {
            writeln!(
                out,
                "None: every region answered whenever it was sampled.\n"
            )?;
        } else {
            writeln!(out, "| region | from | to | for |\n|---|---|---|---|")?;
            for o in &self.outages {
                writeln!(
                    out,
                    "| {} | {} | {}{} | {} |",
                    o.region,
                    local_minute(o.from_ms),
                    local_minute(o.to_ms),
                    if o.ongoing { " (still down)" } else { "" },
                    duration(o.seconds)
                )?;
            }
            writeln!(out)?;
        }
        let r = &self.cost.requests;
        writeln!(out, "## Cost of the requests\n")?;
        writeln!(
            out,
            "{} at the prices in use: {} LIST, {} PUT, {} GET, {} DELETE requests from this engine to the regions while it was sampling (storage and transfer are billed apart).\n",
            crate::cost::dollars(self.cost.dollars),
            r.list,
            r.put,
            r.get,
            r.delete
        )?;
        if self.notes.damaged_lines > 0 || !self.notes.unreadable.is_empty() {
            writeln!(
                out,
                "Note: {} damaged sample lines skipped; unreadable: {}.",
                self.notes.damaged_lines,
                if self.notes.unreadable.is_empty() {
                    "none".into()
                } else {
                    self.notes.unreadable.join("; ")
                }
            )?;
        }
        Ok(())
    }

    /// The report as a self-contained HTML page that prints well (the
    /// plots are inline SVG; no script, no external file).
    pub fn html(&self) -> Result<String> {
        let figure = |caption: &str, (svg, legend): (String, Vec<LegendEntry>)| {
            let keys: String = legend.iter().map(LegendEntry::html).collect();
            format!(
                "<figure><figcaption>{caption}</figcaption>{svg}<div class=\"legend\">{keys}</div></figure>\n"
            )
        };
        let plots = figure(
            "Replication lag per database (the worst of each stretch) against the RPO target",
            self.lag_svg()?,
        ) + &figure("RTO and RPO of each operation", self.operations_svg()?);
        let mut body = String::new();
        body.push_str(&markdown_to_html(&self.markdown()));
        // The plots go after the title and the monitoring line.
        let at = body.find("<h2>").unwrap_or(body.len());
        body.insert_str(at, &plots);
        Ok(format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Lifeboat DR report: {title}</title>\n<style>{STYLE}</style></head>\n<body>\n{body}</body></html>\n",
            title = html_escape(&self.title()),
        ))
    }

    /// Draws a chart with a local-time x axis over the month.
    fn chart(
        &self,
        y_label: &str,
        y_max: f64,
        draw: impl FnOnce(&mut Chart<'_>) -> std::result::Result<(), String>,
    ) -> Result<String> {
        use plotters::prelude::*;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (900, 300)).into_drawing_area();
            let failed =
                |e: &dyn std::fmt::Display| Error::Failed(format!("cannot draw a plot: {e}"));
            root.fill(&WHITE).map_err(|e| failed(&e))?;
            use plotters::coord::combinators::BindKeyPoints;
            let (from, to) = (self.from_ms, self.to_ms.max(self.from_ms + 1));
            // Room after the newest point for its label.
            let x = from..to + (to - from) / 25;
            let (ticks, format) = time_ticks(self.from_ms, self.to_ms);
            let mut chart = ChartBuilder::on(&root)
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(x.with_key_points(ticks), 0.0..y_max.max(1e-3) * 1.15)
                .map_err(|e| failed(&e))?;
            chart
                .configure_mesh()
                .x_desc(format!("local time ({})", self.time_zone))
                .y_desc(y_label)
                .x_label_formatter(&|ms| {
                    Local
                        .timestamp_millis_opt(*ms as i64)
                        .single()
                        .map_or_else(String::new, |t| t.format(format).to_string())
                })
                .y_label_formatter(&|v| format!("{v:.1}"))
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(|e| failed(&e))?;
            draw(&mut chart).map_err(|e| failed(&e))?;
            root.present().map_err(|e| failed(&e))?;
        }
        Ok(svg)
    }

    /// The lag plot and its legend's entries.
    fn lag_svg(&self) -> Result<(String, Vec<LegendEntry>)> {
        use plotters::prelude::*;
        let worst = self
            .lag_plot
            .values()
            .flatten()
            .map(|p| p[1])
            .fold(self.target_s.unwrap_or(0.0), f64::max);
        let mut legend = Vec::new();
        let (from, to) = (self.from_ms, self.to_ms);
        let svg = self.chart("lag (seconds)", worst, |chart| {
            for (i, (db, points)) in self.lag_plot.iter().enumerate() {
                let rgb = SERIES_COLOURS[i % SERIES_COLOURS.len()];
                let line = points.iter().map(|p| (p[0] as u64, p[1]));
                chart
                    .draw_series(LineSeries::new(line, rgb_of(rgb).stroke_width(2)))
                    .map_err(|e| e.to_string())?;
                legend.push(LegendEntry::line(db, rgb));
            }
            if let Some(target) = self.target_s {
                let line = [(from, target), (to, target)];
                let style = rgb_of(TARGET_COLOUR).stroke_width(2);
                chart
                    .draw_series(DashedLineSeries::new(line, 8, 4, style))
                    .map_err(|e| e.to_string())?;
                legend.push(LegendEntry::dashed(
                    &format!("RPO target {target} s"),
                    TARGET_COLOUR,
                ));
            }
            Ok(())
        })?;
        Ok((svg, legend))
    }

    /// The operations' RTO and RPO, each at its time, and the legend.
    fn operations_svg(&self) -> Result<(String, Vec<LegendEntry>)> {
        use plotters::prelude::*;
        use plotters::style::text_anchor::{HPos, Pos, VPos};
        let seconds = |ms: Option<u64>| ms.map(|ms| ms as f64 / 1000.0);
        let worst = self
            .operations
            .iter()
            .flat_map(|o| [seconds(o.rto_ms), seconds(o.rpo_ms)])
            .flatten()
            .fold(1.0, f64::max);
        let svg = self.chart("seconds", worst, |chart| {
            for o in &self.operations {
                for (value, rgb) in [(o.rto_ms, RTO_COLOUR), (o.rpo_ms, RPO_COLOUR)] {
                    if let Some(v) = seconds(value) {
                        let dot = Circle::new((o.started_ms, v), 5, rgb_of(rgb).filled());
                        chart
                            .draw_series(std::iter::once(dot))
                            .map_err(|e| e.to_string())?;
                    }
                }
                let top = seconds(o.rto_ms)
                    .into_iter()
                    .chain(seconds(o.rpo_ms))
                    .fold(0.0, f64::max);
                let style = TextStyle::from(("sans-serif", 12).into_font())
                    .pos(Pos::new(HPos::Right, VPos::Bottom));
                let label = Text::new(o.kind.clone(), (o.started_ms, top), style);
                chart
                    .draw_series(std::iter::once(label))
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        })?;
        let legend = vec![
            LegendEntry::dot("RTO", RTO_COLOUR),
            LegendEntry::dot("RPO", RPO_COLOUR),
        ];
        Ok((svg, legend))
    }

    /// Writes `lifeboat-dr-<month>.{md,json,html}` into `dir`; returns the paths.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::file(dir, format!("cannot create: {e}")))?;
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Failed(format!("cannot encode the report: {e}")))?;
        let mut written = Vec::new();
        for (ext, text) in [
            ("md", self.markdown()),
            ("json", json),
            ("html", self.html()?),
        ] {
            let path = dir.join(format!("lifeboat-dr-{}.{ext}", self.month));
            std::fs::write(&path, text)
                .map_err(|e| Error::file(&path, format!("cannot write: {e}")))?;
            written.push(path);
        }
        Ok(written)
    }
}

type Chart<'a> = plotters::chart::ChartContext<
    'a,
    plotters::backend::SVGBackend<'a>,
    plotters::coord::cartesian::Cartesian2d<
        plotters::coord::combinators::WithKeyPoints<plotters::coord::types::RangedCoordu64>,
        plotters::coord::types::RangedCoordf64,
    >,
>;

/// Ticks for a time axis from `from_ms` to `to_ms` (Unix milliseconds):
/// at most ten, on local midnights or round local times, with the format
/// of their labels.
fn time_ticks(from_ms: u64, to_ms: u64) -> (Vec<u64>, &'static str) {
    const STEPS_S: [u64; 12] = [
        60, 300, 600, 1800, 3600, 10_800, 21_600, 43_200, 86_400, 172_800, 432_000, 604_800,
    ];
    let span_s = to_ms.saturating_sub(from_ms) / 1000;
    let step_s = STEPS_S
        .into_iter()
        .find(|step| span_s / step <= 10)
        .unwrap_or(604_800);
    let first_day = Local
        .timestamp_millis_opt(from_ms as i64)
        .single()
        .map_or_else(|| chrono::Utc::now().date_naive(), |t| t.date_naive());
    let mut ticks = Vec::new();
    if step_s >= 86_400 {
        let mut day = first_day;
        while local_midnight_ms(day) <= to_ms {
            let at = local_midnight_ms(day);
            if at >= from_ms {
                ticks.push(at);
            }
            day = day + chrono::Days::new(step_s / 86_400);
        }
    } else {
        let mut at = local_midnight_ms(first_day);
        while at <= to_ms {
            if at >= from_ms {
                ticks.push(at);
            }
            at += step_s * 1000;
        }
    }
    let format = match (step_s >= 86_400, span_s > 86_400) {
        (true, _) => "%b %-d",
        (false, true) => "%b %-d %H:%M",
        (false, false) => "%H:%M",
    };
    (ticks, format)
}

fn rgb_of((r, g, b): (u8, u8, u8)) -> plotters::style::RGBColor {
    plotters::style::RGBColor(r, g, b)
}

/// A legend entry, drawn in HTML below its plot: never over the data.
struct LegendEntry {
    name: String,
    rgb: (u8, u8, u8),
    mark: &'static str,
}

impl LegendEntry {
    fn line(name: &str, rgb: (u8, u8, u8)) -> LegendEntry {
        LegendEntry {
            name: name.into(),
            rgb,
            mark: "━━",
        }
    }

    fn dashed(name: &str, rgb: (u8, u8, u8)) -> LegendEntry {
        LegendEntry {
            name: name.into(),
            rgb,
            mark: "╍╍",
        }
    }

    fn dot(name: &str, rgb: (u8, u8, u8)) -> LegendEntry {
        LegendEntry {
            name: name.into(),
            rgb,
            mark: "●",
        }
    }

    fn html(&self) -> String {
        let (r, g, b) = self.rgb;
        format!(
            "<span><b style=\"color:rgb({r},{g},{b})\">{}</b> {}</span>",
            self.mark,
            html_escape(&self.name)
        )
    }
}

const STYLE: &str = "body{font-family:sans-serif;max-width:60rem;margin:2rem auto;color:#222}\
table{border-collapse:collapse;margin:.5rem 0 1.5rem}th,td{border:1px solid #bbb;padding:.25rem .6rem;text-align:left;white-space:nowrap}td:last-child{white-space:normal}\
th{background:#f0f0f0}figure{margin:1rem 0;page-break-inside:avoid}figcaption{font-weight:bold;margin-bottom:.25rem}\
svg{max-width:100%;height:auto}.legend span{margin-right:1.5rem}@page{size:A4;margin:15mm}@media print{body{margin:0}}";

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The report's Markdown as HTML (GitHub's tables; text escaped).
fn markdown_to_html(markdown: &str) -> String {
    let parser = pulldown_cmark::Parser::new_ext(markdown, pulldown_cmark::Options::ENABLE_TABLES);
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, parser);
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, lag: f64, down: &[&str]) -> Sample {
        Sample {
            t,
            lag: BTreeMap::from([("orders".to_string(), lag)]),
            target: Some(1.0),
            down: down.iter().map(|d| d.to_string()).collect(),
            requests: ClassCounts {
                put: 1,
                ..ClassCounts::default()
            },
            dollars: 1.0,
            ..Sample::default()
        }
    }

    #[test]
    fn the_month_counts_time_within_target_outages_and_gaps() {
        let mut tally = Tally::new(0.0, 1000.0);
        // 0..100 s in target; 100..130 s above with b down; a gap of 60 s;
        // 190..200 s in target.
        for t in 0..=100 {
            tally.add(&sample(t as f64, 0.2, &[]));
        }
        for t in 101..=130 {
            tally.add(&sample(t as f64, 5.0 + t as f64 / 100.0, &["b"]));
        }
        for t in 190..=200 {
            tally.add(&sample(t as f64, 0.2, &[]));
        }
        let report = tally.finish(ReadNotes::default());
        let db = &report.databases[0];
        assert_eq!(db.db, "orders");
        assert_eq!(report.monitored_s, 100.0 + 30.0 + 10.0);
        assert_eq!(db.sampled_s, 140.0);
        assert_eq!(db.within_s, 110.0);
        assert_eq!(db.breaches, 1);
        assert_eq!(db.worst_lag_s, 6.3);
        assert_eq!(db.worst_at_ms, 130_000);
        // The outage ends at the last sample before the gap.
        assert_eq!(
            report.outages,
            [Outage {
                region: "b".into(),
                from_ms: 101_000,
                to_ms: 130_000,
                seconds: 29.0,
                ongoing: false
            }]
        );
        // A PUT and a dollar each sample, the gap's too.
        assert_eq!(report.cost.requests.put, 142);
        assert!((report.cost.dollars - 142.0).abs() < 1e-6);
        assert_eq!(percent(110.0 / 140.0), "78.571%");
        assert_eq!(percent(0.999_999), "99.999%");
    }

    #[test]
    fn time_axes_tick_on_local_days_or_round_times() {
        let day = local_midnight_ms(NaiveDate::from_ymd_opt(2026, 12, 1).expect("day"));
        let (ticks, format) = time_ticks(day, day + 31 * 86_400_000);
        assert_eq!(format, "%b %-d");
        assert!(ticks.len() <= 11 && ticks.len() >= 6, "{ticks:?}");
        assert_eq!(ticks[0], day);
        let (ticks, format) = time_ticks(day + 90_000, day + 3_600_000);
        assert_eq!(format, "%H:%M");
        assert_eq!(ticks.len(), 6, "ten-minute ticks in the hour: {ticks:?}");
    }

    #[test]
    fn a_month_is_written_as_markdown_json_and_html_with_plots() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = parse_month("2026-11", "give YYYY-MM").expect("month");
        let report = build(
            first,
            &Inputs {
                data_dir: dir.path(),
                operations: &[],
                now_ms: local_midnight_ms(NaiveDate::from_ymd_opt(2026, 12, 8).expect("day")),
            },
        )
        .expect("report");
        assert_eq!(report.monitored_s, 0.0);
        let written = report.write(dir.path()).expect("written");
        assert_eq!(written.len(), 3);
        let html = std::fs::read_to_string(&written[2]).expect("html");
        assert!(html.contains("<svg"), "no plot");
        assert!(html.contains("November 2026"));
        assert!(parse_month("December", "give YYYY-MM").is_err());
        let future = build(
            parse_month("2030-01", "").expect("month"),
            &Inputs {
                data_dir: dir.path(),
                operations: &[],
                now_ms: 1_800_000_000_000,
            },
        )
        .expect_err("refused");
        assert!(future.to_string().contains("has not begun"), "{future}");
    }
}
