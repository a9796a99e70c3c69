//! What a region's store is asked, counted the way a cloud bills it, and
//! what this process wrote there.
//!
//! [`MeteredStore`] sits right above a region's backend: every request
//! that reaches the store is counted by price class ([`RequestClass`]),
//! for the region and for the database whose path it names. It also tells
//! [`Notices`] of every database file written through it, so that the
//! replicator copies a branch that a writer of this process writes the
//! moment a file is durable, instead of polling the home for it.
//!
//! A region opened twice in one process (the CLI's and the engine's view of
//! the same spec) shares one meter and one set of notices.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::objects::DBS_PREFIX;

/// How a cloud prices a request. S3 puts PUT, COPY, POST and LIST at one
/// price and GET and HEAD at a lower one, and charges nothing for DELETE;
/// GCS (class A and B) and Azure (write, list, read) price them alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RequestClass {
    List,
    Put,
    Get,
    Delete,
}

/// Requests counted by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassCounts {
    pub list: u64,
    pub put: u64,
    pub get: u64,
    pub delete: u64,
}

impl ClassCounts {
    pub fn add(&mut self, class: RequestClass, n: u64) {
        match class {
            RequestClass::List => self.list += n,
            RequestClass::Put => self.put += n,
            RequestClass::Get => self.get += n,
            RequestClass::Delete => self.delete += n,
        }
    }

    pub fn total(&self) -> u64 {
        self.list + self.put + self.get + self.delete
    }

    /// `self + other`, class by class.
    pub fn plus(&self, other: &ClassCounts) -> ClassCounts {
        ClassCounts {
            list: self.list + other.list,
            put: self.put + other.put,
            get: self.get + other.get,
            delete: self.delete + other.delete,
        }
    }

    /// `self - earlier`, class by class (counters only grow).
    pub fn since(&self, earlier: &ClassCounts) -> ClassCounts {
        ClassCounts {
            list: self.list.saturating_sub(earlier.list),
            put: self.put.saturating_sub(earlier.put),
            get: self.get.saturating_sub(earlier.get),
            delete: self.delete.saturating_sub(earlier.delete),
        }
    }

    /// `"12 LIST, 3 PUT, 40 GET, 0 DELETE"`.
    pub fn line(&self) -> String {
        format!(
            "{} LIST, {} PUT, {} GET, {} DELETE",
            self.list, self.put, self.get, self.delete
        )
    }
}

/// Lock-free counters, one per class.
#[derive(Debug, Default)]
struct Counters([AtomicU64; 4]);

impl Counters {
    fn add(&self, class: RequestClass, n: u64) {
        let i = match class {
            RequestClass::List => 0,
            RequestClass::Put => 1,
            RequestClass::Get => 2,
            RequestClass::Delete => 3,
        };
        self.0[i].fetch_add(n, Ordering::Relaxed);
    }

    fn read(&self) -> ClassCounts {
        let [list, put, get, delete] = &self.0;
        ClassCounts {
            list: list.load(Ordering::Relaxed),
            put: put.load(Ordering::Relaxed),
            get: get.load(Ordering::Relaxed),
            delete: delete.load(Ordering::Relaxed),
        }
    }
}

/// Requests a region's store received in this process: in all, and per
/// database (requests outside `dbs/` count under the region only: leases,
/// status, probes).
#[derive(Debug, Default)]
pub struct Meter {
    total: Counters,
    per_db: Mutex<HashMap<String, Arc<Counters>>>,
}

impl Meter {
    fn count(&self, path: Option<&Path>, class: RequestClass, n: u64) {
        self.total.add(class, n);
        let Some(db) = path.and_then(db_of) else {
            return;
        };
        let counters = {
            let mut per_db = self.per_db.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(per_db.entry(db.to_string()).or_default())
        };
        counters.add(class, n);
    }

    /// Every request so far.
    pub fn total(&self) -> ClassCounts {
        self.total.read()
    }

