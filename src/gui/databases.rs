//! The Databases tab: per region, its databases and branches with size,
//! newest manifest and writer epoch; create; delete only after the user
//! typed the database's name.

use eframe::egui::{self, RichText};

use super::help::Term;
use super::widgets::{self, button_unless, feedback, human_bytes};
use crate::engine::{Command, Engine, RequestId, Snapshot};

/// A delete waiting for its confirmation.
#[derive(Debug, Clone)]
struct PendingDelete {
    region: String,
    db: String,
    typed: String,
}

/// The point-in-time restore form.
#[derive(Debug, Clone, Default)]
struct RestoreForm {
    db: Option<String>,
    region: Option<String>,
    /// RFC 3339, prefilled with a few minutes ago.
    at: String,
    name: String,
}

/// The tab's own state.
#[derive(Default)]
pub struct DatabasesTab {
    new_name: String,
    new_region: Option<String>,
    delete: Option<PendingDelete>,
    pending: Option<RequestId>,
    restore: RestoreForm,
    /// Shows only the branches whose database or branch name holds this.
    filter: String,
}

/// Most branch rows drawn per region: a region of a thousand databases
/// would otherwise lay out every row each frame (140 ms a frame at 1,000);
/// the filter finds the others.
const ROWS_PER_REGION: usize = 100;

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
            ui.label("Filter");
            ui.add(
                egui::TextEdit::singleline(&mut self.filter)
                    .hint_text("database or branch")
                    .desired_width(200.0),
            )
            .accessible_name("Filter databases");
            if let Some(at) = snapshot.databases_listed_us {
                ui.label(
                    RichText::new(format!("listed {}", widgets::ago(ui, at)))
                        .color(widgets::muted(ui)),
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
                for region in snapshot.databases.iter() {
                    self.region_ui(ui, engine, region, snapshot);
                }
                ui.add_space(10.0);
                self.branches_ui(ui, engine, snapshot);
                ui.add_space(10.0);
                self.restore_ui(ui, engine, snapshot);
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

    /// Forked branches as a tree: each under the branch it was forked from.
    fn branches_ui(&mut self, ui: &mut egui::Ui, engine: &Engine, snapshot: &Snapshot) {
        super::help::term_label(
            ui,
            RichText::new("Branches").heading(),
            super::help::Term::Branch,
        );
        let view = &snapshot.branches;
        if view.branches.is_empty() {
            ui.label(
                RichText::new("no forked branch yet: a drill (Replication tab, Test failover), a failover or a restore below makes one")
                    .color(widgets::muted(ui)),
            );
            return;
        }
        egui::Grid::new("branches")
            .striped(true)
            .num_columns(7)
            .spacing([14.0, 4.0])
            .show(ui, |ui| {
                for title in [
                    "Branch",
                    "Forked from",
                    "Fork point",
                    "Home",
                    "Reason",
                    "Time to live",
                    "",
                ] {
                    ui.label(RichText::new(title).strong());
                }
                ui.end_row();
                let mut rows: Vec<(usize, &crate::control::state::BranchRecord)> = Vec::new();
                // Depth-first from each database's main branch.
                fn walk<'a>(
                    all: &'a [crate::control::state::BranchRecord],
                    db: &str,
                    parent: &str,
                    depth: usize,
                    out: &mut Vec<(usize, &'a crate::control::state::BranchRecord)>,
                ) {
                    for b in all
                        .iter()
                        .filter(|b| b.fork.db == db && b.fork.source == parent)
                    {
                        out.push((depth, b));
                        walk(all, db, &b.fork.branch, depth + 1, out);
                    }
                }
                let dbs: std::collections::BTreeSet<&str> =
                    view.branches.iter().map(|b| b.fork.db.as_str()).collect();
                for db in dbs {
                    walk(
                        &view.branches,
                        db,
                        crate::storage::MAIN_BRANCH,
                        0,
                        &mut rows,
                    );
                }
                // Branches whose parent is gone stand at the top.
                for b in &view.branches {
                    if !rows.iter().any(|(_, r)| std::ptr::eq(*r, b)) {
                        rows.push((0, b));
                    }
                }
                for (depth, b) in rows {
                    let f = &b.fork;
                    let live = view.is_live(&f.db, &f.branch);
                    let name = format!("{}{}/{}", "  ".repeat(depth), f.db, f.branch);
                    if live {
                        ui.label(RichText::new(format!("{name} (live)")).color(widgets::good(ui)));
                    } else {
                        ui.label(name);
                    }
                    ui.label(&f.source);
                    ui.label(format!("manifest {}, WAL {}", f.manifest_id, f.wal_end))
                        .on_hover_text(format!("forked {}", widgets::clock(b.created.ms * 1000)));
                    ui.label(&f.region);
                    ui.label(f.reason.name());
                    ui.label(match f.expires_ms {
                        Some(t) => {
                            let left = t.saturating_sub(crate::orchestrator::now_ms()) / 1000;
                            // The countdown ticks while it is on screen.
                            ui.ctx()
                                .request_repaint_after(std::time::Duration::from_secs(1));
                            format!("{} min {} s", left / 60, left % 60)
                        }
                        None => "kept".into(),
                    });
                    let reason = live.then_some("the live branch is deleted only after a failback");
                    if button_unless(ui, "Delete", reason)
                        .accessible_name(format!("Delete branch {}/{}", f.db, f.branch))
                        .clicked()
                    {
                        self.pending = Some(engine.send(Command::DeleteBranch {
                            db: f.db.clone(),
                            branch: f.branch.clone(),
                        }));
                    }
                    ui.end_row();
                }
            });
    }

    /// Point-in-time recovery: a database, a region, a time.
    fn restore_ui(&mut self, ui: &mut egui::Ui, engine: &Engine, snapshot: &Snapshot) {
        ui.label(RichText::new("Restore to a point in time").heading());
        ui.label(
            RichText::new(
                "Forks a branch as it was at a time inside the retention window (to the WAL file, about 100 ms), from the home's scheduled checkpoints; at a replica, as the replica held it then.",
            )
            .color(widgets::muted(ui)),
        );
        let mut dbs: Vec<String> = snapshot
            .databases
            .iter()
            .flat_map(|r| r.branches.iter().map(|b| b.db.clone()))
            .collect();
        dbs.sort();
        dbs.dedup();
        let regions: Vec<String> = snapshot
            .regions
            .iter()
            .map(|r| r.spec.name.clone())
            .collect();
        let form = &mut self.restore;
        if form.db.as_ref().is_none_or(|d| !dbs.contains(d)) {
            form.db = dbs.first().cloned();
        }
        if form.region.as_ref().is_none_or(|r| !regions.contains(r)) {
            form.region = regions.first().cloned();
        }
        if form.at.is_empty() {
            let five_min_ago = crate::workload::now_us().saturating_sub(300_000_000);
            form.at = crate::workload::verify::format_us(five_min_ago)
                .get(..19)
                .map(|t| format!("{t}Z"))
                .unwrap_or_default();
        }
        ui.horizontal_wrapped(|ui| {
            egui::ComboBox::from_id_salt("restore-db")
                .selected_text(form.db.clone().unwrap_or_default())
                .show_ui(ui, |ui| {
                    for db in &dbs {
                        ui.selectable_value(&mut form.db, Some(db.clone()), db);
                    }
                })
                .response
                .accessible_name("Database to restore");
            ui.label("in");
            egui::ComboBox::from_id_salt("restore-region")
                .selected_text(form.region.clone().unwrap_or_default())
                .show_ui(ui, |ui| {
                    for r in &regions {
                        ui.selectable_value(&mut form.region, Some(r.clone()), r);
                    }
                })
                .response
                .accessible_name("Region to restore in");
            ui.label("as of");
            ui.add(egui::TextEdit::singleline(&mut form.at).desired_width(190.0))
                .accessible_name("Restore time")
                .on_hover_text("RFC 3339, UTC: 2026-11-26T14:05:00Z");
            ui.label("as branch");
            ui.add(
                egui::TextEdit::singleline(&mut form.name)
                    .hint_text("restore-1")
                    .desired_width(140.0),
            )
            .accessible_name("Restored branch name");
            let at = humantime::parse_rfc3339_weak(form.at.trim())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as u64);
            let reason = if form.db.is_none() {
                Some("no database yet")
            } else if at.is_none() {
                Some("write the time like 2026-11-26T14:05:00Z")
            } else if form.name.trim().is_empty() {
                Some("name the new branch")
            } else {
                None
            };
            if button_unless(ui, "Restore", reason).clicked()
                && let (Some(db), Some(region), Some(at_ms)) =
                    (form.db.clone(), form.region.clone(), at)
            {
                self.pending = Some(engine.send(Command::Restore {
                    db,
                    region,
                    at_ms,
                    name: form.name.trim().to_string(),
                    from: None,
                }));
            }
        });
    }

    fn region_ui(
        &mut self,
        ui: &mut egui::Ui,
        engine: &Engine,
        region: &crate::engine::RegionDatabases,
        snapshot: &Snapshot,
    ) {
        ui.add_space(6.0);
        ui.label(RichText::new(&region.region).heading());
        if let Some(error) = &region.error {
            ui.label(RichText::new(error).color(widgets::bad(ui)));
            return;
        }
        if region.branches.is_empty() {
            ui.label(
                RichText::new(
                    "no databases here yet: type a name under New database above and press Create",
                )
                .color(widgets::muted(ui)),
            );
            return;
        }
        let needle = self.filter.trim().to_lowercase();
        let shown: Vec<&crate::engine::BranchRow> = region
            .branches
            .iter()
            .filter(|row| widgets::matches_filter(&needle, &[&row.db, &row.branch]))
            .collect();
        if shown.is_empty() {
            ui.label(
                RichText::new(format!(
                    "no database here matches \"{}\"",
                    self.filter.trim()
                ))
                .color(widgets::muted(ui)),
            );
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
                for row in shown.iter().take(ROWS_PER_REGION) {
                    ui.label(&row.db);
                    ui.label(&row.branch);
                    match &row.replica_of {
                        Some(home) => ui
                            .label(format!("replica of {home}"))
                            .on_hover_text(Term::Replica.tip()),
                        None if snapshot.branches.is_live(&row.db, &row.branch) => ui
                            .label(RichText::new("home (live)").color(widgets::good(ui)))
                            .on_hover_text(Term::LiveBranch.tip()),
                        None => ui.label("home").on_hover_text(Term::Home.tip()),
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
                    let live =
                        row.replica_of.is_none() && snapshot.branches.is_live(&row.db, &row.branch);
                    ui.horizontal(|ui| {
                        self.row_actions(ui, engine, region, row, live, snapshot);
                    });
                    ui.end_row();
                }
            });
        if shown.len() > ROWS_PER_REGION {
            ui.label(
                RichText::new(format!(
                    "showing {ROWS_PER_REGION} of {} branches in {}: type in Filter above to find the others",
                    shown.len(),
                    region.region
                ))
                .color(widgets::muted(ui)),
            );
        }
    }

    /// A row's buttons: test writes on a live branch, delete.
    fn row_actions(
        &mut self,
        ui: &mut egui::Ui,
        engine: &Engine,
        region: &crate::engine::RegionDatabases,
        row: &crate::engine::BranchRow,
        live: bool,
        snapshot: &Snapshot,
    ) {
        if live {
            let (text, command) = if snapshot.demo_workloads.contains(&row.db) {
                ("Stop writing", Command::StopWorkload { db: row.db.clone() })
            } else {
                (
                    "Write test data",
                    Command::StartWorkload { db: row.db.clone() },
                )
            };
            if ui
                .button(text)
                .on_hover_text(format!(
                    "numbered test records, {} a second, each logged once acknowledged: a drill or failover report then counts what a replica holds and lacks",
                    crate::engine::DEMO_RATE
                ))
                .accessible_name(format!("{text} {}", row.db))
                .clicked()
            {
                self.pending = Some(engine.send(command));
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
    }
}
