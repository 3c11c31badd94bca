//! Reload triggers: the pipeline file changing on disk, debounced.
//!
//! The watch is on the file's *directory*, not the file: editors that save by writing a
//! new file and renaming it over the old one (vim, many IDEs) replace the inode, which a
//! watch on the file itself would lose after the first save.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Keeps the watch alive; dropping it stops watching.
pub struct FileWatch {
    _watcher: RecommendedWatcher,
}

/// Send `()` on `reloads` once the file at `path` has changed and then been quiet for
/// `debounce`.
pub fn watch_file(
    path: &Path,
    debounce: Duration,
    reloads: mpsc::Sender<()>,
) -> notify::Result<FileWatch> {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let directory = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let file_name = path.file_name().map(|n| n.to_os_string());
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        let ours = event
            .paths
            .iter()
            .any(|p| p.file_name().map(|n| n.to_os_string()) == file_name);
        if ours {
            let _ = raw_tx.send(());
        }
    })?;
    watcher.watch(&directory, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            // Wait until the burst of events of one save is over.
            loop {
                match tokio::time::timeout(debounce, raw_rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if reloads.send(()).await.is_err() {
                return;
            }
        }
    });
    Ok(FileWatch { _watcher: watcher })
}
