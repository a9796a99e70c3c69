//! Databases and branches: listing every region, delete, restore to a
//! point in time, delete a branch, expire drill branches.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use crate::control;
use crate::error::Error;
use crate::region::Region;
use crate::storage::cursor;
use crate::storage::{self, DbLocation};

use super::run::outcome;
use super::snapshot::{BranchRow, RegionDatabases};
use super::{Core, Internal, RequestId};

impl Core {
    pub(super) fn delete_database(
        &mut self,
        request: RequestId,
        region: String,
        name: String,
        typed_name: String,
    ) {
        if typed_name != name {
            return self.fail(
                request,
                format!("type the database's name, `{name}`, to confirm the delete"),
            );
        }
        let region = match self.region(&region) {
            Ok(r) => r,
            Err(e) => return self.fail(request, e),
        };
        let Some(group) = self.group.as_ref() else {
            return self.spawn_delete(request, region, name);
        };
        if group.secondary == region.name() && group.databases.includes(&name) {
            return self.fail(
                request,
                format!(
                    "{name} in {} is the replica that replication keeps up to date; take {name} out of the replication group first (Edit replication)",
                    region.name()
                ),
            );
        }
        self.spawn_delete(request, region, name);
    }

    /// Stops what writes or copies `name`, then deletes it in `region`.
    pub(super) fn spawn_delete(&mut self, request: RequestId, region: Region, name: String) {
        let writers = self.stop_demo(Some(&name));
        let copies = self.replicator.as_mut().map(|r| r.remove(&name));
        self.deleting.insert(request, name.clone());
        Arc::make_mut(&mut self.history).forget(&name);
        let others: Vec<Region> = self.opened.values().cloned().collect();
        self.spawn(async move {
            let result = async {
                super::demo::stop_runs(writers).await?;
                if let Some(copies) = copies {
                    copies.wait().await;
                }
                // The name was typed to confirm, and this engine's writers
                // and copies of it are stopped: the deletion fences any
                // other writer before a file goes.
                let plan = crate::storage::delete::plan(&region, &others, &name, None).await?;
                let objects = crate::storage::delete::delete(&region, &plan).await?;
                Ok::<_, Error>(format!("deleted {} ({objects} objects)", plan.describe()))
            }
            .await;
            Internal::Finished {
                request,
                outcome: outcome(result),
                relist: true,
            }
        });
    }

    pub(super) fn list_databases(&mut self) {
        if self.listing {
            return;
        }
        tracing::debug!("listing every region's databases");
        self.listing = true;
        let now = Instant::now();
        self.described_at = Some(now);
        self.described_manifests = self
            .replicated_manifests()
            .into_iter()
            .map(|(key, id)| (key, (id, now)))
            .collect();
        let regions: Vec<Region> = self.opened.values().cloned().collect();
        let order = self.regions.names();
        self.spawn(async move {
            let mut listed = futures::future::join_all(regions.iter().map(list_region)).await;
            listed.sort_by_key(|l| order.iter().position(|n| n == &l.region));
            Internal::Listed(listed)
        });
    }

    /// Looks at each region's database names (one LIST each).
    pub(super) fn look_at_names(&mut self) {
        if self.naming {
            return;
        }
        self.naming = true;
        let regions: Vec<Region> = self.opened.values().cloned().collect();
        self.spawn(async move {
            let names = futures::future::join_all(regions.iter().map(|region| async move {
                let names = match storage::database_names(region).await {
                    Ok(names) => Some(names),
                    Err(e) => {
                        tracing::debug!(region = %region.name(), "database names: {e}");
                        None
                    }
                };
                (region.name().to_string(), names)
            }))
            .await;
            Internal::Named(names.into_iter().collect())
        });
    }

