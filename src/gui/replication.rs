//! The Replication tab: the "Configure replication" wizard, one row per
//! replicated database (seed progress, state, lag, last sync, pause and
//! resume), and the group's failover buttons.

use std::collections::BTreeSet;

use eframe::egui::{self, RichText};

use super::widgets::{self, button_unless, feedback, human_bytes};
use crate::engine::group::{DataCopy, ReplicationKind, Selection, WriteRules};
use crate::engine::{Command, Engine, RequestId, Snapshot};

/// What the wizard holds while it is open.
#[derive(Debug, Clone)]
struct Wizard {
    secondary: Option<String>,
    all: bool,
    chosen: BTreeSet<String>,
    kind: ReplicationKind,
    rpo_target_s: f64,
    data: DataCopy,
    writes: WriteRules,
    pending: Option<RequestId>,
}

impl Wizard {
    /// The wizard as the group is configured, or with the defaults: the
    /// first region other than the primary, all databases, storage only.
    fn new(snapshot: &Snapshot, primary: Option<&str>) -> Wizard {
        match &snapshot.group {
            Some(group) => Wizard {
                secondary: Some(group.secondary.clone()),
                all: group.databases == Selection::All,
                chosen: match &group.databases {
                    Selection::All => BTreeSet::new(),
                    Selection::Only(dbs) => dbs.clone(),
                },
                kind: group.kind,
                rpo_target_s: group.rpo_target_s,
                data: group.data,
                writes: group.writes,
                pending: None,
            },
            None => Wizard {
                secondary: snapshot
                    .regions
                    .iter()
                    .map(|r| r.spec.name.clone())
                    .find(|n| Some(n.as_str()) != primary),
                all: true,
                chosen: BTreeSet::new(),
                kind: ReplicationKind::StorageOnly,
                rpo_target_s: crate::engine::group::DEFAULT_RPO_TARGET_S,
                data: DataCopy::Lifeboat,
                writes: WriteRules::default(),
                pending: None,
            },
        }
    }
}

/// The tab's own state: the wizard, what was asked last.
pub struct ReplicationTab {
    wizard: Option<Wizard>,
    pending: Option<RequestId>,
    confirm_stop: bool,
    failover: super::failover::FailoverPanel,
    drill: super::failover::DrillPanel,
    switchover: super::recovery::MovePanel,
    failback: super::recovery::MovePanel,
    recover: super::recovery::RecoverPanel,
    /// Rows shown: those whose database, branch or regions hold this text.
    filter: String,
    sort: Sort,
}

/// The order of the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sort {
    Name,
    /// Errors first, then lagging, seeding, paused, in sync.
    State,
    /// Most lag first.
    Lag,
}

/// Above this many rows the table draws only those on screen, one line
/// each (an error is in its state's tooltip instead of a line under it).
const ROWS_DRAWN_ALL: usize = 100;

impl Default for ReplicationTab {
    fn default() -> Self {
        use crate::control::event::OperationKind;
        ReplicationTab {
            wizard: None,
            pending: None,
            confirm_stop: false,
            failover: Default::default(),
            drill: Default::default(),
            switchover: super::recovery::MovePanel::new(OperationKind::Switchover),
            failback: super::recovery::MovePanel::new(OperationKind::Failback),
            recover: Default::default(),
            filter: String::new(),
            sort: Sort::Name,
        }
    }
}

impl ReplicationTab {
    /// Opens the wizard (the tour's "Open the wizard"), unless it is open.
    pub fn open_wizard(&mut self, snapshot: &Snapshot) {
        if self.wizard.is_none() {
            let primary = snapshot.regions.first().map(|r| r.spec.name.clone());
            self.wizard = Some(Wizard::new(snapshot, primary.as_deref()));
        }
    }

    /// Opens the Test failover panel (the tour's "Open Test failover").
    pub fn open_drill(&mut self, snapshot: &Snapshot) {
        self.drill.open(snapshot);
    }

