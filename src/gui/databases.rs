//! The Databases tab: per region, its databases and branches with size,
//! newest manifest and writer epoch; create; delete only after the user
//! typed the database's name.

use eframe::egui::{self, RichText};

use super::widgets::{self, button_unless, feedback, human_bytes};
use crate::engine::{Command, Engine, RequestId, Snapshot};

/// A delete waiting for its confirmation.
#[derive(Debug, Clone)]
struct PendingDelete {
    region: String,
    db: String,
    typed: String,
}

/// The tab's own state.
#[derive(Default)]
pub struct DatabasesTab {
    new_name: String,
    new_region: Option<String>,
    delete: Option<PendingDelete>,
    pending: Option<RequestId>,
}

impl DatabasesTab {
    pub fn ui(&mut self, ui: &mut egui::Ui, engine: &Engine, snapshot: &Snapshot) {
        widgets::section(
            ui,
            "Databases",
            "Each database is a tree of branches; a branch has one home region, and every other region holds a replica of it.",
        );
        self.create_form(ui, engine, snapshot);
        if let Some(delete) = &mut self.delete {
            let mut close = false;
            ui.group(|ui| {
                ui.label(
                    RichText::new(format!(
                        "Delete {} in {}? Every file of it in that region goes, for good.",
                        delete.db, delete.region
                    ))
                    .color(widgets::bad(ui))
                    .strong(),
                );
                ui.horizontal(|ui| {
                    ui.label(format!("Type {} to confirm:", delete.db));
                    ui.add(egui::TextEdit::singleline(&mut delete.typed).desired_width(200.0))
                        .accessible_name("Type the database name to confirm");
                });
                ui.horizontal(|ui| {
                    let reason = (delete.typed != delete.db)
                        .then_some("type the database's name exactly to enable this");
                    if button_unless(ui, "Delete forever", reason).clicked() {
                        self.pending = Some(engine.send(Command::DeleteDatabase {
                            region: delete.region.clone(),
                            name: delete.db.clone(),
                            typed_name: delete.typed.clone(),
                        }));
                        close = true;
                    }
                    if ui.button("Cancel").clicked() {
                        close = true;
                    }
                });
            });
            if close {
                self.delete = None;
            }
        }
        feedback(ui, snapshot, self.pending);
        ui.horizontal(|ui| {
            if ui.button("Refresh").clicked() {
                engine.send(Command::RefreshDatabases);
            }
            if let Some(at) = snapshot.databases_listed_us {
                ui.label(
                    RichText::new(format!("listed {}", widgets::ago(at))).color(widgets::muted(ui)),
                );
            }
        });
        ui.separator();
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                if snapshot.databases.is_empty() {
                    ui.label("Listing the regions…");
                }
                for region in &snapshot.databases {
                    self.region_ui(ui, region);
                }
            });
    }

    fn create_form(&mut self, ui: &mut egui::Ui, engine: &Engine, snapshot: &Snapshot) {
        let names: Vec<String> = snapshot
            .regions
            .iter()
            .map(|r| r.spec.name.clone())
            .collect();
        if self.new_region.as_ref().is_none_or(|r| !names.contains(r)) {
            self.new_region = names.first().cloned();
        }
        ui.horizontal_wrapped(|ui| {
            ui.label("New database");
            ui.add(
                egui::TextEdit::singleline(&mut self.new_name)
                    .hint_text("orders")
                    .desired_width(180.0),
            )
            .accessible_name("New database name");
            ui.label("in");
            egui::ComboBox::from_id_salt("new-db-region")
                .selected_text(self.new_region.clone().unwrap_or_default())
                .show_ui(ui, |ui| {
                    for name in &names {
                        ui.selectable_value(&mut self.new_region, Some(name.clone()), name);
                    }
                })
                .response
                .on_hover_text("the region that will be its home");
            let reason = if self.new_name.trim().is_empty() {
                Some("type a name first")
            } else if self.new_region.is_none() {
                Some("add a region in Settings first")
            } else {
                None
            };
            if button_unless(ui, "Create", reason).clicked()
                && let Some(region) = self.new_region.clone()
            {
                self.pending = Some(engine.send(Command::CreateDatabase {
                    region,
                    name: self.new_name.trim().to_string(),
                }));
                self.new_name.clear();
            }
        });
    }

    fn region_ui(&mut self, ui: &mut egui::Ui, region: &crate::engine::RegionDatabases) {
        ui.add_space(6.0);
        ui.label(RichText::new(&region.region).heading());
        if let Some(error) = &region.error {
            ui.label(RichText::new(error).color(widgets::bad(ui)));
            return;
        }
        if region.branches.is_empty() {
            ui.label(RichText::new("no databases here yet").color(widgets::muted(ui)));
            return;
        }
        egui::Grid::new(("dbs", &region.region))
            .striped(true)
            .num_columns(8)
            .spacing([14.0, 4.0])
            .show(ui, |ui| {
                for title in [
                    "Database",
                    "Branch",
                    "Role",
                    "Size",
                    "Objects",
                    "Newest manifest",
                    "Writer epoch",
                    "",
                ] {
                    ui.label(RichText::new(title).strong());
                }
                ui.end_row();
                for row in &region.branches {
                    ui.label(&row.db);
                    ui.label(&row.branch);
                    match &row.replica_of {
                        Some(home) => ui.label(format!("replica of {home}")),
                        None => ui.label(RichText::new("home (live)").color(widgets::good(ui))),
                    };
                    match &row.info {
                        Some(info) => {
                            ui.label(human_bytes(info.size_bytes));
                            ui.label(info.object_count.to_string());
                            ui.label(format!("{}", info.newest_manifest_id));
                            ui.label(info.writer_epoch.to_string());
                        }
                        None => {
                            let error = row.error.clone().unwrap_or_default();
                            ui.label(RichText::new(error).color(widgets::warn(ui)));
                            ui.label("");
                            ui.label("");
                            ui.label("");
                        }
                    }
                    let busy = self
                        .delete
                        .is_some()
                        .then_some("finish the delete above first");
                    if button_unless(ui, "Delete…", busy)
                        .accessible_name(format!("Delete {} in {}", row.db, region.region))
                        .clicked()
                    {
                        self.delete = Some(PendingDelete {
                            region: region.region.clone(),
                            db: row.db.clone(),
                            typed: String::new(),
                        });
                    }
                    ui.end_row();
                }
            });
    }
}