    /// The names looked at: a database made or deleted anywhere, or a
    /// region that stopped or started answering, lists every branch again
    /// and looks for new flows; so does `describe_every` passing since the
    /// last full listing. Otherwise only replicated branches whose home's
    /// manifest moved are described again.
    pub(super) fn named(&mut self, names: BTreeMap<String, Option<BTreeSet<String>>>) {
        self.naming = false;
        let changed = names != self.names;
        let due = self
            .described_at
            .is_none_or(|at| at.elapsed() >= self.opts.describe_every);
        // A region seen for the first time, or that stopped or started
        // answering, is listed whole; otherwise only the names that came
        // or went are, so a thousand databases cost one LIST a look.
        let whole = due
            || names.iter().any(|(region, now)| {
                now.is_none() || self.names.get(region).is_none_or(Option::is_none)
            });
        let old = std::mem::replace(&mut self.names, names);
        tracing::debug!(changed, due, whole, "database names looked at");
        if whole {
            self.list_databases();
            if changed {
                self.discover();
            }
            return;
        }
        if !changed {
            return self.describe_moved();
        }
        let mut added: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut came = BTreeSet::new();
        let homes_in_secondary = self
            .group
            .as_ref()
            .is_some_and(|g| !super::flows::failed_over(&self.control_state, g).is_empty());
        for (region, now) in &self.names {
            let (Some(now), Some(Some(before))) = (now, old.get(region)) else {
                continue;
            };
            let gone: BTreeSet<&String> = before.difference(now).collect();
            if !gone.is_empty() {
                let databases = Arc::make_mut(&mut self.databases);
                if let Some(listed) = databases.iter_mut().find(|r| &r.region == region) {
                    listed.branches.retain(|b| !gone.contains(&b.db));
                }
            }
            let new: BTreeSet<String> = now.difference(before).cloned().collect();
            // Flows start from a home: the primary, or the secondary once
            // a failover made live branches there (replicas appearing in
            // the secondary start none).
            let home = self.group.as_ref().is_some_and(|g| {
                g.primary == *region || (g.secondary == *region && homes_in_secondary)
            });
            if home {
                came.extend(new.iter().cloned());
            }
            if !new.is_empty() {
                added.insert(region.clone(), new);
            }
        }
        if !added.is_empty() {
            self.describe_names(added);
        }
        if !came.is_empty() {
            self.discover_only(came);
        }
    }

    /// Describes every branch of the databases `added` names in each
    /// region (new since the last look).
    fn describe_names(&mut self, added: BTreeMap<String, BTreeSet<String>>) {
        let regions: Vec<Region> = added
            .keys()
            .filter_map(|name| self.opened.get(name).cloned())
            .collect();
        self.spawn(async move {
            let mut rows = Vec::new();
            for region in &regions {
                let store = region.store();
                for db in added.get(region.name()).into_iter().flatten() {
                    let branches = match storage::branch_names(&store, region.name(), db).await {
                        Ok(branches) => branches,
                        Err(e) => {
                            tracing::debug!(region = %region.name(), db = %db, "branches: {e}");
                            continue;
                        }
                    };
                    for branch in branches {
                        let row = describe_branch(region, db, &branch).await;
                        rows.push((region.name().to_string(), db.clone(), branch, row));
                    }
                }
            }
            Internal::Described(rows)
        });
    }

    /// Describes again, in every region, only the replicated branches
    /// whose home's newest manifest moved since they were described, each
    /// at most every `describe_moved_every`.
    fn describe_moved(&mut self) {
        if self.listing || self.describing {
            return;
        }
        let now = Instant::now();
        let spacing = self.opts.describe_moved_every;
        let mut moved: Vec<(String, String)> = Vec::new();
        for (key, id) in self.replicated_manifests() {
            let is_move = match self.described_manifests.get(&key) {
                Some((Some(seen), at)) => {
                    if Some(*seen) == id || now.duration_since(*at) < spacing {
                        continue;
                    }
                    true
                }
                // A copier that had not looked yet when the branch was
                // listed, or a flow newer than the listing (its database
                // was described when its name came): what it sees now is
                // what was listed, not a move.
                _ => false,
            };
            self.described_manifests.insert(key.clone(), (id, now));
            if is_move {
                moved.push(key);
            }
        }
        if moved.is_empty() {
            return;
        }
        self.describing = true;
        let regions: Vec<Region> = self.opened.values().cloned().collect();
        self.spawn(async move {
            let mut rows = Vec::new();
            for region in &regions {
                for (db, branch) in &moved {
                    let row = describe_branch(region, db, branch).await;
                    rows.push((region.name().to_string(), db.clone(), branch.clone(), row));
                }
            }
            Internal::Described(rows)
        });
    }

    /// Rows described again replace (or join, or leave) the listing.
    pub(super) fn described(&mut self, rows: Vec<(String, String, String, Option<BranchRow>)>) {
        self.describing = false;
        for (region, db, branch, row) in rows {
            let databases = Arc::make_mut(&mut self.databases);
            let Some(listed) = databases.iter_mut().find(|r| r.region == region) else {
                continue;
            };
            let at = listed
                .branches
                .iter()
                .position(|b| b.db == db && b.branch == branch);
            match (at, row) {
                (Some(i), Some(row)) => listed.branches[i] = row,
                (Some(i), None) => {
                    listed.branches.remove(i);
                }
                (None, Some(row)) => listed.branches.push(row),
                (None, None) => {}
            }
        }
    }