    /// Opens the failover panel with a fresh preview.
    pub fn open_failover(&mut self, engine: &Engine) {
        self.failover.open(engine);
    }

    /// Opens the switchover (or failback) panel with a fresh plan.
    pub fn open_move(&mut self, engine: &Engine, failback: bool) {
        if failback {
            self.failback.open(engine);
        } else {
            self.switchover.open(engine);
        }
    }

    /// Opens the recovered-writes panel.
    pub fn open_recover(&mut self, engine: &Engine, snapshot: &Snapshot) {
        self.recover.open(engine, snapshot);
    }

    /// Whether a finished drill's report is on screen.
    pub fn showing_drill_report(&self, snapshot: &Snapshot) -> bool {
        snapshot.group.is_some() && self.drill.showing_report(snapshot)
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, engine: &Engine, snapshot: &Snapshot) {
        let primary = snapshot.regions.first().map(|r| r.spec.name.clone());
        widgets::section(
            ui,
            "Replication",
            "Every database homed in the primary is copied to the secondary continuously, in an order that keeps the replica readable at every instant.",
        );
        if snapshot.seq == 0 {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Starting the engine…");
            });
            return;
        }
        if let Some(wizard) = &mut self.wizard {
            let close = wizard_ui(ui, engine, snapshot, primary.as_deref(), wizard);
            if close {
                self.wizard = None;
            }
            ui.separator();
        }
        match &snapshot.group {
            None => self.unconfigured(ui, engine, snapshot, primary.as_deref()),
            Some(group) => {
                ui.horizontal_wrapped(|ui| {
                    ui.label(
                        RichText::new(format!("{} to {}", group.primary, group.secondary)).strong(),
                    );
                    // After a failover the live branches are written in the
                    // secondary and copied back: the header says so.
                    let moved = snapshot
                        .branches
                        .live
                        .iter()
                        .any(|(_, _, region)| *region == group.secondary);
                    if moved {
                        ui.label(
                            RichText::new(format!(
                                "· failed over: live in {} (epoch {}), copied back to {}",
                                group.secondary, snapshot.branches.epoch, group.primary
                            ))
                            .color(widgets::warn(ui))
                            .strong(),
                        );
                    }
                    ui.label(format!("· {}", group.kind.label()));
                    if group.data == DataCopy::Store {
                        ui.label(format!("· {}", group.data.label()));
                    }
                    ui.label(match &group.databases {
                        Selection::All => "· all current and future databases".to_string(),
                        Selection::Only(dbs) => format!("· {} database(s)", dbs.len()),
                    });
                    super::help::term_label(
                        ui,
                        format!("· RPO target {} s", group.rpo_target_s),
                        super::help::Term::Rpo,
                    );
                    if group.writes.rpo_guard {
                        super::help::term_label(ui, "· RPO guard on", super::help::Term::RpoGuard);
                    }
                });
                zero_loss_ui(ui, snapshot);
                ui.horizontal_wrapped(|ui| {
                    let busy = self.wizard.is_some().then_some("the wizard is open above");
                    if button_unless(ui, "Edit replication", busy).clicked() {
                        self.wizard = Some(Wizard::new(snapshot, primary.as_deref()));
                    }
                    if self.confirm_stop {
                        ui.label("Stop copying? The replicas stay, but fall behind.");
                        if ui.button("Yes, stop replication").clicked() {
                            self.pending = Some(engine.send(Command::StopReplication));
                            self.confirm_stop = false;
                        }
                        if ui.button("Keep replicating").clicked() {
                            self.confirm_stop = false;
                        }
                    } else if ui.button("Stop replication").clicked() {
                        self.confirm_stop = true;
                    }
                    ui.separator();
                    self.failover.button(ui, engine, snapshot);
                    self.drill.button(ui, snapshot);
                    match group.kind {
                        ReplicationKind::ZeroLoss => {
                            button_unless(
                                ui,
                                "Start pre-provisioning",
                                Some("a zero-loss group stands no workspace in the secondary; change the type in Edit replication"),
                            );
                        }
                        ReplicationKind::StorageOnly => {
                            if ui
                                .button("Start pre-provisioning")
                                .on_hover_text(super::help::Term::PreProvisioning.tip())
                                .clicked()
                            {
                                self.pending = Some(engine.send(Command::StartPreprovisioning));
                            }
                        }
                        ReplicationKind::PreProvisioned => {
                            if ui.button("Stop pre-provisioning").clicked() {
                                self.pending = Some(engine.send(Command::StopPreprovisioning));
                            }
                        }
                    }
                    self.switchover.button(ui, engine, snapshot);
                    self.failback.button(ui, engine, snapshot);
                    self.recover.button(ui, engine, snapshot);
                });
                feedback(ui, snapshot, self.pending);
                standby_ui(ui, snapshot);
                self.failover.ui(ui, engine, snapshot);
                self.drill.ui(ui, engine, snapshot);
                self.switchover.ui(ui, engine, snapshot);
                self.failback.ui(ui, engine, snapshot);
                self.recover.ui(ui, engine, snapshot);
                ui.add_space(8.0);
                self.rows(ui, engine, snapshot);
            }
        }
    }

    fn unconfigured(
        &mut self,
        ui: &mut egui::Ui,
        engine: &Engine,
        snapshot: &Snapshot,
        primary: Option<&str>,
    ) {
        ui.label("Replication is not configured yet.");
        if snapshot.regions.len() < 2 {
            ui.label("Replication needs two regions: add one in Settings.");
        }
        ui.horizontal(|ui| {
            let reason = if snapshot.regions.len() < 2 {
                Some("add a second region in Settings first")
            } else if self.wizard.is_some() {
                Some("the wizard is open above")
            } else {
                None
            };
            if button_unless(ui, "Configure replication", reason).clicked() {
                self.wizard = Some(Wizard::new(snapshot, primary));
            }
            let demo_reason = (snapshot.regions.len() < 2).then_some("the demo needs two regions");
            if button_unless(ui, "Start the demo", demo_reason)
                .on_hover_text("creates three demo databases in the primary, writes to them and replicates them")
                .clicked()
            {
                self.pending = Some(engine.send(Command::StartDemo));
            }
        });
        feedback(ui, snapshot, self.pending);
    }

    fn rows(&mut self, ui: &mut egui::Ui, engine: &Engine, snapshot: &Snapshot) {
        if snapshot.flows.is_empty() {
            ui.label("No database is replicating yet: create one in the primary (Databases tab) or start the demo.");
            if snapshot.demo_workloads.is_empty() && ui.button("Start the demo").clicked() {
                self.pending = Some(engine.send(Command::StartDemo));
            }
            return;
        }
        let target = snapshot.group.as_ref().map_or(1.0, |g| g.rpo_target_s);
        ui.horizontal(|ui| {
            ui.label("Filter");
            ui.add(
                egui::TextEdit::singleline(&mut self.filter)
                    .hint_text("database, branch or region")
                    .desired_width(200.0),
            )
            .accessible_name("Filter replicas");
            ui.label("Sort by");
            for (sort, label) in [
                (Sort::Name, "name"),
                (Sort::State, "state"),
                (Sort::Lag, "lag"),
            ] {
                ui.selectable_value(&mut self.sort, sort, label);
            }
        });
        let needle = self.filter.trim().to_lowercase();
        let mut shown: Vec<&crate::engine::FlowView> = snapshot
            .flows
            .iter()
            .filter(|f| {
                let s = &f.status;
                widgets::matches_filter(&needle, &[&s.db, &s.branch, &s.home, &s.replica])
            })
            .collect();
        match self.sort {
            Sort::Name => {}
            Sort::State => shown.sort_by_key(|f| state_rank(f.state_label())),
            Sort::Lag => shown.sort_by(|a, b| {
                b.status
                    .lag_s
                    .unwrap_or(f64::INFINITY)
                    .total_cmp(&a.status.lag_s.unwrap_or(f64::INFINITY))
            }),
        }
        if shown.len() < snapshot.flows.len() {
            ui.label(
                RichText::new(format!(
                    "{} of {} replicas",
                    shown.len(),
                    snapshot.flows.len()
                ))
                .color(widgets::muted(ui)),
            );
        }
        let every_row = shown.len() <= ROWS_DRAWN_ALL;
        let row_height = ui.spacing().interact_size.y + 6.0;
        let grid =
            |ui: &mut egui::Ui, rows: &[&crate::engine::FlowView], start: usize, tab: &mut Self| {
                egui::Grid::new("flows")
                    .striped(true)
                    .num_columns(7)
                    .spacing([16.0, 6.0])
                    .min_row_height(row_height - 6.0)
                    .start_row(start)
                    .show(ui, |ui| {
                        if start == 0 {
                            header(ui);
                        }
                        for flow in rows {
                            tab.row(ui, engine, snapshot, flow, target, every_row);
                        }
                    });
            };
        let area = egui::ScrollArea::vertical().auto_shrink([false, true]);
        if every_row {
            area.show(ui, |ui| grid(ui, &shown, 0, self));
        } else {
            // The header is row 0; rows on screen only.
            area.show_rows(ui, row_height, shown.len() + 1, |ui, range| {
                let from = range.start.saturating_sub(1);
                let to = range.end.saturating_sub(1).min(shown.len());
                grid(ui, &shown[from..to], range.start, self);
            });
        }
    }

    /// One replica's row; `error_line`: its error on a line of its own.
    fn row(
        &mut self,
        ui: &mut egui::Ui,
        engine: &Engine,
        snapshot: &Snapshot,
        flow: &crate::engine::FlowView,
        target: f64,
        error_line: bool,
    ) {
        let status = &flow.status;
        let (role, tip) = branch_role(snapshot, &status.db, &status.branch);
        let name = format!("{}/{} · {role}", status.db, status.branch);
        let name = if role == "live" {
            RichText::new(name).strong()
        } else {
            RichText::new(name).color(widgets::muted(ui))
        };
        ui.label(name).on_hover_text(tip);
        match &status.copied_by {
            // Another engine sharing the group's flows copies this one.
            Some(by) => ui
                .label(format!("{} to {} · shared", status.home, status.replica))
                .on_hover_text(format!(
                    "copied by {by}, an engine sharing the group's flows"
                )),
            None => ui.label(format!("{} to {}", status.home, status.replica)),
        };
        let percent = (flow.seed_progress * 100.0).floor();
        let seed = if flow.seed_bytes_total == 0 {
            if flow.seed_progress >= 1.0 {
                "done"
            } else {
                "not started"
            }
            .to_string()
        } else {
            format!(
                "{percent:.0}% · {} of {}",
                human_bytes(flow.seed_bytes_done),
                human_bytes(flow.seed_bytes_total)
            )
        };
        ui.add(
            egui::ProgressBar::new(flow.seed_progress)
                .desired_width(200.0)
                .text(seed),
        );
        let state = flow.state_label();
        let colour = widgets::state_colour(ui, state);
        let badge = widgets::badge(ui, colour, state);
        if let Some(error) = flow.error() {
            badge.on_hover_text(error);
        } else if let Some(detail) = &status.detail {
            badge.on_hover_text(detail);
        }
        let lag_text = RichText::new(widgets::lag(status.lag_s));
        let lag_text = if status.lag_s.is_some_and(|l| l > target) {
            lag_text.color(widgets::bad(ui))
        } else {
            lag_text
        };
        ui.label(lag_text);
        match status.last_sync_us {
            Some(at) => ui
                .label(widgets::ago(ui, at))
                .on_hover_text(widgets::clock(at)),
            None => ui.label("never"),
        };
        let held = status.state == crate::replication::FlowState::Held;
        let (text, command) = if held {
            (
                "Resume",
                Command::Resume {
                    db: status.db.clone(),
                },
            )
        } else {
            (
                "Pause",
                Command::Pause {
                    db: status.db.clone(),
                },
            )
        };
        if ui
            .button(text)
            .accessible_name(format!("{text} {}", status.db))
            .clicked()
        {
            self.pending = Some(engine.send(command));
        }
        ui.end_row();
        if error_line && let Some(error) = flow.error() {
            ui.label("");
            ui.label("");
            ui.label(RichText::new(error).color(widgets::bad(ui)).small());
            ui.end_row();
        }
    }
}

