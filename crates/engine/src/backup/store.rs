//! Where finished backups are kept: a local directory (the default; restores there are reflinks
//! when the file system allows), or S3-compatible object storage through the `object_store` crate
//! (AWS S3, MinIO, Ceph RGW, R2, …). A backup is always taken into a local staging directory first;
//! saving it moves (local) or uploads (S3) it, the manifest last, so a backup whose manifest is
//! stored is complete.

use super::{restore_into, Progress, MANIFEST};
use crate::fsutil::{create_private_dir, dir_size};
use crate::{io_err, EngineError, Result};
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::{path::Path as ObjectPath, ObjectStore, ObjectStoreExt, WriteMultipart};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// Settings of S3-compatible storage. Credentials come from the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), as every S3 tool reads them.
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub bucket: String,
    /// Key prefix inside the bucket (e.g. `strata/`).
    pub prefix: String,
    /// Endpoint URL for non-AWS services (MinIO, Ceph, R2); `None` for AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    /// Plain `http://` endpoints (a local MinIO); refused otherwise.
    pub allow_http: bool,
}

#[derive(Clone)]
pub enum BackupStore {
    Local(PathBuf),
    S3 {
        store: Arc<dyn ObjectStore>,
        prefix: String,
        /// Local staging for backups being taken (and downloads being validated).
        staging: PathBuf,
    },
}

fn err(e: object_store::Error) -> EngineError {
    EngineError::Invalid(format!("backup storage: {e}"))
}

impl BackupStore {
    pub fn local(dir: PathBuf) -> Self {
        BackupStore::Local(dir)
    }

    pub fn s3(settings: &S3Settings, staging: PathBuf) -> Result<Self> {
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_allow_http(settings.allow_http);
        if let Some(e) = &settings.endpoint {
            // Path-style requests: what MinIO and most S3-compatible services expect.
            b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
        }
        let store = b.build().map_err(err)?;
        let prefix = settings.prefix.trim_matches('/').to_string();
        Ok(BackupStore::S3 {
            store: Arc::new(store),
            prefix,
            staging,
        })
    }

    /// Where a backup is taken before it is saved.
    pub fn staging_dir(&self, id: &str) -> PathBuf {
        match self {
            BackupStore::Local(dir) => dir.join(format!("{id}.partial")),
            BackupStore::S3 { staging, .. } => staging.join(format!("{id}.partial")),
        }
    }

    /// The stored directory of a backup, when it is on the local file system.
    pub fn local_path(&self, id: &str) -> Option<PathBuf> {
        match self {
            BackupStore::Local(dir) => Some(dir.join(id)),
            BackupStore::S3 { .. } => None,
        }
    }

    /// Local directories this store uses (for clean-up of leftovers at start).
    pub fn local_dirs(&self) -> Vec<PathBuf> {
        match self {
            BackupStore::Local(dir) => vec![dir.clone()],
            BackupStore::S3 { staging, .. } => vec![staging.clone()],
        }
    }

    fn key(prefix: &str, id: &str, rel: &str) -> ObjectPath {
        let p = if prefix.is_empty() {
            format!("{id}/{rel}")
        } else {
            format!("{prefix}/{id}/{rel}")
        };
        ObjectPath::from(p)
    }

    fn backup_prefix(prefix: &str, id: &str) -> ObjectPath {
        if prefix.is_empty() {
            ObjectPath::from(id)
        } else {
            ObjectPath::from(format!("{prefix}/{id}"))
        }
    }

