//! Shadow parents: how a branch is forked off a replica without writing
//! into it.
//!
//! A SlateDB clone writes into its parent (a checkpoint in the parent's
//! manifest). A replica is written by the replicator alone (invariant 1), so
//! a fork off a replica uses a *shadow* parent instead: the prefix
//! `_lifeboat/shadow/<db>/<source>/<fork>/` holds a copy of the replica's
//! manifest at the fork point and the manifests the clone writes there;
//! every other read under it (`wal/`, `compacted/`, `compactions/`) is
//! redirected to the replica at `dbs/<db>/<source>/`, and every write there
//! is refused. The fork's own manifest names the shadow as its external
//! database, so it must always be opened through this wrapper, which
//! [`Region::open`](super::Region::open) puts in front of every store.
//!
//! The redirect is read from the path alone, so it works the same in every
//! region, for forks of forks, and before any configuration is loaded.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::{Path, PathPart};
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

use super::objects::DBS_PREFIX;

/// Where shadow parents live in a region's store.
pub const SHADOW_PREFIX: &str = "_lifeboat/shadow";

/// Folders a shadow owns: its manifests and SlateDB's GC boundary files.
/// Everything else under a shadow is the source branch's.
const OWN_DIRS: [&str; 2] = ["manifest", "gc"];

/// The shadow parent of fork `fork` of branch `source` of database `db`.
pub fn shadow_path(db: &str, source: &str, fork: &str) -> Path {
    Path::from(SHADOW_PREFIX).join(db).join(source).join(fork)
}

/// The paths a shadow redirects: the shadow root and the source branch's
/// root, when `path` lies in a redirected folder of a shadow.
fn redirected(path: &Path) -> Option<(Path, Path, Vec<PathPart<'static>>)> {
    let parts: Vec<PathPart<'static>> = path
        .parts()
        .map(|p| PathPart::from(p.as_ref().to_string()))
        .collect();
    let prefix: Vec<&str> = SHADOW_PREFIX.split('/').collect();
    // _lifeboat / shadow / db / source / fork / dir / ...
    if parts.len() < prefix.len() + 4 {
        return None;
    }
    if parts
        .iter()
        .zip(&prefix)
        .any(|(part, want)| part.as_ref() != *want)
    {
        return None;
    }
    let n = prefix.len();
    let (db, source, fork) = (&parts[n], &parts[n + 1], &parts[n + 2]);
    if OWN_DIRS.contains(&parts[n + 3].as_ref()) {
        return None;
    }
    let shadow = shadow_path(db.as_ref(), source.as_ref(), fork.as_ref());
    let target = Path::from(DBS_PREFIX)
        .join(db.as_ref())
        .join(source.as_ref());
    Some((shadow, target, parts[n + 3..].to_vec()))
}

/// Where a read of `path` goes: the source branch's file for a redirected
/// shadow path, `path` itself otherwise.
pub fn read_path(path: &Path) -> Path {
    match redirected(path) {
        Some((_, target, rest)) => rest.into_iter().fold(target, |p, part| p.join(part)),
        None => path.clone(),
    }
}

/// Maps a location found under `target` back under `shadow`.
fn back(location: &Path, shadow: &Path, target: &Path) -> Path {
    match location.prefix_match(target) {
        Some(rest) => rest.fold(shadow.clone(), |p, part| p.join(part)),
        None => location.clone(),
    }
}

fn refused(path: &Path) -> object_store::Error {
    object_store::Error::NotSupported {
        source: format!(
            "{path} lies in a shadow parent and belongs to the branch it was forked from; a fork never writes there"
        )
        .into(),
    }
}

/// The wrapper that gives shadow parents their redirects.
pub struct ShadowStore {
    inner: Arc<dyn ObjectStore>,
}

impl ShadowStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> ShadowStore {
        ShadowStore { inner }
    }

    fn writable(&self, path: &Path) -> object_store::Result<()> {
        match redirected(path) {
            Some(_) => Err(refused(path)),
            None => Ok(()),
        }
    }

    fn list_mapped(
        &self,
        prefix: Option<&Path>,
        offset: Option<&Path>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let Some((shadow, target, _)) = prefix.and_then(redirected) else {
            return match offset {
                Some(offset) => self.inner.list_with_offset(prefix, offset),
                None => self.inner.list(prefix),
            };
        };
        let mapped_prefix = prefix.map(read_path);
        let stream = match offset {
            Some(offset) => self
                .inner
                .list_with_offset(mapped_prefix.as_ref(), &read_path(offset)),
            None => self.inner.list(mapped_prefix.as_ref()),
        };
        stream
            .map(move |meta| {
                meta.map(|mut m| {
                    m.location = back(&m.location, &shadow, &target);
                    m
                })
            })
            .boxed()
    }
}

