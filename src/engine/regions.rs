//! Regions as the engine keeps them: opened once, saved after a probe,
//! removed, and health-checked in the background.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::region::{self, ProbeReport, Region, RegionSpec};
use crate::workload::now_us;

use super::activity::Outcome;
use super::snapshot::RegionHealth;
use super::{Core, Internal, RequestId};

impl Core {
    /// Opens every configured region (no I/O but a local folder's mkdir).
    pub(super) fn open_regions(&mut self) {
        self.opened.clear();
        for spec in self.regions.specs().to_vec() {
            match Region::open(&spec) {
                Ok(region) => {
                    if let Some(plan) = self.opts.faults.get(&spec.name) {
                        region.faults().set(plan);
                    }
                    self.opened.insert(spec.name.clone(), region);
                }
                Err(e) => {
                    self.health
                        .insert(spec.name.clone(), unreachable(e.to_string()));
                }
            }
        }
    }

    pub(super) fn primary(&self) -> Option<String> {
        self.regions.names().into_iter().next()
    }

    pub(super) fn region(&self, name: &str) -> Result<Region> {
        self.regions.get(name)?;
        self.opened.get(name).cloned().ok_or_else(|| {
            Error::invalid(format!(
                "region `{name}` could not be opened; fix it in Settings"
            ))
        })
    }

    pub(super) fn in_group(&self, name: &str) -> bool {
        self.group
            .as_ref()
            .is_some_and(|g| g.primary == name || g.secondary == name)
    }

    pub(super) fn save_region(
        &mut self,
        request: RequestId,
        replacing: Option<String>,
        spec: RegionSpec,
    ) {
        if let Err(e) = spec.validate() {
            return self.fail(request, e);
        }
        match &replacing {
            None if self.regions.get(&spec.name).is_ok() => {
                return self.fail(
                    request,
                    format!(
                        "region `{}` already exists; pick another name or edit it",
                        spec.name
                    ),
                );
            }
            Some(old) if self.in_group(old) => {
                return self.fail(
                    request,
                    format!("region `{old}` is in the replication group; stop replication before changing it"),
                );
            }
            _ => {}
        }
        self.spawn(async move {
            let result = async { Region::open(&spec)?.probe().await }.await;
            Internal::RegionProbed {
                request,
                replacing,
                spec,
                result,
            }
        });
    }

    pub(super) fn region_probed(
        &mut self,
        request: RequestId,
        replacing: Option<String>,
        spec: RegionSpec,
        result: Result<ProbeReport>,
    ) {
        let report = match result {
            Ok(report) => report,
            Err(e) => {
                return self.fail(
                    request,
                    format!("not saved: {}", crate::error::one_line(&e.to_string())),
                );
            }
        };
        let mut regions = self.regions.clone();
        let changed = match &replacing {
            Some(old) => regions.replace(old, spec.clone()),
            None => regions.add(spec.clone()),
        };
        if let Err(e) = changed.and_then(|()| self.home.save_regions(&regions)) {
            return self.fail(request, e);
        }
        self.regions = regions;
        if let Some(old) = &replacing {
            self.health.remove(old);
        }
        self.open_regions();
        self.health
            .insert(spec.name.clone(), health_of(&Ok(report.clone())));
        let mut message = format!(
            "saved region {}: reachable in {} ms, conditional puts honoured",
            spec.name, report.latency_ms
        );
        if let Some(warning) = report.clock_warning() {
            message.push_str(&format!("; warning: {warning}"));
        }
        self.finish(request, Outcome::Done(message));
        self.list_databases();
    }

    pub(super) fn remove_region(&mut self, request: RequestId, name: &str) {
        if self.in_group(name) {
            return self.fail(
                request,
                format!("region `{name}` is in the replication group; stop replication before removing it"),
            );
        }
        let mut regions = self.regions.clone();
        if let Err(e) = regions
            .remove(name)
            .and_then(|_| self.home.save_regions(&regions))
        {
            return self.fail(request, e);
        }
        self.regions = regions;
        self.health.remove(name);
        std::sync::Arc::make_mut(&mut self.databases).retain(|d| d.region != name);
        self.open_regions();
        self.finish(
            request,
            Outcome::Done(format!(
                "region {name} removed from the configuration; its data is left alone"
            )),
        );
    }

