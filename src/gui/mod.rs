//! The desktop app. For now one window that says what Lifeboat is, which
//! regions it will use, and what the app will hold; the headless CLI does
//! the work meanwhile. Nothing here touches a store (invariant 6): the
//! region list is read before the window opens.

use eframe::egui;

use crate::region::RegionSpec;

/// The app id: the `.desktop` file name, the Wayland app id and eframe's
/// persistence key.
pub const APP_ID: &str = "io.lifeboat.Lifeboat";

/// The window's contents.
pub struct LifeboatApp {
    regions: Vec<RegionSpec>,
    data_dir: String,
}

impl LifeboatApp {
    /// The app, showing `regions` and the data dir.
    pub fn new(regions: Vec<RegionSpec>, data_dir: String) -> Self {
        LifeboatApp { regions, data_dir }
    }
}

const COMING: [(&str, &str); 5] = [
    (
        "Replication",
        "configure a primary and a secondary region and watch every database seed and stay in sync",
    ),
    (
        "Databases",
        "the databases and branches in each region, with size, newest manifest and writer epoch",
    ),
    (
        "Dashboard",
        "replication lag (RPO) over time against its target, throughput, requests per minute",
    ),
    ("Activity", "every operation with its measured RPO and RTO"),
    (
        "Settings",
        "add, check and remove regions: local folders, S3, GCS, Azure",
    ),
];

impl eframe::App for LifeboatApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        egui::CentralPanel::default().show(ui, |ui| {
            ui.heading("Lifeboat");
            ui.label("Cross-region disaster recovery for databases that live in object storage.");
            ui.add_space(12.0);
            ui.strong("Regions");
            egui::Grid::new("regions").striped(true).show(ui, |ui| {
                for spec in &self.regions {
                    ui.label(&spec.name);
                    ui.monospace(&spec.url);
                    ui.end_row();
                }
            });
            ui.label(format!("Data folder: {}", self.data_dir));
            ui.add_space(12.0);
            ui.strong("Coming to this window");
            for (tab, what) in COMING {
                ui.horizontal_wrapped(|ui| {
                    ui.label(egui::RichText::new(tab).strong());
                    ui.label(what);
                });
            }
            ui.add_space(12.0);
            ui.strong("Until then, the command line does it all");
            for line in [
                "lifeboat db create orders --region us-east-1",
                "lifeboat workload --region us-east-1 --db orders --rate 2000 --duration 30s",
                "lifeboat verify --region us-east-1 --db orders",
                "lifeboat --help",
            ] {
                ui.monospace(line);
            }
        });
    }
}

/// Opens the window and runs until it is closed.
pub fn run(regions: Vec<RegionSpec>, data_dir: String) -> eframe::Result {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Lifeboat")
            .with_app_id(APP_ID)
            .with_inner_size([860.0, 560.0]),
        ..Default::default()
    };
    eframe::run_native(
        "Lifeboat",
        options,
        Box::new(move |_cc| Ok(Box::new(LifeboatApp::new(regions, data_dir)))),
    )
}
