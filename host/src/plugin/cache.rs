//! The on-disk cache of compiled plugins: one `<hash>.cwasm` per plugin version and engine, kept in
//! least-recently-used order by file time, and bounded in size, because every rebuilt plugin and every
//! new tributary version adds entries that nothing else ever removes.

use std::path::Path;
use std::time::{Duration, SystemTime};

/// The most the cache may hold: a compiled plugin is 0.3-1 MB, so this keeps hundreds.
pub const MAX_BYTES: u64 = 256 << 20;

/// Leftovers of a write that a crash interrupted are removed after this long.
const STALE_TMP: Duration = Duration::from_secs(3600);

/// Marks an entry as just used, so pruning keeps it longest. Best effort: the cache only saves time.
pub fn touch(path: &Path) {
    if let Ok(f) = std::fs::File::options().append(true).open(path) {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// Removes the least recently used entries until the cache holds at most `max` bytes, and temporary
/// files left by interrupted writes. Returns how many entries it removed.
pub fn prune(dir: &Path, max: u64) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut kept: Vec<(SystemTime, u64, std::path::PathBuf)> = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        match path.extension().and_then(|e| e.to_str()) {
            Some("cwasm") => kept.push((modified, meta.len(), path)),
            Some("tmp") if now.duration_since(modified).unwrap_or_default() > STALE_TMP => {
                let _ = std::fs::remove_file(&path);
            }
            _ => {}
        }
    }
    // Newest first: what is kept is the most recently used that fits.
    kept.sort_by_key(|k| std::cmp::Reverse(k.0));
    let mut total = 0;
    let mut removed = 0;
    for (_, len, path) in kept {
        total += len;
        if total > max && std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_the_most_recently_used_within_the_bound() {
        let dir = std::env::temp_dir().join(format!("tributary-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let old = SystemTime::now() - Duration::from_secs(7200);
        for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
            let path = dir.join(format!("{name}.cwasm"));
            std::fs::write(&path, vec![0u8; 100]).unwrap();
            let f = std::fs::File::options().append(true).open(&path).unwrap();
            f.set_modified(old + Duration::from_secs(i as u64 * 60))
                .unwrap();
        }
        // `a` is the oldest, but used just now.
        touch(&dir.join("a.cwasm"));
        let tmp = dir.join("e.tmp");
        std::fs::write(&tmp, b"half").unwrap();
        std::fs::File::options()
            .append(true)
            .open(&tmp)
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::fs::write(dir.join("notes.txt"), b"not ours").unwrap();

        assert_eq!(prune(&dir, 250), 2);
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["a.cwasm", "d.cwasm", "notes.txt"]);
        assert_eq!(prune(&dir, 250), 0, "within the bound: nothing to do");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
