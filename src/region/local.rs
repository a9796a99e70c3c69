//! Local-folder regions: object_store's `LocalFileSystem`, with a read of
//! a name that is not there answered at once.
//!
//! `LocalFileSystem` runs every call on tokio's blocking pool, so a read
//! that finds nothing costs two thread hand-offs. A quiet branch is looked
//! at by reading its next WAL name about once per RPO target, and a
//! thousand quiet databases made those hand-offs about half of the
//! engine's CPU (`lifeboat bench scale`). A read here first asks the
//! folder for the name's metadata (one `lstat`, microseconds on a local
//! disk) and answers a miss itself; a hit, and every other call, goes to
//! `LocalFileSystem` as before. (On a network file system that hangs, the
//! `lstat` holds one of the runtime's threads, as a hung disk would hold a
//! blocking one.)

use std::fmt;
use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

/// A local folder as an object store.
#[derive(Debug)]
pub struct LocalStore {
    inner: LocalFileSystem,
}

impl LocalStore {
    pub fn new(inner: LocalFileSystem) -> LocalStore {
        LocalStore { inner }
    }
}

impl fmt::Display for LocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if let Ok(path) = self.inner.path_to_filesystem(location)
            && let Err(e) = std::fs::symlink_metadata(&path)
            && e.kind() == std::io::ErrorKind::NotFound
        {
            return Err(object_store::Error::NotFound {
                path: path.to_string_lossy().into_owned(),
                source: Box::new(e),
            });
        }
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn a_missing_name_is_not_found_and_a_present_one_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let local = LocalFileSystem::new_with_prefix(dir.path()).expect("local");
        let store = LocalStore::new(local);
        let path = Path::from("wal/00000000000000000001.sst");
        let missing = store.get(&path).await;
        assert!(
            matches!(missing, Err(object_store::Error::NotFound { .. })),
            "{missing:?}"
        );
        assert!(matches!(
            store.head(&path).await,
            Err(object_store::Error::NotFound { .. })
        ));
        store
            .put(&path, PutPayload::from_static(b"wal"))
            .await
            .expect("put");
        let read = store.get(&path).await.expect("get").bytes().await;
        assert_eq!(read.expect("bytes").as_ref(), b"wal");
        assert_eq!(store.head(&path).await.expect("head").size, 3);
    }
}
