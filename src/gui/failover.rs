//! The failover panel of the Replication tab: what will be lost first, a
//! confirmation, the steps as they run, then RTO, RPO, the new connection
//! strings and the report.

use eframe::egui::{self, RichText};

use super::widgets::{self, button_unless};
use crate::control::event::OperationRecord;
use crate::engine::{Command, Engine, RequestId, Snapshot};

/// The panel's own state.
#[derive(Default)]
pub struct FailoverPanel {
    open: bool,
    preview_request: Option<RequestId>,
    run_request: Option<RequestId>,
    export_request: Option<RequestId>,
    dialog: widgets::PathDialog,
    /// The report being exported.
    exporting: Option<String>,
    note: Option<String>,
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
                "the databases are live in {} already (epoch {}); failback arrives with the stranded-write recovery issue",
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
        let response = button_unless(ui, "Failover", blocked.as_deref()).on_hover_text(
            "Fork a new live branch from each replica in the secondary and serve it there; shows first what would be lost",
        );
        if response.clicked() {
            self.open = true;
            self.run_request = None;
            self.note = None;
            self.preview_request = Some(engine.send(Command::PreviewFailover));
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, engine: &Engine, snapshot: &Snapshot) {
        self.poll_dialog(engine);
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
            ui.label(
                RichText::new(
                    "The replicas are not written: new live branches are forked from them. Writes the replicas lack stay in the old primary for recovery.",
                )
                .color(widgets::muted(ui)),
            );
            ui.horizontal(|ui| {
                let fail = egui::Button::new(
                    RichText::new(format!("Fail over to {} now", preview.to)).strong(),
                );
                if ui
                    .add(fail)
                    .accessible_name("Fail over now")
                    .clicked()
                {
                    self.run_request = Some(engine.send(Command::Failover {
                        epoch: preview.epoch,
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
        for step in &view.steps {
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
        if view.running {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Failing over…");
            });
            return;
        }
        if let Some(error) = &view.error {
            ui.label(RichText::new(error).color(widgets::bad(ui)));
        } else if let Some(record) = &view.last {
            self.outcome(ui, engine, record);
        } else {
            widgets::feedback(ui, snapshot, self.run_request);
        }
        if let Some(note) = &self.note {
            ui.label(RichText::new(note).color(widgets::muted(ui)));
        }
        widgets::feedback(ui, snapshot, self.export_request);
        if ui.button("Close").clicked() {
            self.open = false;
            self.run_request = None;
        }
    }

    fn outcome(&mut self, ui: &mut egui::Ui, engine: &Engine, record: &OperationRecord) {
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
        ));
        for d in &record.rpo {
            let lost = match (d.missing_records, d.acknowledged) {
                (Some(m), Some(a)) => format!("{m} of {a} acknowledged records missing"),
                _ => d.lag_ms.map_or("RPO unknown".to_string(), |ms| {
                    format!("replica lag {ms} ms at the fork")
                }),
            };
            ui.label(format!("RPO {}/{}: {lost}", d.db, d.branch));
        }
        for url in &record.endpoints {
            ui.horizontal(|ui| {
                ui.monospace(url);
                if ui
                    .button("Copy")
                    .accessible_name(format!("Copy new connection string {url}"))
                    .clicked()
                {
                    ui.ctx().copy_text(url.clone());
                }
            });
        }
        let open = self.dialog.is_open().then_some("a save dialog is open");
        if button_unless(ui, "Export report…", open).clicked() {
            let dialog = rfd::AsyncFileDialog::new()
                .set_title("Export the failover report")
                .add_filter("Markdown", &["md"])
                .add_filter("JSON", &["json"])
                .set_file_name(format!("{}.md", record.id))
                .save_file();
            self.exporting = Some(record.id.clone());
            self.dialog.open(ui.ctx(), engine.runtime(), dialog);
        }
    }

    fn poll_dialog(&mut self, engine: &Engine) {
        match self.dialog.poll() {
            Some(Some(path)) => {
                if let Some(id) = self.exporting.take() {
                    self.export_request = Some(engine.send(Command::ExportReport { id, path }));
                }
            }
            Some(None) => {
                self.note = Some(
                    "No file chosen (or this system has no file dialog service); `lifeboat failover --report FILE` writes one too.".into(),
                );
            }
            None => {}
        }
    }
}
