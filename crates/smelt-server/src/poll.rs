//! `--model-control-mode=poll`: every `--repository-poll-secs` the repositories
//! are scanned again and the served models follow them. A model folder that
//! appeared is loaded, one whose files changed (config.pbtxt, a version's model
//! file, any file under the folder) is reloaded, one that disappeared is removed.
//!
//! A reload goes through [`ModelRegistry::load_blocking`], which keeps the old
//! versions serving until the new ones are ready and then swaps them in one step:
//! requests already running finish on the version they hold, later ones get the
//! new one. Removed versions go with the reload, since the new version table only
//! holds what is on disk.
//!
//! A change is seen by comparing each file's size, modification time and (on
//! Unix) inode with the previous scan; contents are not read, so polling costs a
//! few `stat` calls per file however large the models are. Replacing a file by
//! renaming a new one over it, as careful deployments do, changes the inode even
//! when size and time happen to match.

use crate::models::{LoadOverride, ModelRegistry};
use crate::repository;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// How deep under a model folder files are looked at: the folder, its version
/// folders, and two levels below those (external data kept in subfolders).
const MAX_DEPTH: usize = 4;

/// One file as a scan saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

/// Every file under a model's folder (or folders, when the name is in more than
/// one repository), by path.
type ModelFingerprint = BTreeMap<PathBuf, FileStamp>;

/// What the repositories held at one scan: each model name with its fingerprint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepositorySnapshot {
    models: BTreeMap<String, ModelFingerprint>,
}

/// What changed between two snapshots.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RepositoryChanges {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl RepositoryChanges {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(FileStamp { len: meta.len(), modified: meta.modified().ok(), inode })
}

/// Records every file under `dir` (hidden entries skipped, as the scan skips
/// them). A file that vanishes mid-walk is simply not recorded: the next scan
/// sees the folder as it then is.
fn fingerprint_into(dir: &Path, depth: usize, into: &mut ModelFingerprint) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            // The folder itself counts too, so an emptied version folder is a change.
            if let Some(s) = stamp(&path) {
                into.insert(path.clone(), FileStamp { len: 0, modified: None, ..s });
            }
            if depth + 1 < MAX_DEPTH {
                fingerprint_into(&path, depth + 1, into);
            }
        } else if let Some(s) = stamp(&path) {
            into.insert(path, s);
        }
    }
}

impl RepositorySnapshot {
    /// Scans the repositories. An unreadable repository is an error (the caller
    /// keeps serving what it has rather than unloading everything).
    pub fn take(repositories: &[PathBuf]) -> Result<RepositorySnapshot, String> {
        let scan = repository::scan(repositories)?;
        let mut models = BTreeMap::new();
        for (name, source) in &scan.models {
            let mut fingerprint = ModelFingerprint::new();
            fingerprint_into(&source.dir, 0, &mut fingerprint);
            models.insert(name.clone(), fingerprint);
        }
        for (name, dirs) in &scan.duplicates {
            let mut fingerprint = ModelFingerprint::new();
            for dir in dirs {
                fingerprint.insert(dir.clone(), FileStamp { len: 0, modified: None, inode: 0 });
                fingerprint_into(dir, 0, &mut fingerprint);
            }
            models.insert(name.clone(), fingerprint);
        }
        Ok(RepositorySnapshot { models })
    }

    pub fn model_names(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }

    /// What `newer` has that this snapshot had not, had differently, or lost.
    pub fn changes_to(&self, newer: &RepositorySnapshot) -> RepositoryChanges {
        let mut changes = RepositoryChanges::default();
        for (name, fingerprint) in &newer.models {
            match self.models.get(name) {
                None => changes.added.push(name.clone()),
                Some(old) if old != fingerprint => changes.changed.push(name.clone()),
                Some(_) => {}
            }
        }
        changes.removed = self.models.keys().filter(|n| !newer.models.contains_key(*n)).cloned().collect();
        changes
    }
}

