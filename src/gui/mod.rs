//! The desktop app: tabs Replication, Databases, Workspaces, Dashboard,
//! Activity and Settings over the engine facade, with a status bar of region health.
//!
//! Invariant kept here (DESIGN.md 6): the UI thread never waits on I/O. It
//! sends `engine::Command`s, which never block, and renders the newest
//! `engine::Snapshot`; file dialogs run on the engine's runtime and answer
//! through a channel polled once per frame.

mod activity;
mod alerts;
mod dashboard;
mod databases;
mod failover;
pub mod help;
pub mod notify;
mod recovery;
mod replication;
mod settings;
pub mod tour;
pub mod widgets;
mod workspaces;

use std::sync::Arc;
use std::time::Duration;

use eframe::egui::{self, RichText};
use serde::{Deserialize, Serialize};

use crate::config::{Home, Regions};
use crate::engine::snapshot::Change;
use crate::engine::{Command, Engine, EngineOptions, Snapshot};

/// The app id: the `.desktop` file name, the Wayland app id and eframe's
/// persistence key.
pub const APP_ID: &str = "io.lifeboat.Lifeboat";

/// The window's tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tab {
    Replication,
    Databases,
    Workspaces,
    Dashboard,
    Activity,
    Settings,
}

impl Tab {
    pub const ALL: [Tab; 6] = [
        Tab::Replication,
        Tab::Databases,
        Tab::Workspaces,
        Tab::Dashboard,
        Tab::Activity,
        Tab::Settings,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Tab::Replication => "Replication",
            Tab::Databases => "Databases",
            Tab::Workspaces => "Workspaces",
            Tab::Dashboard => "Dashboard",
            Tab::Activity => "Activity",
            Tab::Settings => "Settings",
        }
    }
}

impl std::str::FromStr for Tab {
    type Err = String;

    fn from_str(text: &str) -> Result<Tab, String> {
        by_name("tab", &Tab::ALL, Tab::label, text)
    }
}

/// A panel the window can open on start (`lifeboat gui --open PANEL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panel {
    Tour,
    Wizard,
    Drill,
    Failover,
    Switchover,
    Failback,
    Recover,
}

impl Panel {
    pub const ALL: [Panel; 7] = [
        Panel::Tour,
        Panel::Wizard,
        Panel::Drill,
        Panel::Failover,
        Panel::Switchover,
        Panel::Failback,
        Panel::Recover,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Panel::Tour => "tour",
            Panel::Wizard => "wizard",
            Panel::Drill => "drill",
            Panel::Failover => "failover",
            Panel::Switchover => "switchover",
            Panel::Failback => "failback",
            Panel::Recover => "recover",
        }
    }
}

impl std::str::FromStr for Panel {
    type Err = String;

    fn from_str(text: &str) -> Result<Panel, String> {
        by_name("panel", &Panel::ALL, Panel::name, text)
    }
}

/// The one of `all` whose name is `text` (any case), or one line naming
/// them all.
fn by_name<T: Copy>(
    what: &str,
    all: &[T],
    name: fn(T) -> &'static str,
    text: &str,
) -> Result<T, String> {
    all.iter()
        .copied()
        .find(|t| name(*t).eq_ignore_ascii_case(text))
        .ok_or_else(|| {
            let names: Vec<String> = all.iter().map(|t| name(*t).to_lowercase()).collect();
            format!("no {what} `{text}`; choose one of {}", names.join(", "))
        })
}

/// What persists between runs (window size and position are eframe's).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Prefs {
    tab: Tab,
    dark: bool,
    /// The first-run tour was closed or finished: it opens by itself no more.
    #[serde(default)]
    toured: bool,
}

impl Default for Prefs {
    fn default() -> Self {
        Prefs {
            tab: Tab::Replication,
            dark: true,
            toured: false,
        }
    }
}

const PREFS_KEY: &str = "lifeboat-prefs";

