//! Desktop notifications of alerts (the freedesktop notification service
//! over D-Bus, through notify-rust). Blocking: the app calls it off the UI
//! thread.

use crate::metrics::alerts::{AlertEvent, Status};

/// Shows `event` on the desktop; one line saying why it could not.
pub fn show(event: &AlertEvent) -> Result<(), String> {
    let title = match event.status {
        Status::Firing => format!("Lifeboat: {}", event.subject),
        Status::Resolved => format!("Lifeboat: {} resolved", event.subject),
        Status::Test => "Lifeboat: alert test".to_string(),
    };
    let urgency = match event.status {
        Status::Firing => notify_rust::Urgency::Critical,
        _ => notify_rust::Urgency::Normal,
    };
    notify_rust::Notification::new()
        .appname("Lifeboat")
        .summary(&title)
        .body(&event.summary)
        .icon("io.lifeboat.Lifeboat")
        .urgency(urgency)
        .show()
        .map(|_| ())
        .map_err(|e| format!("no desktop notification: {e}"))
}