/// Keeps the registry in step with the repositories.
pub struct RepositoryPoller {
    registry: Arc<ModelRegistry>,
    repositories: Vec<PathBuf>,
    seen: RepositorySnapshot,
}

impl RepositoryPoller {
    /// Records what the repositories hold now. Take it before the startup load, so
    /// that a change made while models load is picked up by the first poll.
    pub fn new(registry: Arc<ModelRegistry>, repositories: Vec<PathBuf>) -> RepositoryPoller {
        let seen = RepositorySnapshot::take(&repositories).unwrap_or_else(|e| {
            tracing::warn!("repository poll: {e}");
            RepositorySnapshot::default()
        });
        RepositoryPoller { registry, repositories, seen }
    }

    /// Scans once and applies what changed. Blocking (it loads models): call it
    /// off the async threads. Returns what it found changed.
    pub fn poll_once(&mut self) -> RepositoryChanges {
        let now = match RepositorySnapshot::take(&self.repositories) {
            Ok(now) => now,
            Err(e) => {
                tracing::warn!("repository poll skipped, models keep serving as they are: {e}");
                return RepositoryChanges::default();
            }
        };
        let changes = self.seen.changes_to(&now);
        for name in &changes.removed {
            tracing::info!("repository poll: model '{name}' was removed from the repositories; unloading it");
            if let Err(e) = self.registry.remove(name) {
                tracing::error!("repository poll: {e}");
            }
        }
        for (name, what) in
            changes.added.iter().map(|n| (n, "added")).chain(changes.changed.iter().map(|n| (n, "changed")))
        {
            tracing::info!("repository poll: model '{name}' {what}; loading it");
            // A failed load is logged and leaves the versions already serving in
            // place; the folder's next change triggers another try.
            if let Err(e) = self.registry.load_blocking(name, LoadOverride::default()) {
                tracing::error!("repository poll: {e}");
            }
        }
        self.seen = now;
        changes
    }

