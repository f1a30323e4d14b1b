//! The `file` exporter: appends every batch as one line of OTLP/JSON (an export request, readable
//! by any OTLP/JSON decoder), rotating the file by size and keeping a number of backups.

use crate::pipeline::{Batch, BoxFuture, ExportError, Exporter, Request};
use serde::Deserialize;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file to append to; created if missing.
    pub path: PathBuf,
    #[serde(default)]
    pub rotation: Option<RotationConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RotationConfig {
    /// Size at which the file is rotated, in MiB.
    pub max_megabytes: u64,
    /// Rotated files kept; older ones are deleted. 0 keeps all.
    pub max_backups: usize,
}

impl Default for RotationConfig {
    fn default() -> Self {
        RotationConfig { max_megabytes: 100, max_backups: 100 }
    }
}

impl FileConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.path.as_os_str().is_empty() {
            return Err(("path".into(), "must not be empty".into()));
        }
        if let Some(r) = &self.rotation
            && r.max_megabytes == 0
        {
            return Err(("rotation.max_megabytes".into(), "must be at least 1".into()));
        }
        Ok(())
    }
}

struct Output {
    writer: BufWriter<File>,
    size: u64,
}

pub struct FileExporter {
    path: PathBuf,
    rotation: Option<RotationConfig>,
    out: Mutex<Output>,
}

impl FileExporter {
    /// Opens (creating) the file, so that a bad path fails at start, not at the first batch.
    pub fn open(cfg: FileConfig) -> Result<FileExporter, String> {
        if let Some(dir) = cfg.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
        }
        let out = open(&cfg.path)?;
        Ok(FileExporter { path: cfg.path, rotation: cfg.rotation, out: Mutex::new(out) })
    }

    fn write(&self, batch: &Batch) -> Result<(), ExportError> {
        let request = batch.request().map_err(|e| ExportError::Permanent { reason: e.to_string() })?;
        let mut line = to_json_line(request).map_err(|e| ExportError::Permanent { reason: e })?;
        line.push('\n');
        let mut out = self.out.lock().map_err(|_| ExportError::Permanent { reason: "file writer poisoned".into() })?;
        if let Some(r) = &self.rotation
            && out.size > 0
            && out.size + line.len() as u64 > r.max_megabytes * 1024 * 1024
        {
            out.writer.flush().map_err(io_err)?;
            self.rotate(r).map_err(|reason| ExportError::Permanent { reason })?;
            *out = open(&self.path).map_err(|reason| ExportError::Permanent { reason })?;
        }
        out.writer.write_all(line.as_bytes()).map_err(io_err)?;
        out.writer.flush().map_err(io_err)?;
        out.size += line.len() as u64;
        Ok(())
    }

    /// Renames the current file to `name-<UTC time>.ext` and deletes backups over the limit.
    fn rotate(&self, r: &RotationConfig) -> Result<(), String> {
        let stem = self.path.file_stem().and_then(|s| s.to_str()).unwrap_or("output");
        let ext = self.path.extension().and_then(|s| s.to_str()).map(|e| format!(".{e}")).unwrap_or_default();
        let stamp = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string().replace(':', "-");
        let stamp = stamp.trim_end_matches('Z');
        let backup = self.path.with_file_name(format!("{stem}-{stamp}{ext}"));
        std::fs::rename(&self.path, &backup).map_err(|e| format!("cannot rotate {}: {e}", self.path.display()))?;
        if r.max_backups > 0 {
            let mut backups = list_backups(&self.path, stem, &ext);
            backups.sort();
            while backups.len() > r.max_backups {
                let old = backups.remove(0);
                if let Err(e) = std::fs::remove_file(&old) {
                    tracing::warn!(file = %old.display(), error = %e, "cannot delete old backup");
                }
            }
        }
        Ok(())
    }
}

fn list_backups(path: &Path, stem: &str, ext: &str) -> Vec<PathBuf> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let prefix = format!("{stem}-");
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(ext) && p != path)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn open(path: &Path) -> Result<Output, String> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok(Output { writer: BufWriter::new(file), size })
}

fn io_err(e: std::io::Error) -> ExportError {
    ExportError::Permanent { reason: format!("cannot write file: {e}") }
}

/// One export request as a single line of OTLP/JSON.
pub fn to_json_line(request: &Request) -> Result<String, String> {
    let r = match request {
        Request::Traces(t) => serde_json::to_string(t),
        Request::Metrics(m) => serde_json::to_string(m),
        Request::Logs(l) => serde_json::to_string(l),
    };
    r.map_err(|e| e.to_string())
}

impl Exporter for FileExporter {
    fn export<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(async move { self.write(batch) })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Ok(mut out) = self.out.lock()
                && let Err(e) = out.writer.flush()
            {
                tracing::error!(file = %self.path.display(), error = %e, "cannot flush file on shutdown");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::tests_support::traces;

    #[tokio::test]
    async fn rotates_by_size_and_keeps_max_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let cfg =
            FileConfig { path: path.clone(), rotation: Some(RotationConfig { max_megabytes: 1, max_backups: 2 }) };
        let exporter = FileExporter::open(cfg).unwrap();
        // ~250 KiB per line: four lines fill a 1 MiB file.
        let batch = Batch::from_request(Request::Traces(traces(2500)));
        for _ in 0..20 {
            exporter.export(&batch).await.unwrap();
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        exporter.shutdown().await;
        let backups = list_backups(&path, "out", ".jsonl");
        assert_eq!(backups.len(), 2, "{backups:?}");
        let current = std::fs::read_to_string(&path).unwrap();
        assert!(current.len() <= 1024 * 1024);
        for line in current.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["resourceSpans"][0]["scopeSpans"][0]["spans"].as_array().unwrap().len(), 2500);
        }
    }
}