    /// Checks every region: in full (a put, a second create-only put, a
    /// read and a delete: reachability, conditional puts, clock skew) when
    /// `full`, when a region was never probed or did not answer last time,
    /// or every [`FULL_PROBE_EVERY`]; otherwise with one HEAD, keeping what
    /// the last full probe learnt.
    pub(super) fn check_regions(&mut self, full: bool) {
        if self.checking {
            return;
        }
        self.checking = true;
        let now = std::time::Instant::now();
        let plans: Vec<(Region, Option<RegionHealth>)> = self
            .opened
            .values()
            .map(|r| {
                let last = self.health.get(r.name()).filter(|h| h.reachable).cloned();
                let probed = self.probed_at.get(r.name());
                let light =
                    !full && probed.is_some_and(|at| now.duration_since(*at) < FULL_PROBE_EVERY);
                (r.clone(), last.filter(|_| light))
            })
            .collect();
        for (region, light) in &plans {
            if light.is_none() {
                self.probed_at.insert(region.name().to_string(), now);
            }
        }
        let warnings_before = self.clock_warnings.clone();
        self.spawn(async move {
            let full_probes = plans.iter().filter(|(_, light)| light.is_none()).count();
            let probes = futures::future::join_all(plans.iter().map(|(r, light)| async move {
                let health = match light {
                    Some(last) => {
                        let started = std::time::Instant::now();
                        match r.answers(Duration::from_secs(20)).await {
                            Ok(()) => RegionHealth {
                                checked_us: now_us(),
                                latency_ms: Some(started.elapsed().as_millis() as u64),
                                ..last.clone()
                            },
                            Err(e) => unreachable(crate::error::one_line(&e.to_string())),
                        }
                    }
                    None => {
                        let probe = tokio::time::timeout(Duration::from_secs(20), r.measure())
                            .await
                            .unwrap_or_else(|_| {
                                Err(Error::Failed(format!(
                                    "region `{}` did not answer within 20 s",
                                    r.name()
                                )))
                            });
                        return (r.name().to_string(), health_of(&probe), probe.ok());
                    }
                };
                (r.name().to_string(), health, None)
            }))
            .await;
            let reports: Vec<ProbeReport> =
                probes.iter().filter_map(|(_, _, p)| p.clone()).collect();
            // Clocks are compared by the full probes only.
            let warnings = if full_probes > 0 {
                region::clock_warnings(&reports)
            } else {
                warnings_before
            };
            let health = probes
                .into_iter()
                .map(|(name, health, _)| (name, health))
                .collect();
            Internal::Health(health, warnings)
        });
    }
}

/// How often a region is probed in full; a HEAD checks it in between.
pub const FULL_PROBE_EVERY: Duration = Duration::from_secs(600);

pub(super) fn unreachable(error: String) -> RegionHealth {
    RegionHealth {
        checked_us: now_us(),
        reachable: false,
        latency_ms: None,
        conditional_put: None,
        clock_skew_ms: None,
        last_error: Some(error),
    }
}

pub(super) fn health_of(probe: &Result<ProbeReport>) -> RegionHealth {
    match probe {
        Ok(report) => RegionHealth {
            checked_us: now_us(),
            reachable: true,
            latency_ms: Some(report.latency_ms),
            conditional_put: Some(report.conditional_put),
            clock_skew_ms: Some(report.clock_skew_ms),
            last_error: if report.conditional_put {
                report.clock_warning()
            } else {
                Some("ignores conditional puts; SlateDB needs them".into())
            },
        },
        Err(e) => unreachable(crate::error::one_line(&e.to_string())),
    }
}
