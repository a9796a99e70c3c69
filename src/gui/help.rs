//! Help in the app: the glossary of disaster-recovery terms (tooltips and a
//! window), the Help menu (tour, glossary, the docs, About) and the About
//! dialog.

use std::path::PathBuf;

use eframe::egui::{self, RichText};

use super::widgets;

/// A disaster-recovery term the app uses, with what it means here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Term {
    Rpo,
    Rto,
    Region,
    Home,
    Replica,
    Seed,
    Lag,
    Branch,
    LiveBranch,
    Fork,
    Drill,
    Failover,
    Switchover,
    Failback,
    PreProvisioning,
    StrandedWrites,
    Fence,
    Workspace,
    ZeroLoss,
    RpoGuard,
    GcHold,
}

impl Term {
    pub const ALL: [Term; 21] = [
        Term::Rpo,
        Term::Rto,
        Term::Region,
        Term::Home,
        Term::Replica,
        Term::Seed,
        Term::Lag,
        Term::Branch,
        Term::LiveBranch,
        Term::Fork,
        Term::Drill,
        Term::Failover,
        Term::Switchover,
        Term::Failback,
        Term::PreProvisioning,
        Term::StrandedWrites,
        Term::Fence,
        Term::Workspace,
        Term::ZeroLoss,
        Term::RpoGuard,
        Term::GcHold,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Term::Rpo => "RPO",
            Term::Rto => "RTO",
            Term::Region => "Region",
            Term::Home => "Home region",
            Term::Replica => "Replica",
            Term::Seed => "Initial seed",
            Term::Lag => "Lag",
            Term::Branch => "Branch",
            Term::LiveBranch => "Live branch",
            Term::Fork => "Fork",
            Term::Drill => "Drill (test failover)",
            Term::Failover => "Failover",
            Term::Switchover => "Switchover",
            Term::Failback => "Failback",
            Term::PreProvisioning => "Pre-provisioning",
            Term::StrandedWrites => "Stranded writes",
            Term::Fence => "Fence and epoch",
            Term::Workspace => "Workspace",
            Term::ZeroLoss => "Zero loss",
            Term::RpoGuard => "RPO guard",
            Term::GcHold => "GC hold",
        }
    }

    pub fn meaning(self) -> &'static str {
        match self {
            Term::Rpo => {
                "Recovery point objective: how much acknowledged writing a failover may lose, as time. Lifeboat measures it as the replica's lag and, where writes are logged, counts the records a failover left behind."
            }
            Term::Rto => {
                "Recovery time objective: how long clients cannot write. Lifeboat measures it from the start of a failover, drill or switchover to the first write acknowledged at the new endpoint."
            }
            Term::Region => {
                "An object store with a name (a local folder, S3, GCS or Azure). Databases live in regions; replication copies them between two."
            }
            Term::Home => {
                "The region where a branch is written. Every other region holds a replica of it."
            }
            Term::Replica => {
                "A copy of a branch in another region, copied file by file in an order that keeps it readable at every instant."
            }
            Term::Seed => {
                "The first copy of a branch to its replica; after it, only new files cross."
            }
            Term::Lag => {
                "How far the replica is behind its home: the age of the oldest write the replica does not hold yet. Above the RPO target it shows red."
            }
            Term::Branch => {
                "One line of a database's history. A database is a tree of branches: forks are made copy-on-write off another branch, sharing its files."
            }
            Term::LiveBranch => {
                "The branch clients write to; each database has one. A failover or switchover makes another branch live in the other region."
            }
            Term::Fork => {
                "A new branch made off another (or off a replica) at one point, copy-on-write: it reads the files it was made from and writes its own. A fork at a replica never writes into the replica."
            }
            Term::Drill => {
                "A test failover: throw-away branches are forked off the replicas in the secondary, served, verified and timed. Production and the replicas are not touched; the branches expire."
            }
            Term::Failover => {
                "An unplanned move: when the primary is lost, fork each replica in the secondary, make the fork live and serve it. Writes the primary had not copied yet are stranded there."
            }
            Term::Switchover => {
                "A planned move of the live branches to the other region that loses nothing: writers stop, the last files are copied, then the other region serves."
            }
            Term::Failback => {
                "The switchover back to the region a failover left, once it answers and its replica is in sync; only what was written since the failover crosses."
            }
            Term::PreProvisioning => {
                "Workspaces stand in the secondary, following the replicas read-only, so that a failover only forks and opens writers: a shorter RTO."
            }
            Term::StrandedWrites => {
                "Writes the old primary acknowledged that its replica never got before a failover. When that region answers again, Lifeboat recovers them as a branch and lets you merge them."
            }
            Term::Fence => {
                "Opening a writer raises the branch's epoch; any older writer's next write then fails. A failover fences the old primary so two writers never both succeed."
            }
            Term::Workspace => {
                "Compute that serves databases over the Redis protocol, with users, roles, firewall rules and pipelines."
            }
            Term::ZeroLoss => {
                "Synchronous replication: a workspace acknowledges a write only once the secondary holds the WAL file that makes it durable, so a failover loses no acknowledged write even if the primary never returns. Each write waits for one more copy across regions. If the secondary stops answering, writes wait up to the zero-loss timeout, then the group runs asynchronously (red, with an alert) until the secondary holds everything again."
            }
            Term::GcHold => {
                "The primary's garbage collector keeps each file a replica still needs (the manifests past the one it holds, the data files they name, the WAL it has not copied) up to a bound: a paused or slow link then catches up through every state the primary had, instead of skipping states or reseeding. The primary's storage grows while it holds."
            }
            Term::RpoGuard => {
                "Makes the RPO target a promise: while a replica would fall behind it (the age of what it lacks plus the time its link needs to copy that), writes are slowed, then refused with an error. Off by default: a slow link then costs RPO, not availability."
            }
        }
    }

    /// The term's name and meaning, for a tooltip.
    pub fn tip(self) -> String {
        format!("{}: {}", self.name(), self.meaning())
    }
}

