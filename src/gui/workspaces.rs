//! The Workspaces tab: define workspaces, serve one from a region, and
//! manage its endpoints (copy a connection string), users, firewall rules
//! and pipelines. Every change goes to the control log through the engine;
//! what is shown comes back from the log (and, for a workspace served here,
//! from the running server).

use std::collections::BTreeSet;

use eframe::egui::{self, RichText};

use super::widgets::{self, button_unless, feedback};
use crate::control::event::{Attachment, Databases, Event, Role};
use crate::control::state::WorkspaceConfig;
use crate::engine::workspaces::{ControlChange, Secret, WorkspaceView};
use crate::engine::{Command, Engine, RequestId, Snapshot};

/// The tab's own state: what is typed and selected.
pub struct WorkspacesTab {
    selected: Option<String>,
    new_name: String,
    new_port: String,
    new_bind: String,
    new_open: bool,
    new_dbs: BTreeSet<String>,
    start_region: Option<String>,
    user_name: String,
    user_role: Role,
    user_password: String,
    password_for: Option<(String, String)>,
    cidr: String,
    pipeline_name: String,
    pipeline_db: Option<String>,
    pipeline_source: String,
    pipeline_key_field: String,
    pipeline_key_prefix: String,
    confirm_remove: bool,
    pending: Option<RequestId>,
}

impl Default for WorkspacesTab {
    fn default() -> Self {
        WorkspacesTab {
            selected: None,
            new_name: String::new(),
            new_port: String::new(),
            new_bind: "127.0.0.1".into(),
            new_open: false,
            new_dbs: BTreeSet::new(),
            start_region: None,
            user_name: String::new(),
            user_role: Role::ReadWrite,
            user_password: String::new(),
            password_for: None,
            cidr: String::new(),
            pipeline_name: String::new(),
            pipeline_db: None,
            pipeline_source: String::new(),
            pipeline_key_field: "id".into(),
            pipeline_key_prefix: String::new(),
            confirm_remove: false,
            pending: None,
        }
    }
}

