//! Failover and drill reports, as Markdown for people and JSON for tools.

use std::path::Path;

use crate::control::event::OperationRecord;
use crate::error::{Error, Result};

/// The report as Markdown.
pub fn markdown(r: &OperationRecord) -> String {
    let when = crate::workload::verify::format_us(r.started_ms * 1000);
    let mut out = format!(
        "# {} {} → {}\n\n- id: `{}`\n- asked for: {when}\n- outcome: {}{}\n- RTO: {} (to {})\n",
        capitalised(r.kind.name()),
        r.from,
        r.to,
        r.id,
        r.outcome,
        if r.ok { "" } else { " (FAILED STEPS)" },
        r.rto_ms
            .map_or("not measured".to_string(), |ms| format!("{ms} ms")),
        r.rto_to,
    );
    out.push_str("\n## RPO per database\n\n| database | new branch | acknowledged | missing | oldest missing (ms before the fork) | replica lag (ms) |\n|---|---|---|---|---|---|\n");
    let or_dash = |v: Option<u64>| v.map_or("–".to_string(), |v| v.to_string());
    for d in &r.rpo {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            d.db,
            d.branch,
            or_dash(d.acknowledged),
            or_dash(d.missing_records),
            or_dash(d.missing_span_ms),
            or_dash(d.lag_ms)
        ));
    }
    out.push_str("\n## Steps\n\n| step | ms | ok | detail |\n|---|---|---|---|\n");
    for s in &r.steps {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            s.name,
            s.ms,
            if s.ok { "yes" } else { "NO" },
            s.detail.replace('|', "\\|")
        ));
    }
    if !r.endpoints.is_empty() {
        out.push_str("\n## Connection strings\n\n");
        for e in &r.endpoints {
            out.push_str(&format!("- `{e}`\n"));
        }
    }
    out
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
}

/// Writes the report to `path`: JSON when it ends in `.json`, else Markdown.
pub fn write(path: &Path, r: &OperationRecord) -> Result<()> {
    let text = if path.extension().is_some_and(|e| e == "json") {
        serde_json::to_string_pretty(r)
            .map_err(|e| Error::Failed(format!("cannot encode the report: {e}")))?
    } else {
        markdown(r)
    };
    std::fs::write(path, text).map_err(|e| Error::file(path, format!("cannot write: {e}")))
}
