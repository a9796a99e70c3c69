//! Settings, Alerts: where alerts go (webhooks, commands, the desktop),
//! when the rules fire, a test through each sink, and where Prometheus
//! metrics are served. The same settings as `lifeboat alert ...`; the
//! engine checks and saves them.

use eframe::egui::{self, RichText};

use super::widgets::{self, button_unless, feedback, text_field};
use crate::engine::activity::Outcome;
use crate::engine::{Command, Engine, RequestId, Snapshot};
use crate::metrics::alerts::{
    AlertSettings, FORM_WORDS, MAX_OVERDUE_DAYS, MAX_RULE_S, Sink, SinkTarget,
};

/// Which kind of sink the form adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Kind {
    #[default]
    Webhook,
    Command,
    Desktop,
}

/// The sink form.
#[derive(Debug, Clone, Default)]
struct SinkForm {
    name: String,
    kind: Kind,
    url: String,
    secret_env: String,
    command: String,
    /// Why the last Add was refused, in the form's words.
    error: Option<String>,
}

impl SinkForm {
    fn sink(&self) -> Sink {
        let target = match self.kind {
            Kind::Webhook => SinkTarget::Webhook {
                url: self.url.trim().to_string(),
                secret_env: Some(self.secret_env.trim().to_string()).filter(|v| !v.is_empty()),
            },
            Kind::Command => SinkTarget::Command {
                command: self.command.clone(),
            },
            Kind::Desktop => SinkTarget::Desktop,
        };
        Sink {
            name: self.name.trim().to_string(),
            target,
        }
    }
}

/// The section's own state.
#[derive(Default)]
pub struct AlertsSection {
    form: Option<SinkForm>,
    /// The rules as being edited (taken from the engine's when opened).
    rules: Option<AlertSettings>,
    pending: Option<RequestId>,
    test: Option<RequestId>,
}

impl AlertsSection {
    pub fn ui(&mut self, ui: &mut egui::Ui, engine: &Engine, snapshot: &Snapshot) {
        let view = &snapshot.alerts;
        let settings = &view.settings;
        ui.label(RichText::new("Alerts").strong());
        ui.label(
            RichText::new(
                "Sent when RPO stays above its target, a replica is damaged, a region does not answer, no engine holds a lease, a drill is overdue or an operation fails: once when it fires, again at the repeat interval while it holds, once when it resolves.",
            )
            .color(widgets::muted(ui)),
        );
        if let Some(error) = &view.settings_error {
            ui.label(RichText::new(error).color(widgets::bad(ui)));
        }
        let busy = self.pending.is_some_and(|id| {
            matches!(
                widgets::outcome_of(snapshot, id),
                None | Some(Outcome::Running)
            )
        });
        egui::Grid::new("alert-sinks")
            .striped(true)
            .num_columns(4)
            .spacing([14.0, 6.0])
            .show(ui, |ui| {
                for title in ["Sink", "Sends to", "Last delivery", ""] {
                    ui.label(RichText::new(title).strong());
                }
                ui.end_row();
                for sink in &settings.sinks {
                    ui.label(&sink.name);
                    ui.label(sink.target.describe());
                    match view.failures.iter().find(|(name, _)| *name == sink.name) {
                        Some((_, why)) => ui
                            .label(RichText::new(format!("failed: {why}")).color(widgets::bad(ui))),
                        None => ui.label("no failure"),
                    };
                    ui.horizontal(|ui| {
                        if button_unless(ui, "Test", busy.then_some("saving…"))
                            .accessible_name(format!("Test {}", sink.name))
                            .clicked()
                        {
                            self.test = Some(engine.send(Command::TestAlerts {
                                sink: Some(sink.name.clone()),
                            }));
                        }
                        if button_unless(ui, "Remove", busy.then_some("saving…"))
                            .accessible_name(format!("Remove sink {}", sink.name))
                            .clicked()
                        {
                            let mut changed = settings.clone();
                            changed.sinks.retain(|s| s.name != sink.name);
                            self.pending =
                                Some(engine.send(Command::SetAlerts { settings: changed }));
                        }
                    });
                    ui.end_row();
                }
            });
        if settings.sinks.is_empty() {
            ui.label("No sinks yet: alerts show in the status bar only.");
        }
        ui.horizontal(|ui| {
            let open = self.form.is_some().then_some("the sink form is open below");
            if button_unless(ui, "Add sink", open).clicked() {
                self.form = Some(SinkForm::default());
            }
            let none = settings.sinks.is_empty().then_some("add a sink first");
            if button_unless(ui, "Send a test alert", none).clicked() {
                self.test = Some(engine.send(Command::TestAlerts { sink: None }));
            }
        });
        feedback(ui, snapshot, self.test);
        if let Some(id) = self.pending
            && let Some(Outcome::Failed(message)) = widgets::outcome_of(snapshot, id)
            && let Some(form) = &mut self.form
        {
            form.error = Some(message.clone());
            self.pending = None;
        } else {
            feedback(ui, snapshot, self.pending);
        }
        self.sink_form_ui(ui, engine, settings);
        self.rules_ui(ui, engine, settings, busy);
        ui.add_space(6.0);
        ui.label(RichText::new("Prometheus metrics").strong());
        ui.label(
            "Served at http://ADDR/metrics by `lifeboat serve --metrics 127.0.0.1:9464`, or by this app's engine when started as `lifeboat gui --metrics 127.0.0.1:9464`; the alert rules and a Grafana dashboard ship in /usr/share/lifeboat/.",
        );
    }