/// The table's titles.
fn header(ui: &mut egui::Ui) {
    use super::help::Term;
    let titles = [
        ("Database", None),
        ("Home to replica", None),
        ("Initial seed", Some(Term::Seed)),
        ("State", None),
        ("Lag", Some(Term::Lag)),
        ("Last sync", None),
        ("", None),
    ];
    for (title, term) in titles {
        let label = ui.label(RichText::new(title).strong());
        if let Some(term) = term {
            label.on_hover_text(term.tip());
        }
    }
    ui.end_row();
}

/// Where a state sorts: what needs a person first.
fn state_rank(state: &str) -> u8 {
    match state {
        "Error" => 0,
        "Lagging" => 1,
        "Seeding" | "Starting" => 2,
        "Paused" => 3,
        _ => 4,
    }
}

/// What a replicated branch is to its database, and why: `live` (written
/// now), `old, fenced` (the branch a failover or switchover moved off),
/// `drill` or `recovered`.
fn branch_role(snapshot: &Snapshot, db: &str, branch: &str) -> (&'static str, String) {
    use crate::control::event::BranchReason;
    let live = snapshot
        .branches
        .live_of(db)
        .map_or(crate::storage::MAIN_BRANCH, |(b, _)| b);
    if branch == live {
        return ("live", format!("{db}/{branch} is the branch clients write"));
    }
    match snapshot.branches.branch(db, branch).map(|b| b.fork.reason) {
        Some(BranchReason::Drill) => ("drill", "a test failover's branch; it expires".into()),
        Some(BranchReason::Recovery) => (
            "recovered",
            "writes recovered from a region that came back, to compare and merge".into(),
        ),
        Some(BranchReason::Manual) => ("forked by hand", "a branch made by hand".into()),
        _ => (
            "old, fenced",
            format!(
                "{db}/{live} is live now; this branch's writer was fenced and it takes no writes"
            ),
        ),
    }
}

