//! The failover panel of the Replication tab: what will be lost first, a
//! confirmation, the steps as they run, then RTO, RPO, the new connection
//! strings and the report.

use eframe::egui::{self, RichText};

use super::widgets::{self, button_unless};
use crate::control::event::{OperationKind, OperationRecord};
use crate::engine::{Command, Engine, RequestId, Snapshot};
use crate::orchestrator::failover::Cut;

/// Exports an operation's report through a save dialog.
#[derive(Default)]
pub(super) struct ReportExport {
    dialog: widgets::PathDialog,
    /// The operation whose report is being exported.
    exporting: Option<String>,
    request: Option<RequestId>,
    note: Option<String>,
}

impl ReportExport {
    pub(super) fn button(&mut self, ui: &mut egui::Ui, engine: &Engine, record: &OperationRecord) {
        let open = self.dialog.is_open().then_some("a save dialog is open");
        if button_unless(ui, "Export report…", open).clicked() {
            let dialog = rfd::AsyncFileDialog::new()
                .set_title("Export the report")
                .add_filter("Markdown", &["md"])
                .add_filter("JSON", &["json"])
                .set_file_name(format!("{}.md", record.id))
                .save_file();
            self.exporting = Some(record.id.clone());
            self.note = None;
            self.dialog.open(ui.ctx(), engine.runtime(), dialog);
        }
    }

    pub(super) fn poll(&mut self, engine: &Engine) {
        match self.dialog.poll() {
            Some(Some(path)) => {
                if let Some(id) = self.exporting.take() {
                    self.request = Some(engine.send(Command::ExportReport { id, path }));
                }
            }
            Some(None) => {
                self.note = Some(
                    "No file chosen (or this system has no file dialog service); `lifeboat failover --report FILE` and `lifeboat drill --report FILE` write one too.".into(),
                );
            }
            None => {}
        }
    }

    pub(super) fn feedback(&self, ui: &mut egui::Ui, snapshot: &Snapshot) {
        if let Some(note) = &self.note {
            ui.label(RichText::new(note).color(widgets::muted(ui)));
        }
        widgets::feedback(ui, snapshot, self.request);
    }
}

/// The failover panel's own state.
#[derive(Default)]
pub struct FailoverPanel {
    open: bool,
    preview_request: Option<RequestId>,
    run_request: Option<RequestId>,
    export: ReportExport,
    /// What the user typed to confirm.
    typed: String,
    /// Which state of each replica to take, as picked.
    cut: CutPick,
    /// The time typed for [`CutPick::At`], and why it is not one.
    at: String,
    at_error: Option<String>,
}

/// The cuts the panel offers.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum CutPick {
    #[default]
    Newest,
    Common,
    At,
}

impl FailoverPanel {
    /// Why the Failover button is disabled, if it is.
    pub fn blocked(snapshot: &Snapshot) -> Option<String> {
        let group = snapshot.group.as_ref()?;
        if snapshot.failover.running {
            return Some("a failover is running".into());
        }
        let moved = snapshot
            .branches
            .live
            .iter()
            .filter(|(_, _, region)| *region == group.secondary)
            .count();
        // Databases whose live branch flows from the primary to the secondary.
        let replicated = snapshot
            .flows
            .iter()
            .filter(|f| {
                f.status.home == group.primary
                    && f.status.replica == group.secondary
                    && snapshot.branches.is_live(&f.status.db, &f.status.branch)
            })
            .count();
        if moved > 0 && replicated == 0 {
            return Some(format!(
                "the databases are live in {} already (epoch {}); use Failback or Switchover to move them back",
                group.secondary, snapshot.branches.epoch
            ));
        }
        if replicated == 0 {
            return Some(format!(
                "no database is replicating from {} to {} yet",
                group.primary, group.secondary
            ));
        }
        None
    }

    /// The Failover button; opens the panel with a fresh preview.
    pub fn button(&mut self, ui: &mut egui::Ui, engine: &Engine, snapshot: &Snapshot) {
        let blocked = Self::blocked(snapshot);
        let response = button_unless(ui, "Failover", blocked.as_deref()).on_hover_text(format!(
            "{} Shows first what would be lost.",
            super::help::Term::Failover.tip()
        ));
        if response.clicked() {
            self.open(engine);
        }
    }

    /// Opens the panel with a fresh preview (changes nothing).
    pub fn open(&mut self, engine: &Engine) {
        self.open = true;
        self.run_request = None;
        self.cut = CutPick::Newest;
        self.look(engine, Cut::Newest);
    }

    /// A fresh preview taking the replicas' state as `cut` says.
    fn look(&mut self, engine: &Engine, cut: Cut) {
        self.at_error = None;
        self.preview_request = Some(engine.send(Command::PreviewFailover { scope: None, cut }));
    }

