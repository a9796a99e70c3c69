//! The files of one branch as the replicator sees them: four folders of
//! immutable, numbered or ULID-named objects, and the calls that list, read,
//! write and delete them on one side (home or replica), each one counted.
//!
//! `gc/` boundary files and SlateDB's `.deleting` marker are never listed,
//! so they are never copied: a replica runs no garbage collector, and a
//! boundary file copied ahead of its manifests would hang every open.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use crate::error::{Error, Result};
use crate::region::meter::{ClassCounts, RequestClass};
use crate::region::objects::{delete_if_present, get_if_present, head_if_present, open_if_present};
use crate::region::retry::retrying;
use crate::storage::name_in;

/// Files up to this size are copied in one put; larger ones stream in parts,
/// so memory per copy in flight stays bounded.
pub const SINGLE_PUT_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Part size of a streamed copy.
const PART_BYTES: usize = 8 * 1024 * 1024;

/// Parts of one streamed copy in flight at once.
const PARTS_IN_FLIGHT: usize = 2;

/// A branch folder the replicator copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Manifest,
    Wal,
    Compacted,
    Compactions,
}

impl Dir {
    pub const ALL: [Dir; 4] = [Dir::Manifest, Dir::Wal, Dir::Compacted, Dir::Compactions];

    fn name(self) -> &'static str {
        match self {
            Dir::Manifest => "manifest",
            Dir::Wal => "wal",
            Dir::Compacted => "compacted",
            Dir::Compactions => "compactions",
        }
    }

    fn ext(self) -> &'static str {
        match self {
            Dir::Manifest => "manifest",
            Dir::Wal | Dir::Compacted => "sst",
            Dir::Compactions => "compactions",
        }
    }
}

/// One file of a branch, by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileRef {
    Manifest(u64),
    Wal(u64),
    /// A compacted SST (L0 or sorted run), by its ULID.
    Sst(String),
    Compactions(u64),
}

impl FileRef {
    pub fn dir(&self) -> Dir {
        match self {
            FileRef::Manifest(_) => Dir::Manifest,
            FileRef::Wal(_) => Dir::Wal,
            FileRef::Sst(_) => Dir::Compacted,
            FileRef::Compactions(_) => Dir::Compactions,
        }
    }

    /// The file name inside its folder.
    pub fn name(&self) -> String {
        let ext = self.dir().ext();
        match self {
            FileRef::Manifest(id) | FileRef::Wal(id) | FileRef::Compactions(id) => {
                format!("{id:020}.{ext}")
            }
            FileRef::Sst(ulid) => format!("{ulid}.{ext}"),
        }
    }

    /// `manifest/00000000000000000001.manifest` and so on.
    pub fn rel(&self) -> String {
        format!("{}/{}", self.dir().name(), self.name())
    }

    /// The object's path under the branch path `base`.
    pub fn path(&self, base: &Path) -> Path {
        base.clone().join(self.dir().name()).join(self.name())
    }

    /// The file at `path`, when it is one of SlateDB's in the branch
    /// folder `base`.
    pub fn at(base: &Path, path: &Path) -> Option<FileRef> {
        let mut parts = path.prefix_match(base)?;
        let (folder, name) = (parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let dir = Dir::ALL
            .into_iter()
            .find(|dir| dir.name() == folder.as_ref())?;
        FileRef::parse(dir, name.as_ref())
    }

    /// The file named `name` in `dir`, if it is one of SlateDB's.
    pub fn parse(dir: Dir, name: &str) -> Option<FileRef> {
        let stem = name.strip_suffix(dir.ext())?.strip_suffix('.')?;
        match dir {
            Dir::Compacted => (stem.len() == 26 && stem.bytes().all(|b| b.is_ascii_alphanumeric()))
                .then(|| FileRef::Sst(stem.to_string())),
            _ => {
                if stem.len() != 20 {
                    return None;
                }
                let id = stem.parse::<u64>().ok()?;
                Some(match dir {
                    Dir::Manifest => FileRef::Manifest(id),
                    Dir::Wal => FileRef::Wal(id),
                    _ => FileRef::Compactions(id),
                })
            }
        }
    }
}

/// Size and modification time of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    pub size: u64,
    /// When the object was written, microseconds since the Unix epoch.
    pub modified_us: u64,
}

