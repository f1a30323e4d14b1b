//! The `file` exporter: appends every batch as one line of OTLP/JSON (an export request, readable
//! by any OTLP/JSON decoder), rotating the file by size and age and keeping a number of backups.
//! Writes run on the blocking thread pool, so a slow disk (or a pipe nobody reads) holds up only
//! this exporter's queue.

use crate::config::deserialize_duration;
use crate::pipeline::{Batch, BoxFuture, ExportError, Exporter, Request};
use serde::Deserialize;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file to write; created if missing.
    pub path: PathBuf,
    /// Rotation by size; on when the key is present, even with no settings.
    #[serde(default, deserialize_with = "crate::config::present")]
    pub rotation: Option<RotationConfig>,
    /// Keep what the file already holds (true) or start it empty (false, the collector's default).
    #[serde(default)]
    pub append: bool,
    /// `json` is the only format written.
    #[serde(default)]
    pub format: Format,
    /// Longest time written data may sit in a buffer. switchyard writes every batch straight to
    /// the file, so any value is met.
    #[serde(default = "default_flush_interval", deserialize_with = "deserialize_duration")]
    pub flush_interval: Duration,
}

fn default_flush_interval() -> Duration {
    Duration::from_secs(1)
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RotationConfig {
    /// Size at which the file is rotated, in MiB.
    pub max_megabytes: u64,
    /// Days a rotated file is kept; 0 keeps them regardless of age.
    pub max_days: u64,
    /// Rotated files kept; older ones are deleted. 0 keeps all.
    pub max_backups: usize,
}

impl Default for RotationConfig {
    fn default() -> Self {
        RotationConfig { max_megabytes: 100, max_days: 0, max_backups: 100 }
    }
}

impl FileConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.path.as_os_str().is_empty() {
            return Err(("path".into(), "must not be empty".into()));
        }
        if let Some(r) = &self.rotation
            && !(1..=1024 * 1024).contains(&r.max_megabytes)
        {
            return Err(("rotation.max_megabytes".into(), "must be between 1 and 1048576".into()));
        }
        Ok(())
    }
}

struct Output {
    file: File,
    size: u64,
}

/// The open file and what rotation needs, shared with the blocking writes.
struct Writer {
    path: PathBuf,
    rotation: Option<RotationConfig>,
    out: Mutex<Output>,
}

pub struct FileExporter {
    writer: Arc<Writer>,
}

impl FileExporter {
    /// Opens (creating) the file, so that a bad path fails at start, not at the first batch.
    pub fn open(cfg: FileConfig) -> Result<FileExporter, String> {
        if let Some(dir) = cfg.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
        }
        let out = open(&cfg.path, cfg.append)?;
        Ok(FileExporter { writer: Arc::new(Writer { path: cfg.path, rotation: cfg.rotation, out: Mutex::new(out) }) })
    }
}

impl Writer {
    /// Writes one request as one line, whole: on a failed write the file is cut back to where the
    /// line began, so a retry never appends to half a line. The JSON goes straight to the file
    /// through a small buffer; a large request is never held as one string as well.
    fn write_request(&self, request: &Request) -> Result<(), ExportError> {
        let mut out = self.out.lock().map_err(|_| ExportError::Permanent { reason: "file writer poisoned".into() })?;
        if let Some(r) = &self.rotation
            && out.size > 0
        {
            let mut counted = Counting { inner: std::io::sink(), written: 0 };
            write_json(request, &mut counted).map_err(|reason| ExportError::Permanent { reason })?;
            if out.size + counted.written + 1 > r.max_megabytes * 1024 * 1024 {
                self.rotate(r).map_err(|reason| ExportError::Retryable { after: None, reason })?;
                *out = open(&self.path, false).map_err(|reason| ExportError::Retryable { after: None, reason })?;
            }
        }
        let start = out.size;
        let mut line = std::io::BufWriter::with_capacity(64 * 1024, Counting { inner: &mut out.file, written: 0 });
        let written = write_json(request, &mut line)
            .and_then(|()| line.write_all(b"\n").map_err(|e| e.to_string()))
            .and_then(|()| line.flush().map_err(|e| e.to_string()))
            .map(|()| line.get_ref().written);
        drop(line);
        match written {
            Ok(n) => {
                out.size += n;
                Ok(())
            }
            Err(e) => {
                let _ = out.file.set_len(start);
                let _ = out.file.seek(SeekFrom::Start(start));
                Err(ExportError::Retryable {
                    after: None,
                    reason: format!("cannot write {}: {e}", self.path.display()),
                })
            }
        }
    }

