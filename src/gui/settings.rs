//! The Settings tab: add, edit and remove regions (a local folder through
//! the folder picker; an S3 bucket, a GCS bucket or an Azure container
//! with the fields each cloud's users expect, and the names of the
//! environment variables that hold the keys, never the keys), each probed
//! before it is saved; the regions' health and clock warnings.

use std::path::PathBuf;

use eframe::egui::{self, RichText};

use super::widgets::{self, button_unless, feedback, text_field};
use crate::config::file_url;
use crate::engine::activity::Outcome;
use crate::engine::{Command, Engine, RegionView, RequestId, Snapshot};
use crate::region::{RegionSpec, RegionUrl};

/// Which kind of store the form describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Folder,
    S3,
    Gcs,
    Azure,
    Url,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Folder => "Local folder",
            Kind::S3 => "S3-compatible",
            Kind::Gcs => "Google Cloud Storage",
            Kind::Azure => "Azure Blob Storage",
            Kind::Url => "Any URL",
        }
    }
}

/// The region form.
#[derive(Debug, Clone)]
struct Form {
    replacing: Option<String>,
    name: String,
    kind: Kind,
    folder: String,
    bucket: String,
    prefix: String,
    endpoint: String,
    s3_region: String,
    access_key_env: String,
    secret_key_env: String,
    session_token_env: String,
    profile: String,
    account: String,
    account_key_env: String,
    sas_token_env: String,
    credentials_env: String,
    url: String,
    /// Why the last save failed, in the form's words, and beside which field.
    error: Option<(Field, String)>,
}

/// The place in the form a failure is shown beside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Name,
    Folder,
    Bucket,
    Account,
    Endpoint,
    Keys,
    Url,
    /// Under the form, when no field is to blame.
    Form,
}

/// The command line's flags for the region's options, and the form's
/// labels for them (longest flag first, so none is read inside another).
const FLAG_LABELS: [(&str, &str); 10] = [
    ("--session-token-env", "Session token variable"),
    ("--account-key-env", "Account key variable"),
    ("--credentials-env", "Credentials file variable"),
    ("--access-key-env", "Access key variable"),
    ("--secret-key-env", "Secret key variable"),
    ("--sas-token-env", "SAS token variable"),
    ("--s3-region", "Signing region"),
    ("--endpoint", "Endpoint"),
    ("--account", "Storage account"),
    ("--profile", "Profile"),
];

/// `text` with each command-line flag replaced by its field's label.
fn form_labels(text: &str) -> String {
    FLAG_LABELS
        .iter()
        .fold(text.to_string(), |text, (flag, label)| {
            text.replace(&format!("{flag} NAME"), label)
                .replace(flag, label)
        })
}