/// The wizard; returns true when it should close.
fn wizard_ui(
    ui: &mut egui::Ui,
    engine: &Engine,
    snapshot: &Snapshot,
    primary: Option<&str>,
    wizard: &mut Wizard,
) -> bool {
    let mut close = false;
    ui.group(|ui| {
        ui.heading("Configure replication");
        let Some(primary) = primary else {
            ui.label("Add regions in Settings first.");
            return;
        };
        egui::Grid::new("wizard").num_columns(2).spacing([16.0, 8.0]).show(ui, |ui| {
            ui.label("Primary region");
            ui.add_enabled(false, egui::Button::new(primary))
                .on_disabled_hover_text("The primary is the first region in Settings: where the databases are written");
            ui.end_row();

            ui.label("Secondary region");
            ui.horizontal_wrapped(|ui| {
                for region in snapshot.regions.iter().filter(|r| r.spec.name != primary) {
                    let name = region.spec.name.clone();
                    ui.radio_value(&mut wizard.secondary, Some(name.clone()), name);
                }
            });
            ui.end_row();

            ui.label("Databases");
            ui.vertical(|ui| {
                ui.checkbox(&mut wizard.all, "All current and future databases");
                let homed: Vec<String> = snapshot
                    .databases
                    .iter()
                    .filter(|d| d.region == primary)
                    .flat_map(|d| d.branches.iter())
                    .filter(|b| b.replica_of.is_none())
                    .map(|b| b.db.clone())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                if homed.is_empty() {
                    ui.label(RichText::new("no database in the primary yet").color(widgets::muted(ui)));
                }
                ui.add_enabled_ui(!wizard.all, |ui| {
                    for db in homed {
                        let mut on = wizard.all || wizard.chosen.contains(&db);
                        if ui.checkbox(&mut on, &db).changed() {
                            if on {
                                wizard.chosen.insert(db);
                            } else {
                                wizard.chosen.remove(&db);
                            }
                        }
                    }
                });
            });
            ui.end_row();

            ui.label("Replication type");
            ui.vertical(|ui| {
                ui.radio_value(&mut wizard.kind, ReplicationKind::StorageOnly, "Storage only");
                ui.radio_value(
                    &mut wizard.kind,
                    ReplicationKind::PreProvisioned,
                    "Storage + pre-provisioned",
                )
                .on_hover_text(super::help::Term::PreProvisioning.tip());
                ui.radio_value(&mut wizard.kind, ReplicationKind::ZeroLoss, "Storage, zero loss")
                    .on_hover_text(super::help::Term::ZeroLoss.tip());
            });
            ui.end_row();

            if wizard.kind == ReplicationKind::ZeroLoss {
                ui.label("Zero-loss timeout");
                ui.vertical(|ui| {
                    ui.add(
                        egui::DragValue::new(&mut wizard.writes.zero_loss_timeout_s)
                            .range(0.1..=600.0)
                            .speed(0.1)
                            .suffix(" s"),
                    )
                    .accessible_name("Zero-loss timeout in seconds");
                    ui.label(
                        RichText::new(
                            "A write waits this long for the secondary; past it the group runs asynchronously (with an alert) until the secondary holds every write again.",
                        )
                        .small()
                        .color(widgets::muted(ui)),
                    );
                });
                ui.end_row();
            }

            ui.label("Data files");
            ui.vertical(|ui| {
                ui.radio_value(&mut wizard.data, DataCopy::Lifeboat, "Lifeboat copies every file");
                ui.radio_value(
                    &mut wizard.data,
                    DataCopy::Store,
                    "The store replicates them; Lifeboat keeps the order",
                )
                .on_hover_text(
                    "For a region pair that replicates objects itself (S3 Cross-Region Replication, GCS dual-region, Azure object replication, SeaweedFS filer.sync): set it to replicate each database's compacted/ folder, and not deletes. Lifeboat then copies no SST: it copies each manifest once the store has every SST it names, and the WAL and manifests itself, in order.",
                );
            });
            ui.end_row();

            super::help::term_label(ui, "RPO target", super::help::Term::Rpo);
            ui.add(
                egui::DragValue::new(&mut wizard.rpo_target_s)
                    .range(0.1..=3600.0)
                    .speed(0.1)
                    .suffix(" s"),
            )
            .accessible_name("RPO target in seconds");
            ui.end_row();

            ui.label("");
            ui.label(
                RichText::new(target_cost(snapshot, primary, wizard.rpo_target_s))
                    .small()
                    .color(widgets::muted(ui)),
            );
            ui.end_row();

            super::help::term_label(ui, "RPO guard", super::help::Term::RpoGuard);
            ui.vertical(|ui| {
                ui.checkbox(
                    &mut wizard.writes.rpo_guard,
                    "Slow, then refuse, writes that would put a replica past the RPO target",
                );
                ui.label(
                    RichText::new(
                        "Off: writes always go on and the RPO target is a goal. On: the target holds by construction, and clients see errors while the link is too slow.",
                    )
                    .small()
                    .color(widgets::muted(ui)),
                );
            });
            ui.end_row();

            super::help::term_label(ui, "GC hold", super::help::Term::GcHold);
            ui.vertical(|ui| {
                let mut hours = wizard.writes.gc_hold_s as f64 / 3600.0;
                let changed = ui
                    .add(
                        egui::DragValue::new(&mut hours)
                            .range(0.0..=720.0)
                            .speed(0.25)
                            .suffix(" h"),
                    )
                    .accessible_name("GC hold in hours")
                    .changed();
                if changed {
                    wizard.writes.gc_hold_s = (hours * 3600.0).round() as u64;
                }
                ui.label(
                    RichText::new(
                        "The primary keeps the files a replica still needs this long, so a paused or slow link catches up through every state instead of reseeding; its storage grows meanwhile. 0: off.",
                    )
                    .small()
                    .color(widgets::muted(ui)),
                );
            });
            ui.end_row();
        });
        ui.horizontal(|ui| {
            let reason = if wizard.secondary.is_none() {
                Some("choose a secondary region")
            } else if !wizard.all && wizard.chosen.is_empty() {
                Some("choose at least one database")
            } else {
                None
            };
            if button_unless(ui, "Submit", reason).clicked()
                && let Some(secondary) = wizard.secondary.clone()
            {
                let databases = if wizard.all {
                    Selection::All
                } else {
                    Selection::Only(wizard.chosen.clone())
                };
                wizard.pending = Some(engine.send(Command::ConfigureReplication {
                    secondary,
                    databases,
                    kind: wizard.kind,
                    rpo_target_s: wizard.rpo_target_s,
                    data: wizard.data,
                    writes: wizard.writes,
                }));
            }
            if ui.button("Cancel").clicked() {
                close = true;
            }
        });
        if let Some(crate::engine::activity::Outcome::Done(_)) = feedback(ui, snapshot, wizard.pending) {
            close = true;
        }
    });
    close
}

