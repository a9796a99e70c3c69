//! One-attempt object calls every layer uses: a whole object or `None`, a
//! delete that counts an object already gone as deleted. Retries are the
//! caller's (`region::retry`).

use bytes::Bytes;
use object_store::path::Path;
use object_store::{GetResult, ObjectStore, ObjectStoreExt};

/// Where every region keeps its databases: `dbs/<db>/<branch>/`.
pub const DBS_PREFIX: &str = "dbs";

/// One attempt at reading a whole object; `None` when it is not there.
pub async fn get_if_present(
    store: &dyn ObjectStore,
    path: &Path,
) -> object_store::Result<Option<Bytes>> {
    match open_if_present(store, path).await? {
        Some(got) => got.bytes().await.map(Some),
        None => Ok(None),
    }
}

/// One GET of an object, its body not yet read; `None` when it is not there.
pub async fn open_if_present(
    store: &dyn ObjectStore,
    path: &Path,
) -> object_store::Result<Option<GetResult>> {
    match store.get(path).await {
        Ok(got) => Ok(Some(got)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(err) => Err(err),
    }
}

/// One HEAD of an object; `None` when it is not there.
pub async fn head_if_present(
    store: &dyn ObjectStore,
    path: &Path,
) -> object_store::Result<Option<object_store::ObjectMeta>> {
    match store.head(path).await {
        Ok(meta) => Ok(Some(meta)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(err) => Err(err),
    }
}

/// One attempt at deleting an object; one already gone counts as deleted.
pub async fn delete_if_present(store: &dyn ObjectStore, path: &Path) -> object_store::Result<()> {
    match store.delete(path).await {
        Err(object_store::Error::NotFound { .. }) => Ok(()),
        other => other,
    }
}
