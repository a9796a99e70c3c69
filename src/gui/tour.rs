//! The guided tour: five steps from an empty embedded default to a drill
//! report (create a database, write to it, configure replication, run a
//! drill, read the report). Each step is ticked off when the snapshot shows
//! it done, whoever did it: the tour's buttons only do or open what the
//! tabs do.

use eframe::egui::{self, RichText};

use super::help::Term;
use super::widgets::{self, button_unless, feedback};
use crate::engine::{Command, Engine, RequestId, Snapshot};

/// The database the tour creates when there is none.
pub const TOUR_DB: &str = "tour-orders";

/// What a tour button asks of the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TourAction {
    ShowDatabases,
    OpenWizard,
    OpenDrill,
}

/// The tour's own state.
#[derive(Default)]
pub struct Tour {
    pub open: bool,
    /// Set by the app once the drill report has been on screen.
    pub report_seen: bool,
    pending: Option<RequestId>,
}

/// How far the tour is, read from a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TourProgress {
    /// The primary region, where the tour's database lives.
    pub primary: Option<String>,
    /// The database the tour follows: `TOUR_DB`, else one being written,
    /// else the first live one in the primary.
    pub db: Option<String>,
    pub writing: bool,
    pub replicated: bool,
    /// The last drill run here, and whether it passed.
    pub drilled: Option<bool>,
    pub drilling: bool,
}

impl TourProgress {
    pub fn of(snapshot: &Snapshot) -> TourProgress {
        let primary = snapshot.regions.first().map(|r| r.spec.name.clone());
        let homed: Vec<&str> = snapshot
            .databases
            .iter()
            .filter(|r| Some(&r.region) == primary.as_ref())
            .flat_map(|r| r.branches.iter())
            .filter(|b| b.replica_of.is_none() && snapshot.branches.is_live(&b.db, &b.branch))
            .map(|b| b.db.as_str())
            .collect();
        let db = homed
            .iter()
            .find(|db| **db == TOUR_DB)
            .or_else(|| {
                homed
                    .iter()
                    .find(|db| snapshot.demo_workloads.iter().any(|w| w == *db))
            })
            .or_else(|| homed.first())
            .map(|db| db.to_string());
        let writing = db
            .as_ref()
            .is_some_and(|db| snapshot.demo_workloads.contains(db));
        let replicated = snapshot.group.is_some()
            && db.as_ref().is_some_and(|db| {
                snapshot
                    .flows
                    .iter()
                    .any(|f| &f.status.db == db && f.status.replica_manifest_id.is_some())
            });
        TourProgress {
            primary,
            db,
            writing,
            replicated,
            drilled: snapshot.drill.last.as_ref().map(|r| r.ok),
            drilling: snapshot.drill.running,
        }
    }

    /// The steps done, in order (a later step counts only after the ones
    /// before it).
    pub fn done(&self, report_seen: bool) -> [bool; 5] {
        let created = self.db.is_some();
        let writing = created && self.writing;
        let replicated = writing && self.replicated;
        let drilled = replicated && self.drilled == Some(true);
        [
            created,
            writing,
            replicated,
            drilled,
            drilled && report_seen,
        ]
    }
}

const STEPS: [&str; 5] = [
    "Create a database",
    "Write to it",
    "Configure replication",
    "Run a drill",
    "Read the report",
];

