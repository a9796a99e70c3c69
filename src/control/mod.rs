//! The control log (docs/control-log.md): the control plane's state as
//! append-only events in every region, written with create-only puts,
//! copied between regions like data, folded in one deterministic order.
//!
//! Invariant kept here: an event object, once written, is never changed or
//! deleted, and its name is unique (engine id, sequence, nonce), so copying
//! it anywhere can never conflict with another event.

pub mod event;
pub mod lease;
pub mod share;
pub mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path as FsPath;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};

use crate::error::{Error, Result};
use crate::region::Region;
use crate::region::objects::get_if_present;
use crate::region::retry::retrying;
use crate::workload::now_us;
use event::{EVENT_FORMAT, Envelope, Event, Hlc};
use state::ControlState;

/// Where the log lives in every region.
pub const LOG_PREFIX: &str = "_lifeboat/log";

/// An object every append rewrites after writing its event (the event's
/// name): a reader that finds it unchanged knows the log is too, for one
/// GET instead of a listing of the whole log.
pub const HEAD_PATH: &str = "_lifeboat/log-head";

/// The longest a reader trusts an unchanged head before listing anyway
/// (an append whose head write failed, or a writer of an older version).
pub const LIST_AT_LEAST_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// Reads of event objects in flight at once.
const READS_IN_FLIGHT: usize = 16;

/// Tries at a fresh sequence number when another command of this machine
/// took the one we chose.
const APPEND_TRIES: usize = 5;

