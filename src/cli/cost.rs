//! `lifeboat cost ...`: the prices the bill is figured at, and what each
//! RPO target costs a quiet database at each store.

use std::time::Duration;

use clap::Subcommand;
use serde::Serialize;

use lifeboat::cost::{self, dollars};
use lifeboat::error::{Result, exit_code};

use crate::{Ctx, emit, parse_duration};

#[derive(Subcommand, Debug)]
pub enum CostCommand {
    /// The prices in use, and the file that replaces them (`prices.ron`).
    Prices,
    /// What RPO targets cost a quiet database a month at each store.
    Targets {
        /// These targets (repeatable; default: 1s, 5s, 10s, 30s, 60s).
        #[arg(long = "rpo-target", value_parser = parse_duration)]
        targets: Vec<Duration>,
    },
}

#[derive(Serialize)]
struct PricesOut {
    /// The file a user's prices go in (it replaces the table).
    file: String,
    from: String,
    error: Option<String>,
    prices: Vec<cost::Prices>,
}

#[derive(Serialize)]
struct TargetCost {
    rpo_target_s: f64,
    per_min: cost::Rates,
    /// Dollars a database-month, one per store, in the table's order.
    month: Vec<(String, f64)>,
}

pub fn cost(ctx: &Ctx, json: bool, command: CostCommand) -> Result<i32> {
    let (rows, from, error) = cost::load_or_published(&ctx.home.config_dir);
    match command {
        CostCommand::Prices => {
            let out = PricesOut {
                file: cost::prices_file(&ctx.home.config_dir)
                    .display()
                    .to_string(),
                from,
                error,
                prices: rows,
            };
            emit(json, &out, || prices_table(&out))?;
        }
        CostCommand::Targets { targets } => {
            let targets = if targets.is_empty() {
                [1, 5, 10, 30, 60].map(Duration::from_secs).to_vec()
            } else {
                targets
            };
            let out: Vec<TargetCost> = targets
                .iter()
                .map(|t| {
                    let per_min = cost::idle_rates(*t);
                    TargetCost {
                        rpo_target_s: t.as_secs_f64(),
                        per_min,
                        month: rows
                            .iter()
                            .map(|p| (p.store.clone(), p.requests_per_month(&per_min)))
                            .collect(),
                    }
                })
                .collect();
            emit(json, &out, || targets_table(&out, &from, error.as_deref()))?;
        }
    }
    Ok(exit_code::OK)
}

fn prices_table(out: &PricesOut) -> String {
    let mut lines = vec![format!(
        "{:<16} {:>10} {:>10} {:>10} {:>10} {:>11} {:>10}  SOURCE",
        "STORE", "LIST/1000", "PUT/1000", "GET/1000", "DEL/1000", "GB-MONTH", "GB MOVED"
    )];
    for p in &out.prices {
        lines.push(format!(
            "{:<16} {:>10} {:>10} {:>10} {:>10} {:>11} {:>10}  {} ({})",
            p.store,
            format!("${}", p.list_per_1000),
            format!("${}", p.put_per_1000),
            format!("${}", p.get_per_1000),
            format!("${}", p.delete_per_1000),
            format!("${}", p.storage_gb_month),
            format!("${}", p.transfer_gb),
            p.source,
            p.as_of
        ));
    }
    lines.push(format!("prices: {}", out.from));
    lines.push(format!(
        "to use your own, write the rows above (in RON) to {}",
        out.file
    ));
    if let Some(error) = &out.error {
        lines.push(format!("warning: {error}; the published prices are used"));
    }
    lines.join("\n")
}

fn targets_table(out: &[TargetCost], from: &str, error: Option<&str>) -> String {
    let stores: Vec<&str> = out
        .first()
        .map(|t| t.month.iter().map(|(s, _)| s.as_str()).collect())
        .unwrap_or_default();
    let mut head = format!("{:<11} {:>8} {:>9}", "RPO TARGET", "GET/MIN", "LIST/MIN");
    for store in &stores {
        head.push_str(&format!(" {store:>15}"));
    }
    let mut lines = vec![head];
    for t in out {
        let mut line = format!(
            "{:<11} {:>8.1} {:>9.2}",
            format!("{} s", t.rpo_target_s),
            t.per_min.get,
            t.per_min.list
        );
        for (_, month) in &t.month {
            line.push_str(&format!(" {:>15}", dollars(*month)));
        }
        lines.push(line);
    }
    lines.push(format!(
        "a quiet database a month, requests only; prices: {from}"
    ));
    if let Some(error) = error {
        lines.push(format!("warning: {error}; the published prices are used"));
    }
    lines.join("\n")
}