/// A failed save's message (the engine's, which may name command-line
/// flags or carry an HTTP client's report) as one sentence in the words of
/// the form, and the field it concerns.
fn in_form_words(kind: Kind, message: &str) -> (Field, String) {
    let lower = message.to_lowercase();
    // The engine's messages start with `region `x`: `; the form knows.
    let plain = match message.split_once("`: ") {
        Some((head, rest)) if head.starts_with("region `") => rest.to_string(),
        _ => message.to_string(),
    };
    let plain = form_labels(&plain);
    let keys = match kind {
        Kind::Gcs => "Credentials file variable",
        Kind::Azure => "Account key variable or SAS token variable",
        _ => "Access key variable and Secret key variable",
    };
    if lower.contains("no credentials found") {
        let env = match kind {
            Kind::Gcs => "set GOOGLE_APPLICATION_CREDENTIALS",
            Kind::Azure => "set AZURE_STORAGE_ACCOUNT_KEY",
            _ => "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give a Profile,",
        };
        return (
            Field::Keys,
            format!(
                "No credentials: give the names of the environment variables that hold them in {keys}, or {env} before starting Lifeboat."
            ),
        );
    }
    if lower.contains("or neither") {
        return (
            Field::Keys,
            format!("Fill in both {keys}, or leave both empty."),
        );
    }
    if lower.contains("azure storage account") {
        return (Field::Account, plain);
    }
    if lower.contains("environment variable `")
        || lower.contains("profile")
        || lower.contains("sas token")
        || lower.contains("account key")
        || lower.contains("credentials file")
        || lower.contains("session token")
        || lower.contains("-env")
    {
        return (Field::Keys, plain);
    }
    // A status, not "403" alone: a probe's random object name holds that too.
    if lower.contains("access denied") || lower.contains("403 forbidden") {
        return (
            Field::Keys,
            format!(
                "Access denied: the server does not accept the credentials held by the variables named in {keys}."
            ),
        );
    }
    if lower.contains("bucket does not exist") || lower.contains("nosuchbucket") {
        return (
            Field::Bucket,
            "No such bucket on this server: create it, or correct Bucket.".into(),
        );
    }
    if lower.contains("container does not exist") {
        return (
            Field::Bucket,
            "No such container in this storage account: create it, or correct Container.".into(),
        );
    }
    if lower.contains("conditional") {
        return (
            Field::Endpoint,
            "This server ignores conditional writes, which Lifeboat needs to keep replicas consistent; use another server.".into(),
        );
    }
    if lower.contains("unreachable")
        || lower.contains("error performing")
        || lower.contains("http error")
        || lower.contains("connect")
        || lower.contains("dns")
        || lower.contains("timed out")
    {
        let field = if matches!(kind, Kind::S3 | Kind::Gcs | Kind::Azure) {
            Field::Endpoint
        } else {
            Field::Form
        };
        return (
            field,
            "Cannot reach the server: check Endpoint (its scheme, host and port) and that the server is running.".into(),
        );
    }
    if lower.contains("endpoint") {
        return (Field::Endpoint, plain);
    }
    if lower.contains("already exists") || lower.contains("region name") {
        return (Field::Name, plain);
    }
    match kind {
        Kind::Folder if lower.contains("`.` or `..`") => (
            Field::Folder,
            "Type the folder's path without `.` or `..`, e.g. /srv/lifeboat/ap-south-1.".into(),
        ),
        Kind::Folder if lower.contains("absolute") => (
            Field::Folder,
            "Type the folder's absolute path, e.g. /srv/lifeboat/ap-south-1.".into(),
        ),
        Kind::Folder if lower.contains("folder") || lower.contains("path") => {
            (Field::Folder, plain)
        }
        Kind::Url if lower.contains("url") || lower.contains("scheme") => (Field::Url, plain),
        Kind::S3 | Kind::Gcs | Kind::Azure
            if lower.contains("bucket") || lower.contains("container") =>
        {
            (Field::Bucket, plain)
        }
        _ => {
            let mut sentence: String = plain.chars().take(240).collect();
            if plain.chars().count() > 240 {
                sentence.push('…');
            }
            (Field::Form, sentence)
        }
    }
}

/// The form's failure, if it belongs beside `field`.
fn error_row(ui: &mut egui::Ui, form: &Form, field: Field) {
    if let Some((at, message)) = &form.error
        && *at == field
    {
        ui.label("");
        ui.label(RichText::new(message).color(widgets::bad(ui)));
        ui.end_row();
    }
}

impl Form {
    fn empty() -> Form {
        Form {
            replacing: None,
            name: String::new(),
            kind: Kind::Folder,
            folder: String::new(),
            bucket: String::new(),
            prefix: String::new(),
            endpoint: String::new(),
            s3_region: String::new(),
            access_key_env: String::new(),
            secret_key_env: String::new(),
            session_token_env: String::new(),
            profile: String::new(),
            account: String::new(),
            account_key_env: String::new(),
            sas_token_env: String::new(),
            credentials_env: String::new(),
            url: String::new(),
            error: None,
        }
    }