    /// Which state of each replica to take: each one's newest, all at the
    /// newest instant every replica holds, or all as of a typed time. A
    /// change looks again.
    fn cut_ui(&mut self, ui: &mut egui::Ui, engine: &Engine) {
        ui.label(RichText::new("Take the databases:").strong());
        let before = self.cut;
        ui.radio_value(
            &mut self.cut,
            CutPick::Newest,
            "each at its replica's newest state",
        )
        .on_hover_text(
            "The least loss per database; the databases may stand at slightly different instants.",
        );
        ui.radio_value(&mut self.cut, CutPick::Common, "all at one instant, the newest every replica holds")
            .on_hover_text("No database is ahead of another (orders without their payments, say); the preview says what it costs each.");
        ui.horizontal(|ui| {
            ui.radio_value(&mut self.cut, CutPick::At, "all as of a time:")
                .on_hover_text("Undo a bad deploy or a destructive migration while failing over: the state as the old primary committed it then, inside the retention window.");
            let field = ui.add(
                egui::TextEdit::singleline(&mut self.at)
                    .hint_text("2026-11-26T14:05:00Z")
                    .desired_width(190.0),
            )
            .accessible_name("Time to fail over to");
            if field.gained_focus() {
                self.cut = CutPick::At;
            }
            let asked = ui.button("Look at that time").clicked()
                || (field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)));
            if asked {
                self.cut = CutPick::At;
                match at_ms(&self.at) {
                    Ok(ms) => self.look(engine, Cut::At(ms)),
                    Err(e) => self.at_error = Some(e),
                }
            }
        });
        if let Some(error) = &self.at_error {
            ui.label(RichText::new(error).color(widgets::bad(ui)));
        }
        if self.cut != before {
            match self.cut {
                CutPick::Newest => self.look(engine, Cut::Newest),
                CutPick::Common => self.look(engine, Cut::Common),
                // Looked at once a time is typed and asked for.
                CutPick::At => {}
            }
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, engine: &Engine, snapshot: &Snapshot) {
        self.export.poll(engine);
        if !self.open {
            return;
        }
        let view = &snapshot.failover;
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.heading("Failover");
            if view.running || self.run_request.is_some() {
                self.progress(ui, engine, snapshot);
                return;
            }
            if view.previewing {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Looking at both regions…");
                });
                return;
            }
            if let Some(error) = &view.preview_error {
                ui.label(RichText::new(error).color(widgets::bad(ui)));
                // A cut that cannot be taken: pick another.
                self.cut_ui(ui, engine);
                if ui.button("Close").clicked() {
                    self.open = false;
                }
                return;
            }
            let Some(preview) = &view.preview else {
                widgets::feedback(ui, snapshot, self.preview_request);
                return;
            };
            ui.label(RichText::new("What a failover would do and lose:").strong());
            for line in preview.summary().lines() {
                ui.monospace(line);
            }
            self.cut_ui(ui, engine);
            ui.label(
                RichText::new(
                    "The replicas are not written: new live branches are forked from them. Writes the replicas lack stay in the old primary for recovery.",
                )
                .color(widgets::muted(ui)),
            );
            let confirmed = widgets::typed_confirmation(ui, &preview.to, &mut self.typed);
            // The preview confirmed is the cut picked: a time picked, or
            // typed anew, and not looked at yet is not failed over to.
            let picked = match self.cut {
                CutPick::Newest => Some(Cut::Newest),
                CutPick::Common => Some(Cut::Common),
                CutPick::At => at_ms(&self.at).ok().map(Cut::At),
            };
            ui.horizontal(|ui| {
                let label = format!("Fail over to {} now", preview.to);
                let clicked = if picked == Some(preview.cut) {
                    widgets::confirmed_button(ui, &label, "Fail over now", confirmed, &preview.to)
                        .clicked()
                } else {
                    button_unless(
                        ui,
                        "Fail over now",
                        Some("the preview above is not of the time picked; press Look at that time first"),
                    )
                    .clicked()
                };
                if clicked {
                    self.typed.clear();
                    self.run_request = Some(engine.send(Command::Failover {
                        asked_ms: None,
                        epoch: preview.epoch,
                        serving: Default::default(),
                    }));
                }
                if ui.button("Cancel").clicked() {
                    self.open = false;
                }
            });
        });
    }

    fn progress(&mut self, ui: &mut egui::Ui, engine: &Engine, snapshot: &Snapshot) {
        let view = &snapshot.failover;
        let close = operation_ui(
            ui,
            engine,
            snapshot,
            Operation {
                running: view.running,
                running_label: "Failing over…",
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
    }
}

/// The time typed in the panel's time field, in Unix milliseconds: one
/// line saying what is wrong with it otherwise, in the field's words.
fn at_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(
            "Type a time first, like 2026-11-26T14:05:00Z (UTC when no offset is given).".into(),
        );
    }
    let at = humantime::parse_rfc3339_weak(text).map_err(|e| {
        format!("The time `{text}` is not one ({e}); write it like 2026-11-26T14:05:00Z.")
    })?;
    let ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| "The time lies before 1970.".to_string())?
        .as_millis() as u64;
    if ms > crate::orchestrator::now_ms() {
        return Err(format!(
            "The time {text} lies in the future; give one that has passed."
        ));
    }
    Ok(ms)
}

