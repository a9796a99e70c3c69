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
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Forecast {
    pub requests_per_min: Rates,
    /// What each region holds.
    pub stored_bytes_per_region: f64,
    /// What the primary takes in a month (all of it crosses).
    pub written_bytes_per_month: f64,
}

/// A month's bill at one store's prices, in dollars.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonthlyBill {
    pub store: String,
    pub requests: f64,
    pub storage: f64,
    pub transfer: f64,
    pub total: f64,
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
