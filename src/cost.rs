//! What replication costs on a real cloud: the published list prices of
//! four object stores, and what request counts, stored bytes and bytes
//! moved between regions come to there.
//!
//! The table is small and dated ([`PRICES_AS_OF`]); each row names the page
//! it was taken from. A user whose prices differ (another region, a
//! discount) writes `prices.ron` in the configuration folder: a list of
//! rows in the same shape, which replaces the published table
//! (`lifeboat cost prices` prints the path and the rows in use).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::region::meter::ClassCounts;

/// When the published prices below were read off their pages.
pub const PRICES_AS_OF: &str = "2026-11";

/// Minutes in a billing month (30 days), to turn a rate into a bill.
pub const MINUTES_PER_MONTH: f64 = 30.0 * 24.0 * 60.0;

/// One store's list prices, in US dollars.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prices {
    /// `S3 Standard`, `GCS Standard`, ...
    pub store: String,
    /// Where the figures come from.
    pub source: String,
    /// When they were read there (`2026-11`).
    pub as_of: String,
    /// Per 1,000 requests of each class.
    pub list_per_1000: f64,
    pub put_per_1000: f64,
    pub get_per_1000: f64,
    pub delete_per_1000: f64,
    /// Per GB stored for a month.
    pub storage_gb_month: f64,
    /// Per GB moved from one region to another.
    pub transfer_gb: f64,
}

/// The published list prices (US regions, first tier, no discounts).
pub fn published() -> Vec<Prices> {
    let row = |store: &str, source: &str, list, put, get, storage, transfer| Prices {
        store: store.to_string(),
        source: source.to_string(),
        as_of: PRICES_AS_OF.to_string(),
        list_per_1000: list,
        put_per_1000: put,
        get_per_1000: get,
        delete_per_1000: 0.0,
        storage_gb_month: storage,
        transfer_gb: transfer,
    };
    vec![
        // PUT, COPY, POST, LIST $0.005 per 1,000; GET, SELECT and others
        // $0.0004 per 1,000; DELETE free; us-east-1, first 50 TB; between
        // US regions $0.02 per GB.
        row(
            "S3 Standard",
            "https://aws.amazon.com/s3/pricing/",
            0.005,
            0.005,
            0.0004,
            0.023,
            0.02,
        ),
        // Class A (writes, lists) $0.05 per 10,000; class B (reads) $0.004
        // per 10,000; deletes free; us-east1 regional; between regions in
        // North America $0.02 per GB.
        row(
            "GCS Standard",
            "https://cloud.google.com/storage/pricing",
            0.005,
            0.005,
            0.0004,
            0.020,
            0.02,
        ),
        // Hot LRS, East US: write and list operations $0.05 per 10,000,
        // read $0.004 per 10,000, delete free; first 50 TB $0.018 per GB;
        // between regions in North America $0.02 per GB.
        row(
            "Azure Blob Hot",
            "https://azure.microsoft.com/pricing/details/storage/blobs/",
            0.005,
            0.005,
            0.0004,
            0.018,
            0.02,
        ),
        // Class A (PUT, COPY, POST, LIST) $4.50 per million; class B (GET,
        // HEAD) $0.36 per million; DELETE free; $0.015 per GB-month; no
        // egress fee.
        row(
            "Cloudflare R2",
            "https://developers.cloudflare.com/r2/pricing/",
            0.0045,
            0.0045,
            0.00036,
            0.015,
            0.0,
        ),
    ]
}

/// Where a user's own prices live.
pub fn prices_file(config_dir: &Path) -> PathBuf {
    config_dir.join("prices.ron")
}

/// The prices in use: the user's `prices.ron` when there is one, the
/// published table otherwise.
pub fn load(config_dir: &Path) -> Result<Vec<Prices>> {
    let path = prices_file(config_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(published()),
        Err(e) => return Err(Error::file(&path, e)),
    };
    let rows: Vec<Prices> = ron::from_str(&text).map_err(|e| {
        Error::file(
            &path,
            format!(
                "is not a list of prices ({e}); write rows like those `lifeboat cost prices` prints, or delete the file to use the published prices"
            ),
        )
    })?;
    if let Some(bad) = rows.iter().find(|p| !p.is_sane()) {
        return Err(Error::file(
            &path,
            format!(
                "the prices of `{}` must be numbers at or above 0",
                bad.store
            ),
        ));
    }
    if rows.is_empty() {
        return Err(Error::file(
            &path,
            "lists no store; delete it to use the published prices",
        ));
    }
    Ok(rows)
}