    /// Renames the current file to `name-<UTC time>.ext` and deletes backups over the limits.
    fn rotate(&self, r: &RotationConfig) -> Result<(), String> {
        let (stem, ext) = stem_and_ext(&self.path);
        let stamp = humantime::format_rfc3339_millis(SystemTime::now()).to_string().replace(':', "-");
        let stamp = stamp.trim_end_matches('Z');
        let mut backup = self.path.with_file_name(format!("{stem}-{stamp}{ext}"));
        let mut n = 1;
        while backup.exists() {
            backup = self.path.with_file_name(format!("{stem}-{stamp}.{n}{ext}"));
            n += 1;
        }
        std::fs::rename(&self.path, &backup).map_err(|e| format!("cannot rotate {}: {e}", self.path.display()))?;
        let mut backups = list_backups(&self.path);
        backups.sort();
        let too_old = |p: &PathBuf| {
            r.max_days > 0
                && std::fs::metadata(p)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > Duration::from_secs(r.max_days * 86_400))
        };
        let excess = if r.max_backups > 0 { backups.len().saturating_sub(r.max_backups) } else { 0 };
        for (i, old) in backups.iter().enumerate() {
            if (i < excess || too_old(old))
                && let Err(e) = std::fs::remove_file(old)
            {
                tracing::warn!(file = %old.display(), error = %e, "cannot delete old backup");
            }
        }
        Ok(())
    }
}

fn stem_and_ext(path: &Path) -> (String, String) {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("output").to_string();
    let ext = path.extension().and_then(|s| s.to_str()).map(|e| format!(".{e}")).unwrap_or_default();
    (stem, ext)
}

/// Backups of `path`: `stem-YYYY-MM-DDTHH-MM-SS.mmm[.n].ext` beside it, and nothing else.
fn list_backups(path: &Path) -> Vec<PathBuf> {
    let (stem, ext) = stem_and_ext(path);
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let is_backup = |name: &str| {
        let Some(middle) = name.strip_prefix(&format!("{stem}-")).and_then(|m| m.strip_suffix(ext.as_str())) else {
            return false;
        };
        let (stamp, rest) = middle.split_at(middle.len().min(23));
        let shape = "dddd-dd-ddTdd-dd-dd.ddd";
        stamp.len() == 23
            && stamp.chars().zip(shape.chars()).all(|(c, s)| if s == 'd' { c.is_ascii_digit() } else { c == s })
            && (rest.is_empty() || rest.strip_prefix('.').is_some_and(|n| n.chars().all(|c| c.is_ascii_digit())))
    };
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(is_backup))
                .collect()
        })
        .unwrap_or_default()
}

fn open(path: &Path, append: bool) -> Result<Output, String> {
    let mut options = OpenOptions::new();
    options.create(true);
    if append {
        options.append(true);
    } else {
        options.write(true).truncate(true);
    }
    let file = options.open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok(Output { file, size })
}

/// A writer that counts the bytes it passes on.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// One export request as OTLP/JSON, written to `w` (no line end).
fn write_json(request: &Request, w: impl Write) -> Result<(), String> {
    let r = match request {
        Request::Traces(t) => serde_json::to_writer(w, t),
        Request::Metrics(m) => serde_json::to_writer(w, m),
        Request::Logs(l) => serde_json::to_writer(w, l),
    };
    r.map_err(|e| e.to_string())
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
        Box::pin(async move {
            let batch = batch.data_only();
            let writer = self.writer.clone();
            tokio::task::spawn_blocking(move || {
                let request = batch.request().map_err(|e| ExportError::Permanent { reason: e.to_string() })?;
                writer.write_request(request)
            })
            .await
            .map_err(|e| ExportError::Permanent { reason: format!("file writer task failed: {e}") })?
        })
    }
}

/// The `file` exporter's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::exporter::<FileConfig>(
    "file",
    crate::registry::ALL_SIGNALS,
    "appends OTLP/JSON lines to a file, with rotation",
);

impl crate::pipeline::component::ExporterSettings for FileConfig {
    fn destination(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn validate(&self) -> crate::pipeline::component::Checked {
        FileConfig::validate(self).map_err(Into::into)
    }

    fn build<'a>(
        &'a self,
        _ctx: &'a crate::pipeline::component::ExporterContext,
    ) -> crate::pipeline::BoxFuture<'a, Result<std::sync::Arc<dyn crate::pipeline::Exporter>, String>> {
        Box::pin(async move { Ok(std::sync::Arc::new(FileExporter::open(self.clone())?) as _) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::tests_support::traces;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn rotates_by_size_and_keeps_max_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(dir.path().join("out-extra.jsonl"), "not a backup").unwrap();
        let cfg = FileConfig {
            path: path.clone(),
            rotation: Some(RotationConfig { max_megabytes: 1, max_days: 0, max_backups: 2 }),
            append: false,
            format: Format::Json,
            flush_interval: Duration::from_secs(1),
        };
        let exporter = FileExporter::open(cfg).unwrap();
        // ~250 KiB per line: four lines fill a 1 MiB file.
        let batch = Batch::from_request(Request::Traces(traces(2500)));
        for _ in 0..20 {
            exporter.export(&batch).await.unwrap();
        }
        let backups = list_backups(&path);
        assert_eq!(backups.len(), 2, "{backups:?}");
        let current = std::fs::read_to_string(&path).unwrap();
        assert!(current.len() <= 1024 * 1024);
        assert!(dir.path().join("out-extra.jsonl").exists(), "a file that only looks similar is kept");
        for line in current.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["resourceSpans"][0]["scopeSpans"][0]["spans"].as_array().unwrap().len(), 2500);
        }
    }
}