impl FileMeta {
    fn of(meta: &ObjectMeta) -> FileMeta {
        FileMeta {
            size: meta.size,
            modified_us: meta.last_modified.timestamp_micros().max(0) as u64,
        }
    }
}

/// What is known to be in one side's branch folders.
#[derive(Debug, Clone, Default)]
pub struct BranchFiles {
    pub manifests: BTreeMap<u64, FileMeta>,
    pub wals: BTreeMap<u64, FileMeta>,
    pub ssts: BTreeMap<String, FileMeta>,
    pub compactions: BTreeMap<u64, FileMeta>,
}

impl BranchFiles {
    pub fn insert(&mut self, file: FileRef, meta: FileMeta) {
        match file {
            FileRef::Manifest(id) => self.manifests.insert(id, meta),
            FileRef::Wal(id) => self.wals.insert(id, meta),
            FileRef::Sst(ulid) => self.ssts.insert(ulid, meta),
            FileRef::Compactions(id) => self.compactions.insert(id, meta),
        };
    }

    pub fn get(&self, file: &FileRef) -> Option<FileMeta> {
        match file {
            FileRef::Manifest(id) => self.manifests.get(id),
            FileRef::Wal(id) => self.wals.get(id),
            FileRef::Sst(ulid) => self.ssts.get(ulid),
            FileRef::Compactions(id) => self.compactions.get(id),
        }
        .copied()
    }

    pub fn remove(&mut self, file: &FileRef) {
        match file {
            FileRef::Manifest(id) => self.manifests.remove(id),
            FileRef::Wal(id) => self.wals.remove(id),
            FileRef::Sst(ulid) => self.ssts.remove(ulid),
            FileRef::Compactions(id) => self.compactions.remove(id),
        };
    }

    /// Replaces what is known of `dir` with a full listing of it.
    pub fn replace_dir(&mut self, dir: Dir, listing: Vec<(FileRef, FileMeta)>) {
        match dir {
            Dir::Manifest => self.manifests.clear(),
            Dir::Wal => self.wals.clear(),
            Dir::Compacted => self.ssts.clear(),
            Dir::Compactions => self.compactions.clear(),
        }
        for (file, meta) in listing {
            self.insert(file, meta);
        }
    }

    /// Every file, with its metadata.
    pub fn iter(&self) -> impl Iterator<Item = (FileRef, FileMeta)> + '_ {
        let m = self
            .manifests
            .iter()
            .map(|(id, m)| (FileRef::Manifest(*id), *m));
        let w = self.wals.iter().map(|(id, m)| (FileRef::Wal(*id), *m));
        let s = self.ssts.iter().map(|(u, m)| (FileRef::Sst(u.clone()), *m));
        let c = self
            .compactions
            .iter()
            .map(|(id, m)| (FileRef::Compactions(*id), *m));
        m.chain(w).chain(s).chain(c)
    }

    /// The highest id present in a numbered folder.
    pub fn newest(&self, dir: Dir) -> Option<FileRef> {
        match dir {
            Dir::Manifest => self
                .manifests
                .keys()
                .next_back()
                .map(|id| FileRef::Manifest(*id)),
            Dir::Wal => self.wals.keys().next_back().map(|id| FileRef::Wal(*id)),
            Dir::Compactions => self
                .compactions
                .keys()
                .next_back()
                .map(|id| FileRef::Compactions(*id)),
            Dir::Compacted => self
                .ssts
                .keys()
                .next_back()
                .map(|u| FileRef::Sst(u.clone())),
        }
    }
}

/// Requests made to one side, by class, in all and over the last minute.
#[derive(Debug, Default)]
pub struct RequestCounter {
    counts: Mutex<Recent>,
    listed: AtomicU64,
}

#[derive(Debug, Default)]
struct Recent {
    total: ClassCounts,
    /// `(second since the epoch, requests in it)`, oldest first, at most 60.
    seconds: VecDeque<(u64, ClassCounts)>,
}