    /// The form filled from a saved region.
    fn of(spec: &RegionSpec) -> Form {
        let mut form = Form::empty();
        form.replacing = Some(spec.name.clone());
        form.name = spec.name.clone();
        form.url = spec.url.clone();
        let text = |o: &Option<String>| o.clone().unwrap_or_default();
        form.endpoint = text(&spec.endpoint);
        form.s3_region = text(&spec.s3_region);
        form.access_key_env = text(&spec.access_key_env);
        form.secret_key_env = text(&spec.secret_key_env);
        form.session_token_env = text(&spec.session_token_env);
        form.profile = text(&spec.profile);
        form.account = text(&spec.account);
        form.account_key_env = text(&spec.account_key_env);
        form.sas_token_env = text(&spec.sas_token_env);
        form.credentials_env = text(&spec.credentials_env);
        match RegionUrl::parse(&spec.name, &spec.url) {
            Ok(RegionUrl::File(path)) => {
                form.kind = Kind::Folder;
                form.folder = path.display().to_string();
            }
            Ok(RegionUrl::S3 { bucket, prefix }) => {
                form.kind = Kind::S3;
                form.bucket = bucket;
                form.prefix = prefix;
            }
            Ok(RegionUrl::Gcs { bucket, prefix }) => {
                form.kind = Kind::Gcs;
                form.bucket = bucket;
                form.prefix = prefix;
            }
            Ok(RegionUrl::Azure { container, prefix }) => {
                form.kind = Kind::Azure;
                form.bucket = container;
                form.prefix = prefix;
            }
            _ => form.kind = Kind::Url,
        }
        form
    }

    /// The spec the form describes (checked by the engine, not here).
    fn spec(&self) -> RegionSpec {
        let some = |s: &str| {
            let s = s.trim();
            (!s.is_empty()).then(|| s.to_string())
        };
        let under = |scheme: &str| {
            let prefix = self.prefix.trim().trim_matches('/');
            if prefix.is_empty() {
                format!("{scheme}://{}", self.bucket.trim())
            } else {
                format!("{scheme}://{}/{prefix}", self.bucket.trim())
            }
        };
        let url = match self.kind {
            Kind::Folder => {
                let path = PathBuf::from(self.folder.trim());
                if path.is_absolute() {
                    file_url(&path)
                } else {
                    // Not absolute: the engine's check explains the fix.
                    format!("file://{}", self.folder.trim())
                }
            }
            Kind::S3 => under("s3"),
            Kind::Gcs => under("gs"),
            Kind::Azure => under("az"),
            Kind::Url => self.url.trim().to_string(),
        };
        let mut spec = RegionSpec::new(self.name.trim(), &url);
        // Only the fields the kind shows: a field left filled under
        // another kind is not sent.
        match self.kind {
            Kind::S3 => {
                spec.endpoint = some(&self.endpoint);
                spec.s3_region = some(&self.s3_region);
                spec.access_key_env = some(&self.access_key_env);
                spec.secret_key_env = some(&self.secret_key_env);
                spec.session_token_env = some(&self.session_token_env);
                spec.profile = some(&self.profile);
            }
            Kind::Gcs => {
                spec.endpoint = some(&self.endpoint);
                spec.credentials_env = some(&self.credentials_env);
            }
            Kind::Azure => {
                spec.endpoint = some(&self.endpoint);
                spec.account = some(&self.account);
                spec.account_key_env = some(&self.account_key_env);
                spec.sas_token_env = some(&self.sas_token_env);
            }
            Kind::Folder | Kind::Url => {}
        }
        spec
    }
}

/// The tab's own state.
#[derive(Default)]
pub struct SettingsTab {
    form: Option<Form>,
    pending: Option<RequestId>,
    picker: widgets::PathDialog,
    note: Option<String>,
    confirm_remove: Option<String>,
    alerts: super::alerts::AlertsSection,
}