    /// Polls every `interval` until `stop` turns true.
    pub async fn run(mut self, interval: Duration, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let poller = self;
            match tokio::task::spawn_blocking(move || {
                let mut poller = poller;
                poller.poll_once();
                poller
            })
            .await
            {
                Ok(back) => self = back,
                Err(e) => {
                    tracing::error!("repository polling stopped: {e}");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{ModelControlMode, RegistryOptions};
    use smelt_runtime::SessionOptions;

    fn example_model() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/model_repository/simple_cnn/1/model.onnx")
    }

    /// `<repo>/<name>/<v>/model.onnx` copied from the bundled example, no config.
    fn add_version(repo: &Path, name: &str, version: i64) {
        let dir = repo.join(name).join(version.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(example_model(), dir.join("model.onnx")).unwrap();
    }

    fn registry(repo: &Path) -> Arc<ModelRegistry> {
        Arc::new(ModelRegistry::new(RegistryOptions {
            repositories: vec![repo.to_path_buf()],
            strict_config: false,
            control_mode: ModelControlMode::Poll,
            session: SessionOptions { threads: Some(1), ..SessionOptions::default() },
        }))
    }

    #[test]
    fn snapshots_see_added_changed_and_removed_models() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        add_version(repo, "a", 1);
        add_version(repo, "b", 1);
        let first = RepositorySnapshot::take(&[repo.to_path_buf()]).unwrap();
        assert_eq!(first.model_names().collect::<Vec<_>>(), vec!["a", "b"]);
        assert!(first.changes_to(&RepositorySnapshot::take(&[repo.to_path_buf()]).unwrap()).is_empty());

        add_version(repo, "c", 1);
        std::fs::write(repo.join("a/config.pbtxt"), "max_batch_size: 2").unwrap();
        std::fs::remove_dir_all(repo.join("b")).unwrap();
        let second = RepositorySnapshot::take(&[repo.to_path_buf()]).unwrap();
        let changes = first.changes_to(&second);
        assert_eq!(changes.added, vec!["c"]);
        assert_eq!(changes.changed, vec!["a"]);
        assert_eq!(changes.removed, vec!["b"]);

        // A new version folder, a removed one, and a model file replaced by a
        // rename (same size) are each a change of the model.
        add_version(repo, "c", 2);
        let third = RepositorySnapshot::take(&[repo.to_path_buf()]).unwrap();
        assert_eq!(second.changes_to(&third).changed, vec!["c"]);
        std::fs::remove_dir_all(repo.join("c/2")).unwrap();
        let fourth = RepositorySnapshot::take(&[repo.to_path_buf()]).unwrap();
        assert_eq!(third.changes_to(&fourth).changed, vec!["c"]);
        std::fs::copy(example_model(), repo.join("c/1/model.onnx.new")).unwrap();
        std::fs::rename(repo.join("c/1/model.onnx.new"), repo.join("c/1/model.onnx")).unwrap();
        let fifth = RepositorySnapshot::take(&[repo.to_path_buf()]).unwrap();
        assert_eq!(fourth.changes_to(&fifth).changed, vec!["c"]);

        // Hidden files (editors' swap files) are not changes.
        std::fs::write(repo.join("c/.config.pbtxt.swp"), "x").unwrap();
        assert!(fifth.changes_to(&RepositorySnapshot::take(&[repo.to_path_buf()]).unwrap()).is_empty());
    }

    #[test]
    fn polling_loads_reloads_and_unloads() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        add_version(repo, "a", 1);
        let registry = registry(repo);
        let mut poller = RepositoryPoller::new(registry.clone(), vec![repo.to_path_buf()]);
        registry.load_at_startup(&[]).unwrap();
        let before = registry.ready_version("a", "").unwrap();
        assert!(poller.poll_once().is_empty());
        assert!(Arc::ptr_eq(&before, &registry.ready_version("a", "").unwrap()), "nothing changed, nothing reloaded");

        // A new model is loaded.
        add_version(repo, "b", 1);
        let changes = poller.poll_once();
        assert_eq!(changes.added, vec!["b"]);
        assert_eq!(registry.ready_versions("b"), vec![1]);

        // A replaced model file reloads the model; a request holding the old
        // version keeps it.
        std::fs::copy(example_model(), repo.join("a/1/model.onnx.new")).unwrap();
        std::fs::rename(repo.join("a/1/model.onnx.new"), repo.join("a/1/model.onnx")).unwrap();
        assert_eq!(poller.poll_once().changed, vec!["a"]);
        let after = registry.ready_version("a", "").unwrap();
        assert!(!Arc::ptr_eq(&before, &after), "the changed model was reloaded");
        assert_eq!(before.version, 1);

        // A new version is served (the default policy serves the latest only), and
        // removing it goes back to version 1.
        add_version(repo, "a", 2);
        poller.poll_once();
        assert_eq!(registry.ready_versions("a"), vec![2]);
        std::fs::remove_dir_all(repo.join("a/2")).unwrap();
        poller.poll_once();
        assert_eq!(registry.ready_versions("a"), vec![1]);

        // A config that breaks the model keeps the old version serving.
        std::fs::write(repo.join("a/config.pbtxt"), "max_batch_size: -3").unwrap();
        poller.poll_once();
        assert_eq!(registry.ready_versions("a"), vec![1]);
        std::fs::remove_file(repo.join("a/config.pbtxt")).unwrap();
        poller.poll_once();

        // A removed model is gone: requests for it find no such model.
        std::fs::remove_dir_all(repo.join("b")).unwrap();
        assert_eq!(poller.poll_once().removed, vec!["b"]);
        let err = registry.ready_version("b", "").err().expect("b is removed");
        assert_eq!(err.kind, crate::ErrorKind::NotFound, "{err}");
        assert!(registry.index(false).unwrap().iter().all(|row| row.name != "b"));
        assert_eq!(registry.ready_versions("a"), vec![1]);
    }
}
