//! The look shared by every tab: state badges, colours, sizes, times, the
//! feedback line of a pending request and buttons that say why they are
//! disabled.

use eframe::egui::{self, Color32, RichText};

use crate::engine::activity::Outcome;
use crate::engine::{RequestId, Snapshot};

pub use crate::replication::status::human_bytes;

/// Green for healthy, amber for attention, red for trouble, grey for unknown.
pub fn good(ui: &egui::Ui) -> Color32 {
    if ui.visuals().dark_mode {
        Color32::from_rgb(90, 200, 120)
    } else {
        Color32::from_rgb(20, 130, 60)
    }
}

pub fn warn(ui: &egui::Ui) -> Color32 {
    if ui.visuals().dark_mode {
        Color32::from_rgb(240, 190, 80)
    } else {
        Color32::from_rgb(170, 110, 0)
    }
}

pub fn bad(ui: &egui::Ui) -> Color32 {
    if ui.visuals().dark_mode {
        Color32::from_rgb(255, 110, 100)
    } else {
        Color32::from_rgb(190, 30, 30)
    }
}

/// Whether a row with `fields` is shown under the filter `needle`
/// (already lowercased; empty shows every row): a field holds it,
/// ignoring case.
pub fn matches_filter(needle: &str, fields: &[&str]) -> bool {
    needle.is_empty() || fields.iter().any(|f| f.to_lowercase().contains(needle))
}

pub fn muted(ui: &egui::Ui) -> Color32 {
    ui.visuals().weak_text_color()
}

/// The colour of a replication state label.
pub fn state_colour(ui: &egui::Ui, label: &str) -> Color32 {
    match label {
        "In sync" => good(ui),
        "Lagging" | "Seeding" | "Starting" => warn(ui),
        "Paused" => muted(ui),
        _ => bad(ui),
    }
}

/// A coloured dot and a text.
pub fn badge(ui: &mut egui::Ui, colour: Color32, text: impl Into<String>) -> egui::Response {
    ui.horizontal(|ui| {
        ui.spacing_mut().item_spacing.x = 5.0;
        let size = ui.text_style_height(&egui::TextStyle::Body);
        let (rect, _) = ui.allocate_exact_size(egui::vec2(8.0, size), egui::Sense::hover());
        ui.painter().circle_filled(rect.center(), 4.0, colour);
        ui.label(RichText::new(text.into()).color(colour))
    })
    .inner
}

/// A button that is disabled and says why when `reason` is set.
pub fn button_unless(ui: &mut egui::Ui, text: &str, reason: Option<&str>) -> egui::Response {
    let response = ui.add_enabled(reason.is_none(), egui::Button::new(text));
    match reason {
        Some(reason) => response.on_disabled_hover_text(reason),
        None => response,
    }
}

/// The field a user types `expected` into before a destructive action
/// (as cloud consoles ask for a resource's name); whether it matches.
pub fn typed_confirmation(ui: &mut egui::Ui, expected: &str, typed: &mut String) -> bool {
    ui.horizontal(|ui| {
        ui.label(format!("Type {expected} to confirm:"));
        ui.add(egui::TextEdit::singleline(typed).desired_width(160.0))
            .accessible_name("Type to confirm");
    });
    typed.trim() == expected
}

/// A strong button for a destructive action, enabled once `confirmed`.
pub fn confirmed_button(
    ui: &mut egui::Ui,
    text: &str,
    accessible: &str,
    confirmed: bool,
    expected: &str,
) -> egui::Response {
    let response = ui
        .add_enabled(confirmed, egui::Button::new(RichText::new(text).strong()))
        .accessible_name(accessible);
    if confirmed {
        response
    } else {
        response.on_disabled_hover_text(format!("type {expected} above to enable this"))
    }
}