/// How the window starts.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Open on this tab instead of the one used last.
    pub tab: Option<Tab>,
    /// The data and config folders, shown in Settings.
    pub folders: (String, String),
    /// Where the activity CSV goes by default.
    pub export_path: std::path::PathBuf,
    /// No regions file exists (the embedded default): open the guided tour
    /// unless it was closed before.
    pub first_run: bool,
    /// Open this panel once the engine has read the regions and the group
    /// (a failover or switchover panel shows its preview; nothing runs).
    pub open: Option<Panel>,
    /// Serve Prometheus metrics from this engine here while the window is open.
    pub metrics: Option<std::net::SocketAddr>,
}

/// The window's contents.
pub struct LifeboatApp {
    engine: Engine,
    snapshot: Arc<Snapshot>,
    prefs: Prefs,
    folders: (String, String),
    replication: replication::ReplicationTab,
    databases: databases::DatabasesTab,
    workspaces: workspaces::WorkspacesTab,
    dashboard: dashboard::DashboardTab,
    activity: activity::ActivityTab,
    settings: settings::SettingsTab,
    help: help::Help,
    tour: tour::Tour,
    /// The panel to open when the engine is ready.
    opening: Option<Panel>,
    /// The request that installs the engine as a service, once asked.
    service_request: Option<crate::engine::RequestId>,
    /// Alert events up to this time (Unix ms) were shown on the desktop
    /// (or came before the app started).
    notified_ms: u64,
}

impl LifeboatApp {
    /// The app over `engine`; repaints whenever the engine publishes.
    pub fn new(cc: &eframe::CreationContext<'_>, engine: Engine, start: StartOptions) -> Self {
        let mut prefs: Prefs = cc
            .storage
            .and_then(|s| eframe::get_value(s, PREFS_KEY))
            .unwrap_or_default();
        if let Some(tab) = start.tab {
            prefs.tab = tab;
        }
        // Engine messages carry arrows and other symbols the proportional
        // font lacks (summaries written for the terminal): the monospace
        // font, which has them, stands in.
        let mut fonts = egui::FontDefinitions::default();
        if let Some(family) = fonts.families.get_mut(&egui::FontFamily::Proportional) {
            family.push("Hack".into());
        }
        cc.egui_ctx.set_fonts(fonts);
        let ctx = cc.egui_ctx.clone();
        engine.on_publish(move |change| match change {
            Change::Urgent => ctx.request_repaint(),
            // Lags and counters show within a second: at most a repaint a
            // second for them (the earliest repaint asked for wins).
            Change::Passive => ctx.request_repaint_after(std::time::Duration::from_secs(1)),
            Change::None => {}
        });
        // The tour stays out of the way of a panel asked for on start.
        let mut tour = tour::Tour::default();
        tour.open = match start.open {
            None => start.first_run && !prefs.toured,
            Some(panel) => panel == Panel::Tour,
        };
        LifeboatApp {
            snapshot: engine.snapshot(),
            engine,
            prefs,
            folders: start.folders,
            replication: Default::default(),
            databases: Default::default(),
            workspaces: Default::default(),
            dashboard: Default::default(),
            activity: activity::ActivityTab::new(start.export_path),
            settings: Default::default(),
            help: Default::default(),
            tour,
            opening: start.open,
            service_request: None,
            notified_ms: crate::orchestrator::now_ms(),
        }
    }

    /// Shows on the desktop the alerts fired or resolved since the last
    /// frame, when a desktop sink is set up (`lifeboat alert add NAME
    /// --desktop`). D-Bus is not the UI thread's to wait on: a thread of
    /// its own shows them.
    fn notify_alerts(&mut self) {
        let alerts = &self.snapshot.alerts;
        let new: Vec<_> = alerts
            .recent
            .iter()
            .filter(|e| e.at_ms > self.notified_ms)
            .cloned()
            .collect();
        let Some(newest) = new.iter().map(|e| e.at_ms).max() else {
            return;
        };
        self.notified_ms = newest;
        if !alerts.settings.has_desktop() {
            return;
        }
        std::thread::spawn(move || {
            for event in new {
                if let Err(e) = notify::show(&event) {
                    tracing::warn!("{e}");
                }
            }
        });
    }