/// Where an operation run from a panel stands.
pub(super) struct Operation<'a> {
    pub running: bool,
    pub running_label: &'a str,
    pub steps: &'a [crate::control::event::Step],
    pub error: Option<&'a str>,
    pub last: Option<&'a OperationRecord>,
    pub request: Option<RequestId>,
}

/// An operation's steps as they end, a spinner while it runs, then its
/// outcome (or why it failed) with the report export and Close. Returns
/// whether Close was clicked.
pub(super) fn operation_ui(
    ui: &mut egui::Ui,
    engine: &Engine,
    snapshot: &Snapshot,
    op: Operation<'_>,
    export: &mut ReportExport,
) -> bool {
    if progress_ui(
        ui,
        op.steps,
        op.running.then_some(op.running_label),
        op.error,
    ) {
        return false;
    }
    match (op.error, op.last) {
        // Shown above.
        (Some(_), _) => {}
        (None, Some(record)) => {
            record_ui(ui, record, &snapshot.drill.serving);
            export.button(ui, engine, record);
        }
        (None, None) => {
            widgets::feedback(ui, snapshot, op.request);
        }
    }
    export.feedback(ui, snapshot);
    ui.button("Close").clicked()
}

/// The part every operation panel shows alike: the steps as they end, a
/// spinner with `running` while it runs, else why it failed. Whether it
/// still runs.
pub(super) fn progress_ui(
    ui: &mut egui::Ui,
    steps: &[crate::control::event::Step],
    running: Option<&str>,
    error: Option<&str>,
) -> bool {
    steps_ui(ui, steps);
    if let Some(label) = running {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label(label);
        });
        return true;
    }
    if let Some(error) = error {
        ui.label(RichText::new(error).color(widgets::bad(ui)));
    }
    false
}

/// The Test failover panel: a time to live, smoke commands, then the
/// drill's steps, verdict and report.
pub struct DrillPanel {
    open: bool,
    /// Whether the smoke commands were loaded from the group.
    loaded: bool,
    ttl_minutes: String,
    smoke: String,
    request: Option<RequestId>,
    export: ReportExport,
}

impl Default for DrillPanel {
    fn default() -> Self {
        DrillPanel {
            open: false,
            loaded: false,
            ttl_minutes: "60".into(),
            smoke: "DBSIZE".into(),
            request: None,
            export: ReportExport::default(),
        }
    }
}

impl DrillPanel {
    pub fn button(&mut self, ui: &mut egui::Ui, snapshot: &Snapshot) {
        let blocked = if snapshot.drill.running {
            Some("a drill is running")
        } else if snapshot.flows.is_empty() {
            Some("nothing replicates yet")
        } else {
            None
        };
        let response = button_unless(ui, "Test failover", blocked)
            .on_hover_text(super::help::Term::Drill.tip());
        if response.clicked() {
            self.open(snapshot);
        }
    }

    /// Opens the panel: the form, or the running or last drill.
    pub fn open(&mut self, snapshot: &Snapshot) {
        self.open = true;
        // The smoke commands the group saved with its last drill.
        if !self.loaded
            && let Some(group) = &snapshot.group
            && !group.smoke.is_empty()
        {
            self.smoke = group.smoke.join("\n");
        }
        self.loaded = true;
    }