impl fmt::Debug for ShadowStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShadowStore({})", self.inner)
    }
}

impl fmt::Display for ShadowStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

#[async_trait::async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for ShadowStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.writable(location)?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.writable(location)?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let Some((shadow, target, _)) = redirected(location) else {
            return self.inner.get_opts(location, options).await;
        };
        let mut result = self.inner.get_opts(&read_path(location), options).await?;
        result.meta.location = back(&result.meta.location, &shadow, &target);
        Ok(result)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(&read_path(location), ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let checked = locations
            .map(|location| {
                let location = location?;
                match redirected(&location) {
                    Some(_) => Err(refused(&location)),
                    None => Ok(location),
                }
            })
            .boxed();
        self.inner.delete_stream(checked)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.list_mapped(prefix, None)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.list_mapped(prefix, Some(offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let Some((shadow, target, _)) = prefix.and_then(redirected) else {
            return self.inner.list_with_delimiter(prefix).await;
        };
        let mut result = self
            .inner
            .list_with_delimiter(prefix.map(read_path).as_ref())
            .await?;
        for meta in &mut result.objects {
            meta.location = back(&meta.location, &shadow, &target);
        }
        for common in &mut result.common_prefixes {
            *common = back(common, &shadow, &target);
        }
        Ok(result)
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.writable(to)?;
        self.inner.copy_opts(&read_path(from), to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        // A rename deletes its source: neither side may be redirected.
        self.writable(from)?;
        self.writable(to)?;
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_data_folders_of_a_shadow_are_redirected() {
        let wal = Path::from("_lifeboat/shadow/orders/main/drill-1/wal/00000000000000000007.sst");
        assert_eq!(
            read_path(&wal),
            Path::from("dbs/orders/main/wal/00000000000000000007.sst")
        );
        let sst = Path::from("_lifeboat/shadow/orders/main/drill-1/compacted/01ABC.sst");
        assert_eq!(
            read_path(&sst),
            Path::from("dbs/orders/main/compacted/01ABC.sst")
        );
        for own in [
            "_lifeboat/shadow/orders/main/drill-1/manifest/00000000000000000003.manifest",
            "_lifeboat/shadow/orders/main/drill-1/gc/manifest.boundary",
            "_lifeboat/shadow/orders/main/drill-1",
            "_lifeboat/log/abc/1.ron",
            "dbs/orders/main/wal/00000000000000000007.sst",
        ] {
            let p = Path::from(own);
            assert_eq!(read_path(&p), p, "{own}");
        }
    }

    #[tokio::test]
    async fn a_shadow_reads_the_source_and_refuses_writes_into_it() {
        use object_store::ObjectStoreExt;
        let inner: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let store = ShadowStore::new(Arc::clone(&inner));
        let source = Path::from("dbs/orders/main/wal/00000000000000000001.sst");
        inner
            .put(&source, PutPayload::from_static(b"wal"))
            .await
            .expect("put");
        let shadow = shadow_path("orders", "main", "f1");
        let via = shadow.clone().join("wal").join("00000000000000000001.sst");
        let got = store
            .get(&via)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("read");
        assert_eq!(&got[..], b"wal");
        let listed: Vec<ObjectMeta> = store
            .list(Some(&shadow.clone().join("wal")))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].location, via);
        let err = store
            .put(&via, PutPayload::from_static(b"x"))
            .await
            .expect_err("a write into the source is refused");
        assert!(err.to_string().contains("shadow parent"), "{err}");
        assert!(store.delete(&via).await.is_err());
        let copy = Path::from("dbs/orders/f1/wal/00000000000000000001.sst");
        store
            .copy(&via, &copy)
            .await
            .expect("copy out of the shadow");
        assert!(inner.head(&copy).await.is_ok());
        // The shadow's own manifests stay its own.
        let own = shadow
            .join("manifest")
            .join("00000000000000000001.manifest");
        store
            .put(&own, PutPayload::from_static(b"m"))
            .await
            .expect("a shadow writes its manifests");
        assert!(inner.head(&own).await.is_ok());
    }
}