/// What an RPO target of `target_s` costs a quiet database of `primary`
/// at the prices the engine uses.
fn target_cost(snapshot: &Snapshot, primary: &str, target_s: f64) -> String {
    let prices = &snapshot.cost.prices;
    let Some(region) = snapshot.regions.iter().find(|r| r.spec.name == primary) else {
        return String::new();
    };
    if prices.is_empty() {
        return String::new();
    }
    let (row, what_if) = crate::cost::row_for_spec(prices, &region.spec);
    let target = std::time::Duration::from_secs_f64(target_s.max(0.001));
    format!("Costs {}", crate::cost::target_line(target, row, what_if))
}

/// Whether a zero-loss group's writes wait for the other region now: red
/// while a link is suspended.
fn zero_loss_ui(ui: &mut egui::Ui, snapshot: &Snapshot) {
    let Some(view) = &snapshot.zero_loss else {
        return;
    };
    ui.horizontal_wrapped(|ui| {
        if view.in_force() {
            widgets::badge(ui, widgets::good(ui), "ZERO LOSS");
        } else {
            widgets::badge(ui, widgets::bad(ui), "ASYNCHRONOUS");
        }
        let colour = if view.in_force() {
            widgets::muted(ui)
        } else {
            widgets::bad(ui)
        };
        ui.label(RichText::new(view.line()).color(colour))
            .on_hover_text(super::help::Term::ZeroLoss.tip());
    });
}