    /// Requests so far by database.
    pub fn per_db(&self) -> BTreeMap<String, ClassCounts> {
        let per_db = self.per_db.lock().unwrap_or_else(|p| p.into_inner());
        per_db
            .iter()
            .map(|(db, c)| (db.clone(), c.read()))
            .collect()
    }
}

/// The database a path names (`dbs/<db>/...`).
fn db_of(path: &Path) -> Option<&str> {
    let mut parts = path.as_ref().splitn(3, '/');
    (parts.next()? == DBS_PREFIX).then_some(())?;
    parts.next().filter(|db| !db.is_empty())
}

/// `dbs/<db>/<branch>` and the rest of the path, when a path lies in a
/// branch's folders (`dbs/<db>/<branch>/<folder>/<name>`).
fn branch_of(path: &Path) -> Option<&str> {
    let text = path.as_ref();
    let mut slashes = text.match_indices('/').map(|(i, _)| i);
    let (_, _, end) = (slashes.next()?, slashes.next()?, slashes.next()?);
    let folder_end = slashes.next()?;
    if slashes.next().is_some() || !text.starts_with(DBS_PREFIX) {
        return None;
    }
    let folder = &text[end + 1..folder_end];
    matches!(folder, "wal" | "manifest" | "compacted" | "compactions").then_some(&text[..end])
}

/// Most notices one listener keeps unread; past it the listener learns
/// that it missed some and looks at the home itself.
const NOTICES_KEPT: usize = 4096;

/// Files written through a region's store in this process, by branch, and
/// which branches a writer of this process holds open.
#[derive(Debug, Default)]
pub struct Notices {
    branches: Mutex<HashMap<String, Branch>>,
    /// What zero loss and the RPO guard need to know of this process's
    /// WAL files and its copiers' replicas.
    pub sync: Arc<super::sync::Sync>,
    /// What the replicas of this process's copiers hold of each branch,
    /// for the writers' garbage collectors (see `storage::gc_hold`).
    pub holds: Arc<crate::storage::gc_hold::GcHolds>,
}

/// A file written under a branch folder, and when (µs since the epoch):
/// a listener that reads it late still knows how long it waited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub path: Path,
    pub at_us: u64,
}

impl Written {
    fn now(path: Path) -> Written {
        Written {
            path,
            at_us: crate::workload::now_us(),
        }
    }
}

#[derive(Debug)]
struct Branch {
    written: broadcast::Sender<Written>,
    writers: usize,
}

impl Default for Branch {
    fn default() -> Self {
        Branch {
            written: broadcast::channel(NOTICES_KEPT).0,
            writers: 0,
        }
    }
}

impl Notices {
    fn with_branch<T>(&self, base: &str, f: impl FnOnce(&mut Branch) -> T) -> T {
        let mut branches = self.branches.lock().unwrap_or_else(|p| p.into_inner());
        f(branches.entry(base.to_string()).or_default())
    }

    /// Hears of every file written from now on under the branch folder
    /// `base` (`dbs/<db>/<branch>`).
    pub fn listen(&self, base: &Path) -> broadcast::Receiver<Written> {
        self.with_branch(base.as_ref(), |b| b.written.subscribe())
    }

    /// Marks that a writer of this process holds the branch at `base`
    /// open until the mark is dropped: every file it writes is heard of,
    /// so nothing needs to poll the branch meanwhile.
    pub fn writer(self: &Arc<Self>, base: &Path) -> WriterMark {
        self.with_branch(base.as_ref(), |b| b.writers += 1);
        WriterMark {
            notices: Arc::clone(self),
            base: base.as_ref().to_string(),
        }
    }

    /// Whether a writer of this process holds the branch at `base`.
    pub fn has_writer(&self, base: &Path) -> bool {
        let branches = self.branches.lock().unwrap_or_else(|p| p.into_inner());
        branches.get(base.as_ref()).is_some_and(|b| b.writers > 0)
    }