    /// Each replicated home branch's newest manifest, as its copier saw it.
    fn replicated_manifests(&self) -> BTreeMap<(String, String), Option<u64>> {
        self.replicator.as_ref().map_or_else(BTreeMap::new, |r| {
            r.statuses()
                .into_iter()
                .map(|s| ((s.db, s.branch), s.home_manifest_id))
                .collect()
        })
    }

    pub(super) fn restore(
        &mut self,
        request: RequestId,
        db: String,
        region: String,
        at_ms: u64,
        name: String,
        from: Option<String>,
    ) {
        if at_ms > crate::orchestrator::now_ms() {
            return self.fail(
                request,
                "that time lies in the future; restore to a time that has passed",
            );
        }
        let state = self.control_state.clone();
        let source = from.unwrap_or_else(|| state.live_branch(&db).to_string());
        if let Err(e) = state.new_branch_name(&db, &name) {
            return self.fail(request, e);
        }
        let region = match self.region(&region) {
            Ok(r) => r,
            Err(e) => return self.fail(request, e),
        };
        let reason = control::event::BranchReason::Recovery;
        self.fork_recorded(
            request,
            (db.clone(), source.clone(), reason, None),
            async move {
                let point = storage::pitr::locate(&region, &db, &source, at_ms).await?;
                let forked =
                    storage::fork::fork_at(&region, &db, &source, &name, Some(&point)).await?;
                let said = format!(
                    "restored {db} as {name} in {} as of {}: manifest {}, WAL {}",
                    region.name(),
                    crate::workload::verify::format_us(at_ms.saturating_mul(1000)),
                    point.manifest_id,
                    forked.wal_end
                );
                Ok((forked, said))
            },
        );
    }

    /// Runs `fork` (which forks `db` off `source` and says what it did)
    /// while the pins keep what `source` reads, then records the branch
    /// (`reason`, expiring at `expires_ms`) in the log; `request` ends
    /// with what was said and where it was recorded.
    fn fork_recorded(
        &mut self,
        request: RequestId,
        (db, source, reason, expires_ms): (
            String,
            String,
            control::event::BranchReason,
            Option<u64>,
        ),
        fork: impl std::future::Future<Output = crate::error::Result<(storage::fork::Forked, String)>>
        + Send
        + 'static,
    ) {
        let Some(engine) = self.engine_id(request) else {
            return;
        };
        let regions: Vec<Region> = self.opened.values().cloned().collect();
        let pins = Arc::clone(&self.pins);
        let who = self.who.clone();
        self.spawn(async move {
            let result = async {
                let guard = pins.forking(&db, &source);
                let (forked, said) = fork.await?;
                drop(guard);
                let fork = crate::orchestrator::failover::branch_event(&forked, reason, expires_ms);
                pins.add(&fork);
                let event = control::event::Event::BranchForked(fork);
                let appended = control::append(&regions, &engine, &who, event).await?;
                Ok::<_, Error>(format!("{said}: {}", appended.summary()))
            }
            .await;
            Internal::Finished {
                request,
                outcome: outcome(result),
                relist: true,
            }
        });
    }

    pub(super) fn fork_branch(
        &mut self,
        request: RequestId,
        db: String,
        from: Option<String>,
        name: String,
        region: String,
        ttl_s: Option<u64>,
    ) {
        let state = self.control_state.clone();
        let source = from.unwrap_or_else(|| state.live_branch(&db).to_string());
        let expires_ms = ttl_s.map(|t| crate::orchestrator::now_ms() + t.saturating_mul(1000));
        let region = match self.region(&region) {
            Ok(r) => r,
            Err(e) => return self.fail(request, e),
        };
        // Checked before the fork, so a bad name costs nothing.
        let probe = storage::fork::Forked {
            region: region.name().to_string(),
            db: db.clone(),
            source: source.clone(),
            branch: name.clone(),
            at_replica: false,
            shadow: None,
            manifest_id: 0,
            wal_from: 0,
            wal_end: 0,
            wal_copied: 0,
            rows_written: 0,
            pinned: Default::default(),
            took_ms: 0,
        };
        let manual = control::event::BranchReason::Manual;
        let checked = state.check(control::event::Event::BranchForked(
            crate::orchestrator::failover::branch_event(&probe, manual, expires_ms),
        ));
        if let Err(e) = checked {
            return self.fail(request, e);
        }
        self.fork_recorded(
            request,
            (db.clone(), source.clone(), manual, expires_ms),
            async move {
                let forked = storage::fork::fork(&region, &db, &source, &name).await?;
                let said = format!(
                    "forked {db}/{name} off {source} in {} at manifest {}, WAL {} ({} WAL files copied, {} ms, {})",
                    forked.region,
                    forked.manifest_id,
                    forked.wal_end,
                    forked.wal_copied,
                    forked.took_ms,
                    if forked.at_replica {
                        "at the replica, which was not written"
                    } else {
                        "at the home"
                    },
                );
                Ok((forked, said))
            },
        );
    }

