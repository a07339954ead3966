//! Where segment files live: a local folder or any S3-compatible store,
//! through `object_store`, named by one URL (`EVENTUALL_ARCHIVE_URL`).
//!
//! - `file:///abs/path`: a folder; written with fsync (file and directory),
//!   so a segment is on disk before the rows it replaces are deleted.
//! - `s3://bucket/prefix`: credentials, region and endpoint from the usual
//!   `AWS_*` variables (`AWS_ENDPOINT_URL` and `AWS_ALLOW_HTTP=true` for a
//!   local S3-compatible server). An S3 PUT is durable when it answers.
//!
//! The store is built on first use, so opening the log never needs the
//! archive to be reachable: only reading or writing an archived stream does.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::OnceCell;

use crate::store::StoreError;

/// The archive's root and its store.
pub struct Objects {
    /// The root URL without a trailing `/`; every segment's location starts
    /// with it.
    root: String,
    kind: Kind,
    /// The prefix inside the store (an S3 URL's path; empty for a folder,
    /// whose store is rooted at the folder).
    prefix: Path,
    store: OnceCell<Arc<dyn ObjectStore>>,
}

enum Kind {
    Folder(std::path::PathBuf),
    S3,
}

impl Objects {
    /// Parses an archive URL; nothing is contacted or created yet.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let parsed = url::Url::parse(url).map_err(|e| StoreError::Archive(format!("archive URL {url:?}: {e}")))?;
        let root = url.trim_end_matches('/').to_owned();
        match parsed.scheme() {
            "file" => {
                let folder = parsed
                    .to_file_path()
                    .map_err(|()| StoreError::Archive(format!("archive URL {url:?} is not an absolute file path")))?;
                Ok(Self { root, kind: Kind::Folder(folder), prefix: Path::default(), store: OnceCell::new() })
            }
            "s3" => {
                if parsed.host_str().is_none_or(str::is_empty) {
                    return Err(StoreError::Archive(format!("archive URL {url:?} names no bucket")));
                }
                let prefix = Path::from(parsed.path().trim_matches('/'));
                Ok(Self { root, kind: Kind::S3, prefix, store: OnceCell::new() })
            }
            other => {
                Err(StoreError::Archive(format!("archive URL scheme {other:?} is not supported (file://… or s3://…)")))
            }
        }
    }

    /// The archive's root URL.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The URL of the object `key` (a relative, `/`-separated name).
    pub fn location(&self, key: &str) -> String {
        format!("{}/{key}", self.root)
    }

    async fn store(&self) -> Result<&Arc<dyn ObjectStore>, StoreError> {
        self.store
            .get_or_try_init(|| async {
                let store: Arc<dyn ObjectStore> = match &self.kind {
                    Kind::Folder(folder) => {
                        tokio::fs::create_dir_all(folder).await.map_err(|e| {
                            StoreError::Archive(format!("creating the archive folder {}: {e}", folder.display()))
                        })?;
                        let local = object_store::local::LocalFileSystem::new_with_prefix(folder)
                            .map_err(|e| StoreError::Archive(format!("archive folder {}: {e}", folder.display())))?
                            .with_fsync(true);
                        Arc::new(local)
                    }
                    Kind::S3 => {
                        let s3 = object_store::aws::AmazonS3Builder::from_env()
                            .with_url(&self.root)
                            .build()
                            .map_err(|e| StoreError::Archive(format!("archive {}: {e}", self.root)))?;
                        Arc::new(s3)
                    }
                };
                Ok(store)
            })
            .await
    }

    /// The path inside the store of a location under this root.
    fn path_of(&self, location: &str) -> Result<Path, StoreError> {
        let key = location.strip_prefix(&self.root).and_then(|rest| rest.strip_prefix('/')).ok_or_else(|| {
            StoreError::Archive(format!(
                "segment {location} is outside the configured archive {} (EVENTUALL_ARCHIVE_URL)",
                self.root
            ))
        })?;
        // `Path::from` splits on `/` (`Path::join` would escape it as one
        // segment's text).
        Ok(if self.prefix.as_ref().is_empty() { Path::from(key) } else { Path::from(format!("{}/{key}", self.prefix)) })
    }

    /// Writes (or overwrites) the object at `location`; durable on return.
    pub async fn put(&self, location: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let path = self.path_of(location)?;
        self.store()
            .await?
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|e| StoreError::Archive(format!("writing segment {location}: {e}")))?;
        Ok(())
    }

    /// The object's bytes, `None` when it does not exist.
    pub async fn get(&self, location: &str) -> Result<Option<Bytes>, StoreError> {
        let path = self.path_of(location)?;
        let read = async { self.store().await?.get(&path).await.map_err(ObjectError) };
        match read.await {
            Ok(result) => Ok(Some(
                result.bytes().await.map_err(|e| StoreError::Archive(format!("reading segment {location}: {e}")))?,
            )),
            Err(ObjectError(object_store::Error::NotFound { .. })) => Ok(None),
            Err(ObjectError(e)) => Err(StoreError::Archive(format!("reading segment {location}: {e}"))),
        }
    }

    /// Deletes the object; a missing one is not an error.
    pub async fn delete(&self, location: &str) -> Result<(), StoreError> {
        let path = self.path_of(location)?;
        match self.store().await?.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(StoreError::Archive(format!("deleting segment {location}: {e}"))),
        }
    }
}

/// An `object_store` error, or the store not being buildable, kept apart
/// so that `NotFound` can be told from the rest.
struct ObjectError(object_store::Error);

impl From<StoreError> for ObjectError {
    fn from(error: StoreError) -> Self {
        ObjectError(object_store::Error::Generic { store: "archive", source: Box::new(error) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_folder_or_a_bucket_and_nothing_else() {
        let folder = Objects::parse("file:///var/lib/eventuall/archive/").unwrap();
        assert_eq!(folder.root(), "file:///var/lib/eventuall/archive");
        assert_eq!(folder.location("room/room-a/1.seg"), "file:///var/lib/eventuall/archive/room/room-a/1.seg");
        assert_eq!(folder.path_of("file:///var/lib/eventuall/archive/room/x.seg").unwrap(), Path::from("room/x.seg"));
        assert!(folder.path_of("file:///elsewhere/room/x.seg").is_err());

        let bucket = Objects::parse("s3://logs/eventuall").unwrap();
        let path = bucket.path_of("s3://logs/eventuall/room/x.seg").unwrap();
        assert_eq!(path.parts().count(), 3, "one object key of three segments: {path}");
        assert_eq!(path.as_ref(), "eventuall/room/x.seg");

        assert!(Objects::parse("s3:///no-bucket").is_err());
        assert!(Objects::parse("ftp://host/x").is_err());
        assert!(Objects::parse("file://relative/path").is_err(), "a file URL with a host is not a local folder");
        assert!(Objects::parse("not a url").is_err());
    }
}