    /// Whether the panel shows a finished drill's report (after a run, or
    /// above the form as the last drill).
    pub fn showing_report(&self, snapshot: &Snapshot) -> bool {
        self.open && !snapshot.drill.running && snapshot.drill.last.is_some()
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, engine: &Engine, snapshot: &Snapshot) {
        self.export.poll(engine);
        if !self.open {
            return;
        }
        let view = &snapshot.drill;
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.heading("Test failover");
            if view.running || self.request.is_some() {
                let close = operation_ui(
                    ui,
                    engine,
                    snapshot,
                    Operation {
                        running: view.running,
                        running_label: "Drilling…",
                        steps: &view.steps,
                        error: view.error.as_deref(),
                        last: view.last.as_ref(),
                        request: self.request,
                    },
                    &mut self.export,
                );
                if close {
                    self.open = false;
                    self.request = None;
                }
                return;
            }
            if let Some(last) = &view.last {
                egui::CollapsingHeader::new("The last drill's report")
                    .default_open(true)
                    .show(ui, |ui| {
                        steps_ui(ui, &last.steps);
                        record_ui(ui, last, &snapshot.drill.serving);
                        self.export.button(ui, engine, last);
                        self.export.feedback(ui, snapshot);
                    });
                ui.separator();
            }
            ui.label(
                "Drill branches are forked off the replicas in the secondary and served by a drill workspace on a port of its own; the primary and the replicas are not written.",
            );
            egui::Grid::new("drill-form").num_columns(2).show(ui, |ui| {
                ui.label("Keep the branches (minutes)");
                ui.add(egui::TextEdit::singleline(&mut self.ttl_minutes).desired_width(80.0))
                    .accessible_name("Drill time to live in minutes");
                ui.end_row();
                ui.label("Smoke commands (one per line)");
                ui.add(egui::TextEdit::multiline(&mut self.smoke).desired_rows(3))
                    .accessible_name("Smoke commands");
                ui.end_row();
            });
            let ttl = self.ttl_minutes.trim().parse::<u64>().ok().filter(|m| *m > 0);
            ui.horizontal(|ui| {
                let reason = ttl.is_none().then_some("give the time to live as a whole number of minutes above 0");
                if button_unless(ui, "Run drill", reason).clicked()
                    && let Some(minutes) = ttl
                {
                    let smoke = self
                        .smoke
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_string)
                        .collect();
                    self.request = Some(engine.send(Command::Drill {
                        ttl_s: minutes * 60,
                        smoke,
                        scope: None,
                        port: None,
                        cut: Default::default(),
                    }));
                }
                if ui.button("Cancel").clicked() {
                    self.open = false;
                }
            });
        });
    }
}

/// Each step of an operation with how long it took.
pub(super) fn steps_ui(ui: &mut egui::Ui, steps: &[crate::control::event::Step]) {
    for step in steps {
        ui.horizontal(|ui| {
            let (mark, colour) = if step.ok {
                ("done", widgets::good(ui))
            } else {
                ("failed", widgets::bad(ui))
            };
            widgets::badge(ui, colour, mark);
            ui.label(format!("{} ({} ms)", step.name, step.ms));
            ui.label(RichText::new(&step.detail).color(widgets::muted(ui)));
        });
    }
}

/// An operation's outcome: verdict, RTO, RPO per database, endpoints. A
/// drill's endpoints are offered to copy only while this engine serves
/// them (`serving`).
pub(super) fn record_ui(ui: &mut egui::Ui, record: &OperationRecord, serving: &[String]) {
    let colour = if record.ok {
        widgets::good(ui)
    } else {
        widgets::bad(ui)
    };
    ui.label(RichText::new(&record.outcome).color(colour).strong());
    ui.label(format!(
        "RTO {} (to {})",
        record
            .rto_ms
            .map_or("not measured".to_string(), |ms| format!("{ms} ms")),
        record.rto_to
    ))
    .on_hover_text(super::help::Term::Rto.tip());
    let drill = record.kind == OperationKind::Drill;
    let mut behind = false;
    for d in &record.rpo {
        let lost = match (d.missing_records, d.acknowledged) {
            (Some(m), Some(a)) => {
                behind |= m > 0;
                format!("{m} of {a} acknowledged records missing")
            }
            _ => d.lag_ms.map_or("RPO unknown".to_string(), |ms| {
                format!("replica lag {ms} ms at the fork")
            }),
        };
        ui.label(format!("RPO {}/{}: {lost}", d.db, d.branch))
            .on_hover_text(super::help::Term::Rpo.tip());
    }
    if drill && behind && record.ok {
        ui.label(
            RichText::new(
                "Expected, and why the drill still passed: a drill forks each replica as it stood, so the writes the home took after the replica's last copy (its lag, the RPO a failover at that instant would have had) are not in the drill branches. Production still has them; nothing was lost.",
            )
            .color(widgets::muted(ui)),
        );
    }
    for url in &record.endpoints {
        ui.horizontal(|ui| {
            ui.monospace(url);
            if drill && !serving.contains(url) {
                ui.label(
                    RichText::new("no longer served (the drill branches expired, or the process that served them stopped)")
                        .color(widgets::muted(ui)),
                );
            } else if ui
                .button("Copy")
                .accessible_name(format!("Copy new connection string {url}"))
                .clicked()
            {
                ui.ctx().copy_text(url.clone());
            }
        });
    }
}