    fn sink_form_ui(&mut self, ui: &mut egui::Ui, engine: &Engine, settings: &AlertSettings) {
        let Some(form) = &mut self.form else {
            return;
        };
        let mut close = false;
        ui.group(|ui| {
            egui::Grid::new("sink-form").num_columns(2).show(ui, |ui| {
                text_field(ui, "Name", &mut form.name, "oncall");
                ui.end_row();
                ui.label("Sends to");
                ui.horizontal(|ui| {
                    for (kind, label) in [
                        (Kind::Webhook, "Webhook"),
                        (Kind::Command, "Command"),
                        (Kind::Desktop, "Desktop notification"),
                    ] {
                        ui.radio_value(&mut form.kind, kind, label);
                    }
                });
                ui.end_row();
                match form.kind {
                    Kind::Webhook => {
                        text_field(
                            ui,
                            "Webhook URL",
                            &mut form.url,
                            "https://hooks.example.com/lifeboat",
                        );
                        ui.end_row();
                        text_field(
                            ui,
                            "Secret's variable",
                            &mut form.secret_env,
                            "LIFEBOAT_HOOK_SECRET (the variable's name, not the secret)",
                        );
                        ui.end_row();
                    }
                    Kind::Command => {
                        text_field(ui, "Command", &mut form.command, "logger -t lifeboat");
                        ui.end_row();
                    }
                    Kind::Desktop => {}
                }
            });
            if let Some(error) = &form.error {
                ui.label(RichText::new(error).color(widgets::bad(ui)));
            }
            ui.horizontal(|ui| {
                if ui.button("Save sink").clicked() {
                    let sink = form.sink();
                    let mut changed = settings.clone();
                    let checked = sink
                        .validate(&FORM_WORDS)
                        .and_then(|()| changed.put(sink))
                        .and_then(|()| changed.check(&FORM_WORDS));
                    match checked {
                        Ok(()) => {
                            self.pending =
                                Some(engine.send(Command::SetAlerts { settings: changed }));
                            close = true;
                        }
                        Err(e) => form.error = Some(e.to_string()),
                    }
                }
                if ui.button("Cancel").clicked() {
                    close = true;
                }
            });
        });
        if close {
            self.form = None;
        }
    }

    fn rules_ui(
        &mut self,
        ui: &mut egui::Ui,
        engine: &Engine,
        settings: &AlertSettings,
        busy: bool,
    ) {
        let rules = self.rules.get_or_insert_with(|| settings.clone());
        let mut save = None;
        egui::CollapsingHeader::new("When the rules fire")
            .id_salt("alert-rules")
            .show(ui, |ui| {
                egui::Grid::new("alert-rules-grid")
                    .num_columns(2)
                    .show(ui, |ui| {
                        for (label, value) in [
                            ("RPO above target for (s)", &mut rules.rpo_for_s),
                            ("A region unreachable for (s)", &mut rules.unreachable_for_s),
                            (
                                "No engine holding a lease for (s)",
                                &mut rules.engine_lost_for_s,
                            ),
                            ("A replica damaged for (s)", &mut rules.damaged_for_s),
                            (
                                "Repeat a firing alert every (s, 0: never)",
                                &mut rules.repeat_every_s,
                            ),
                        ] {
                            ui.label(label);
                            ui.add(egui::DragValue::new(value).range(0..=MAX_RULE_S).speed(1.0))
                                .accessible_name(label);
                            ui.end_row();
                        }
                        let label = "No passed drill for (days, 0: off)";
                        ui.label(label);
                        ui.add(
                            egui::DragValue::new(&mut rules.drill_overdue_days)
                                .range(0..=MAX_OVERDUE_DAYS),
                        )
                        .accessible_name(label);
                        ui.end_row();
                    });
                ui.horizontal(|ui| {
                    if button_unless(ui, "Save rules", busy.then_some("saving…")).clicked() {
                        let mut changed = rules.clone();
                        // The sinks as the engine has them now.
                        changed.sinks = settings.sinks.clone();
                        save = Some(changed);
                    }
                    if ui.button("Undo changes").clicked() {
                        *rules = settings.clone();
                    }
                });
            });
        if let Some(changed) = save {
            self.pending = Some(engine.send(Command::SetAlerts { settings: changed }));
        }
    }
}