    /// Whether the store should keep the bytes of `path` for [`Self::sync`].
    fn wants_wal_bytes(&self, path: &Path) -> bool {
        match branch_of(path) {
            Some(base) => {
                super::sync::wal_id(path.as_ref()).is_some() && self.sync.wants_wal_bytes(base)
            }
            None => false,
        }
    }

    fn written(&self, path: &Path, bytes: u64) {
        self.written_with(path, bytes, None);
    }

    fn written_with(&self, path: &Path, bytes: u64, payload: Option<Bytes>) {
        let Some(base) = branch_of(path) else {
            return;
        };
        if let Some(id) = super::sync::wal_id(path.as_ref()) {
            self.sync.wal_written(base, id, bytes, payload);
        }
        let branches = self.branches.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(branch) = branches.get(base)
            && branch.written.receiver_count() > 0
        {
            // Only "no listener" fails, and nobody listening is fine.
            branch.written.send(Written::now(path.clone())).ok();
        }
    }
}

/// A writer of this process holding a branch open (see [`Notices::writer`]).
#[derive(Debug)]
pub struct WriterMark {
    notices: Arc<Notices>,
    base: String,
}

impl Drop for WriterMark {
    fn drop(&mut self) {
        self.notices.with_branch(&self.base, |b| {
            b.writers = b.writers.saturating_sub(1);
            // Listeners hear the branch itself: look at it again.
            if b.written.receiver_count() > 0 {
                b.written
                    .send(Written::now(Path::from(self.base.as_str())))
                    .ok();
            }
        });
    }
}

/// The meter and notices of one region in this process.
#[derive(Debug, Default, Clone)]
pub struct Metering {
    pub meter: Arc<Meter>,
    pub notices: Arc<Notices>,
}

impl Metering {
    /// The metering of the region named `name` at `url`, shared by every
    /// opening of it in this process.
    pub fn of(name: &str, url: &str) -> Metering {
        static ALL: OnceLock<Mutex<HashMap<(String, String), Metering>>> = OnceLock::new();
        let mut all = ALL
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        all.entry((name.to_string(), url.to_string()))
            .or_default()
            .clone()
    }
}

/// Entries one listing request returns at most (S3, GCS and Azure alike):
/// a longer listing costs a request per page.
const LIST_PAGE: u64 = 1000;

/// Counts every request to the store it wraps, and reports database files
/// written to the region's [`Notices`].
#[derive(Debug)]
pub struct MeteredStore {
    inner: Arc<dyn ObjectStore>,
    metering: Metering,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn ObjectStore>, metering: Metering) -> Self {
        MeteredStore { inner, metering }
    }

    fn count(&self, path: &Path, class: RequestClass) {
        self.metering.meter.count(Some(path), class, 1);
    }

    /// A listing counted a page at a time as its entries arrive.
    fn counted_list(
        &self,
        prefix: Option<&Path>,
        inner: BoxStream<'static, object_store::Result<ObjectMeta>>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let meter = Arc::clone(&self.metering.meter);
        let prefix = prefix.cloned();
        meter.count(prefix.as_ref(), RequestClass::List, 1);
        let mut seen = 0u64;
        inner
            .inspect(move |item| {
                if item.is_ok() {
                    seen += 1;
                    if seen > LIST_PAGE && seen % LIST_PAGE == 1 {
                        meter.count(prefix.as_ref(), RequestClass::List, 1);
                    }
                }
            })
            .boxed()
    }
}

