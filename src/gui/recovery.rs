//! The Replication tab's Switchover, Failback and Recover stranded writes
//! panels: the plan first, a confirmation, the steps as they run, then RTO,
//! RPO and bytes copied; and a recovered branch compared with the live one,
//! key by key, with the merge choices.

use std::collections::BTreeMap;

use eframe::egui::{self, RichText};

use super::failover::{Operation, ReportExport, operation_ui, progress_ui};
use super::widgets::{self, button_unless};
use crate::control::event::OperationKind;
use crate::engine::{Command, Engine, RequestId, Snapshot};
use crate::orchestrator::merge::{Choice, Pick};
use crate::orchestrator::recover::unshown;

/// A planned move of the live branches: switchover or failback.
pub struct MovePanel {
    kind: OperationKind,
    open: bool,
    plan_request: Option<RequestId>,
    run_request: Option<RequestId>,
    export: ReportExport,
    /// What the user typed to confirm.
    typed: String,
}

impl MovePanel {
    pub fn new(kind: OperationKind) -> MovePanel {
        MovePanel {
            kind,
            open: false,
            plan_request: None,
            run_request: None,
            export: ReportExport::default(),
            typed: String::new(),
        }
    }

    fn title(&self) -> &'static str {
        match self.kind {
            OperationKind::Failback => "Failback",
            _ => "Switchover",
        }
    }

    /// Why the button is disabled, if it is.
    fn blocked(&self, snapshot: &Snapshot) -> Option<String> {
        let group = snapshot.group.as_ref()?;
        if snapshot.moving.running {
            return Some("a switchover or failback is running".into());
        }
        if snapshot.failover.running {
            return Some("a failover is running".into());
        }
        let at_secondary: Vec<(&str, &str)> = snapshot
            .branches
            .live
            .iter()
            .filter(|(_, _, region)| *region == group.secondary)
            .map(|(db, branch, _)| (db.as_str(), branch.as_str()))
            .collect();
        let (from, to) = if at_secondary.is_empty() {
            (&group.primary, &group.secondary)
        } else {
            (&group.secondary, &group.primary)
        };
        if self.kind == OperationKind::Failback {
            if at_secondary.is_empty() {
                return Some(format!(
                    "nothing to fail back: the live branches are written in {} (fail over first)",
                    group.primary
                ));
            }
            let failed_over = at_secondary.iter().any(|(db, branch)| {
                snapshot
                    .branches
                    .branch(db, branch)
                    .is_some_and(|b| b.fork.reason == crate::control::event::BranchReason::Failover)
            });
            if !failed_over {
                return Some(format!(
                    "the live branches were switched over to {}, not failed over: use Switchover",
                    group.secondary
                ));
            }
            let healthy = snapshot
                .regions
                .iter()
                .find(|r| r.spec.name == group.primary)
                .and_then(|r| r.health.as_ref())
                .is_some_and(|h| h.reachable);
            if !healthy {
                return Some(format!("{} does not answer yet", group.primary));
            }
        }
        // The live branches must flow to the target and be in sync there.
        let flowing: Vec<_> = snapshot
            .flows
            .iter()
            .filter(|f| {
                f.status.home == *from
                    && f.status.replica == *to
                    && snapshot.branches.is_live(&f.status.db, &f.status.branch)
            })
            .collect();
        if flowing.is_empty() {
            return Some(format!("no live branch replicates from {from} to {to} yet"));
        }
        if let Some(f) = flowing
            .iter()
            .find(|f| f.status.state != crate::replication::FlowState::InSync)
        {
            return Some(format!(
                "{}/{} is {} in {to}: wait until it is in sync",
                f.status.db,
                f.status.branch,
                f.status.state.label()
            ));
        }
        None
    }

    pub fn button(&mut self, ui: &mut egui::Ui, engine: &Engine, snapshot: &Snapshot) {
        let blocked = self.blocked(snapshot);
        let hover = match self.kind {
            OperationKind::Failback => super::help::Term::Failback.tip(),
            _ => super::help::Term::Switchover.tip(),
        };
        let response = button_unless(ui, self.title(), blocked.as_deref()).on_hover_text(hover);
        if response.clicked() {
            self.open(engine);
        }
    }

    /// Opens the panel with a fresh plan.
    pub fn open(&mut self, engine: &Engine) {
        self.open = true;
        self.run_request = None;
        self.plan_request = Some(engine.send(Command::PlanMove {
            kind: self.kind,
            scope: None,
        }));
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, engine: &Engine, snapshot: &Snapshot) {
        self.export.poll(engine);
        let view = &snapshot.moving;
        if !self.open {
            return;
        }
        if view.kind != Some(self.kind) {
            // The plan was refused before it started: say why.
            let refused = self
                .plan_request
                .and_then(|id| widgets::outcome_of(snapshot, id));
            if let Some(crate::engine::activity::Outcome::Failed(_)) = refused {
                egui::Frame::group(ui.style()).show(ui, |ui| {
                    ui.heading(self.title());
                    widgets::feedback(ui, snapshot, self.plan_request);
                    if ui.button("Close").clicked() {
                        self.open = false;
                    }
                });
            }
            return;
        }
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.heading(self.title());
            if view.running || self.run_request.is_some() {
                let close = operation_ui(
                    ui,
                    engine,
                    snapshot,
                    Operation {
                        running: view.running,
                        running_label: "Moving…",
                        steps: &view.steps,
                        error: view.error.as_deref(),
                        last: view.last.as_ref(),
                        request: self.run_request,
                    },
                    &mut self.export,
                );
                if close {
                    self.open = false;
                    self.run_request = None;
                }
                return;
            }
            if view.planning {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Looking at both regions…");
                });
                return;
            }
            if let Some(error) = &view.plan_error {
                ui.label(RichText::new(error).color(widgets::bad(ui)));
                if ui.button("Close").clicked() {
                    self.open = false;
                }
                return;
            }
            let Some(plan) = &view.plan else {
                widgets::feedback(ui, snapshot, self.plan_request);
                return;
            };
            for line in plan.summary().lines() {
                ui.monospace(line);
            }
            ui.label(
                RichText::new(
                    "Clients get a clear READONLY error for a few seconds, then write at the new connection string.",
                )
                .color(widgets::muted(ui)),
            );
            // Writes still stranded in the old primary stay behind a
            // failback: say which, before it is confirmed.
            let stranded: Vec<String> = snapshot
                .branches
                .unrecovered()
                .into_iter()
                .map(|(db, _)| db)
                .collect();
            if self.kind == OperationKind::Failback && !stranded.is_empty() {
                ui.label(
                    RichText::new(format!(
                        "Still stranded in {}: the writes of {} after the failover's fork point are not in the live branches; recover them first (Recover stranded writes), or they stay only in the old branches.",
                        plan.to,
                        stranded.join(", ")
                    ))
                    .color(widgets::bad(ui)),
                );
            }
            let confirmed = widgets::typed_confirmation(ui, &plan.to, &mut self.typed);
            ui.horizontal(|ui| {
                let label = format!("{} to {} now", self.title(), plan.to);
                let accessible = format!("{} now", self.title());
                if widgets::confirmed_button(ui, &label, &accessible, confirmed, &plan.to).clicked()
                {
                    self.typed.clear();
                    self.run_request = Some(engine.send(Command::Move {
                        asked_ms: None,
                        kind: self.kind,
                        epoch: plan.epoch,
                        serving: Default::default(),
                    }));
                }
                if ui.button("Cancel").clicked() {
                    self.open = false;
                }
            });
        });
    }
}