impl SettingsTab {
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        engine: &Engine,
        snapshot: &Snapshot,
        folders: (&str, &str),
    ) {
        widgets::section(
            ui,
            "Settings",
            "Regions are object stores: local folders, S3-compatible servers, Google Cloud Storage, Azure. Keys stay in environment variables; only their names are saved.",
        );
        self.poll_picker();
        egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| {
            if snapshot.embedded_default {
                ui.label(
                    RichText::new("Using the embedded default: two local regions under the data folder. Add or change a region to save your own list.")
                        .color(widgets::muted(ui)),
                );
            }
            for warning in &snapshot.clock_warnings {
                ui.label(RichText::new(format!("Warning: {warning}")).color(widgets::warn(ui)));
            }
            self.regions_table(ui, engine, snapshot);
            ui.horizontal(|ui| {
                let open = self.form.is_some().then_some("the region form is open below");
                if button_unless(ui, "Add region", open).clicked() {
                    self.form = Some(Form::empty());
                    self.pending = None;
                }
                if ui.button("Check regions now").clicked() {
                    engine.send(Command::CheckRegions);
                }
            });
            // The form's Save is the only request made while it is open; a
            // failure is shown beside the field it concerns.
            if let (Some(form), Some(id)) = (&mut self.form, self.pending) {
                match widgets::outcome_of(snapshot, id) {
                    Some(Outcome::Done(_)) => {
                        feedback(ui, snapshot, self.pending);
                        self.form = None;
                    }
                    Some(Outcome::Failed(message)) => {
                        form.error = Some(in_form_words(form.kind, message));
                        self.pending = None;
                    }
                    _ => {
                        feedback(ui, snapshot, self.pending);
                    }
                }
            } else {
                feedback(ui, snapshot, self.pending);
            }
            if self.form.is_some() {
                self.form_ui(ui, engine);
            }
            ui.add_space(12.0);
            self.alerts.ui(ui, engine, snapshot);
            ui.add_space(12.0);
            ui.label(RichText::new("Folders").strong());
            ui.label(format!("Data: {}", folders.0));
            ui.label(format!("Configuration: {}", folders.1));
        });
    }

    fn regions_table(&mut self, ui: &mut egui::Ui, engine: &Engine, snapshot: &Snapshot) {
        let in_group = |name: &str| {
            snapshot
                .group
                .as_ref()
                .is_some_and(|g| g.primary == name || g.secondary == name)
        };
        egui::Grid::new("regions")
            .striped(true)
            .num_columns(5)
            .spacing([14.0, 6.0])
            .show(ui, |ui| {
                for title in ["Region", "Kind", "Where", "Health", ""] {
                    ui.label(RichText::new(title).strong());
                }
                ui.end_row();
                for (index, region) in snapshot.regions.iter().enumerate() {
                    let name = &region.spec.name;
                    let title = if index == 0 {
                        format!("{name} (primary)")
                    } else {
                        name.clone()
                    };
                    ui.label(RichText::new(title).strong());
                    ui.label(region.kind);
                    let mut place = region.spec.url.clone();
                    if let Some(endpoint) = &region.spec.endpoint {
                        place.push_str(&format!(" at {endpoint}"));
                    }
                    ui.monospace(place);
                    health_ui(ui, region);
                    ui.horizontal(|ui| {
                        let busy = if in_group(name) {
                            Some("in the replication group: stop replication first")
                        } else if self.form.is_some() {
                            Some("the region form is open below")
                        } else {
                            None
                        };
                        if button_unless(ui, "Edit", busy)
                            .accessible_name(format!("Edit {name}"))
                            .clicked()
                        {
                            self.form = Some(Form::of(&region.spec));
                            self.pending = None;
                        }
                        if self.confirm_remove.as_deref() == Some(name) {
                            if ui
                                .button("Yes, remove")
                                .accessible_name(format!("Yes, remove {name}"))
                                .clicked()
                            {
                                self.pending =
                                    Some(engine.send(Command::RemoveRegion { name: name.clone() }));
                                self.confirm_remove = None;
                            }
                            if ui.button("Keep").clicked() {
                                self.confirm_remove = None;
                            }
                        } else if button_unless(ui, "Remove", busy)
                            .accessible_name(format!("Remove {name}"))
                            .clicked()
                        {
                            self.confirm_remove = Some(name.clone());
                        }
                    });
                    ui.end_row();
                }
            });
    }

    fn form_ui(&mut self, ui: &mut egui::Ui, engine: &Engine) {
        let Some(form) = &mut self.form else {
            return;
        };
        let mut close = false;
        let mut pick = false;
        ui.group(|ui| {
            ui.heading(match &form.replacing {
                Some(old) => format!("Edit region {old}"),
                None => "Add a region".to_string(),
            });
            egui::Grid::new("region-form").num_columns(2).spacing([12.0, 6.0]).show(ui, |ui| {
                text_field(ui, "Region name", &mut form.name, "ap-south-1");
                ui.end_row();
                error_row(ui, form, Field::Name);
                ui.label("Kind");
                ui.horizontal_wrapped(|ui| {
                    for kind in [Kind::Folder, Kind::S3, Kind::Gcs, Kind::Azure, Kind::Url] {
                        ui.radio_value(&mut form.kind, kind, kind.label());
                    }
                });
                ui.end_row();
                match form.kind {
                    Kind::Folder => {
                        ui.label("Folder");
                        ui.horizontal(|ui| {
                            ui.add(
                                egui::TextEdit::singleline(&mut form.folder)
                                    .hint_text("/srv/lifeboat/ap-south-1")
                                    .desired_width(320.0),
                            )
                            .accessible_name("Folder");
                            if ui.button("Choose folder…").clicked() {
                                pick = true;
                            }
                        });
                        ui.end_row();
                        error_row(ui, form, Field::Folder);
                    }
                    Kind::S3 => {
                        text_field(ui, "Bucket", &mut form.bucket, "my-bucket");
                        ui.end_row();
                        error_row(ui, form, Field::Bucket);
                        text_field(ui, "Prefix", &mut form.prefix, "lifeboat (optional)");
                        ui.end_row();
                        text_field(ui, "Endpoint", &mut form.endpoint, "https://s3.example.com (empty for AWS)");
                        ui.end_row();
                        error_row(ui, form, Field::Endpoint);
                        text_field(ui, "Signing region", &mut form.s3_region, "us-east-1");
                        ui.end_row();
                        text_field(ui, "Profile", &mut form.profile, "default (optional, from ~/.aws/credentials)");
                        ui.end_row();
                        text_field(ui, "Access key variable", &mut form.access_key_env, "AWS_ACCESS_KEY_ID");
                        ui.end_row();
                        text_field(ui, "Secret key variable", &mut form.secret_key_env, "AWS_SECRET_ACCESS_KEY");
                        ui.end_row();
                        text_field(ui, "Session token variable", &mut form.session_token_env, "AWS_SESSION_TOKEN (temporary keys only)");
                        ui.end_row();
                        error_row(ui, form, Field::Keys);
                    }
                    Kind::Gcs => {
                        text_field(ui, "Bucket", &mut form.bucket, "my-bucket");
                        ui.end_row();
                        error_row(ui, form, Field::Bucket);
                        text_field(ui, "Prefix", &mut form.prefix, "lifeboat (optional)");
                        ui.end_row();
                        text_field(ui, "Endpoint", &mut form.endpoint, "empty for Google Cloud; an emulator's URL");
                        ui.end_row();
                        error_row(ui, form, Field::Endpoint);
                        text_field(ui, "Credentials file variable", &mut form.credentials_env, "GOOGLE_APPLICATION_CREDENTIALS");
                        ui.end_row();
                        error_row(ui, form, Field::Keys);
                    }
                    Kind::Azure => {
                        text_field(ui, "Storage account", &mut form.account, "mystorageaccount");
                        ui.end_row();
                        error_row(ui, form, Field::Account);
                        text_field(ui, "Container", &mut form.bucket, "lifeboat");
                        ui.end_row();
                        error_row(ui, form, Field::Bucket);
                        text_field(ui, "Prefix", &mut form.prefix, "us-east-1 (optional)");
                        ui.end_row();
                        text_field(ui, "Endpoint", &mut form.endpoint, "empty for Azure; a sovereign cloud's or Azurite's account URL");
                        ui.end_row();
                        error_row(ui, form, Field::Endpoint);
                        text_field(ui, "Account key variable", &mut form.account_key_env, "AZURE_STORAGE_ACCOUNT_KEY");
                        ui.end_row();
                        text_field(ui, "SAS token variable", &mut form.sas_token_env, "AZURE_STORAGE_SAS_KEY (instead of a key)");
                        ui.end_row();
                        error_row(ui, form, Field::Keys);
                    }
                    Kind::Url => {
                        text_field(ui, "URL", &mut form.url, "s3://bucket/prefix");
                        ui.end_row();
                        error_row(ui, form, Field::Url);
                    }
                }
            });
            let keys_note = match form.kind {
                Kind::S3 => Some("Give a profile, or the NAMES of the environment variables that hold the keys; leave them empty to use the AWS_* variables, AWS_PROFILE or the default profile. Keys are never saved."),
                Kind::Gcs => Some("Give the NAME of the environment variable that holds the path of a service-account key file; leave it empty to use GOOGLE_APPLICATION_CREDENTIALS or gcloud's login. Keys are never saved."),
                Kind::Azure => Some("Give the NAME of the environment variable that holds the account key or a SAS token; leave both empty to use the AZURE_* variables or a managed identity. Keys are never saved."),
                Kind::Folder | Kind::Url => None,
            };
            if let Some(note) = keys_note {
                ui.label(RichText::new(note).small().color(widgets::muted(ui)));
            }
            ui.monospace(format!("URL: {}", form.spec().url));
            if let Some((Field::Form, message)) = &form.error {
                ui.label(RichText::new(message).color(widgets::bad(ui)));
            }
            ui.horizontal(|ui| {
                let reason = form.name.trim().is_empty().then_some("type a region name first");
                if button_unless(ui, "Save region", reason)
                    .on_hover_text("probes the region (a small put, read and delete) and saves it only if it answers")
                    .clicked()
                {
                    form.error = None;
                    self.pending = Some(engine.send(Command::SaveRegion {
                        replacing: form.replacing.clone(),
                        spec: form.spec(),
                    }));
                }
                if ui.button("Cancel").clicked() {
                    close = true;
                }
            });
            if let Some(note) = &self.note {
                ui.label(RichText::new(note).color(widgets::muted(ui)));
            }
        });
        if pick && !self.picker.is_open() {
            let dialog = rfd::AsyncFileDialog::new()
                .set_title("Choose the region's folder")
                .pick_folder();
            self.picker.open(ui.ctx(), engine.runtime(), dialog);
            self.note = None;
        }
        if close {
            self.form = None;
            self.pending = None;
        }
    }

    fn poll_picker(&mut self) {
        match self.picker.poll() {
            Some(Some(path)) => {
                if let Some(form) = &mut self.form {
                    form.folder = path.display().to_string();
                }
            }
            Some(None) => {
                self.note = Some(
                    "No folder chosen. If no dialog appeared, this system has no file dialog service: type the folder's absolute path.".into(),
                );
            }
            None => {}
        }
    }
}