    /// Opens the panel asked for on start once the engine has listed the
    /// regions (the group, branches and databases are known by then).
    fn open_when_ready(&mut self) {
        let Some(panel) = self.opening else {
            return;
        };
        let snapshot = Arc::clone(&self.snapshot);
        if snapshot.seq == 0 || snapshot.databases_listed_us.is_none() {
            return;
        }
        // The operations' panels plan from the flows: wait until discovery
        // has found one, and one for every live branch a failover made.
        let flows_needed = !matches!(panel, Panel::Tour | Panel::Wizard);
        let discovered = !snapshot.flows.is_empty()
            && snapshot.branches.live.iter().all(|(db, branch, _)| {
                snapshot
                    .flows
                    .iter()
                    .any(|f| &f.status.db == db && &f.status.branch == branch)
            });
        if flows_needed && snapshot.group.is_some() && !discovered {
            return;
        }
        self.opening = None;
        if panel != Panel::Tour {
            self.prefs.tab = Tab::Replication;
        }
        match panel {
            Panel::Tour => self.tour.open = true,
            Panel::Wizard => self.replication.open_wizard(&snapshot),
            Panel::Drill => self.replication.open_drill(&snapshot),
            Panel::Failover => self.replication.open_failover(&self.engine),
            Panel::Switchover => self.replication.open_move(&self.engine, false),
            Panel::Failback => self.replication.open_move(&self.engine, true),
            Panel::Recover => self.replication.open_recover(&self.engine, &snapshot),
        }
    }

    /// Whether the guided tour is showing.
    pub fn touring(&self) -> bool {
        self.tour.open
    }

    fn tour_action(&mut self, action: tour::TourAction) {
        match action {
            tour::TourAction::ShowDatabases => self.prefs.tab = Tab::Databases,
            tour::TourAction::OpenWizard => {
                self.prefs.tab = Tab::Replication;
                self.replication.open_wizard(&self.snapshot);
            }
            tour::TourAction::OpenDrill => {
                self.prefs.tab = Tab::Replication;
                self.replication.open_drill(&self.snapshot);
            }
        }
    }

    /// The snapshot being shown.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The tab being shown.
    pub fn tab(&self) -> Tab {
        self.prefs.tab
    }