impl RequestCounter {
    pub fn record(&self, class: RequestClass) {
        let now_s = epoch_s();
        let mut recent = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        recent.total.add(class, 1);
        match recent.seconds.back_mut() {
            Some((s, n)) if *s == now_s => n.add(class, 1),
            _ => {
                let mut n = ClassCounts::default();
                n.add(class, 1);
                recent.seconds.push_back((now_s, n));
            }
        }
        while recent
            .seconds
            .front()
            .is_some_and(|(s, _)| *s + 60 <= now_s)
        {
            recent.seconds.pop_front();
        }
    }

    /// Every request so far, by class.
    pub fn counts(&self) -> ClassCounts {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).total
    }

    pub fn total(&self) -> u64 {
        self.counts().total()
    }

    /// Counts `entries` returned by a listing.
    pub fn record_listed(&self, entries: usize) {
        self.listed.fetch_add(entries as u64, Ordering::Relaxed);
    }

    /// Entries returned by listings so far.
    pub fn listed(&self) -> u64 {
        self.listed.load(Ordering::Relaxed)
    }

    /// Requests in the last 60 seconds, by class.
    pub fn last_minute_counts(&self) -> ClassCounts {
        let now_s = epoch_s();
        let recent = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        recent
            .seconds
            .iter()
            .filter(|(s, _)| *s + 60 > now_s)
            .fold(ClassCounts::default(), |sum, (_, n)| sum.plus(n))
    }

    /// Requests in the last 60 seconds.
    pub fn last_minute(&self) -> u64 {
        self.last_minute_counts().total()
    }
}

fn epoch_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One side of a flow: a branch's folder in one region's store. Every call
/// is retried by the one retry policy and counted.
#[derive(Clone)]
pub struct Side {
    pub region: String,
    pub store: Arc<dyn ObjectStore>,
    pub base: Path,
    pub requests: Arc<RequestCounter>,
}

impl Side {
    fn err(&self, op: String, err: &object_store::Error) -> Error {
        Error::store(&self.region, &op, err)
    }

    /// The files of `dir`, or only those named after `after`.
    pub async fn list(
        &self,
        dir: Dir,
        after: Option<&FileRef>,
    ) -> Result<Vec<(FileRef, FileMeta)>> {
        let prefix = self.base.clone().join(dir.name());
        let offset = after.map(|f| f.path(&self.base));
        let listing = retrying(|| {
            self.requests.record(RequestClass::List);
            match &offset {
                Some(offset) => self.store.list_with_offset(Some(&prefix), offset),
                None => self.store.list(Some(&prefix)),
            }
            .try_collect::<Vec<_>>()
        })
        .await
        .map_err(|e| self.err(format!("listing {prefix}"), &e))?;
        self.requests.record_listed(listing.len());
        let mut files: Vec<(FileRef, FileMeta)> = listing
            .iter()
            // A server may ignore the offset (Azurite ignores Azure's
            // `startFrom`): what lies before it is dropped here all the same.
            .filter(|meta| offset.as_ref().is_none_or(|o| meta.location > *o))
            .filter_map(|meta| {
                let name = name_in(&prefix, &meta.location)?;
                Some((FileRef::parse(dir, &name)?, FileMeta::of(meta)))
            })
            .collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(files)
    }

    /// The whole file, or `None` if it is not there (garbage-collected).
    pub async fn read(&self, file: &FileRef) -> Result<Option<Bytes>> {
        let path = file.path(&self.base);
        retrying(|| {
            self.requests.record(RequestClass::Get);
            get_if_present(self.store.as_ref(), &path)
        })
        .await
        .map_err(|e| self.err(format!("reading {path}"), &e))
    }

    /// One look at `file` that brings its bytes when it is there: its
    /// metadata, and its bytes unless it is too large for one put (then a
    /// copy streams it again). `None` when it is not there. A read of the
    /// next name a writer will use is how new files are found without
    /// listing (a GET costs a twelfth of a LIST on S3).
    pub async fn fetch(&self, file: &FileRef) -> Result<Option<Fetched>> {
        let path = file.path(&self.base);
        retrying(|| async {
            self.requests.record(RequestClass::Get);
            let Some(got) = open_if_present(self.store.as_ref(), &path).await? else {
                return Ok(None);
            };
            let meta = FileMeta::of(&got.meta);
            if meta.size > SINGLE_PUT_MAX_BYTES {
                return Ok(Some(Fetched { meta, bytes: None }));
            }
            let bytes = got.bytes().await?;
            let meta = FileMeta {
                size: bytes.len() as u64,
                ..meta
            };
            Ok(Some(Fetched {
                meta,
                bytes: Some(bytes),
            }))
        })
        .await
        .map_err(|e| self.err(format!("reading {path}"), &e))
    }

