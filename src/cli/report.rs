//! `lifeboat report month [2026-12]`: the monthly DR report, from the
//! engine's kept samples in this machine's data folder and the operations
//! the control log records, as Markdown, JSON and HTML files.

use std::path::PathBuf;

use clap::Subcommand;

use lifeboat::error::{Error, Result, exit_code};
use lifeboat::metrics::month::{self, Inputs};

use crate::{Ctx, emit};

#[derive(Subcommand, Debug)]
pub enum ReportCommand {
    /// A month's report: time within the RPO target per database, worst
    /// lag, every failover, switchover, failback and drill with RTO and
    /// RPO, outages and request costs. Writes lifeboat-dr-MONTH.md, .json
    /// and .html (plots included, prints to PDF) into --out.
    Month {
        /// The month, as YYYY-MM (this month when left out).
        month: Option<String>,
        /// The folder to write the files into.
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
    },
}

pub async fn report(ctx: &Ctx, json: bool, command: ReportCommand) -> Result<i32> {
    let ReportCommand::Month { month, out } = command;
    let now_ms = lifeboat::orchestrator::now_ms();
    let first = match &month {
        Some(text) => month::parse_month(text, "give the month as YYYY-MM, like 2026-12")
            .map_err(Error::invalid)?,
        None => month::this_month(now_ms),
    };
    let (operations, unknown) = match crate::cli::workspace::regions(ctx) {
        Ok(regions) => match lifeboat::control::load_all(&regions).await {
            Ok(state) => (state.operations, None),
            Err(e) => (Vec::new(), Some(lifeboat::error::one_line(&e.to_string()))),
        },
        Err(e) => (Vec::new(), Some(lifeboat::error::one_line(&e.to_string()))),
    };
    let data_dir = ctx.home.data_dir.clone();
    let report = tokio::task::spawn_blocking(move || {
        let mut report = month::build(
            first,
            &Inputs {
                data_dir: &data_dir,
                operations: &operations,
                now_ms,
            },
        )?;
        report.operations_unknown = unknown;
        let written = report.write(&out)?;
        Ok::<_, Error>((report, written))
    })
    .await
    .map_err(|e| Error::Failed(format!("making the report stopped: {e}")))?;
    let (report, written) = report?;
    emit(json, &report, || {
        let mut lines = vec![format!(
            "{}: monitored {}, {} operations, {} outages",
            report.title(),
            month::duration(report.monitored_s),
            report.operations.len(),
            report.outages.len()
        )];
        for d in &report.databases {
            lines.push(format!(
                "  {}: {:.3}% within the RPO target, worst lag {:.1} s at {}",
                d.db,
                d.within_share * 100.0,
                d.worst_lag_s,
                month::local_minute(d.worst_at_ms)
            ));
        }
        lines.extend(written.iter().map(|p| format!("wrote {}", p.display())));
        lines.join("\n")
    })?;
    Ok(exit_code::OK)
}
