//! Views of a branch as of one state, and checksums of what a state holds.
//!
//! A reader in `FollowLatest` replays WAL up to the first missing id above
//! the newest manifest. A store that hides manifests above `k` and WAL
//! files above `w` therefore shows exactly the state "manifest k, WAL up to
//! w" of a branch that moves on meanwhile (SLATEDB-NOTES.md, time travel).
//! Writes through a view are refused: it is for reading a replica or a
//! home without touching it.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use blake2::Digest;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use serde::Serialize;

use super::{DbLocation, name_in};
use crate::error::{Error, Result};

/// A read-only store that shows branch `base` as of manifest
/// `manifest_id` and WAL file `wal_end`.
pub struct AsOfStore {
    inner: Arc<dyn ObjectStore>,
    base: Path,
    manifest_id: u64,
    wal_end: u64,
}

impl AsOfStore {
    pub fn new(inner: Arc<dyn ObjectStore>, base: Path, manifest_id: u64, wal_end: u64) -> Self {
        AsOfStore {
            inner,
            base,
            manifest_id,
            wal_end,
        }
    }

    /// Whether `path` lies beyond the state shown.
    fn hidden(&self, path: &Path) -> bool {
        let numbered = |dir: &str, ext: &str| {
            name_in(&self.base.clone().join(dir), path).and_then(|name| {
                name.strip_suffix(ext)
                    .and_then(|id| id.strip_suffix('.'))
                    .and_then(|id| id.parse::<u64>().ok())
            })
        };
        if let Some(id) = numbered("manifest", "manifest") {
            return id > self.manifest_id;
        }
        if let Some(id) = numbered("wal", "sst") {
            return id > self.wal_end;
        }
        // GC boundaries describe the live branch, not this state.
        path.prefix_match(&self.base.clone().join("gc")).is_some()
    }

    fn not_found(path: &Path) -> object_store::Error {
        object_store::Error::NotFound {
            path: path.to_string(),
            source: "beyond the state this view shows".into(),
        }
    }

    fn refused(path: &Path) -> object_store::Error {
        object_store::Error::NotSupported {
            source: format!("{path}: a point-in-time view is read-only").into(),
        }
    }
}

impl fmt::Debug for AsOfStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AsOfStore({} at manifest {}, WAL {})",
            self.base, self.manifest_id, self.wal_end
        )
    }
}

impl fmt::Display for AsOfStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[async_trait::async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for AsOfStore {
    async fn put_opts(
        &self,
        location: &Path,
        _payload: PutPayload,
        _opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        Err(Self::refused(location))
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(Self::refused(location))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if self.hidden(location) {
            return Err(Self::not_found(location));
        }
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        if self.hidden(location) {
            return Err(Self::not_found(location));
        }
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        locations
            .map(|location| Err(Self::refused(&location?)))
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let view = self.filter();
        self.inner
            .list(prefix)
            .filter(move |m| std::future::ready(!matches!(m, Ok(m) if view.hidden(&m.location))))
            .boxed()
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let view = self.filter();
        self.inner
            .list_with_offset(prefix, offset)
            .filter(move |m| std::future::ready(!matches!(m, Ok(m) if view.hidden(&m.location))))
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let mut result = self.inner.list_with_delimiter(prefix).await?;
        result.objects.retain(|m| !self.hidden(&m.location));
        Ok(result)
    }

    async fn copy_opts(
        &self,
        _from: &Path,
        to: &Path,
        _options: CopyOptions,
    ) -> object_store::Result<()> {
        Err(Self::refused(to))
    }

    async fn rename_opts(
        &self,
        from: &Path,
        _to: &Path,
        _options: RenameOptions,
    ) -> object_store::Result<()> {
        Err(Self::refused(from))
    }
}

impl AsOfStore {
    /// The hiding rule alone, to move into a stream filter.
    fn filter(&self) -> Arc<AsOfStore> {
        Arc::new(AsOfStore {
            inner: Arc::clone(&self.inner),
            base: self.base.clone(),
            manifest_id: self.manifest_id,
            wal_end: self.wal_end,
        })
    }
}

impl DbLocation {
    /// This branch as of manifest `manifest_id` and WAL file `wal_end`,
    /// read-only (see the module's doc).
    pub fn as_of(&self, manifest_id: u64, wal_end: u64) -> DbLocation {
        DbLocation {
            label: format!(
                "{} (as of manifest {manifest_id}, WAL {wal_end})",
                self.label
            ),
            store: Arc::new(AsOfStore::new(
                Arc::clone(&self.store),
                self.path.clone(),
                manifest_id,
                wal_end,
            )),
            ..self.clone()
        }
    }
}

/// What a state holds: its keys (Lifeboat's reserved ones left out) and a
/// digest of every key and value in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checksum {
    pub keys: u64,
    /// BLAKE2b-128 of the keys and values, hex.
    pub digest: String,
}

/// BLAKE2b-128 over a sequence of length-prefixed fields, as hex: a
/// state's checksum, and the digest of a comparison of recovered writes.
pub struct FieldDigest(blake2::Blake2b<blake2::digest::consts::U16>);

impl FieldDigest {
    pub fn new() -> FieldDigest {
        FieldDigest(blake2::Blake2b::new())
    }

    /// Adds one field: its length, then its bytes.
    pub fn field(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    /// Adds a field that may be absent (a tag byte tells the two apart).
    pub fn optional(&mut self, bytes: Option<&[u8]>) {
        match bytes {
            None => self.0.update([0u8]),
            Some(b) => {
                self.0.update([1u8]);
                self.field(b);
            }
        }
    }

    pub fn hex(self) -> String {
        self.0
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl Default for FieldDigest {
    fn default() -> Self {
        FieldDigest::new()
    }
}

/// Reads every key of `location` through a read-only reader.
pub async fn checksum(location: &DbLocation) -> Result<Checksum> {
    checksum_with(location, &std::collections::BTreeMap::new()).await
}

/// [`checksum`] of what `location` holds with `overlay` written over it
/// (a key to its value, or `None`: deleted).
pub async fn checksum_with(
    location: &DbLocation,
    overlay: &std::collections::BTreeMap<Bytes, Option<Bytes>>,
) -> Result<Checksum> {
    let reader = location.open_reader().await?;
    let read_error = |e: slatedb::Error| Error::database(&location.label, &location.db, "read", &e);
    let mut iter = reader.scan(..).await.map_err(read_error)?;
    let mut digest = FieldDigest::new();
    let mut keys = 0u64;
    let mut add = |key: &[u8], value: &[u8]| {
        if !key.starts_with(crate::workspace::keyspace::RESERVED_PREFIX) {
            keys += 1;
            digest.field(key);
            digest.field(value);
        }
    };
    let mut over = overlay.iter().peekable();
    while let Some(kv) = iter.next().await.map_err(read_error)? {
        // The overlay's keys before this one, then this one or its overlay.
        while let Some((key, value)) = over.next_if(|(k, _)| **k < kv.key) {
            if let Some(value) = value {
                add(key, value);
            }
        }
        match over.next_if(|(k, _)| **k == kv.key) {
            Some((key, Some(value))) => add(key, value),
            Some((_, None)) => {}
            None => add(&kv.key, &kv.value),
        }
    }
    for (key, value) in over {
        if let Some(value) = value {
            add(key, value);
        }
    }
    if let Err(e) = reader.close().await {
        tracing::warn!(db = %location.db, "closing the checksum reader: {e}");
    }
    Ok(Checksum {
        keys,
        digest: digest.hex(),
    })
}