/// This data folder's engine id: made once, then read.
pub fn engine_id(data_dir: &FsPath) -> Result<String> {
    let path = data_dir.join("engine-id");
    match std::fs::read_to_string(&path) {
        Ok(text) if is_engine_id(text.trim()) => return Ok(text.trim().to_string()),
        Ok(_) => {
            return Err(Error::file(
                &path,
                "is not an engine id (16 hex digits); delete it to make a new one",
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::file(&path, e)),
    }
    let id = format!("{:016x}", fastrand::u64(..));
    std::fs::create_dir_all(data_dir).map_err(|e| Error::file(data_dir, e))?;
    crate::config::write_atomically(&path, id.as_bytes())?;
    Ok(id)
}

fn is_engine_id(text: &str) -> bool {
    text.len() == 16 && text.chars().all(|c| c.is_ascii_hexdigit())
}

/// One event object's name: `<engine>/<seq>-<nonce>.ron` under the log.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventName {
    pub engine: String,
    pub seq: u64,
    pub nonce: String,
}

impl EventName {
    fn path(&self) -> Path {
        Path::from(LOG_PREFIX)
            .join(self.engine.as_str())
            .join(format!("{:020}-{}.ron", self.seq, self.nonce))
    }

    fn parse(path: &Path) -> Option<EventName> {
        let mut parts = path.prefix_match(&Path::from(LOG_PREFIX))?;
        let engine = parts.next()?.as_ref().to_string();
        let file = parts.next()?.as_ref().to_string();
        if parts.next().is_some() || !is_engine_id(&engine) {
            return None;
        }
        let (seq, nonce) = file.strip_suffix(".ron")?.split_once('-')?;
        Some(EventName {
            engine,
            seq: seq.parse().ok()?,
            nonce: nonce.to_string(),
        })
    }
}

/// The log as one region holds it: every event, by name.
pub async fn read(region: &Region) -> Result<BTreeMap<EventName, Envelope>> {
    let mut cache = LogCache::default();
    cache.read_new(region).await?;
    Ok(cache.events)
}

/// Events already read, so that following the log costs one listing per
/// look plus one read per new event (names are immutable: a name read once
/// never needs reading again).
#[derive(Debug, Default)]
pub struct LogCache {
    events: BTreeMap<EventName, Envelope>,
    /// Each region's head at its last listing, and when that was.
    heads: BTreeMap<String, (Option<bytes::Bytes>, std::time::Instant)>,
    /// What [`LogCache::load`] last folded each region's copy to.
    folded: BTreeMap<String, ControlState>,
}

impl LogCache {
    /// Whether `region`'s log may have changed since it was last listed
    /// here: its head moved, could not be read, or the last listing is
    /// older than [`LIST_AT_LEAST_EVERY`]. Returns the head read, to keep
    /// once the listing that follows succeeded (read before listing, so an
    /// event appended meanwhile moves it again).
    async fn head_moved(&self, region: &Region) -> (bool, Option<Option<bytes::Bytes>>) {
        let store = region.store();
        let head = match get_if_present(store.as_ref(), &Path::from(HEAD_PATH)).await {
            Ok(head) => head,
            Err(e) => {
                tracing::debug!(region = %region.name(), "control log head: {e}");
                return (true, None);
            }
        };
        let moved = match self.heads.get(region.name()) {
            Some((seen, at)) => seen != &head || at.elapsed() >= LIST_AT_LEAST_EVERY,
            None => true,
        };
        (moved, Some(head))
    }

    fn keep_head(&mut self, region: &Region, head: Option<Option<bytes::Bytes>>) {
        if let Some(head) = head {
            self.heads
                .insert(region.name().to_string(), (head, std::time::Instant::now()));
        }
    }

    /// The engine's look at the log: one GET of each region's head; only
    /// when one moved, a listing of every region, the reads of new events,
    /// and copies of the events a reachable region lacks from one that has
    /// them (as [`sync`] does). Returns the state the union folds to; fails
    /// only when no region has ever answered.
    pub async fn sync_and_load(
        &mut self,
        regions: &[Region],
    ) -> Result<(ControlState, SyncReport)> {
        let mut heads = Vec::new();
        let mut moved_any = false;
        for region in regions {
            let (moved, head) = self.head_moved(region).await;
            moved_any |= moved;
            heads.push((region, head));
        }
        if !moved_any {
            let report = SyncReport {
                events: self.events.len(),
                ..SyncReport::default()
            };
            return Ok((self.state(), report));
        }
        // One listing of each region serves the copies and the reads.
        let (report, held) = match sync_listed(regions).await {
            Ok(synced) => synced,
            Err(e) if self.heads.is_empty() => return Err(e),
            // A copy that failed leaves the reads to a listing of their own.
            Err(e) => {
                tracing::debug!("control log sync: {e}");
                let mut held = Vec::new();
                for region in regions {
                    if let Ok(names) = list(region).await {
                        held.push((region, names.into_iter().collect()));
                    }
                }
                (SyncReport::default(), held)
            }
        };
        let mut read_any = false;
        let mut first_error = None;
        for (region, names) in held {
            let new: Vec<EventName> = names
                .into_iter()
                .filter(|n| !self.events.contains_key(n))
                .collect();
            match fetch(region, new).await {
                Ok(found) => {
                    self.events.extend(found);
                    read_any = true;
                    if !report.unreachable.iter().any(|(r, _)| r == region.name())
                        && let Some((_, head)) =
                            heads.iter_mut().find(|(r, _)| r.name() == region.name())
                    {
                        let head = head.take();
                        self.keep_head(region, head);
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match (read_any, first_error) {
            (false, Some(e)) if self.heads.is_empty() => Err(e),
            _ => Ok((self.state(), report)),
        }
    }

    fn state(&self) -> ControlState {
        ControlState::fold(self.events.values().cloned().collect())
    }

    /// Reads the events of `region` not read before.
    pub async fn read_new(&mut self, region: &Region) -> Result<()> {
        let names: Vec<EventName> = list(region)
            .await?
            .into_iter()
            .filter(|n| !self.events.contains_key(n))
            .collect();
        self.events.extend(fetch(region, names).await?);
        Ok(())
    }

    /// The state `region`'s copy of the log folds to (what a workspace
    /// there starts from).
    pub async fn load(&mut self, region: &Region) -> Result<ControlState> {
        let (moved, head) = self.head_moved(region).await;
        if !moved && let Some(state) = self.folded.get(region.name()) {
            return Ok(state.clone());
        }
        let names: BTreeSet<EventName> = list(region).await?.into_iter().collect();
        let new: Vec<EventName> = names
            .iter()
            .filter(|n| !self.events.contains_key(n))
            .cloned()
            .collect();
        self.events.extend(fetch(region, new).await?);
        let events = self
            .events
            .iter()
            .filter(|(name, _)| names.contains(name))
            .map(|(_, e)| e.clone())
            .collect();
        let state = ControlState::fold(events);
        self.keep_head(region, head);
        self.folded.insert(region.name().to_string(), state.clone());
        Ok(state)
    }

    /// The state the union of every reachable region folds to; fails only
    /// when no region could be read.
    pub async fn load_all(&mut self, regions: &[Region]) -> Result<ControlState> {
        let mut first_error = None;
        let mut read_any = false;
        for region in regions {
            match self.read_new(region).await {
                Ok(()) => read_any = true,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match (read_any, first_error) {
            (false, Some(e)) => Err(e),
            _ => Ok(ControlState::fold(self.events.values().cloned().collect())),
        }
    }
}

/// Reads the events `names` from `region`.
async fn fetch(region: &Region, names: Vec<EventName>) -> Result<Vec<(EventName, Envelope)>> {
    let store = region.store();
    let reads = names.into_iter().map(|name| {
        let store = Arc::clone(&store);
        async move {
            let path = name.path();
            let bytes = retrying(|| get_if_present(store.as_ref(), &path))
                .await
                .map_err(|e| Error::store(region.name(), &format!("reading {path}"), &e))?;
            let Some(bytes) = bytes else {
                return Ok(None);
            };
            let envelope = decode(&bytes).map_err(|e| {
                Error::Failed(format!(
                    "region `{}`: control log event {path} is damaged ({e}); copy it from another region with `lifeboat control sync`",
                    region.name()
                ))
            })?;
            Ok(Some((name, envelope)))
        }
    });
    let found: Vec<Option<(EventName, Envelope)>> = futures::stream::iter(reads)
        .buffer_unordered(READS_IN_FLIGHT)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}

fn decode(bytes: &[u8]) -> std::result::Result<Envelope, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let envelope: Envelope = ron::from_str(text).map_err(|e| e.to_string())?;
    if envelope.format != EVENT_FORMAT {
        return Err(format!(
            "format {} (this build reads {EVENT_FORMAT}; upgrade lifeboat)",
            envelope.format
        ));
    }
    Ok(envelope)
}

async fn list(region: &Region) -> Result<Vec<EventName>> {
    let store = region.store();
    let prefix = Path::from(LOG_PREFIX);
    let listed = retrying(|| store.list(Some(&prefix)).try_collect::<Vec<_>>())
        .await
        .map_err(|e| Error::store(region.name(), "listing the control log", &e))?;
    Ok(listed
        .iter()
        .filter_map(|m| EventName::parse(&m.location))
        .collect())
}

/// The state as `region`'s copy of the log says.
pub async fn load(region: &Region) -> Result<ControlState> {
    Ok(ControlState::fold(
        read(region).await?.into_values().collect(),
    ))
}

/// Every event any of `regions` holds (the union), and the regions that
/// could not be read with why. Fails only when none could be read.
pub async fn read_all(
    regions: &[Region],
) -> Result<(BTreeMap<EventName, Envelope>, Vec<(String, Error)>)> {
    let mut events = BTreeMap::new();
    let mut unreachable = Vec::new();
    let reads = futures::future::join_all(regions.iter().map(read)).await;
    for (region, result) in regions.iter().zip(reads) {
        match result {
            Ok(found) => events.extend(found),
            Err(e) => unreachable.push((region.name().to_string(), e)),
        }
    }
    if unreachable.len() == regions.len() {
        let (_, first) = unreachable.swap_remove(0);
        return Err(first);
    }
    Ok((events, unreachable))
}

/// The state as the union of every reachable region's log says.
pub async fn load_all(regions: &[Region]) -> Result<ControlState> {
    let (events, _) = read_all(regions).await?;
    Ok(ControlState::fold(events.into_values().collect()))
}

/// What an append did.
#[derive(Debug, Clone)]
pub struct Appended {
    pub name: EventName,
    pub hlc: Hlc,
    /// Regions that hold the event now.
    pub written: Vec<String>,
    /// Regions that could not be reached, with why; `sync` copies the
    /// event there once they are back.
    pub missed: Vec<(String, String)>,
    /// The event as recorded, to fold into a state already read.
    pub envelope: Envelope,
}

impl Appended {
    /// One line for a person.
    pub fn summary(&self) -> String {
        let mut line = format!("recorded in {}", self.written.join(", "));
        if !self.missed.is_empty() {
            let missed: Vec<&str> = self.missed.iter().map(|(r, _)| r.as_str()).collect();
            line.push_str(&format!(
                "; {} unreachable, copied there by the next `lifeboat control sync` or running engine",
                missed.join(", ")
            ));
        }
        line
    }
}

/// Appends `event` to the log of every reachable region, as engine
/// `engine` on behalf of `who`. Fails when no region took it.
pub async fn append(regions: &[Region], engine: &str, who: &str, event: Event) -> Result<Appended> {
    let (events, _) = read_all(regions).await?;
    append_after(regions, &events, engine, who, event).await
}

/// As [`append`], after `events`: every event `regions` hold, read just
/// before by the caller (a failover that read its one reachable region's
/// log saves the round trips of reading it again on the path of its RTO).
pub async fn append_after(
    regions: &[Region],
    events: &BTreeMap<EventName, Envelope>,
    engine: &str,
    who: &str,
    event: Event,
) -> Result<Appended> {
    for attempt in 0..APPEND_TRIES {
        let (name, envelope) = next_envelope(events, engine, who, event.clone(), attempt as u64);
        let hlc = envelope.hlc;
        let text = ron::ser::to_string_pretty(&envelope, ron::ser::PrettyConfig::default())
            .map_err(|e| Error::Failed(format!("cannot encode a control log event: {e}")))?;
        let mut written = Vec::new();
        let mut missed = Vec::new();
        let mut taken = false;
        for region in regions {
            match put_new(region, &name.path(), text.clone().into_bytes()).await {
                Ok(true) => written.push(region.name().to_string()),
                Ok(false) => taken = true,
                Err(e) => missed.push((region.name().to_string(), e.to_string())),
            }
        }
        if !written.is_empty() {
            return Ok(Appended {
                name,
                hlc,
                written,
                missed,
                envelope,
            });
        }
        if !taken {
            let detail = missed
                .iter()
                .map(|(r, e)| format!("{r}: {e}"))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(Error::Failed(format!(
                "no region could record the change ({detail}); nothing was changed"
            )));
        }
    }
    Err(Error::Failed(
        "the control log kept changing under this command; try again".into(),
    ))
}

/// The envelope `event` is appended in after `events` (on the
/// `attempt`-th try), and its name: what a failover's workspaces serve
/// while it is being recorded.
pub fn next_envelope(
    events: &BTreeMap<EventName, Envelope>,
    engine: &str,
    who: &str,
    event: Event,
    attempt: u64,
) -> (EventName, Envelope) {
    let newest = events.values().map(|e| e.hlc).max();
    let last_seq = events
        .keys()
        .filter(|n| n.engine == engine)
        .map(|n| n.seq)
        .max()
        .unwrap_or(0);
    let name = EventName {
        engine: engine.to_string(),
        seq: last_seq + 1 + attempt,
        nonce: format!("{:08x}", fastrand::u32(..)),
    };
    let envelope = Envelope {
        format: EVENT_FORMAT,
        engine: engine.to_string(),
        seq: name.seq,
        hlc: Hlc::after(newest, now_us() / 1000),
        who: who.to_string(),
        event,
    };
    (name, envelope)
}

/// A create-only put: `false` when the name is taken.
async fn put_new(region: &Region, path: &Path, bytes: Vec<u8>) -> Result<bool> {
    let store = region.store();
    let payload = PutPayload::from(bytes);
    let put = retrying(|| {
        store.put_opts(
            path,
            payload.clone(),
            PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            },
        )
    })
    .await;
    match put {
        Ok(_) => {
            // Readers list the log only once its head moved.
            let (head_path, head) = (
                Path::from(HEAD_PATH),
                PutPayload::from(path.to_string().into_bytes()),
            );
            let moved =
                retrying(|| store.put_opts(&head_path, head.clone(), PutOptions::default()));
            if let Err(e) = moved.await {
                tracing::warn!(
                    region = %region.name(),
                    "the control log's head was not moved ({e}); readers see {path} within {} s",
                    LIST_AT_LEAST_EVERY.as_secs()
                );
            }
            Ok(true)
        }
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(Error::store(region.name(), &format!("writing {path}"), &e)),
    }
}

/// What a sync did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SyncReport {
    /// Events copied, per region that received them.
    pub copied: BTreeMap<String, usize>,
    /// Regions that could not be read or written, with why.
    pub unreachable: Vec<(String, String)>,
    /// Events in the union of the reachable regions.
    pub events: usize,
}

/// Copies every log object one reachable region lacks from one that has it.
pub async fn sync(regions: &[Region]) -> Result<SyncReport> {
    Ok(sync_listed(regions).await?.0)
}

/// [`sync`], also returning what each reachable region's listing held
/// before the copies (so a reader needs no second listing).
async fn sync_listed(
    regions: &[Region],
) -> Result<(SyncReport, Vec<(&Region, BTreeSet<EventName>)>)> {
    let mut report = SyncReport::default();
    let mut held: Vec<(&Region, BTreeSet<EventName>)> = Vec::new();
    for region in regions {
        match list(region).await {
            Ok(names) => held.push((region, names.into_iter().collect())),
            Err(e) => report
                .unreachable
                .push((region.name().to_string(), e.to_string())),
        }
    }
    let union: BTreeSet<&EventName> = held.iter().flat_map(|(_, names)| names).collect();
    report.events = union.len();
    for (region, names) in &held {
        let mut copied = 0;
        for name in union.iter().filter(|n| !names.contains(n)) {
            let Some((source, _)) = held.iter().find(|(_, n)| n.contains(name)) else {
                continue;
            };
            let path = name.path();
            let store = source.store();
            let bytes = retrying(|| get_if_present(store.as_ref(), &path))
                .await
                .map_err(|e| Error::store(source.name(), &format!("reading {path}"), &e))?;
            let Some(bytes) = bytes else { continue };
            match put_new(region, &path, bytes.to_vec()).await {
                Ok(_) => copied += 1,
                Err(e) => {
                    report
                        .unreachable
                        .push((region.name().to_string(), e.to_string()));
                    break;
                }
            }
        }
        if copied > 0 {
            report.copied.insert(region.name().to_string(), copied);
        }
    }
    Ok((report, held))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_round_trip() {
        let name = EventName {
            engine: "0123456789abcdef".into(),
            seq: 42,
            nonce: "00ff00ff".into(),
        };
        assert_eq!(EventName::parse(&name.path()), Some(name));
        assert_eq!(
            EventName::parse(&Path::from("_lifeboat/log/x/1-a.ron")),
            None
        );
    }
}