    /// The file's metadata, without its bytes (a HEAD, priced as a GET);
    /// `None` when it is not there.
    pub async fn head(&self, file: &FileRef) -> Result<Option<FileMeta>> {
        let path = file.path(&self.base);
        retrying(|| {
            self.requests.record(RequestClass::Get);
            head_if_present(self.store.as_ref(), &path)
        })
        .await
        .map(|meta| meta.as_ref().map(FileMeta::of))
        .map_err(|e| self.err(format!("looking at {path}"), &e))
    }

    /// Writes a whole file (the replica side only).
    pub async fn write(&self, file: &FileRef, bytes: Bytes) -> Result<()> {
        let path = file.path(&self.base);
        retrying(|| {
            self.requests.record(RequestClass::Put);
            self.store.put(&path, PutPayload::from(bytes.clone()))
        })
        .await
        .map(|_| ())
        .map_err(|e| self.err(format!("writing {path}"), &e))
    }

    pub async fn delete(&self, file: &FileRef) -> Result<()> {
        let path = file.path(&self.base);
        retrying(|| {
            self.requests.record(RequestClass::Delete);
            delete_if_present(self.store.as_ref(), &path)
        })
        .await
        .map_err(|e| self.err(format!("deleting {path}"), &e))
    }
}

/// Why a copy did not happen.
#[derive(Debug)]
pub enum CopyError {
    /// The file is gone from the source (its garbage collector deleted it).
    Vanished,
    Failed(Error),
}

/// What one read of a file brought: its metadata, and its bytes when it
/// is small enough to hold ([`SINGLE_PUT_MAX_BYTES`]).
#[derive(Debug, Clone)]
pub struct Fetched {
    pub meta: FileMeta,
    pub bytes: Option<Bytes>,
}

/// Copies one file from `from` to `to` (reading it first unless `fetched`
/// brought its bytes already) and returns the source's metadata, with the
/// size copied. Large files stream through in parts; small ones go in one
/// put: a GET and a PUT per file, the floor.
pub async fn copy_file(
    from: &Side,
    to: &Side,
    file: &FileRef,
    fetched: Option<Fetched>,
) -> std::result::Result<FileMeta, CopyError> {
    let fetched = match fetched {
        Some(fetched) => fetched,
        None => from
            .fetch(file)
            .await
            .map_err(CopyError::Failed)?
            .ok_or(CopyError::Vanished)?,
    };
    if let Some(bytes) = fetched.bytes {
        to.write(file, bytes).await.map_err(CopyError::Failed)?;
        return Ok(fetched.meta);
    }
    let src = file.path(&from.base);
    let dst = file.path(&to.base);
    let streamed = retrying(|| async {
        from.requests.record(RequestClass::Get);
        let Some(got) = open_if_present(from.store.as_ref(), &src).await? else {
            return Ok(None);
        };
        let meta = FileMeta::of(&got.meta);
        to.requests.record(RequestClass::Put);
        let mut upload =
            WriteMultipart::new_with_chunk_size(to.store.put_multipart(&dst).await?, PART_BYTES);
        let mut stream = in_parts(got);
        let mut len = 0u64;
        let streamed: object_store::Result<()> = async {
            while let Some(chunk) = stream.try_next().await? {
                upload.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                len += chunk.len() as u64;
                upload.write(&chunk);
            }
            Ok(())
        }
        .await;
        // Each part and the completion are requests of their own.
        for _ in 0..len.div_ceil(PART_BYTES as u64) + 1 {
            to.requests.record(RequestClass::Put);
        }
        match streamed {
            Ok(()) => {
                upload.finish().await?;
                Ok(Some(FileMeta { size: len, ..meta }))
            }
            Err(err) => {
                if let Err(abort) = upload.abort().await {
                    tracing::debug!("aborting the upload of {dst} failed too: {abort}");
                }
                Err(err)
            }
        }
    })
    .await
    .map_err(|e| {
        CopyError::Failed(to.err(format!("copying {src} to region `{}`", to.region), &e))
    })?;
    streamed.ok_or(CopyError::Vanished)
}

