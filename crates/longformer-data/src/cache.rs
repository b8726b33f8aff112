//! The on-disk cache of prepared chunks, keyed by a SHA-256 of (file contents,
//! tokenizer, settings, format version).
//!
//! Format (little-endian): magic `LFWH`, `u32` version, the 32-byte key, `u64` length +
//! the summary as JSON, `u64` chunk count, then per chunk: `u32` id length + id bytes,
//! `u32` chunk, num_chunks, answer_index, global_len, `u32` token count + tokens,
//! `u32` candidate count + `[ent]` positions. A file that fails any check is a miss.

use std::io::Write;
use std::path::Path;

use crate::layout::WikiHopChunk;
use crate::summary::Summary;

const MAGIC: &[u8; 4] = b"LFWH";
/// Bump when the layout, the records kept or this format change: old caches then miss.
/// Version 2: records with a duplicate id are skipped (version 1 caches may hold them merged).
/// Version 3: records whose query or candidates a lossy tokenizer empties, or whose candidates
/// it merges, are skipped.
pub(crate) const FORMAT_VERSION: u32 = 3;

/// Writes a cache file atomically (temporary file, then rename).
pub(crate) fn save(
    path: &Path,
    key: &[u8; 32],
    summary: &Summary,
    chunks: &[WikiHopChunk],
) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot create the cache directory {}: {e}", dir.display()),
        )
    })?;
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(key);
    let summary_json = serde_json::to_vec(summary).map_err(std::io::Error::other)?;
    out.extend_from_slice(&(summary_json.len() as u64).to_le_bytes());
    out.extend_from_slice(&summary_json);
    out.extend_from_slice(&(chunks.len() as u64).to_le_bytes());
    let put = |out: &mut Vec<u8>, v: usize| out.extend_from_slice(&(v as u32).to_le_bytes());
    for chunk in chunks {
        put(&mut out, chunk.id.len());
        out.extend_from_slice(chunk.id.as_bytes());
        for v in [
            chunk.chunk,
            chunk.num_chunks,
            chunk.answer_index,
            chunk.global_len,
        ] {
            put(&mut out, v);
        }
        for list in [&chunk.input_ids, &chunk.predicted_indices] {
            put(&mut out, list.len());
            for v in list.iter() {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    let mut tmp = tempfile_in(dir)?;
    tmp.1.write_all(&out)?;
    tmp.1.sync_all()?;
    drop(tmp.1);
    std::fs::rename(&tmp.0, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp.0);
    })
}

/// A uniquely named new file in `dir`.
fn tempfile_in(dir: &Path) -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let path = dir.join(format!(".tmp-{}-{stamp}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((path, file))
}

/// Reads a cache file: `Ok(None)` when absent, `Err(reason)` when unusable.
pub(crate) fn load(
    path: &Path,
    key: &[u8; 32],
) -> Result<Option<(Summary, Vec<WikiHopChunk>)>, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let mut r = Reader {
        bytes: &bytes,
        pos: 0,
    };
    if r.take(4)? != MAGIC {
        return Err("not a longformer-data cache file".into());
    }
    if r.u32()? != FORMAT_VERSION as usize {
        return Err("written by another format version".into());
    }
    if r.take(32)? != key {
        return Err("key mismatch".into());
    }
    let summary_len = r.u64()?;
    let summary: Summary =
        serde_json::from_slice(r.take(summary_len)?).map_err(|e| format!("summary: {e}"))?;
    let count = r.u64()?;
    let mut chunks = Vec::with_capacity(count.min(bytes.len() / 24));
    for _ in 0..count {
        let id_len = r.u32()?;
        let id = String::from_utf8(r.take(id_len)?.to_vec()).map_err(|e| e.to_string())?;
        let (chunk, num_chunks, answer_index, global_len) =
            (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
        let input_ids = r.u32_list()?;
        let predicted_indices = r.u32_list()?;
        chunks.push(WikiHopChunk {
            id,
            chunk,
            num_chunks,
            input_ids,
            global_len,
            predicted_indices,
            answer_index,
        });
    }
    if r.pos != bytes.len() {
        return Err("trailing bytes".into());
    }
    Ok(Some((summary, chunks)))
}

/// A bounds-checked little-endian reader.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| "file is cut short".to_owned())?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn u32(&mut self) -> Result<usize, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn u64(&mut self) -> Result<usize, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        usize::try_from(u64::from_le_bytes(a)).map_err(|e| e.to_string())
    }

    fn u32_list(&mut self) -> Result<Vec<u32>, String> {
        let n = self.u32()?;
        let raw = self.take(n.checked_mul(4).ok_or("length overflow")?)?;
        Ok(raw
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks() -> Vec<WikiHopChunk> {
        vec![WikiHopChunk {
            id: "WH_1".into(),
            chunk: 1,
            num_chunks: 3,
            input_ids: vec![0, 70000, 2],
            global_len: 2,
            predicted_indices: vec![1],
            answer_index: 0,
        }]
    }

    #[test]
    fn round_trip_and_corruption_checks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.bin");
        let key = [7u8; 32];
        let summary = Summary::default();
        assert_eq!(load(&path, &key).unwrap(), None);
        save(&path, &key, &summary, &chunks()).unwrap();
        let (s, c) = load(&path, &key).unwrap().unwrap();
        assert_eq!((s, c), (summary, chunks()));
        assert_eq!(load(&path, &[8u8; 32]).unwrap_err(), "key mismatch");
        let bytes = std::fs::read(&path).unwrap();
        for cut in [3, 10, 45, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(load(&path, &key).is_err(), "cut at {cut}");
        }
    }
}