    /// The engine behind the window.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn shortcuts(&mut self, ctx: &egui::Context) {
        let keys = [
            egui::Key::Num1,
            egui::Key::Num2,
            egui::Key::Num3,
            egui::Key::Num4,
            egui::Key::Num5,
            egui::Key::Num6,
        ];
        for (key, tab) in keys.into_iter().zip(Tab::ALL) {
            if ctx.input_mut(|i| i.consume_key(egui::Modifiers::COMMAND, key)) {
                self.prefs.tab = tab;
            }
        }
        if ctx.input_mut(|i| i.consume_key(egui::Modifiers::NONE, egui::Key::F1)) {
            self.tour.open = !self.tour.open;
            if !self.tour.open {
                self.prefs.toured = true;
            }
        }
    }

    fn top_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.label(RichText::new("Lifeboat").heading().strong());
            ui.add_space(12.0);
            for (index, tab) in Tab::ALL.into_iter().enumerate() {
                ui.selectable_value(&mut self.prefs.tab, tab, tab.label())
                    .on_hover_text(format!("Ctrl+{}", index + 1));
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if let Some(help::MenuAction::Tour) = self.help.menu(ui) {
                    self.tour.open = true;
                }
                let text = if self.prefs.dark {
                    "Light theme"
                } else {
                    "Dark theme"
                };
                if ui.button(text).clicked() {
                    self.prefs.dark = !self.prefs.dark;
                }
            });
        });
    }

    fn status_bar(&mut self, ui: &mut egui::Ui) {
        let snapshot = Arc::clone(&self.snapshot);
        ui.horizontal_wrapped(|ui| {
            let engine = snapshot.engine;
            let colour = match engine {
                crate::engine::EngineState::Replicating => widgets::good(ui),
                _ => widgets::muted(ui),
            };
            widgets::badge(ui, colour, format!("engine {}", engine.label()));
            lease_badge(ui, &snapshot.leases);
            if let Some(view) = snapshot.zero_loss.as_ref().filter(|v| !v.in_force()) {
                widgets::badge(ui, widgets::bad(ui), "zero loss suspended")
                    .on_hover_text(view.line());
            }
            let firing = &snapshot.alerts.firing;
            if !firing.is_empty() {
                let text = match firing.len() {
                    1 => "1 alert firing".to_string(),
                    n => format!("{n} alerts firing"),
                };
                let lines: Vec<&str> = firing.iter().map(|a| a.summary.as_str()).collect();
                widgets::badge(ui, widgets::bad(ui), text).on_hover_text(lines.join("\n"));
            }
            // The engine runs in this window: replication stops with it
            // unless a service takes over.
            let runs_here =
                !snapshot.leases.is_empty() && snapshot.leases.iter().all(|l| l.state.is_held());
            if runs_here {
                let outcome = widgets::outcome_of(&snapshot, self.service_request.unwrap_or(0));
                match outcome {
                    Some(crate::engine::activity::Outcome::Done(message)) => {
                        ui.label(RichText::new(message).color(widgets::good(ui)));
                    }
                    Some(crate::engine::activity::Outcome::Failed(message)) => {
                        ui.label(RichText::new(message).color(widgets::bad(ui)));
                    }
                    _ => {
                        let reason = (!cfg!(target_os = "linux")).then_some(
                            "the engine runs as a service only on Linux (systemd) for now; keep this window open, or run `lifeboat serve`",
                        );
                        let button = widgets::button_unless(ui, "Run as a service", reason)
                        .on_hover_text("replication stops when this window closes; a systemd user service keeps it running and starts it at login");
                        if button.clicked() {
                            self.service_request = Some(self.engine.send(Command::InstallService));
                        }
                    }
                }
            }
            if let Some(remote) = &snapshot.remote {
                let host = &remote.published.holder.host;
                let (colour, text) = if remote.is_stale() {
                    (widgets::warn(ui), format!("stale: the engine on {host}"))
                } else {
                    (widgets::good(ui), format!("showing the engine on {host}"))
                };
                widgets::badge(ui, colour, text).on_hover_text(remote.describe());
            }
            ui.separator();
            for region in &snapshot.regions {
                let name = &region.spec.name;
                match &region.health {
                    None => {
                        widgets::badge(ui, widgets::muted(ui), format!("{name} checking…"));
                    }
                    Some(h) if h.reachable => {
                        let colour = if h.last_error.is_some() {
                            widgets::warn(ui)
                        } else {
                            widgets::good(ui)
                        };
                        let badge = widgets::badge(
                            ui,
                            colour,
                            format!("{name} {} ms", h.latency_ms.unwrap_or(0)),
                        );
                        // Drawn on hover only: the time since the check
                        // ticks, and repaints, only while someone reads it.
                        badge.on_hover_ui(|ui| {
                            let text = h.last_error.clone().unwrap_or_else(|| {
                                format!("reachable; checked {}", widgets::ago(ui, h.checked_us))
                            });
                            ui.label(text);
                        });
                    }
                    Some(h) => {
                        widgets::badge(ui, widgets::bad(ui), format!("{name} unreachable"))
                            .on_hover_text(h.last_error.clone().unwrap_or_default());
                    }
                }
            }
            if !snapshot.demo_workloads.is_empty() {
                ui.separator();
                ui.label(format!(
                    "demo writing to {} database(s)",
                    snapshot.demo_workloads.len()
                ));
                if ui.button("Stop the demo").clicked() {
                    self.engine.send(Command::StopDemo);
                }
            }
        });
    }
}

