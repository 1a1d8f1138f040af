//! On-disk spool: an append-only file of records (`u32` key length, `u32` payload length,
//! key, payload; little endian) read from a persisted offset. Messages that could not be
//! sent wait here, in order, until the broker takes them; they survive a restart of the
//! pipeline (the next start replays them first).
//!
//! Files: `<dir>/<name>.spool` and `<dir>/<name>.offset` (the read offset, decimal). The
//! spool holds at most `max_bytes` of unsent records; an append beyond that is refused
//! (the caller counts it as dropped). A record torn by a crash is cut off at open.

use super::Record;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const HEADER: u64 = 8;

/// The spool of one element.
pub struct Spool {
    path: PathBuf,
    offset_path: PathBuf,
    file: File,
    /// Offset of the first unsent record.
    read_offset: u64,
    /// Length of the file (end of the last complete record).
    len: u64,
    /// Unsent records.
    records: usize,
    max_bytes: u64,
    /// Records consumed since the read offset was last written to disk.
    unsaved: usize,
}

/// The read offset is written to disk once this many records were consumed (and when the
/// spool empties or closes): a crash replays at most this many acknowledged messages again
/// (delivery is at least once), and replay does not write a file per message.
const SAVE_EVERY: usize = 64;

impl Spool {
    /// Opens (or creates) the spool `name` in `dir`.
    pub fn open(dir: &Path, name: &str, max_bytes: u64) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{name}.spool"));
        let offset_path = dir.join(format!("{name}.offset"));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let size = file.metadata()?.len();
        let mut read_offset = std::fs::read_to_string(&offset_path)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if read_offset > size {
            read_offset = 0;
        }
        // Count the complete records after the read offset; cut off a torn tail.
        let mut records = 0;
        let mut pos = read_offset;
        file.seek(SeekFrom::Start(pos))?;
        let mut reader = io::BufReader::new(&mut file);
        loop {
            let mut h = [0u8; HEADER as usize];
            if reader.read_exact(&mut h).is_err() {
                break;
            }
            let (k, p) = lengths(&h);
            let size_rec = HEADER + k + p;
            if pos + size_rec > size {
                break;
            }
            io::copy(&mut (&mut reader).take(k + p), &mut io::sink())?;
            pos += size_rec;
            records += 1;
        }
        drop(reader);
        if pos < size {
            file.set_len(pos)?;
        }
        let mut spool = Spool {
            path,
            offset_path,
            file,
            read_offset,
            len: pos,
            records,
            max_bytes,
            unsaved: 0,
        };
        if records == 0 {
            spool.reset()?;
        }
        Ok(spool)
    }

    /// Path of the data file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether no record waits.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Records waiting.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Bytes of the records waiting.
    pub fn live_bytes(&self) -> u64 {
        self.len - self.read_offset
    }

    /// Appends a record; `Ok(false)` when it does not fit in `max_bytes`.
    pub fn append(&mut self, key: &str, payload: &[u8]) -> io::Result<bool> {
        let size = HEADER + key.len() as u64 + payload.len() as u64;
        if self.live_bytes() + size > self.max_bytes {
            return Ok(false);
        }
        let mut buf = Vec::with_capacity(size as usize);
        encode(&mut buf, key, payload);
        self.file.write_all_at(&buf, self.len)?;
        self.len += size;
        self.records += 1;
        Ok(true)
    }

    /// Up to `n` records from the read position, and the bytes they take.
    pub fn peek(&self, n: usize) -> io::Result<(Vec<Record>, u64)> {
        let recs = self.peek_after(0, n)?;
        let bytes = recs.iter().map(|(_, b)| b).sum();
        Ok((recs.into_iter().map(|(r, _)| r).collect(), bytes))
    }

    /// Up to `n` records starting `skip` bytes after the read position (past records that
    /// are in flight already), each with the bytes it takes.
    pub fn peek_after(&self, skip: u64, n: usize) -> io::Result<Vec<(Record, u64)>> {
        let mut out = Vec::with_capacity(n.min(self.records));
        let mut pos = self.read_offset + skip;
        while out.len() < n && pos < self.len {
            let mut h = [0u8; HEADER as usize];
            self.file.read_exact_at(&mut h, pos)?;
            let (k, p) = lengths(&h);
            let mut body = vec![0u8; (k + p) as usize];
            self.file.read_exact_at(&mut body, pos + HEADER)?;
            let payload = body.split_off(k as usize);
            let key = String::from_utf8(body)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "spool record key is not UTF-8"))?;
            out.push((Record::new(key, payload), HEADER + k + p));
            pos += HEADER + k + p;
        }
        Ok(out)
    }

    /// Marks the first `n` records (`bytes` long, as [`Spool::peek`] said) as sent.
    pub fn consume(&mut self, n: usize, bytes: u64) -> io::Result<()> {
        self.records = self.records.saturating_sub(n);
        self.read_offset = (self.read_offset + bytes).min(self.len);
        if self.records == 0 {
            return self.reset();
        }
        self.unsaved += n;
        if self.unsaved >= SAVE_EVERY {
            self.save_offset()?;
        }
        Ok(())
    }

    fn save_offset(&mut self) -> io::Result<()> {
        self.unsaved = 0;
        std::fs::write(&self.offset_path, self.read_offset.to_string())
    }

    /// Puts `records` in front of the waiting ones (messages that were in memory when the
    /// element stopped: older than everything spooled). Ignores `max_bytes`: they were
    /// accepted already.
    pub fn prepend(&mut self, records: &[Record]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for r in records {
            encode(&mut buf, &r.key, &r.payload);
        }
        let mut rest = vec![0u8; self.live_bytes() as usize];
        self.unsaved = 0;
        self.file.read_exact_at(&mut rest, self.read_offset)?;
        buf.extend_from_slice(&rest);
        let tmp = self.path.with_extension("spool.tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        std::fs::write(&self.offset_path, "0")?;
        std::fs::rename(&tmp, &self.path)?;
        self.file = OpenOptions::new().read(true).write(true).open(&self.path)?;
        self.read_offset = 0;
        self.len = buf.len() as u64;
        self.records += records.len();
        Ok(())
    }

    /// Writes the read offset and flushes the file to disk.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.unsaved > 0 {
            self.save_offset()?;
        }
        self.file.sync_data()
    }

    fn reset(&mut self) -> io::Result<()> {
        self.unsaved = 0;
        self.file.set_len(0)?;
        self.len = 0;
        self.read_offset = 0;
        self.records = 0;
        std::fs::write(&self.offset_path, "0")
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if self.unsaved > 0 {
            // Best effort: a stale offset only replays acknowledged messages again.
            let _ = self.save_offset();
        }
    }
}