/// Stranded writes: recover them, compare them with the live branch, and
/// merge what the user picks.
#[derive(Default)]
pub struct RecoverPanel {
    open: bool,
    request: Option<RequestId>,
    /// Conflicting keys (as shown) whose recovered value is to be taken.
    take: BTreeMap<String, bool>,
    discard: bool,
    /// The databases asked to recover, with the request of each once sent.
    asked: Vec<(String, Option<RequestId>)>,
    /// Set while the recovery waits for a typed confirmation: the region
    /// the writes are stranded in, and the databases.
    confirming: Option<(String, Vec<String>)>,
    typed: String,
}

impl RecoverPanel {
    /// Sends the next asked recovery once the one before it has ended (the
    /// engine runs one at a time).
    fn next_recovery(&mut self, engine: &Engine, snapshot: &Snapshot) {
        let busy = snapshot.recovery.running
            || self.asked.iter().any(|(_, request)| {
                request.is_some_and(|id| {
                    widgets::outcome_of(snapshot, id)
                        .is_none_or(|o| *o == crate::engine::activity::Outcome::Running)
                })
            });
        if busy {
            return;
        }
        if let Some((db, request)) = self.asked.iter_mut().find(|(_, r)| r.is_none()) {
            let id = engine.send(Command::Recover { db: db.clone() });
            *request = Some(id);
            self.request = Some(id);
        }
    }
    /// The region the first of `unrecovered` was failed over from, while it
    /// does not answer (its stranded writes wait for it).
    fn source_down(snapshot: &Snapshot, unrecovered: &[(String, String)]) -> Option<String> {
        unrecovered.first().and_then(|(db, live)| {
            let fork = &snapshot.branches.branch(db, live)?.fork;
            let group = snapshot.group.as_ref()?;
            let source = if fork.region == group.primary {
                &group.secondary
            } else {
                &group.primary
            };
            let reachable = snapshot
                .regions
                .iter()
                .find(|r| r.spec.name == *source)
                .and_then(|r| r.health.as_ref())
                .is_some_and(|h| h.reachable);
            (!reachable).then(|| source.clone())
        })
    }