    /// Stores a finished backup from its staging directory; returns the bytes stored.
    pub async fn save(
        &self,
        id: &str,
        staged: &Path,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<u64> {
        match self {
            BackupStore::Local(dir) => {
                let to = dir.join(id);
                let _ = std::fs::remove_dir_all(&to);
                let (staged, dir) = (staged.to_path_buf(), dir.clone());
                let target = to.clone();
                tokio::task::spawn_blocking(move || {
                    crate::fsutil::sync_tree(&staged)?;
                    std::fs::rename(&staged, &target).map_err(io_err(&target))?;
                    crate::fsutil::sync_tree_root(&dir)
                })
                .await
                .map_err(|e| EngineError::Invalid(e.to_string()))??;
                Ok(dir_size(&to))
            }
            BackupStore::S3 { store, prefix, .. } => {
                let files = relative_files(staged)?;
                let total: u64 = files.iter().map(|(_, n)| n).sum();
                let mut sent = 0u64;
                // The manifest last: its presence marks a complete backup.
                let (mut body, manifest): (Vec<_>, Vec<_>) =
                    files.into_iter().partition(|(rel, _)| rel != MANIFEST);
                body.extend(manifest);
                for (rel, len) in body {
                    upload(store, &Self::key(prefix, id, &rel), &staged.join(&rel)).await?;
                    sent += len;
                    progress(Progress {
                        phase: "uploading".into(),
                        copied_bytes: sent,
                        total_bytes: total,
                    });
                }
                let _ = std::fs::remove_dir_all(staged);
                Ok(total)
            }
        }
    }

    /// Fills `datadir` (which must not exist) with a stored backup. True when every file was
    /// reflinked (local storage on a file system that shares blocks).
    pub async fn fetch_into(
        &self,
        id: &str,
        datadir: &Path,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<bool> {
        match self {
            BackupStore::Local(dir) => {
                let (from, to) = (dir.join(id), datadir.to_path_buf());
                if !from.join(MANIFEST).is_file() {
                    return Err(EngineError::Invalid(format!(
                        "backup {id} is not in {}",
                        dir.display()
                    )));
                }
                tokio::task::spawn_blocking(move || restore_into(&from, &to))
                    .await
                    .map_err(|e| EngineError::Invalid(e.to_string()))?
            }
            BackupStore::S3 { store, prefix, .. } => {
                let base = Self::backup_prefix(prefix, id);
                let mut objects = Vec::new();
                let mut list = store.list(Some(&base));
                while let Some(meta) = list.next().await {
                    objects.push(meta.map_err(err)?);
                }
                let total: u64 = objects.iter().map(|o| o.size).sum();
                let base_str = format!("{}/", base.as_ref());
                let rel = |o: &object_store::ObjectMeta| {
                    o.location
                        .as_ref()
                        .strip_prefix(&base_str)
                        .unwrap_or_default()
                        .to_string()
                };
                if !objects.iter().any(|o| rel(o) == MANIFEST) {
                    return Err(EngineError::Invalid(format!(
                        "backup {id} is not complete in object storage (no manifest)"
                    )));
                }
                let tmp = datadir.with_extension("copying");
                let _ = std::fs::remove_dir_all(&tmp);
                create_private_dir(&tmp)?;
                let mut got = 0u64;
                for o in &objects {
                    let r = rel(o);
                    if r.is_empty() || super::text::backup_metadata(&r) || r.contains("..") {
                        continue;
                    }
                    let to = tmp.join(&r);
                    if let Some(parent) = to.parent() {
                        create_private_dir(parent)?;
                    }
                    download(store, &o.location, &to).await?;
                    got += o.size;
                    progress(Progress {
                        phase: "downloading".into(),
                        copied_bytes: got,
                        total_bytes: total,
                    });
                }
                std::fs::rename(&tmp, datadir).map_err(io_err(datadir))?;
                Ok(false)
            }
        }
    }

    /// Removes a stored backup (and any staging left of it).
    pub async fn delete(&self, id: &str) -> Result<()> {
        let staging = self.staging_dir(id);
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(staging)).await;
        match self {
            BackupStore::Local(dir) => {
                let d = dir.join(id);
                let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(d)).await;
                Ok(())
            }
            BackupStore::S3 { store, prefix, .. } => {
                let base = Self::backup_prefix(prefix, id);
                let mut list = store.list(Some(&base));
                let mut keys = Vec::new();
                while let Some(meta) = list.next().await {
                    keys.push(meta.map_err(err)?.location);
                }
                // The manifest first: a half-deleted backup is never taken for a complete one.
                keys.sort_by_key(|k| !k.as_ref().ends_with(MANIFEST));
                for k in keys {
                    store.delete(&k).await.map_err(err)?;
                }
                Ok(())
            }
        }
    }
}

/// Files under `dir`, as `/`-separated relative paths with their sizes.
fn relative_files(dir: &Path) -> Result<Vec<(String, u64)>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) -> Result<()> {
        for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let e = e.map_err(io_err(dir))?;
            let p = e.path();
            let t = e.file_type().map_err(io_err(&p))?;
            if t.is_dir() {
                walk(root, &p, out)?;
            } else if t.is_file() {
                let rel = p
                    .strip_prefix(root)
                    .map_err(|e| EngineError::Invalid(e.to_string()))?
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, e.metadata().map_err(io_err(&p))?.len()));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

/// Part size of multipart uploads.
const PART: usize = 16 << 20;

async fn upload(store: &Arc<dyn ObjectStore>, key: &ObjectPath, file: &Path) -> Result<()> {
    use tokio::io::AsyncReadExt;
    let len = std::fs::metadata(file).map_err(io_err(file))?.len();
    let mut f = tokio::fs::File::open(file).await.map_err(io_err(file))?;
    if len as usize <= PART {
        let mut buf = Vec::with_capacity(len as usize);
        f.read_to_end(&mut buf).await.map_err(io_err(file))?;
        store.put(key, buf.into()).await.map_err(err)?;
        return Ok(());
    }
    let upload = store.put_multipart(key).await.map_err(err)?;
    let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).await.map_err(io_err(file))?;
        if n == 0 {
            break;
        }
        w.wait_for_capacity(4).await.map_err(err)?;
        w.write(&buf[..n]);
    }
    w.finish().await.map_err(err)?;
    Ok(())
}

async fn download(store: &Arc<dyn ObjectStore>, key: &ObjectPath, to: &Path) -> Result<()> {
    let mut stream = store.get(key).await.map_err(err)?.into_stream();
    let mut f = tokio::fs::File::create(to).await.map_err(io_err(to))?;
    while let Some(chunk) = stream.next().await {
        f.write_all(&chunk.map_err(err)?)
            .await
            .map_err(io_err(to))?;
    }
    f.flush().await.map_err(io_err(to))?;
    Ok(())
}