impl Prices {
    fn is_sane(&self) -> bool {
        [
            self.list_per_1000,
            self.put_per_1000,
            self.get_per_1000,
            self.delete_per_1000,
            self.storage_gb_month,
            self.transfer_gb,
        ]
        .iter()
        .all(|v| v.is_finite() && *v >= 0.0)
    }

    /// What `requests` cost.
    pub fn requests(&self, requests: &ClassCounts) -> f64 {
        (requests.list as f64 * self.list_per_1000
            + requests.put as f64 * self.put_per_1000
            + requests.get as f64 * self.get_per_1000
            + requests.delete as f64 * self.delete_per_1000)
            / 1000.0
    }

    /// What requests at `per_min` (requests a minute, by class) cost in a
    /// month.
    pub fn requests_per_month(&self, per_min: &Rates) -> f64 {
        (per_min.list * self.list_per_1000
            + per_min.put * self.put_per_1000
            + per_min.get * self.get_per_1000
            + per_min.delete * self.delete_per_1000)
            * MINUTES_PER_MONTH
            / 1000.0
    }

    /// A month of a group as configured: its requests, both regions'
    /// storage, and the bytes written at the primary crossing to the
    /// secondary.
    pub fn month(&self, forecast: &Forecast) -> MonthlyBill {
        let gb = |bytes: f64| bytes / 1e9;
        let requests = self.requests_per_month(&forecast.requests_per_min);
        let storage = gb(forecast.stored_bytes_per_region) * 2.0 * self.storage_gb_month;
        let transfer = gb(forecast.written_bytes_per_month) * self.transfer_gb;
        MonthlyBill {
            store: self.store.clone(),
            requests,
            storage,
            transfer,
            total: requests + storage + transfer,
        }
    }
}

/// Requests a minute, by class (fractional: an average).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    pub list: f64,
    pub put: f64,
    pub get: f64,
    pub delete: f64,
}

impl Rates {
    /// `counts` over `minutes`.
    pub fn over(counts: &ClassCounts, minutes: f64) -> Rates {
        let per = |n: u64| n as f64 / minutes.max(1e-9);
        Rates {
            list: per(counts.list),
            put: per(counts.put),
            get: per(counts.get),
            delete: per(counts.delete),
        }
    }

    pub fn total(&self) -> f64 {
        self.list + self.put + self.get + self.delete
    }

    pub fn plus(&self, other: &Rates) -> Rates {
        Rates {
            list: self.list + other.list,
            put: self.put + other.put,
            get: self.get + other.get,
            delete: self.delete + other.delete,
        }
    }

    /// Each class at least `floor`'s.
    pub fn at_least(&self, floor: &Rates) -> Rates {
        Rates {
            list: self.list.max(floor.list),
            put: self.put.max(floor.put),
            get: self.get.max(floor.get),
            delete: self.delete.max(floor.delete),
        }
    }

    pub fn times(&self, k: f64) -> Rates {
        Rates {
            list: self.list * k,
            put: self.put * k,
            get: self.get * k,
            delete: self.delete * k,
        }
    }
}

/// What a group as configured will do in a month.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    pub requests_per_min: Rates,
    /// What each region holds.
    pub stored_bytes_per_region: f64,
    /// What the primary takes in a month (all of it crosses).
    pub written_bytes_per_month: f64,
}

/// A month's bill at one store's prices, in dollars.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonthlyBill {
    pub store: String,
    pub requests: f64,
    pub storage: f64,
    pub transfer: f64,
    pub total: f64,
}

/// The row of `rows` whose prices a region of `kind` (`s3`, `gs`, `az`,
/// `file`, `memory`) pays, and whether that is only a what-if: a local
/// folder pays no requests, so it is priced as the first row (S3 Standard
/// in the published table) to show what the same traffic would cost there.
pub fn row_for<'a>(rows: &'a [Prices], kind: &str, endpoint: Option<&str>) -> (&'a Prices, bool) {
    let r2 = endpoint.is_some_and(|e| e.contains("r2.cloudflarestorage.com"));
    let word = match kind {
        "s3" if r2 => Some("r2"),
        "s3" => Some("s3"),
        "gs" => Some("gcs"),
        "az" => Some("azure"),
        _ => None,
    };
    let found = word.and_then(|w| rows.iter().find(|p| p.store.to_lowercase().contains(w)));
    match (found, rows.first()) {
        (Some(row), _) => (row, false),
        (None, Some(first)) => (first, word.is_none()),
        (None, None) => (&FALLBACK, true),
    }
}