/// The workspaces pre-provisioning keeps standing in the secondary.
fn standby_ui(ui: &mut egui::Ui, snapshot: &Snapshot) {
    let Some(group) = &snapshot.group else {
        return;
    };
    if group.kind != ReplicationKind::PreProvisioned {
        return;
    }
    let standby = &snapshot.standby;
    if standby.workspaces.is_empty() && standby.starting.is_empty() {
        ui.label(
            RichText::new(format!(
                "Pre-provisioning: no workspace serves the group's databases yet; define one in Workspaces and it stands up in {}",
                group.secondary
            ))
            .color(widgets::muted(ui)),
        );
    }
    for ws in &standby.workspaces {
        let modes: Vec<String> = ws
            .endpoints
            .iter()
            .map(|e| format!("{} {} (lag {})", e.db, e.mode, widgets::lag(e.lag_s)))
            .collect();
        ui.label(format!(
            "Pre-provisioned: {} stands in {} at {}: {}",
            ws.name,
            ws.region,
            ws.addr,
            modes.join(", ")
        ));
    }
    for name in &standby.starting {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label(format!("standing {name} up in {}…", group.secondary));
        });
    }
    if let Some(note) = &standby.note {
        ui.label(RichText::new(note).color(widgets::warn(ui)));
    }
}