impl WorkspacesTab {
    pub fn ui(&mut self, ui: &mut egui::Ui, engine: &Engine, snapshot: &Snapshot) {
        widgets::section(
            ui,
            "Workspaces",
            "Compute that serves databases over the Redis protocol. Its users, firewall rules and pipelines live in every region's control log, so a workspace starts in either region.",
        );
        feedback(ui, snapshot, self.pending);
        if let Some(error) = &snapshot.control.error {
            ui.label(
                RichText::new(format!("The control log could not be read: {error}"))
                    .color(widgets::bad(ui)),
            );
        }
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                self.create_form(ui, engine, snapshot);
                ui.separator();
                let names: Vec<String> = snapshot
                    .control
                    .workspaces
                    .iter()
                    .map(|w| w.config.name.clone())
                    .collect();
                if names.is_empty() {
                    let text = if snapshot.control.read_us.is_none() {
                        "Reading the control log…"
                    } else {
                        "No workspace yet: define one above."
                    };
                    ui.label(text);
                    return;
                }
                if self.selected.as_ref().is_none_or(|s| !names.contains(s)) {
                    self.selected = names.first().cloned();
                    self.confirm_remove = false;
                }
                ui.horizontal_wrapped(|ui| {
                    ui.label("Workspace:");
                    for name in &names {
                        let running = snapshot
                            .control
                            .workspace(name)
                            .is_some_and(|w| w.running.is_some());
                        let label = if running {
                            format!("{name} (serving)")
                        } else {
                            name.clone()
                        };
                        if ui
                            .selectable_label(self.selected.as_ref() == Some(name), label)
                            .clicked()
                        {
                            self.selected = Some(name.clone());
                            self.confirm_remove = false;
                        }
                    }
                });
                let Some(view) = self
                    .selected
                    .as_ref()
                    .and_then(|s| snapshot.control.workspace(s))
                    .cloned()
                else {
                    return;
                };
                ui.add_space(6.0);
                self.serve_ui(ui, engine, snapshot, &view);
                ui.add_space(6.0);
                self.endpoints_ui(ui, &view);
                ui.add_space(6.0);
                self.users_ui(ui, engine, &view.config);
                ui.add_space(6.0);
                self.firewall_ui(ui, engine, &view);
                ui.add_space(6.0);
                self.pipelines_ui(ui, engine, &view);
            });
    }

    fn send(&mut self, engine: &Engine, command: Command) {
        self.pending = Some(engine.send(command));
    }

    fn record(&mut self, engine: &Engine, event: Event) {
        self.send(
            engine,
            Command::Control {
                change: ControlChange::Event(event),
            },
        );
    }

    fn create_form(&mut self, ui: &mut egui::Ui, engine: &Engine, snapshot: &Snapshot) {
        let known: BTreeSet<String> = snapshot
            .databases
            .iter()
            .flat_map(|r| r.branches.iter().map(|b| b.db.clone()))
            .collect();
        ui.label(RichText::new("New workspace").strong());
        egui::Grid::new("new-workspace")
            .num_columns(2)
            .spacing([12.0, 6.0])
            .show(ui, |ui| {
                widgets::text_field(ui, "Workspace name", &mut self.new_name, "shop");
                ui.end_row();
                widgets::text_field(ui, "Bind address", &mut self.new_bind, "127.0.0.1");
                ui.end_row();
                widgets::text_field(ui, "Port", &mut self.new_port, "16379");
                ui.end_row();
                ui.label("Databases");
                ui.horizontal_wrapped(|ui| {
                    if known.is_empty() {
                        ui.label(
                            RichText::new("no database yet: create one in Databases")
                                .color(widgets::muted(ui)),
                        );
                    }
                    for db in &known {
                        let mut on = self.new_dbs.contains(db);
                        if ui
                            .checkbox(&mut on, db.as_str())
                            .on_hover_text(format!("serve {db} at the next free index"))
                            .changed()
                        {
                            if on {
                                self.new_dbs.insert(db.clone());
                            } else {
                                self.new_dbs.remove(db);
                            }
                        }
                    }
                });
                ui.end_row();
                ui.label("");
                ui.checkbox(&mut self.new_open, "Open: no AUTH (trusted networks only)");
                ui.end_row();
            });
        self.new_dbs.retain(|d| known.contains(d));
        let port = match self.new_port.trim() {
            "" => Ok(crate::workspace::DEFAULT_PORT),
            text => text.parse::<u16>(),
        };
        let reason = if self.new_name.trim().is_empty() {
            Some("name the workspace first")
        } else if self.new_dbs.is_empty() {
            Some("choose at least one database")
        } else if port.is_err() {
            Some("the port is a number from 1 to 65535")
        } else {
            None
        };
        if button_unless(ui, "Create workspace", reason).clicked()
            && let Ok(port) = port
        {
            let databases = self
                .new_dbs
                .iter()
                .enumerate()
                .map(|(i, db)| Attachment {
                    index: i as u32,
                    db: db.clone(),
                })
                .collect();
            let name = self.new_name.trim().to_string();
            self.record(
                engine,
                Event::WorkspaceSet {
                    name: name.clone(),
                    databases,
                    bind: self.new_bind.trim().to_string(),
                    port,
                    open: self.new_open,
                },
            );
            self.selected = Some(name);
            self.new_name.clear();
            self.new_dbs.clear();
        }
    }

    fn serve_ui(
        &mut self,
        ui: &mut egui::Ui,
        engine: &Engine,
        snapshot: &Snapshot,
        view: &WorkspaceView,
    ) {
        let name = view.config.name.clone();
        ui.horizontal_wrapped(|ui| {
            match (&view.running, &view.busy) {
                (_, Some(busy)) => {
                    ui.spinner();
                    ui.label(busy);
                }
                (Some(status), None) => {
                    widgets::badge(
                        ui,
                        widgets::good(ui),
                        format!(
                            "serving from {} at {}: {} client(s), {} command(s)",
                            status.region, status.addr, status.connected, status.commands
                        ),
                    );
                    if status.denied > 0 || status.auth_failures > 0 {
                        ui.label(
                            RichText::new(format!(
                                "{} refused by the firewall, {} failed AUTH",
                                status.denied, status.auth_failures
                            ))
                            .color(widgets::warn(ui)),
                        );
                    }
                    if ui.button("Stop workspace").clicked() {
                        self.send(engine, Command::StopWorkspace { name: name.clone() });
                    }
                }
                (None, None) => {
                    widgets::badge(ui, widgets::muted(ui), "not served by this app");
                    let regions: Vec<String> =
                        snapshot.regions.iter().map(|r| r.spec.name.clone()).collect();
                    if self.start_region.as_ref().is_none_or(|r| !regions.contains(r)) {
                        self.start_region = regions.first().cloned();
                    }
                    ui.label("in");
                    egui::ComboBox::from_id_salt("workspace-region")
                        .selected_text(self.start_region.clone().unwrap_or_default())
                        .show_ui(ui, |ui| {
                            for r in &regions {
                                ui.selectable_value(&mut self.start_region, Some(r.clone()), r);
                            }
                        })
                        .response
                        .accessible_name("Region to serve from")
                        .on_hover_text(
                            "databases homed there are written; replicas there are served read-only",
                        );
                    let reason = self.start_region.is_none().then_some("configure a region first");
                    if button_unless(ui, "Start workspace", reason).clicked()
                        && let Some(region) = self.start_region.clone()
                    {
                        self.send(engine, Command::StartWorkspace {
                                name: name.clone(),
                                region,
                                bind: None,
                                port: None,
                            });
                    }
                }
            }
            ui.separator();
            if self.confirm_remove {
                ui.label(RichText::new("Forget this workspace?").color(widgets::bad(ui)));
                if ui.button("Yes, remove it").clicked() {
                    self.record(engine, Event::WorkspaceRemoved { name: name.clone() });
                    self.confirm_remove = false;
                }
                if ui.button("Keep it").clicked() {
                    self.confirm_remove = false;
                }
            } else if ui
                .button("Remove workspace")
                .on_hover_text("its databases stay; only the workspace is forgotten")
                .clicked()
            {
                self.confirm_remove = true;
            }
        });
    }

    fn endpoints_ui(&mut self, ui: &mut egui::Ui, view: &WorkspaceView) {
        ui.label(RichText::new("Endpoints").strong());
        let config = &view.config;
        let user = if config.open { "default" } else { "USER" };
        egui::Grid::new("endpoints")
            .num_columns(5)
            .striped(true)
            .spacing([16.0, 4.0])
            .show(ui, |ui| {
                for header in ["index", "database", "mode", "lag", "connection string"] {
                    ui.label(RichText::new(header).color(widgets::muted(ui)));
                }
                ui.end_row();
                for attachment in &config.databases {
                    let served = view
                        .running
                        .as_ref()
                        .and_then(|s| s.endpoints.iter().find(|e| e.index == attachment.index));
                    let url = served.map_or_else(
                        || {
                            format!(
                                "redis://{user}@{}:{}/{}",
                                config.bind, config.port, attachment.index
                            )
                        },
                        |e| e.url.clone(),
                    );
                    ui.label(attachment.index.to_string());
                    ui.label(&attachment.db);
                    match served {
                        Some(e) if e.mode == "follower" => {
                            widgets::badge(ui, widgets::warn(ui), "read-only replica");
                            ui.label(widgets::lag(e.lag_s));
                        }
                        Some(_) => {
                            widgets::badge(ui, widgets::good(ui), "writer");
                            ui.label("0 s");
                        }
                        None => {
                            ui.label(RichText::new("not served here").color(widgets::muted(ui)));
                            ui.label("-");
                        }
                    }
                    ui.horizontal(|ui| {
                        ui.monospace(&url);
                        if ui
                            .button("Copy")
                            .on_hover_text("copy the connection string")
                            .accessible_name(format!("Copy {} connection string", attachment.db))
                            .clicked()
                        {
                            ui.ctx().copy_text(url.clone());
                        }
                    });
                    ui.end_row();
                }
            });
    }

    fn users_ui(&mut self, ui: &mut egui::Ui, engine: &Engine, config: &WorkspaceConfig) {
        ui.label(RichText::new("Users").strong());
        if config.open {
            ui.label(
                RichText::new("This workspace is open: clients connect without AUTH.")
                    .color(widgets::warn(ui)),
            );
        }
        let workspace = config.name.clone();
        egui::Grid::new("users")
            .num_columns(4)
            .striped(true)
            .spacing([16.0, 4.0])
            .show(ui, |ui| {
                for (name, user) in &config.users {
                    ui.label(name);
                    ui.label(user.role.name());
                    ui.label(match &user.databases {
                        Databases::All => "all databases".to_string(),
                        Databases::Only(dbs) => dbs.join(", "),
                    });
                    ui.horizontal(|ui| {
                        if ui
                            .button("Change password")
                            .accessible_name(format!("Change password of {name}"))
                            .clicked()
                        {
                            self.password_for = Some((name.clone(), String::new()));
                        }
                        if ui
                            .button("Remove")
                            .accessible_name(format!("Remove user {name}"))
                            .clicked()
                        {
                            self.record(
                                engine,
                                Event::UserRemoved {
                                    workspace: workspace.clone(),
                                    user: name.clone(),
                                },
                            );
                        }
                    });
                    ui.end_row();
                }
            });
        if let Some((user, password)) = &mut self.password_for {
            let mut close = false;
            let mut save = None;
            ui.horizontal(|ui| {
                ui.label(format!("New password for {user}"));
                ui.add(
                    egui::TextEdit::singleline(password)
                        .password(true)
                        .desired_width(200.0),
                )
                .accessible_name("New password");
                let reason = (password.chars().count()
                    < crate::workspace::auth::MIN_PASSWORD_CHARS)
                    .then_some("at least 8 characters");
                if button_unless(ui, "Save password", reason).clicked() {
                    save = Some((user.clone(), password.clone()));
                    close = true;
                }
                if ui.button("Cancel").clicked() {
                    close = true;
                }
            });
            if let Some((user, password)) = save {
                self.send(
                    engine,
                    Command::Control {
                        change: ControlChange::ChangePassword {
                            workspace: workspace.clone(),
                            user,
                            password: Secret(password),
                        },
                    },
                );
            }
            if close {
                self.password_for = None;
            }
        }
        ui.horizontal_wrapped(|ui| {
            ui.add(
                egui::TextEdit::singleline(&mut self.user_name)
                    .hint_text("user name")
                    .desired_width(140.0),
            )
            .accessible_name("User name");
            egui::ComboBox::from_id_salt("user-role")
                .selected_text(self.user_role.name())
                .show_ui(ui, |ui| {
                    for role in [Role::Admin, Role::ReadWrite, Role::ReadOnly] {
                        ui.selectable_value(&mut self.user_role, role, role.name());
                    }
                })
                .response
                .accessible_name("Role of the new user");
            ui.add(
                egui::TextEdit::singleline(&mut self.user_password)
                    .password(true)
                    .hint_text("password")
                    .desired_width(160.0),
            )
            .accessible_name("User password");
            let reason = if self.user_name.trim().is_empty() {
                Some("name the user first")
            } else if self.user_password.chars().count()
                < crate::workspace::auth::MIN_PASSWORD_CHARS
            {
                Some("the password needs at least 8 characters")
            } else {
                None
            };
            if button_unless(ui, "Add user", reason).clicked() {
                let change = ControlChange::AddUser {
                    workspace: workspace.clone(),
                    user: self.user_name.trim().to_string(),
                    role: self.user_role,
                    databases: Databases::All,
                    password: Secret(std::mem::take(&mut self.user_password)),
                };
                self.send(engine, Command::Control { change });
                self.user_name.clear();
            }
        });
    }

    fn firewall_ui(&mut self, ui: &mut egui::Ui, engine: &Engine, view: &WorkspaceView) {
        let config = &view.config;
        ui.label(RichText::new("Firewall").strong());
        if config.firewall.is_empty() {
            ui.label(
                RichText::new("No rule: anyone who can reach the address may connect.")
                    .color(widgets::muted(ui)),
            );
        }
        for cidr in &config.firewall {
            ui.horizontal(|ui| {
                ui.monospace(cidr);
                if ui
                    .button("Revoke")
                    .accessible_name(format!("Revoke {cidr}"))
                    .clicked()
                {
                    self.record(
                        engine,
                        Event::FirewallRevoked {
                            workspace: config.name.clone(),
                            cidr: cidr.clone(),
                        },
                    );
                }
            });
        }
        ui.horizontal(|ui| {
            ui.add(
                egui::TextEdit::singleline(&mut self.cidr)
                    .hint_text("10.0.0.0/8 or 192.168.1.7")
                    .desired_width(200.0),
            )
            .accessible_name("Allowed CIDR");
            let reason = self
                .cidr
                .trim()
                .is_empty()
                .then_some("type an address or a CIDR");
            if button_unless(ui, "Allow", reason).clicked() {
                self.record(
                    engine,
                    Event::FirewallAllowed {
                        workspace: config.name.clone(),
                        cidr: self.cidr.trim().to_string(),
                    },
                );
                self.cidr.clear();
            }
        });
    }

    fn pipelines_ui(&mut self, ui: &mut egui::Ui, engine: &Engine, view: &WorkspaceView) {
        let config = &view.config;
        ui.label(RichText::new("Pipelines").strong());
        if config.pipelines.is_empty() {
            ui.label(
                RichText::new("No pipeline: load NDJSON files from a folder into a database.")
                    .color(widgets::muted(ui)),
            );
        } else {
            egui::Grid::new("pipelines")
                .num_columns(5)
                .striped(true)
                .spacing([16.0, 4.0])
                .show(ui, |ui| {
                    for header in ["pipeline", "into", "source", "progress", ""] {
                        ui.label(RichText::new(header).color(widgets::muted(ui)));
                    }
                    ui.end_row();
                    for (name, pipeline) in &config.pipelines {
                        ui.label(name);
                        ui.label(&pipeline.db);
                        ui.monospace(&pipeline.source);
                        let progress = view
                            .running
                            .as_ref()
                            .and_then(|s| s.pipelines.iter().find(|p| &p.name == name));
                        match progress {
                            Some(p) => {
                                let at = &p.position;
                                ui.label(format!(
                                    "{}: {} lines, {} files done, {} pending{}",
                                    p.state,
                                    at.lines_loaded,
                                    at.files_done,
                                    p.files_pending,
                                    if at.bad_lines > 0 {
                                        format!(", {} bad lines skipped", at.bad_lines)
                                    } else {
                                        String::new()
                                    }
                                ));
                            }
                            None if !pipeline.running => {
                                ui.label("paused");
                            }
                            None => {
                                ui.label(
                                    RichText::new("runs where the workspace is served")
                                        .color(widgets::muted(ui)),
                                );
                            }
                        }
                        ui.horizontal(|ui| {
                            let (text, running) = if pipeline.running {
                                ("Pause", false)
                            } else {
                                ("Resume", true)
                            };
                            if ui
                                .button(text)
                                .accessible_name(format!("{text} pipeline {name}"))
                                .clicked()
                            {
                                self.record(
                                    engine,
                                    Event::PipelineRunning {
                                        workspace: config.name.clone(),
                                        pipeline: name.clone(),
                                        running,
                                    },
                                );
                            }
                            if ui
                                .button("Remove")
                                .accessible_name(format!("Remove pipeline {name}"))
                                .clicked()
                            {
                                self.record(
                                    engine,
                                    Event::PipelineRemoved {
                                        workspace: config.name.clone(),
                                        pipeline: name.clone(),
                                    },
                                );
                            }
                        });
                        ui.end_row();
                    }
                });
        }
        let dbs: Vec<String> = config.databases.iter().map(|a| a.db.clone()).collect();
        if self.pipeline_db.as_ref().is_none_or(|d| !dbs.contains(d)) {
            self.pipeline_db = dbs.first().cloned();
        }
        ui.horizontal_wrapped(|ui| {
            ui.add(
                egui::TextEdit::singleline(&mut self.pipeline_name)
                    .hint_text("pipeline name")
                    .desired_width(120.0),
            )
            .accessible_name("Pipeline name");
            ui.label("into");
            egui::ComboBox::from_id_salt("pipeline-db")
                .selected_text(self.pipeline_db.clone().unwrap_or_default())
                .show_ui(ui, |ui| {
                    for db in &dbs {
                        ui.selectable_value(&mut self.pipeline_db, Some(db.clone()), db);
                    }
                })
                .response
                .accessible_name("Pipeline database");
            ui.label("from");
            ui.add(
                egui::TextEdit::singleline(&mut self.pipeline_source)
                    .hint_text("file:///data/incoming or s3://bucket/prefix")
                    .desired_width(240.0),
            )
            .accessible_name("Pipeline source");
            ui.label("key field");
            ui.add(egui::TextEdit::singleline(&mut self.pipeline_key_field).desired_width(60.0))
                .accessible_name("Key field");
            ui.label("key prefix");
            ui.add(
                egui::TextEdit::singleline(&mut self.pipeline_key_prefix)
                    .hint_text("name:")
                    .desired_width(80.0),
            )
            .accessible_name("Key prefix");
            let reason = if self.pipeline_name.trim().is_empty() {
                Some("name the pipeline first")
            } else if self.pipeline_source.trim().is_empty() {
                Some("give the folder the NDJSON files arrive in")
            } else {
                None
            };
            if button_unless(ui, "Create pipeline", reason).clicked()
                && let Some(db) = self.pipeline_db.clone()
            {
                let name = self.pipeline_name.trim().to_string();
                let prefix = match self.pipeline_key_prefix.trim() {
                    "" => format!("{name}:"),
                    p => p.to_string(),
                };
                self.record(
                    engine,
                    Event::PipelineSet {
                        workspace: config.name.clone(),
                        pipeline: name,
                        db,
                        source: self.pipeline_source.trim().to_string(),
                        key_field: self.pipeline_key_field.trim().to_string(),
                        key_prefix: prefix,
                    },
                );
                self.pipeline_name.clear();
            }
        });
    }
}