    pub fn button(&mut self, ui: &mut egui::Ui, engine: &Engine, snapshot: &Snapshot) {
        let unrecovered = snapshot.branches.unrecovered();
        let recovered = &snapshot.branches.recovered;
        let source_down = Self::source_down(snapshot, &unrecovered);
        let blocked = if snapshot.recovery.running {
            Some("a recovery or merge is running".to_string())
        } else if let Some(source) = source_down.as_ref().filter(|_| recovered.is_empty()) {
            Some(format!(
                "{source} does not answer yet: writes stranded there wait until it is back"
            ))
        } else if unrecovered.is_empty() && recovered.is_empty() {
            Some("nothing is stranded: recovery follows an unplanned failover, once the failed region answers again".to_string())
        } else {
            None
        };
        let label = if unrecovered.is_empty() || source_down.is_some() {
            "Recovered writes"
        } else {
            "Recover stranded writes"
        };
        let response = button_unless(ui, label, blocked.as_deref()).on_hover_text(format!(
            "{} Recovering fences the old writer, copies its last files and compares them with the live branch key by key; you merge what you pick.",
            super::help::Term::StrandedWrites.tip()
        ));
        if response.clicked() {
            self.open(engine, snapshot);
        }
    }

    /// Opens the panel: asks to confirm the recovery of every unrecovered
    /// database when their source answers, else compares the newest
    /// recovered branch.
    pub fn open(&mut self, engine: &Engine, snapshot: &Snapshot) {
        let unrecovered = snapshot.branches.unrecovered();
        let recovered = &snapshot.branches.recovered;
        let source_down = Self::source_down(snapshot, &unrecovered);
        self.open = true;
        self.typed.clear();
        let source = snapshot.group.as_ref().and_then(|group| {
            let (_, live) = unrecovered.first()?;
            let (db, _) = unrecovered.first()?;
            let fork = &snapshot.branches.branch(db, live)?.fork;
            Some(if fork.region == group.primary {
                group.secondary.clone()
            } else {
                group.primary.clone()
            })
        });
        if let (Some(source), None) = (source.filter(|_| !unrecovered.is_empty()), &source_down) {
            self.confirming = Some((source, unrecovered.into_iter().map(|(db, _)| db).collect()));
        } else if let Some(r) = recovered.last() {
            self.request = Some(engine.send(Command::CompareRecovered {
                db: r.recovered.fork.db.clone(),
                branch: r.recovered.fork.branch.clone(),
            }));
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, engine: &Engine, snapshot: &Snapshot) {
        if !self.open {
            return;
        }
        let view = &snapshot.recovery;
        self.next_recovery(engine, snapshot);
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.heading("Recovered writes");
            if let Some((source, dbs)) = self.confirming.clone() {
                ui.label(format!(
                    "Recover the writes stranded in {source} of {}: each old writer there is fenced, its last files are copied and forked as a recovered branch, and compared with the live branch key by key. Nothing is merged until you choose.",
                    dbs.join(", ")
                ));
                let confirmed = widgets::typed_confirmation(ui, &source, &mut self.typed);
                ui.horizontal(|ui| {
                    if widgets::confirmed_button(ui, "Recover now", "Recover now", confirmed, &source)
                        .clicked()
                    {
                        self.asked = dbs.iter().map(|db| (db.clone(), None)).collect();
                        self.confirming = None;
                        self.typed.clear();
                    }
                    if ui.button("Cancel").accessible_name("Cancel recovery").clicked() {
                        self.confirming = None;
                        self.open = false;
                    }
                });
                return;
            }
            // Each database's own result.
            for (db, request) in &self.asked {
                let line = match request.and_then(|id| widgets::outcome_of(snapshot, id)) {
                    Some(crate::engine::activity::Outcome::Done(message)) => {
                        RichText::new(format!("{db}: {message}")).color(widgets::good(ui))
                    }
                    Some(crate::engine::activity::Outcome::Failed(message)) => {
                        RichText::new(format!("{db}: failed: {message}")).color(widgets::bad(ui))
                    }
                    Some(_) => RichText::new(format!("{db}: recovering…")),
                    None => RichText::new(format!("{db}: waiting its turn")).color(widgets::muted(ui)),
                };
                ui.label(line);
            }
            let running = if view.running {
                Some("Working…")
            } else {
                view.comparing.then_some("Comparing…")
            };
            if progress_ui(ui, &view.steps, running, view.error.as_deref()) {
                return;
            }
            if let Some(record) = &view.last {
                ui.label(RichText::new(&record.outcome).strong());
            }
            widgets::feedback(ui, snapshot, self.request);
            if let Some(c) = &view.comparison {
                ui.label(format!(
                    "{}/{}: {} key(s) written after the fork point, {} conflict(s), {} still to merge into {}",
                    c.db, c.branch, c.changed, c.conflicts, c.pending, c.live
                ));
                ui.label(
                    RichText::new(format!(
                        "Compared: the stranded branch at {} with the fork point at {}",
                        c.recovered_at, c.fork_point
                    ))
                    .color(widgets::muted(ui)),
                );
                if let Some(why) = &c.unlike_recorded {
                    ui.label(RichText::new(why).color(widgets::bad(ui)));
                }
                egui::ScrollArea::vertical()
                    .max_height(260.0)
                    .show(ui, |ui| {
                        egui::Grid::new("recovered-keys")
                            .num_columns(5)
                            .striped(true)
                            .show(ui, |ui| {
                                for h in ["key", "recovered", "live", "at the fork", "take recovered"] {
                                    ui.label(RichText::new(h).strong());
                                }
                                ui.end_row();
                                let cut = |v: &Option<String>| match v {
                                    None => "(absent)".to_string(),
                                    Some(v) if v.chars().count() > 32 => {
                                        format!("{}…", v.chars().take(32).collect::<String>())
                                    }
                                    Some(v) => v.clone(),
                                };
                                for row in &c.rows {
                                    ui.monospace(&row.key);
                                    ui.label(cut(&row.recovered));
                                    ui.label(cut(&row.live));
                                    ui.label(cut(&row.base));
                                    if row.conflict {
                                        let take = self.take.entry(row.key.clone()).or_default();
                                        ui.checkbox(take, "")
                                            .on_hover_text("Checked: the recovered value replaces the live one; unchecked: the live value stays");
                                    } else if row.merged {
                                        ui.label("merged");
                                    } else {
                                        ui.label("clean");
                                    }
                                    ui.end_row();
                                }
                            });
                    });
                if c.changed > c.rows.len() {
                    ui.label(
                        RichText::new(format!(
                            "{} more key(s) not shown; `lifeboat recover --db {} --show {} --json` lists them all",
                            c.changed - c.rows.len(),
                            c.db,
                            c.branch
                        ))
                        .color(widgets::muted(ui)),
                    );
                }
                ui.checkbox(&mut self.discard, "Discard the recovered branch once merged");
                let nothing = match &c.unlike_recorded {
                    Some(_) => Some("this is not the comparison the recovery recorded (see above); recover again to compare afresh"),
                    None => (c.pending == 0).then_some("everything is merged"),
                };
                ui.horizontal(|ui| {
                    let send = |pick: Pick| {
                        engine.send(Command::Merge {
                            db: c.db.clone(),
                            branch: c.branch.clone(),
                            pick,
                            discard: self.discard,
                            chunk: None,
                        })
                    };
                    let mut asked = None;
                    if button_unless(ui, "Merge clean keys", nothing)
                        .on_hover_text("Only the keys the live branch did not change since the fork point")
                        .clicked()
                    {
                        asked = Some(send(Pick::Clean));
                    }
                    if button_unless(ui, "Merge with my choices", nothing)
                        .on_hover_text("The clean keys, and the checked conflicts with their recovered value")
                        .clicked()
                    {
                        let choices = self
                            .take
                            .iter()
                            .filter_map(|(k, take)| {
                                let key = unshown(k).ok()?;
                                Some((key, if *take { Choice::Recovered } else { Choice::Live }))
                            })
                            .collect();
                        asked = Some(send(Pick::Choose(choices)));
                    }
                    if button_unless(ui, "Merge all", nothing)
                        .on_hover_text("Every recovered key; conflicts take the recovered value")
                        .clicked()
                    {
                        asked = Some(send(Pick::All));
                    }
                    if asked.is_some() {
                        self.request = asked;
                    }
                });
                if c.pending == 0
                    && ui
                        .button("Delete the recovered branch")
                        .on_hover_text("Everything is merged; its files are not needed any more")
                        .clicked()
                {
                    self.request = Some(engine.send(Command::DeleteBranch {
                        db: c.db.clone(),
                        branch: c.branch.clone(),
                    }));
                }
            }
            if ui
                .button("Close")
                .accessible_name("Close recovered writes")
                .clicked()
            {
                self.open = false;
                self.request = None;
            }
        });
    }
}