/// `3 s ago`, `5 min ago`, from µs since epoch; while it is shown, the
/// window repaints when the text would change (each second, then each
/// minute), and not otherwise.
pub fn ago(ui: &egui::Ui, us: u64) -> String {
    let now = crate::workload::now_us();
    let s = now.saturating_sub(us) / 1_000_000;
    let next = match s {
        0..=119 => 1,
        120..=7199 => 60,
        _ => 3600,
    };
    ui.ctx()
        .request_repaint_after(std::time::Duration::from_secs(next));
    match s {
        0..=1 => "just now".into(),
        2..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

/// `2026-11-26 07:12:03 UTC`, from µs since epoch.
pub fn clock(us: u64) -> String {
    let text = crate::workload::verify::format_us(us);
    format!("{} UTC", text.get(..19).unwrap_or(&text).replace('T', " "))
}

/// A lag for people: `0.12 s`, `4.0 s`, `3 min`.
pub fn lag(seconds: Option<f64>) -> String {
    match seconds {
        None => "—".into(),
        Some(s) if s < 10.0 => format!("{s:.2} s"),
        Some(s) if s < 120.0 => format!("{s:.0} s"),
        Some(s) => format!("{:.0} min", s / 60.0),
    }
}

/// The outcome of request `id`, once the engine has recorded it.
pub fn outcome_of(snapshot: &Snapshot, id: RequestId) -> Option<&Outcome> {
    snapshot
        .activity
        .iter()
        .rev()
        .find(|e| e.request == id)
        .map(|e| &e.outcome)
}

/// Shows how a pending request stands: a spinner while it runs, then its
/// message in green or red. Returns the outcome once it is known.
pub fn feedback(
    ui: &mut egui::Ui,
    snapshot: &Snapshot,
    pending: Option<RequestId>,
) -> Option<Outcome> {
    let id = pending?;
    match outcome_of(snapshot, id) {
        None | Some(Outcome::Running) => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("working…");
            });
            None
        }
        Some(outcome @ Outcome::Done(message)) => {
            ui.label(RichText::new(format!("Done: {message}")).color(good(ui)));
            Some(outcome.clone())
        }
        Some(outcome @ Outcome::Failed(message)) => {
            ui.label(RichText::new(format!("Failed: {message}")).color(bad(ui)));
            Some(outcome.clone())
        }
    }
}

/// A labelled single-line text field with an accessible name.
pub fn text_field(
    ui: &mut egui::Ui,
    label: &str,
    value: &mut String,
    hint: &str,
) -> egui::Response {
    ui.label(label);
    ui.add(
        egui::TextEdit::singleline(value)
            .hint_text(hint)
            .desired_width(320.0),
    )
    .accessible_name(label)
}

/// A heading with a line of explanation under it.
pub fn section(ui: &mut egui::Ui, title: &str, explanation: &str) {
    ui.heading(title);
    ui.label(RichText::new(explanation).color(muted(ui)));
    ui.add_space(6.0);
}

/// A file dialog running on the engine's runtime (never on the UI thread),
/// polled once per frame.
#[derive(Default)]
pub struct PathDialog {
    answer: Option<std::sync::mpsc::Receiver<Option<std::path::PathBuf>>>,
}

impl PathDialog {
    /// Whether a dialog is open.
    pub fn is_open(&self) -> bool {
        self.answer.is_some()
    }

    /// Runs `dialog` (an rfd future) on `runtime`; `ctx` repaints when it
    /// answers.
    pub fn open<F>(&mut self, ctx: &egui::Context, runtime: &tokio::runtime::Handle, dialog: F)
    where
        F: std::future::Future<Output = Option<rfd::FileHandle>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        let ctx = ctx.clone();
        runtime.spawn(async move {
            let chosen = dialog.await.map(|f| f.path().to_path_buf());
            let _ = tx.send(chosen);
            ctx.request_repaint();
        });
        self.answer = Some(rx);
    }

    /// `Some(Some(path))` once a path was chosen, `Some(None)` once the
    /// dialog closed without one (or no dialog service exists), `None`
    /// while it is open or when none was opened.
    pub fn poll(&mut self) -> Option<Option<std::path::PathBuf>> {
        let answer = match self.answer.as_ref()?.try_recv() {
            Ok(chosen) => chosen,
            Err(std::sync::mpsc::TryRecvError::Empty) => return None,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => None,
        };
        self.answer = None;
        Some(answer)
    }
}