impl fmt::Display for MeteredStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MeteredStore({})", self.inner)
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for MeteredStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.count(location, RequestClass::Put);
        let bytes = payload.content_length() as u64;
        // A zero-loss copier puts a WAL file into its replica from these
        // bytes, without reading the home.
        let kept = self
            .metering
            .notices
            .wants_wal_bytes(location)
            .then(|| payload.clone());
        let put = self.inner.put_opts(location, payload, opts).await?;
        self.metering
            .notices
            .written_with(location, bytes, kept.map(Bytes::from));
        Ok(put)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.count(location, RequestClass::Put);
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(MeteredUpload {
            upload,
            location: location.clone(),
            metering: self.metering.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.count(location, RequestClass::Get);
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        // A GET per range at most: a store that coalesces near ranges
        // makes fewer, so this errs on the side of the bill.
        self.metering
            .meter
            .count(Some(location), RequestClass::Get, ranges.len() as u64);
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let meter = Arc::clone(&self.metering.meter);
        let counted = locations
            .inspect(move |location| {
                if let Ok(location) = location {
                    meter.count(Some(location), RequestClass::Delete, 1);
                }
            })
            .boxed();
        self.inner.delete_stream(counted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.counted_list(prefix, self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.counted_list(prefix, self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.metering.meter.count(prefix, RequestClass::List, 1);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.count(to, RequestClass::Put);
        self.inner.copy_opts(from, to, options).await?;
        self.metering.notices.written(to, 0);
        Ok(())
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        // A copy and a delete, on every cloud.
        self.count(to, RequestClass::Put);
        self.count(from, RequestClass::Delete);
        self.inner.rename_opts(from, to, options).await?;
        self.metering.notices.written(to, 0);
        Ok(())
    }
}

/// A multipart upload whose every part counts as a PUT-class request, and
/// whose completion is a file written.
#[derive(Debug)]
struct MeteredUpload {
    upload: Box<dyn MultipartUpload>,
    location: Path,
    metering: Metering,
}

#[async_trait]
impl MultipartUpload for MeteredUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.metering
            .meter
            .count(Some(&self.location), RequestClass::Put, 1);
        self.upload.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.metering
            .meter
            .count(Some(&self.location), RequestClass::Put, 1);
        let put = self.upload.complete().await?;
        self.metering.notices.written(&self.location, 0);
        Ok(put)
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.metering
            .meter
            .count(Some(&self.location), RequestClass::Delete, 1);
        self.upload.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    #[test]
    fn paths_name_their_database_and_branch() {
        let wal = Path::from("dbs/orders/main/wal/00000000000000000007.sst");
        assert_eq!(db_of(&wal), Some("orders"));
        assert_eq!(branch_of(&wal), Some("dbs/orders/main"));
        let gc = Path::from("dbs/orders/main/gc/manifest.boundary");
        assert_eq!(branch_of(&gc), None);
        let cursor = Path::from("dbs/orders/main/_lifeboat/cursor.json");
        assert_eq!(branch_of(&cursor), None);
        let lease = Path::from("_lifeboat/lease/00000000000000000001.ron");
        assert_eq!(db_of(&lease), None);
        assert_eq!(branch_of(&lease), None);
    }

    #[tokio::test]
    async fn requests_are_counted_by_class_and_writes_are_heard() {
        let metering = Metering::default();
        let store = MeteredStore::new(
            Arc::new(object_store::memory::InMemory::new()),
            metering.clone(),
        );
        let base = Path::from("dbs/orders/main");
        let mut heard = metering.notices.listen(&base);
        let wal = Path::from("dbs/orders/main/wal/00000000000000000001.sst");
        store.put(&wal, PutPayload::from("x")).await.expect("put");
        store.get(&wal).await.expect("get");
        assert!(store.head(&Path::from("nothing")).await.is_err());
        let listed: Vec<_> = store.list(Some(&base)).collect().await;
        assert_eq!(listed.len(), 1);
        store.delete(&wal).await.expect("delete");
        let counts = metering.meter.total();
        assert_eq!(
            counts,
            ClassCounts {
                list: 1,
                put: 1,
                get: 2,
                delete: 1
            }
        );
        assert_eq!(metering.meter.per_db()["orders"].get, 1);
        assert_eq!(heard.try_recv().expect("heard").path, wal);
        assert!(heard.try_recv().is_err());
        assert!(!metering.notices.has_writer(&base));
        let mark = metering.notices.writer(&base);
        assert!(metering.notices.has_writer(&base));
        drop(mark);
        assert!(!metering.notices.has_writer(&base));
    }
}