fn lengths(h: &[u8; HEADER as usize]) -> (u64, u64) {
    (
        u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as u64,
        u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as u64,
    )
}

fn encode(buf: &mut Vec<u8>, key: &str, payload: &[u8]) {
    buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("trtvision-spool-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn replays_in_order_across_reopen() {
        let d = dir("order");
        let mut s = Spool::open(&d, "a", 1 << 20).unwrap();
        for i in 0..10 {
            assert!(s.append(&format!("k{i}"), format!("p{i}").as_bytes()).unwrap());
        }
        let (recs, bytes) = s.peek(3).unwrap();
        assert_eq!(
            recs.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
            ["k0", "k1", "k2"]
        );
        let after = s.peek_after(bytes, 2).unwrap();
        assert_eq!(
            after.iter().map(|(r, _)| r.key.as_str()).collect::<Vec<_>>(),
            ["k3", "k4"]
        );
        assert_eq!(after[0].1, 8 + 2 + 2);
        // Consumed one at a time: the offset reaches the disk at the latest when closing.
        for (_, b) in s.peek_after(0, 3).unwrap() {
            s.consume(1, b).unwrap();
        }
        assert_eq!(bytes, 3 * (8 + 2 + 2));
        drop(s);
        let mut s = Spool::open(&d, "a", 1 << 20).unwrap();
        assert_eq!(s.records(), 7);
        let (recs, bytes) = s.peek(100).unwrap();
        assert_eq!(recs.len(), 7);
        assert_eq!(recs[0].key, "k3");
        assert_eq!(recs[6].payload, b"p9");
        s.consume(7, bytes).unwrap();
        assert!(s.is_empty());
        assert_eq!(
            std::fs::metadata(s.path()).unwrap().len(),
            0,
            "drained spool is truncated"
        );
    }

    #[test]
    fn refuses_beyond_max_bytes() {
        let d = dir("max");
        let mut s = Spool::open(&d, "a", 40).unwrap();
        assert!(s.append("k", &[0; 20]).unwrap()); // 29 bytes
        assert!(!s.append("k", &[0; 20]).unwrap());
        assert!(s.append("k", &[0; 2]).unwrap()); // 11 bytes: 40 in all
        assert_eq!(s.records(), 2);
    }

    #[test]
    fn torn_tail_is_cut_and_prepend_goes_first() {
        let d = dir("torn");
        let mut s = Spool::open(&d, "a", 1 << 20).unwrap();
        s.append("k1", b"one").unwrap();
        s.append("k2", b"two").unwrap();
        drop(s);
        let p = d.join("a.spool");
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.truncate(bytes.len() - 1);
        std::fs::write(&p, bytes).unwrap();
        let mut s = Spool::open(&d, "a", 1 << 20).unwrap();
        assert_eq!(s.records(), 1);
        s.prepend(&[Record::new("k0".into(), b"zero".to_vec())]).unwrap();
        s.append("k3", b"three").unwrap();
        let (recs, _) = s.peek(10).unwrap();
        assert_eq!(
            recs.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
            ["k0", "k1", "k3"]
        );
    }
}