/// A region's health: reachable with latency, or the last error.
fn health_ui(ui: &mut egui::Ui, region: &RegionView) {
    match &region.health {
        None => {
            widgets::badge(ui, widgets::muted(ui), "checking…");
        }
        Some(h) if h.reachable => {
            let text = format!(
                "reachable, {} ms{}",
                h.latency_ms.unwrap_or(0),
                match h.clock_skew_ms {
                    Some(skew) if skew != 0 => format!(", clock {:+.1} s", skew as f64 / 1000.0),
                    _ => String::new(),
                }
            );
            let colour = if h.last_error.is_some() {
                widgets::warn(ui)
            } else {
                widgets::good(ui)
            };
            let badge = widgets::badge(ui, colour, text);
            if let Some(error) = &h.last_error {
                badge.on_hover_text(error);
            }
        }
        Some(h) => {
            let error = h.last_error.clone().unwrap_or_else(|| "unreachable".into());
            widgets::badge(ui, widgets::bad(ui), "unreachable").on_hover_text(&error);
            ui.label(RichText::new(error).small().color(widgets::bad(ui)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_save_reads_in_the_forms_words_beside_its_field() {
        let cases = [
            (
                "no credentials found: the region names no key env vars, AWS_ACCESS_KEY_ID is not set and no cloud instance metadata answers; give --access-key-env and --secret-key-env",
                Field::Keys,
                "Access key variable and Secret key variable",
            ),
            (
                "region `r`: give both --access-key-env and --secret-key-env, or neither (then the AWS_* environment is used)",
                Field::Keys,
                "Fill in both",
            ),
            (
                "region `r`: store error (probe put): Error performing PUT http://127.0.0.1:9/b/x after 3 retries, max_retries: 3, retry_timeout: 15s - HTTP error: error sending request",
                Field::Endpoint,
                "Cannot reach the server: check Endpoint",
            ),
            // "403" in the probe's random name is no refusal (seen once in
            // the GUI test: `...-c6728bdd4031433b`).
            (
                "not saved: region `ap-south-1`: probe put failed: unreachable: Error performing PUT http://127.0.0.1:43703/lifeboat/_lifeboat/probe/8232-c6728bdd4031433b in 360ms, after 3 retries - HTTP error: error sending request for url: tcp connect error: Connection refused (os error 111); check the endpoint and that the server is running",
                Field::Endpoint,
                "Cannot reach the server: check Endpoint",
            ),
            (
                "region `r`: probe put failed: Server returned non-2xx status code: 403 Forbidden",
                Field::Keys,
                "Access denied",
            ),
        ];
        for (message, field, words) in cases {
            assert_in_form_words(Kind::S3, message, field, words);
        }
    }

    /// `message` reads beside `field`, holds `words`, and names no flag
    /// and no client report.
    fn assert_in_form_words(kind: Kind, message: &str, field: Field, words: &str) {
        let (at, sentence) = in_form_words(kind, message);
        assert_eq!(at, field, "{message}");
        assert!(sentence.contains(words), "{sentence}");
        assert!(
            !sentence.contains("--") && !sentence.contains("retries"),
            "{sentence}"
        );
    }

    #[test]
    fn azure_and_gcs_failures_name_their_own_fields() {
        let cases = [
            (
                Kind::Azure,
                "region `w`: no Azure storage account is named; give --account NAME, or set AZURE_STORAGE_ACCOUNT_NAME",
                Field::Account,
                "give Storage account, or set",
            ),
            (
                Kind::Azure,
                "region `w`: `K` does not hold an account key (it is not base64); copy key1 or key2 from the storage account's Access keys",
                Field::Keys,
                "does not hold an account key",
            ),
            (
                Kind::Azure,
                "region `w`: give --account-key-env or --sas-token-env, not both",
                Field::Keys,
                "give Account key variable or SAS token variable, not both",
            ),
            (
                Kind::Azure,
                "region `w`: probe put failed: the container does not exist; create it or fix the URL",
                Field::Bucket,
                "correct Container",
            ),
            (
                Kind::Azure,
                "region `w`: probe put failed: access denied; check the credentials the region's env vars hold (AuthorizationFailure: Server failed to authenticate the request.)",
                Field::Keys,
                "Account key variable or SAS token variable",
            ),
            (
                Kind::Gcs,
                "region `w`: the credentials file `/x` (named by G) cannot be opened: No such file or directory (os error 2)",
                Field::Keys,
                "cannot be opened",
            ),
            (
                Kind::Gcs,
                "region `w`: probe failed: the server ignores conditional puts (it accepted a second create-only put of the same object, or gave a written object no version), which SlateDB needs",
                Field::Endpoint,
                "ignores conditional writes",
            ),
            (
                Kind::S3,
                "region `w`: AWS profile `x` (the region's profile) is not in /root/.aws/credentials; run `aws configure --profile x` or name another profile",
                Field::Keys,
                "AWS profile `x`",
            ),
            (
                Kind::S3,
                "region `w`: give --profile or the key env vars, not both",
                Field::Keys,
                "give Profile or the key env vars",
            ),
        ];
        for (kind, message, field, words) in cases {
            assert_in_form_words(kind, message, field, words);
        }
    }
}