/// Never used while `load` refuses an empty table; there for the type.
static FALLBACK: Prices = Prices {
    store: String::new(),
    source: String::new(),
    as_of: String::new(),
    list_per_1000: 0.0,
    put_per_1000: 0.0,
    get_per_1000: 0.0,
    delete_per_1000: 0.0,
    storage_gb_month: 0.0,
    transfer_gb: 0.0,
};

/// Requests a minute a quiet branch costs at RPO target `target` (its
/// looks by name and, on average, its heals), by class.
pub fn idle_rates(target: std::time::Duration) -> Rates {
    let opts = crate::replication::ReplicationOptions::for_rpo_target(target);
    Rates {
        get: opts.idle_gets_per_min(),
        list: opts.idle_lists_per_min(),
        ..Rates::default()
    }
}

/// The row a region pays (see [`row_for`]).
pub fn row_for_spec<'a>(
    rows: &'a [Prices],
    spec: &crate::region::RegionSpec,
) -> (&'a Prices, bool) {
    let kind = spec.validate().map_or("file", |u| u.kind());
    row_for(rows, kind, spec.endpoint.as_deref())
}

/// The row the region named `name` among `regions` pays (one not
/// configured is priced as a local folder).
pub fn row_for_region<'a>(
    rows: &'a [Prices],
    regions: &[crate::region::RegionSpec],
    name: &str,
) -> (&'a Prices, bool) {
    match regions.iter().find(|r| r.name == name) {
        Some(spec) => row_for_spec(rows, spec),
        None => row_for(rows, "file", None),
    }
}

/// What an RPO target costs a quiet database, in a line for the place it
/// is set: `about 61 GET and 1.1 LIST a minute per quiet database: $1.10 a
/// database-month at S3 Standard list prices`. `what_if`: the region is a
/// local folder, which bills nothing; the line says so.
pub fn target_line(target: std::time::Duration, prices: &Prices, what_if: bool) -> String {
    let rates = idle_rates(target);
    let month = dollars(prices.requests_per_month(&rates));
    let at = if what_if {
        format!(
            "on a local folder that bills nothing; {month} a database-month at {} list prices",
            prices.store
        )
    } else {
        format!("{month} a database-month at {} list prices", prices.store)
    };
    format!(
        "about {:.0} GET and {:.1} LIST a minute per quiet database, {at}",
        rates.get, rates.list
    )
}

/// What one replicated branch costs at its home store's prices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowCost {
    pub db: String,
    pub branch: String,
    pub home: String,
    pub replica: String,
    /// Requests a minute, over the last minute.
    pub per_min: Rates,
    /// The price row used.
    pub store: String,
    /// True when the home is a local folder, priced as a what-if.
    pub what_if: bool,
    /// A month at this rate, in dollars.
    pub month: f64,
}

/// What a group costs: each branch now, and a month of the group as
/// configured at every row of the table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupCost {
    pub flows: Vec<FlowCost>,
    /// All flows together, requests a minute.
    pub per_min: Rates,
    pub forecast: Forecast,
    /// The forecast at each row of the table.
    pub bills: Vec<MonthlyBill>,
}

/// What the forecast of a group starts from.
pub struct GroupUse<'a> {
    pub flows: &'a [crate::replication::FlowStatus],
    /// The configured regions (each flow is priced at its home's store).
    pub regions: &'a [crate::region::RegionSpec],
    pub rpo_target: std::time::Duration,
    /// What the primary holds, bytes.
    pub stored_bytes: f64,
    /// Bytes copied a second, on average lately.
    pub copied_bytes_per_s: f64,
}