impl eframe::App for LifeboatApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        // Counted by scripts/gui-at-rest.sh (RUST_LOG=lifeboat::gui::frames=trace).
        tracing::trace!(target: "lifeboat::gui::frames", frame = ctx.cumulative_frame_nr());
        self.snapshot = self.engine.snapshot();
        self.notify_alerts();
        self.open_when_ready();
        self.shortcuts(ctx);
        let theme = if self.prefs.dark {
            egui::Theme::Dark
        } else {
            egui::Theme::Light
        };
        if ctx.theme() != theme {
            ctx.set_theme(theme);
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        egui::Panel::top("tabs").show(ui, |ui| self.top_bar(ui));
        egui::Panel::bottom("status").show(ui, |ui| self.status_bar(ui));
        let snapshot = Arc::clone(&self.snapshot);
        if self.tour.open {
            let action = egui::Panel::right("tour")
                .default_size(300.0)
                .min_size(240.0)
                .show(ui, |ui| {
                    egui::ScrollArea::vertical()
                        .show(ui, |ui| self.tour.ui(ui, &self.engine, &snapshot))
                        .inner
                })
                .inner;
            if !self.tour.open {
                self.prefs.toured = true;
            }
            if let Some(action) = action {
                self.tour_action(action);
            }
        }
        self.help.windows(ui.ctx());
        egui::CentralPanel::default().show(ui, |ui| match self.prefs.tab {
            Tab::Replication => {
                self.replication.ui(ui, &self.engine, &snapshot);
                if self.replication.showing_drill_report(&snapshot) {
                    self.tour.report_seen = true;
                }
            }
            Tab::Databases => self.databases.ui(ui, &self.engine, &snapshot),
            Tab::Workspaces => self.workspaces.ui(ui, &self.engine, &snapshot),
            Tab::Dashboard => self.dashboard.ui(ui, &self.engine, &snapshot),
            Tab::Activity => self.activity.ui(ui, &self.engine, &snapshot),
            Tab::Settings => {
                let folders = (self.folders.0.as_str(), self.folders.1.as_str());
                self.settings.ui(ui, &self.engine, &snapshot, folders)
            }
        });
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, PREFS_KEY, &self.prefs);
    }
}

/// The window's icon (the 256 px rendering of assets/lifeboat.svg).
fn window_icon() -> Arc<egui::IconData> {
    let png = include_bytes!("../../assets/icons/256x256/io.lifeboat.Lifeboat.png");
    match eframe::icon_data::from_png_bytes(png) {
        Ok(icon) => Arc::new(icon),
        Err(e) => {
            tracing::warn!("the window icon could not be decoded: {e}");
            Arc::new(egui::IconData::default())
        }
    }
}

/// Starts the engine, opens the window and runs until it is closed; then
/// stops the engine (flows finish their current copy, cursors are saved).
pub fn run(home: Home, regions: Regions, start: StartOptions, demo: bool) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let engine = Engine::start(runtime.handle(), home, regions, EngineOptions::default());
    // Bound before the window opens: a taken port is said at once.
    let _metrics = match start.metrics {
        Some(addr) => {
            let server = runtime
                .block_on(crate::metrics::server::serve(addr, engine.subscribe()))
                .map_err(|e| e.to_string())?;
            tracing::info!("metrics at http://{}/metrics", server.addr);
            Some(server)
        }
        None => None,
    };
    if demo {
        engine.send(Command::StartDemo);
    }
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Lifeboat")
            .with_app_id(APP_ID)
            .with_inner_size([1180.0, 760.0])
            .with_min_inner_size([720.0, 480.0])
            .with_icon(window_icon()),
        ..Default::default()
    };
    let app_engine = engine.clone();
    let result = eframe::run_native(
        "Lifeboat",
        options,
        Box::new(move |cc| Ok(Box::new(LifeboatApp::new(cc, app_engine, start)))),
    );
    runtime.block_on(async {
        if tokio::time::timeout(Duration::from_secs(15), engine.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("the engine did not stop within 15 s");
        }
    });
    result.map_err(|e| e.to_string())
}

/// Whether this window's engine runs the group (holds its regions' leases)
/// or stands by while another engine does; the hover says who and where.
fn lease_badge(ui: &mut egui::Ui, leases: &[crate::engine::leases::LeaseView]) {
    use crate::control::lease::LeaseState;
    if leases.is_empty() {
        return;
    }
    let lines: Vec<String> = leases.iter().map(|l| l.describe()).collect();
    let (colour, text) = if leases.iter().all(|l| l.state.is_held()) {
        (widgets::good(ui), "runs the group".to_string())
    } else if let Some(holder) = leases.iter().find_map(|l| match &l.state {
        LeaseState::Standby { holder } => Some(holder),
        _ => None,
    }) {
        (
            widgets::warn(ui),
            format!("standing by: the engine on {} runs the group", holder.host),
        )
    } else {
        (widgets::muted(ui), "looking at the leases".to_string())
    };
    widgets::badge(ui, colour, text).on_hover_text(lines.join("\n"));
}