    pub(super) fn delete_branch(&mut self, request: RequestId, db: String, branch: String) {
        let state = self.control_state.clone();
        let Some(record) = state.branch(&db, &branch).cloned() else {
            return self.fail(
                request,
                format!("`{db}/{branch}` is not a forked branch the control log knows"),
            );
        };
        let event = match state.check(control::event::Event::BranchDeleted {
            db: db.clone(),
            branch: branch.clone(),
        }) {
            Ok(e) => e,
            Err(e) => return self.fail(request, e),
        };
        let Some(engine) = self.engine_id(request) else {
            return;
        };
        // A drill branch's workspace goes with it.
        if let Some(ws) = self.drill_workspaces.remove(&branch) {
            self.stop_off_loop(format!("stop the drill workspace of {branch}"), ws.stop());
        }
        let regions: Vec<Region> = self.opened.values().cloned().collect();
        let who = self.who.clone();
        self.spawn(async move {
            let result = async {
                control::append(&regions, &engine, &who, event).await?;
                let mut deleted = 0;
                for region in &regions {
                    deleted += storage::fork::delete_branch(
                        region,
                        &db,
                        &branch,
                        Some(&record.fork.source),
                    )
                    .await?;
                }
                Ok::<_, Error>(format!("deleted {db}/{branch} ({deleted} objects)"))
            }
            .await;
            Internal::Finished {
                request,
                outcome: outcome(result),
                relist: true,
            }
        });
    }

    /// Deletes branches whose time to live ran out (and stops the drill
    /// workspaces serving them).
    pub(super) fn expire_branches(&mut self) {
        let expired = self.control_state.expired(crate::orchestrator::now_ms());
        if expired.is_empty() || self.expiring {
            return;
        }
        let names: BTreeSet<String> = expired.iter().map(|b| b.fork.branch.clone()).collect();
        let done: Vec<String> = self
            .drill_workspaces
            .keys()
            .filter(|id| names.contains(*id))
            .cloned()
            .collect();
        for id in done {
            if let Some(ws) = self.drill_workspaces.remove(&id) {
                self.stop_off_loop(format!("stop the drill workspace of {id}"), ws.stop());
            }
        }
        let engine = match control::engine_id(&self.home.data_dir) {
            Ok(id) => id,
            Err(e) => return tracing::warn!("expiring branches: {e}"),
        };
        self.expiring = true;
        let regions: Vec<Region> = self.opened.values().cloned().collect();
        let state = self.control_state.clone();
        let who = self.who.clone();
        self.spawn(async move {
            Internal::Expired(
                crate::orchestrator::drill::expire(&regions, &state, &engine, &who).await,
            )
        });
    }
}

/// A region's databases and branches, each described.
pub(super) async fn list_region(region: &Region) -> RegionDatabases {
    let mut out = RegionDatabases {
        region: region.name().to_string(),
        error: None,
        branches: Vec::new(),
    };
    let listed = match storage::list_databases(region).await {
        Ok(listed) => listed,
        Err(e) => {
            out.error = Some(crate::error::one_line(&e.to_string()));
            return out;
        }
    };
    for (db, branches) in listed {
        for branch in branches {
            if let Some(row) = describe_branch(region, &db, &branch).await {
                out.branches.push(row);
            }
        }
    }
    out
}

/// One branch of `region` as the Databases tab shows it; `None` for a
/// deleted branch's empty folder.
async fn describe_branch(region: &Region, db: &str, branch: &str) -> Option<BranchRow> {
    let location = DbLocation::branch_in_region(region, db, branch).ok()?;
    let replica_of = match cursor::load(&region.store(), region.name(), db, branch).await {
        Ok(found) => found.map(|c| c.home),
        Err(_) => None,
    };
    let (info, error) = match location.describe().await {
        Ok(info) => (Some(info), None),
        // A deleted branch's empty folder, or a replica whose first
        // manifest has not landed yet.
        Err(Error::DatabaseNotFound { .. }) if replica_of.is_none() => return None,
        Err(Error::DatabaseNotFound { .. }) => (None, Some("seeding".into())),
        Err(e) => (None, Some(crate::error::one_line(&e.to_string()))),
    };
    Some(BranchRow {
        db: db.to_string(),
        branch: branch.to_string(),
        info,
        replica_of,
        error,
    })
}