impl GroupCost {
    /// Each branch at its last minute's rate, and a month of the group:
    /// every branch at least at what its RPO target costs it quiet, the
    /// primary's bytes stored in both regions, and the bytes copied lately
    /// crossing between them all month.
    pub fn of(rows: &[Prices], group: &GroupUse) -> GroupCost {
        let idle = idle_rates(group.rpo_target);
        let mut per_min = Rates::default();
        let mut forecast_rates = Rates::default();
        // A thousand branches share a few regions: each region's row is
        // found once (its URL parsed once) a publish, not once a branch.
        let mut home_rows = std::collections::HashMap::new();
        let flows = group
            .flows
            .iter()
            .map(|status| {
                let rates = Rates::over(&status.requests_last_min, 1.0);
                per_min = per_min.plus(&rates);
                forecast_rates = forecast_rates.plus(&rates.at_least(&idle));
                let (row, what_if) = *home_rows
                    .entry(status.home.as_str())
                    .or_insert_with(|| row_for_region(rows, group.regions, &status.home));
                FlowCost {
                    db: status.db.clone(),
                    branch: status.branch.clone(),
                    home: status.home.clone(),
                    replica: status.replica.clone(),
                    per_min: rates,
                    store: row.store.clone(),
                    what_if,
                    month: row.requests_per_month(&rates),
                }
            })
            .collect();
        let forecast = Forecast {
            requests_per_min: forecast_rates,
            stored_bytes_per_region: group.stored_bytes,
            written_bytes_per_month: group.copied_bytes_per_s * MINUTES_PER_MONTH * 60.0,
        };
        GroupCost {
            flows,
            per_min,
            bills: rows.iter().map(|row| row.month(&forecast)).collect(),
            forecast,
        }
    }
}

/// What one process asked of a region: in all, and a minute lately, with
/// what a month of that costs at the region's store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegionCost {
    pub region: String,
    pub total: ClassCounts,
    /// Requests a minute, over the last minute.
    pub per_min: Rates,
    pub store: String,
    pub what_if: bool,
    pub month: f64,
}

/// What the engine publishes of the bill: the group's cost and the
/// prices it used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CostView {
    pub bill: GroupCost,
    /// Everything the engine's process asked of each region lately.
    #[serde(default)]
    pub regions: Vec<RegionCost>,
    /// The rows in use (a user's `prices.ron`, or the published table).
    pub prices: Vec<Prices>,
    /// Where they came from: the user's file, or `list prices as of 2026-11`.
    pub prices_from: String,
    /// Why the user's file was not used, when it was not.
    pub prices_error: Option<String>,
}

/// The prices to use from `config_dir`, with where they came from and
/// why a user's file was refused (the published table is used then).
pub fn load_or_published(config_dir: &Path) -> (Vec<Prices>, String, Option<String>) {
    let file = prices_file(config_dir);
    match load(config_dir) {
        Ok(rows) if file.exists() => (rows, file.display().to_string(), None),
        Ok(rows) => (rows, format!("list prices as of {PRICES_AS_OF}"), None),
        Err(e) => (
            published(),
            format!("list prices as of {PRICES_AS_OF}"),
            Some(e.to_string()),
        ),
    }
}

/// `$0.42`, `$3.10`, `$1,204`: dollars the way a bill reads.
pub fn dollars(amount: f64) -> String {
    if amount < 10.0 {
        format!("${amount:.2}")
    } else if amount < 1000.0 {
        format!("${amount:.0}")
    } else {
        let whole = amount.round() as u64;
        let text = whole.to_string();
        let mut grouped = String::new();
        for (i, c) in text.chars().enumerate() {
            if i > 0 && (text.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(c);
        }
        format!("${grouped}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_database_polled_by_listing_costs_what_the_issue_measured() {
        // 72 LISTs a minute (the listing replicator) is about $15 a month
        // on S3; 61.5 GETs a minute (a look a second) under $1.10.
        let s3 = &published()[0];
        let listing = Rates {
            list: 72.0,
            ..Rates::default()
        };
        let by_name = Rates {
            get: 61.5,
            ..Rates::default()
        };
        assert!((s3.requests_per_month(&listing) - 15.55).abs() < 0.01);
        assert!(s3.requests_per_month(&by_name) < 1.10);
        assert_eq!(dollars(1204.4), "$1,204");
        assert_eq!(dollars(0.4235), "$0.42");
    }

    #[test]
    fn a_users_prices_replace_the_table_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(dir.path()).expect("published"), published());
        let mine = vec![Prices {
            store: "MinIO at home".into(),
            list_per_1000: 0.0,
            ..published()[0].clone()
        }];
        let text = ron::to_string(&mine).expect("ron");
        std::fs::write(prices_file(dir.path()), text).expect("write");
        assert_eq!(load(dir.path()).expect("mine"), mine);
        std::fs::write(prices_file(dir.path()), "[(store: 1)]").expect("write");
        let err = load(dir.path()).expect_err("bad").to_string();
        assert!(err.contains("prices.ron") && !err.contains('\n'), "{err}");
    }
}
