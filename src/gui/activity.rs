//! The Activity tab: every action with who, when, what and the outcome,
//! newest first; exported to CSV through a save dialog or to a typed path.

use std::path::PathBuf;

use eframe::egui::{self, RichText};

use super::widgets::{self, feedback};
use crate::engine::activity::Outcome;
use crate::engine::{Command, Engine, RequestId, Snapshot};

/// The tab's own state.
pub struct ActivityTab {
    filter: String,
    path: String,
    pending: Option<RequestId>,
    dialog: widgets::PathDialog,
    note: Option<String>,
}

impl ActivityTab {
    pub fn new(default_export: PathBuf) -> ActivityTab {
        ActivityTab {
            filter: String::new(),
            path: default_export.display().to_string(),
            pending: None,
            dialog: widgets::PathDialog::default(),
            note: None,
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, engine: &Engine, snapshot: &Snapshot) {
        widgets::section(
            ui,
            "Activity",
            "Every action taken here, by whom, when, and how it ended.",
        );
        self.poll_dialog(engine);
        ui.horizontal_wrapped(|ui| {
            let dialog_open = self.dialog.is_open().then_some("a save dialog is open");
            if widgets::button_unless(ui, "Export CSV…", dialog_open).clicked() {
                self.open_dialog(ui.ctx(), engine);
            }
            ui.label("or to");
            ui.add(egui::TextEdit::singleline(&mut self.path).desired_width(320.0))
                .accessible_name("Export path");
            let reason = self
                .path
                .trim()
                .is_empty()
                .then_some("type a file path first");
            if widgets::button_unless(ui, "Export to this path", reason).clicked() {
                self.pending = Some(engine.send(Command::ExportActivity {
                    path: PathBuf::from(self.path.trim()),
                }));
            }
        });
        if let Some(note) = &self.note {
            ui.label(RichText::new(note).color(widgets::muted(ui)));
        }
        feedback(ui, snapshot, self.pending);
        ui.horizontal(|ui| {
            ui.label("Filter");
            ui.add(
                egui::TextEdit::singleline(&mut self.filter).hint_text("region, database, user…"),
            )
            .accessible_name("Filter the activity");
        });
        ui.separator();
        let filter = self.filter.to_lowercase();
        let rows: Vec<_> = snapshot
            .activity
            .iter()
            .rev()
            .filter(|e| widgets::matches_filter(&filter, &[&e.what, &e.who, e.outcome.message()]))
            .collect();
        if rows.is_empty() {
            ui.label("Nothing yet: what you do in this window is listed here.");
            return;
        }
        let row_height = ui.text_style_height(&egui::TextStyle::Body) + 6.0;
        egui::ScrollArea::both()
            .auto_shrink([false, false])
            .show_rows(ui, row_height, rows.len(), |ui, range| {
                egui::Grid::new("activity")
                    .striped(true)
                    .num_columns(5)
                    .spacing([14.0, 4.0])
                    .min_row_height(row_height - 4.0)
                    .show(ui, |ui| {
                        for entry in &rows[range] {
                            ui.label(widgets::clock(entry.at_us));
                            ui.label(&entry.who);
                            ui.label(&entry.what);
                            let colour = match entry.outcome {
                                Outcome::Running => widgets::warn(ui),
                                Outcome::Done(_) => widgets::good(ui),
                                Outcome::Failed(_) => widgets::bad(ui),
                            };
                            widgets::badge(ui, colour, entry.outcome.label());
                            ui.label(entry.outcome.message());
                            ui.end_row();
                        }
                    });
            });
    }

    fn open_dialog(&mut self, ctx: &egui::Context, engine: &Engine) {
        let dialog = rfd::AsyncFileDialog::new()
            .set_title("Export the activity log")
            .add_filter("CSV", &["csv"])
            .set_file_name("lifeboat-activity.csv")
            .save_file();
        self.dialog.open(ctx, engine.runtime(), dialog);
        self.note = None;
    }

    fn poll_dialog(&mut self, engine: &Engine) {
        match self.dialog.poll() {
            Some(Some(path)) => {
                self.path = path.display().to_string();
                self.pending = Some(engine.send(Command::ExportActivity { path }));
            }
            Some(None) => {
                self.note = Some(
                    "No file chosen. If no dialog appeared, this system has no file dialog service: type a path and use Export to this path.".into(),
                );
            }
            None => {}
        }
    }
}