impl Tour {
    /// The tour as a side panel; returns what the app should open.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        engine: &Engine,
        snapshot: &Snapshot,
    ) -> Option<TourAction> {
        let mut action = None;
        let progress = TourProgress::of(snapshot);
        let done = progress.done(self.report_seen);
        let current = done.iter().position(|d| !d);
        ui.heading("Guided tour");
        ui.label(
            RichText::new("From an empty database to a drill report in five steps, on the two local regions of the embedded default.")
                .color(widgets::muted(ui)),
        );
        ui.add_space(6.0);
        for (index, title) in STEPS.iter().enumerate() {
            let (mark, colour) = if done[index] {
                ("done", widgets::good(ui))
            } else if Some(index) == current {
                ("now", widgets::warn(ui))
            } else {
                ("next", widgets::muted(ui))
            };
            ui.horizontal(|ui| {
                widgets::badge(ui, colour, mark);
                ui.label(RichText::new(format!("{}. {title}", index + 1)).strong());
            });
            if Some(index) == current {
                ui.indent(("tour-step", index), |ui| {
                    action = self.step_ui(ui, engine, snapshot, &progress, index);
                });
            }
        }
        if current.is_none() {
            ui.add_space(6.0);
            ui.label("You ran a drill and read its report: the replica was forked, served and verified in the secondary, and production was not touched.");
            ui.label("Next: Failover, Switchover and Failback on the Replication tab, the Dashboard's RPO and RTO, and the incident runbook (Help menu).");
        }
        feedback(ui, snapshot, self.pending);
        ui.add_space(8.0);
        if ui
            .button("Close the tour")
            .on_hover_text("Help → Take the tour opens it again")
            .clicked()
        {
            self.open = false;
        }
        action
    }

    fn step_ui(
        &mut self,
        ui: &mut egui::Ui,
        engine: &Engine,
        snapshot: &Snapshot,
        progress: &TourProgress,
        index: usize,
    ) -> Option<TourAction> {
        let db = progress.db.as_deref().unwrap_or(TOUR_DB);
        let mut action = None;
        match index {
            0 => {
                ui.label(format!(
                    "A database is a SlateDB database in a region's object store. Create {TOUR_DB} in {}, the primary: where it is written.",
                    progress.primary.as_deref().unwrap_or("the primary")
                ));
                let reason = progress
                    .primary
                    .is_none()
                    .then_some("add a region in Settings first");
                if button_unless(ui, &format!("Create {TOUR_DB}"), reason).clicked()
                    && let Some(region) = progress.primary.clone()
                {
                    self.pending = Some(engine.send(Command::CreateDatabase {
                        region,
                        name: TOUR_DB.into(),
                    }));
                    action = Some(TourAction::ShowDatabases);
                }
            }
            1 => {
                ui.label(format!(
                    "Write numbered test records to {db}, {} a second. Each is logged once acknowledged, so the drill can count what the replica holds.",
                    crate::engine::DEMO_RATE
                ));
                if ui.button("Start writing").clicked() {
                    self.pending = Some(engine.send(Command::StartWorkload { db: db.to_string() }));
                    action = Some(TourAction::ShowDatabases);
                }
            }
            2 => {
                super::help::term_label(
                    ui,
                    "Replication copies every database of the primary to the secondary, continuously, so the replica is readable at every instant. Submit the wizard as it opens.",
                    Term::Replica,
                );
                if snapshot.group.is_some() {
                    let seeding = snapshot.flows.iter().find(|f| f.status.db == db);
                    match seeding {
                        Some(flow) => {
                            ui.horizontal(|ui| {
                                ui.spinner();
                                ui.label(format!(
                                    "copying the first files of {db}: {:.0}%",
                                    flow.seed_progress * 100.0
                                ));
                            });
                        }
                        None => {
                            ui.label(format!(
                                "The replication group does not copy {db}: edit it to take all databases."
                            ));
                        }
                    }
                }
                if ui.button("Open the wizard").clicked() {
                    action = Some(TourAction::OpenWizard);
                }
            }
            3 => {
                super::help::term_label(
                    ui,
                    "A drill forks throw-away branches off the replicas in the secondary, serves and verifies them and measures the RTO. Press Run drill in the panel that opens.",
                    Term::Drill,
                );
                if progress.drilling {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label("drilling…");
                    });
                } else if progress.drilled == Some(false) {
                    ui.label(
                        RichText::new(
                            "The last drill failed: its report says which step; run it again.",
                        )
                        .color(widgets::bad(ui)),
                    );
                }
                let reason = progress.drilling.then_some("a drill is running");
                if button_unless(ui, "Open Test failover", reason).clicked() {
                    action = Some(TourAction::OpenDrill);
                }
            }
            _ => {
                super::help::term_label(
                    ui,
                    "The report is in the Test failover panel: each step with its time, the RTO, what the replica held against what was acknowledged, and the connection string the drill served. Export report saves it as Markdown.",
                    Term::Rto,
                );
                if ui.button("Show the report").clicked() {
                    action = Some(TourAction::OpenDrill);
                }
            }
        }
        action
    }
}