/// A label that explains `term` when hovered.
pub fn term_label(
    ui: &mut egui::Ui,
    text: impl Into<egui::WidgetText>,
    term: Term,
) -> egui::Response {
    ui.label(text).on_hover_text(term.tip())
}

/// A page of the docs, as a path from the root of the repository (the
/// package installs the same tree under /usr/share/doc/lifeboat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Readme,
    Guide,
    Runbook,
    Architecture,
    Changelog,
}

impl Page {
    pub const ALL: [Page; 5] = [
        Page::Guide,
        Page::Runbook,
        Page::Readme,
        Page::Architecture,
        Page::Changelog,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Page::Readme => "README",
            Page::Guide => "User guide",
            Page::Runbook => "Incident runbook",
            Page::Architecture => "Architecture",
            Page::Changelog => "Changelog",
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Page::Readme => "README.md",
            Page::Guide => "docs/guide/README.md",
            Page::Runbook => "docs/runbook.md",
            Page::Architecture => "ARCHITECTURE.md",
            Page::Changelog => "CHANGELOG.md",
        }
    }
}

/// Where the docs are: `LIFEBOAT_DOCS`, then beside the binary
/// (`../share/doc/lifeboat`, as a package or AppImage lays them out), then
/// `/usr/share/doc/lifeboat`, then the source tree it was built from.
pub fn docs_root() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("LIFEBOAT_DOCS") {
        candidates.push(dir.into());
    }
    if let Some(bin_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(PathBuf::from))
    {
        candidates.push(bin_dir.join("../share/doc/lifeboat"));
    }
    candidates.push("/usr/share/doc/lifeboat".into());
    candidates.push(env!("CARGO_MANIFEST_DIR").into());
    candidates
        .into_iter()
        .find(|dir| dir.join(Page::Guide.path()).is_file())
}

/// The Help menu's windows and what it asked for.
#[derive(Default)]
pub struct Help {
    pub glossary: bool,
    pub about: bool,
    /// The docs folder, looked up once.
    docs: Option<Option<PathBuf>>,
}

/// What the Help menu asks the app to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MenuAction {
    Tour,
}

impl Help {
    fn docs(&mut self) -> Option<PathBuf> {
        self.docs.get_or_insert_with(docs_root).clone()
    }

    /// The Help menu button in the top bar.
    pub fn menu(&mut self, ui: &mut egui::Ui) -> Option<MenuAction> {
        let mut action = None;
        let docs = self.docs();
        ui.menu_button("Help", |ui| {
            if ui.button("Take the tour").on_hover_text("F1").clicked() {
                action = Some(MenuAction::Tour);
                ui.close();
            }
            if ui.button("Glossary").clicked() {
                self.glossary = true;
                ui.close();
            }
            ui.separator();
            for page in Page::ALL {
                let file = docs.as_ref().map(|root| root.join(page.path()));
                let reason = match &file {
                    Some(file) if file.is_file() => None,
                    _ => Some(
                        "the docs are not installed here: set LIFEBOAT_DOCS to a copy of the repository, or read them in the repository",
                    ),
                };
                let response = widgets::button_unless(ui, page.title(), reason);
                if let Some(file) = &file {
                    let response = response.on_hover_text(file.display().to_string());
                    if response.clicked() {
                        ui.ctx()
                            .open_url(egui::OpenUrl::new_tab(format!("file://{}", file.display())));
                        ui.close();
                    }
                }
            }
            ui.separator();
            if ui.button("About Lifeboat").clicked() {
                self.about = true;
                ui.close();
            }
        });
        action
    }

    /// The glossary and About windows, when open.
    pub fn windows(&mut self, ctx: &egui::Context) {
        egui::Window::new("Glossary")
            .open(&mut self.glossary)
            .default_width(520.0)
            .vscroll(true)
            .show(ctx, |ui| {
                for term in Term::ALL {
                    ui.label(RichText::new(term.name()).strong());
                    ui.label(term.meaning());
                    ui.add_space(6.0);
                }
            });
        egui::Window::new("About Lifeboat")
            .open(&mut self.about)
            .resizable(false)
            .collapsible(false)
            .show(ctx, |ui| {
                ui.label(RichText::new("Lifeboat").heading().strong());
                ui.label(env!("CARGO_PKG_DESCRIPTION"));
                ui.add_space(6.0);
                egui::Grid::new("about").num_columns(2).show(ui, |ui| {
                    ui.label("Version");
                    ui.label(crate::about::VERSION);
                    ui.end_row();
                    ui.label("Commit");
                    ui.monospace(crate::about::COMMIT);
                    ui.end_row();
                    ui.label("Licence");
                    ui.label(crate::about::LICENCE);
                    ui.end_row();
                });
                if ui.button("Copy version").clicked() {
                    ui.ctx()
                        .copy_text(format!("lifeboat {}", crate::about::LONG_VERSION));
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_term_has_a_name_and_a_meaning_that_ends_a_sentence() {
        for term in Term::ALL {
            assert!(!term.name().is_empty());
            assert!(term.meaning().ends_with('.'), "{}", term.name());
        }
    }

    #[test]
    fn the_source_tree_holds_every_page_the_help_menu_opens() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        for page in Page::ALL {
            assert!(
                root.join(page.path()).is_file(),
                "{} is missing",
                page.path()
            );
        }
    }
}