/// The bytes of `got` as a stream: a local file in reads of
/// [`PART_BYTES`] (object_store streams one in 8 KiB pieces, each a hand-off
/// to tokio's blocking pool: a 30 MB SST was 3,700 of them, and the seed
/// of large files ran at 0.69 of rclone's speed), anything else as its
/// store streams it.
fn in_parts(got: object_store::GetResult) -> BoxStream<'static, object_store::Result<Bytes>> {
    let object_store::GetResult { payload, range, .. } = got;
    let (file, path) = match payload {
        object_store::GetResultPayload::File(file, path) => (file, path),
        object_store::GetResultPayload::Stream(stream) => return stream,
    };
    let end = range.end;
    futures::stream::try_unfold((file, range.start), move |(mut file, at)| {
        let path = path.clone();
        async move {
            if at >= end {
                return Ok(None);
            }
            let len = (end - at).min(PART_BYTES as u64) as usize;
            let read = tokio::task::spawn_blocking(move || {
                use std::io::{Read, Seek, SeekFrom};
                file.seek(SeekFrom::Start(at))?;
                let mut buf = vec![0; len];
                file.read_exact(&mut buf)?;
                Ok::<_, std::io::Error>((file, Bytes::from(buf)))
            })
            .await
            .map_err(|e| std::io::Error::other(format!("the read stopped: {e}")))
            .and_then(|read| read)
            .map_err(|e| object_store::Error::Generic {
                store: "LocalFileSystem",
                source: format!("reading {}: {e}", path.display()).into(),
            })?;
            let (file, bytes) = read;
            Ok(Some((bytes, (file, at + len as u64))))
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A local file streams in parts of `PART_BYTES` (the last shorter),
    /// every byte in order; a range streams only its bytes.
    #[tokio::test]
    async fn a_local_file_streams_in_whole_parts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            object_store::local::LocalFileSystem::new_with_prefix(dir.path()).expect("local");
        let len = 2 * PART_BYTES + 5;
        let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let path = Path::from("compacted/big.sst");
        store
            .put(&path, PutPayload::from(body.clone()))
            .await
            .expect("put");
        let parts: Vec<Bytes> = in_parts(store.get(&path).await.expect("get"))
            .try_collect()
            .await
            .expect("read");
        let sizes: Vec<usize> = parts.iter().map(Bytes::len).collect();
        assert_eq!(sizes, [PART_BYTES, PART_BYTES, 5]);
        assert_eq!(parts.concat(), body);
        let options = object_store::GetOptions {
            range: Some((10..20).into()),
            ..Default::default()
        };
        let ranged: Vec<Bytes> = in_parts(store.get_opts(&path, options).await.expect("get"))
            .try_collect()
            .await
            .expect("read");
        assert_eq!(ranged.concat(), body[10..20]);
    }

    #[test]
    fn names_round_trip() {
        for file in [
            FileRef::Manifest(7),
            FileRef::Wal(123),
            FileRef::Sst("01HZX3V4K9Q8W7E6R5T4Y3U2I1".replace('I', "J")),
            FileRef::Compactions(2),
        ] {
            let name = file.name();
            assert_eq!(
                FileRef::parse(file.dir(), &name),
                Some(file.clone()),
                "{name}"
            );
        }
        assert_eq!(FileRef::Wal(5).rel(), "wal/00000000000000000005.sst");
        assert_eq!(
            FileRef::parse(Dir::Wal, "00000000000000000005.sst#tmp"),
            None
        );
        assert_eq!(FileRef::parse(Dir::Manifest, "5.manifest"), None);
        let base = Path::from("dbs/orders/main");
        assert_eq!(
            FileRef::at(&base, &FileRef::Wal(9).path(&base)),
            Some(FileRef::Wal(9))
        );
        let elsewhere = Path::from("dbs/orders/other");
        assert_eq!(FileRef::at(&base, &FileRef::Wal(9).path(&elsewhere)), None);
    }
}
