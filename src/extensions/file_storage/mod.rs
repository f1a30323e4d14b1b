//! The `file_storage` extension: a directory where components keep state across restarts (the
//! `filelog` receiver's read offsets, persistent sending queues), with the collector's keys.

use crate::config::deserialize_duration;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileStorageConfig {
    pub directory: String,
    /// Create `directory` (mode 0750) when it does not exist, instead of failing.
    pub create_directory: bool,
    /// Sync every write to disk before it counts as done (survives a power loss, not only a
    /// crash): state files before they replace the old ones, each group commit of a persistent
    /// queue before its clients are answered.
    pub fsync: bool,
    /// How long a persistent queue waits at start for another holder of its files to let go.
    #[serde(deserialize_with = "deserialize_duration")]
    pub timeout: Duration,
    /// The collector's keys for compacting its database file; accepted so that its
    /// configurations load. switchyard has nothing to compact: a persistent queue deletes each
    /// segment file as soon as everything in it is delivered.
    pub compaction: Compaction,
}

/// `compaction` (see `FileStorageConfig::compaction`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Compaction {
    pub on_start: bool,
    pub on_rebound: bool,
    pub directory: Option<String>,
    pub max_transaction_size: Option<u64>,
    pub rebound_needed_threshold_mib: Option<u64>,
    pub rebound_trigger_threshold_mib: Option<u64>,
    #[serde(deserialize_with = "deserialize_duration")]
    pub check_interval: Duration,
    pub cleanup_on_start: bool,
}

impl Default for FileStorageConfig {
    fn default() -> Self {
        FileStorageConfig {
            directory: "/var/lib/otelcol/file_storage".into(),
            create_directory: false,
            fsync: false,
            timeout: Duration::from_secs(1),
            compaction: Compaction::default(),
        }
    }
}

impl FileStorageConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.directory.is_empty() {
            return Err(("directory".into(), "must not be empty".into()));
        }
        Ok(())
    }

    /// Checks (or creates) the directory at start; a state file is then written there.
    pub fn prepare(&self) -> Result<PathBuf, String> {
        let dir = PathBuf::from(&self.directory);
        if !dir.is_dir() {
            if !self.create_directory {
                return Err(format!(
                    "directory {} does not exist (create it, or set create_directory: true)",
                    dir.display()
                ));
            }
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(&dir)
                .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
        }
        let probe = dir.join(".switchyard-write-test");
        std::fs::write(&probe, b"")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| format!("directory {} is not writable: {e}", dir.display()))?;
        Ok(dir)
    }
}

/// The `file_storage` extension's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::extension::<FileStorageConfig>(
    "file_storage",
    "a directory for state kept across restarts (filelog offsets, persistent sending queues)",
);

impl crate::pipeline::component::ExtensionSettings for FileStorageConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        FileStorageConfig::validate(self).map_err(Into::into)
    }

    fn start(
        &self,
        ctx: crate::pipeline::component::ExtensionContext,
    ) -> crate::pipeline::BoxFuture<'_, Result<crate::pipeline::component::Tasks, String>> {
        Box::pin(async move {
            let dir = self.prepare()?;
            tracing::info!(extension = %ctx.name, directory = %dir.display(), "file storage ready");
            Ok(Vec::new())
        })
    }

    fn storage(&self) -> Option<Result<crate::pipeline::component::StorageLocation, String>> {
        Some(self.prepare().map(|directory| crate::pipeline::component::StorageLocation {
            directory,
            fsync: self.fsync,
            timeout: self.timeout,
        }))
    }
}
