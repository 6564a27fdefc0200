//! Block files: the bodies of blocks, kept outside RocksDB (ledger format 2).
//!
//! A block of a saturated cluster is megabytes. Stored in RocksDB, each went through the
//! write-ahead log (a buffered write: the kernel copies it into page-cache pages that it must
//! first allocate, which on this project's machines costs far more than the copy itself;
//! measured: 7.3% of a saturated 4-node cluster's CPU, `benches/RESULTS.md`, "Where a node's CPU
//! goes"), then
//! into a memtable, then into a blob file at the next flush. Here a block is written once, with
//! `O_DIRECT` from an aligned buffer where the filesystem allows it, and synced; the `blocks`
//! column holds only its [`Location`], in the same synced batch as before.
//!
//! Layout: `<ledger>/block-files/NNNNNNNN.blk`, numbered from 0, each up to [`SEGMENT_MAX`]
//! bytes. A record starts on a 4 KiB boundary: a 32-byte head (the magic `MCBLK\0\0\x01`, the
//! height and the body's length, both u64 big-endian, 8 zero bytes), then the body (the block's
//! canonical encoding), then zeros up to the next 4 KiB boundary.
//!
//! Crash safety: a record is written and synced before the batch that points at it, so a
//! crash between the two leaves a record nothing points at, which the next append overwrites.
//! Every append is for the next height (tip + 1: a candidate, or a final block), and only
//! that height's location can change, so the record written last of those the `blocks` column
//! points at is the one at its highest height: appends resume at that record's end.

use crate::error::LedgerError;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The directory, inside the ledger's.
pub(crate) const DIR: &str = "block-files";
/// Largest file: the next record goes to a new file past this size.
pub(crate) const SEGMENT_MAX: u64 = 1 << 30;
/// Alignment of records, buffers and lengths (a multiple of the block sizes in use).
const ALIGN: usize = 4096;
const HEAD: usize = 32;
const MAGIC: &[u8; 8] = b"MCBLK\0\0\x01";

/// Where a block's body is, and its BLAKE3 digest: the `blocks` column's value in format 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    /// The file's number.
    pub file: u32,
    /// The record's offset in it.
    pub offset: u64,
    /// The body's length.
    pub len: u32,
    /// BLAKE3 of the body.
    pub digest: [u8; 32],
}

impl Location {
    /// Bytes of [`Location::encode`].
    pub const SIZE: usize = 4 + 8 + 4 + 32;

    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        out[..4].copy_from_slice(&self.file.to_be_bytes());
        out[4..12].copy_from_slice(&self.offset.to_be_bytes());
        out[12..16].copy_from_slice(&self.len.to_be_bytes());
        out[16..].copy_from_slice(&self.digest);
        out
    }

    /// Reads a location; `None` if `bytes` is not one.
    pub fn decode(bytes: &[u8]) -> Option<Location> {
        let b: &[u8; Self::SIZE] = bytes.try_into().ok()?;
        let loc = Location {
            file: u32::from_be_bytes(b[..4].try_into().ok()?),
            offset: u64::from_be_bytes(b[4..12].try_into().ok()?),
            len: u32::from_be_bytes(b[12..16].try_into().ok()?),
            digest: b[16..].try_into().ok()?,
        };
        (loc.offset % ALIGN as u64 == 0).then_some(loc)
    }

    /// Offset just past the record (its padding included).
    fn end(&self) -> u64 {
        self.offset + padded(self.len as usize) as u64
    }
}

/// A record's length on disk.
fn padded(body: usize) -> usize {
    (HEAD + body).div_ceil(ALIGN) * ALIGN
}

/// A buffer whose usable part starts on an [`ALIGN`] boundary; kept between appends, so its
/// pages stay mapped.
#[derive(Default)]
struct Aligned {
    raw: Vec<u8>,
    off: usize,
}

impl Aligned {
    /// The first `len` bytes (a multiple of [`ALIGN`]), growing the buffer if needed.
    fn get(&mut self, len: usize) -> &mut [u8] {
        if self.raw.len() < self.off + len {
            self.raw = vec![0u8; len + ALIGN];
            self.off = self.raw.as_ptr().align_offset(ALIGN).min(ALIGN);
        }
        &mut self.raw[self.off..self.off + len]
    }
}

/// The file being appended to.
struct Writer {
    /// Where the next record goes; `None` until the first append after opening reads it.
    next: Option<(u32, u64)>,
    /// The open file, with its number.
    file: Option<(u32, File)>,
    buf: Aligned,
}

/// One ledger's block files.
pub(crate) struct BlockFiles {
    dir: PathBuf,
    direct: bool,
    writer: Mutex<Writer>,
}

impl std::fmt::Debug for BlockFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockFiles")
            .field("dir", &self.dir)
            .field("direct", &self.direct)
            .finish()
    }
}

fn io_error(path: &Path, source: std::io::Error) -> LedgerError {
    LedgerError::BlockFile {
        path: path.to_path_buf(),
        source,
    }
}

/// Syncs a directory, so that the entries created in it survive a crash.
fn sync_dir(dir: &Path) -> Result<(), LedgerError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

impl BlockFiles {
    /// The block files of the ledger at `ledger_dir`. `direct`: write with `O_DIRECT` (the
    /// caller probed the filesystem). For a writer, creates the directory.
    pub fn open(
        ledger_dir: &Path,
        direct: bool,
        writable: bool,
    ) -> Result<BlockFiles, LedgerError> {
        let dir = ledger_dir.join(DIR);
        if writable && !dir.is_dir() {
            std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
            sync_dir(ledger_dir)?;
        }
        Ok(BlockFiles {
            dir,
            direct,
            writer: Mutex::new(Writer {
                next: None,
                file: None,
                buf: Aligned::default(),
            }),
        })
    }

    fn path(&self, file: u32) -> PathBuf {
        self.dir.join(format!("{file:08}.blk"))
    }

    /// Opens file `number` for writing (created if absent; emptied if `fresh`).
    fn open_for_write(&self, number: u32, fresh: bool) -> Result<File, LedgerError> {
        let path = self.path(number);
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(fresh);
        if self.direct {
            options.custom_flags(libc::O_DIRECT);
        }
        let file = options.open(&path).map_err(|e| io_error(&path, e))?;
        sync_dir(&self.dir)?;
        Ok(file)
    }

    /// Writes `body` (the encoding of the block at `height`) as a new record and syncs it.
    /// `last` is asked once, at the first append after opening, for the location the `blocks`
    /// column holds at its highest height (see the module's documentation).
    pub fn append(
        &self,
        height: u64,
        body: &[u8],
        last: impl FnOnce() -> Result<Option<Location>, LedgerError>,
    ) -> Result<Location, LedgerError> {
        let len = u32::try_from(body.len()).map_err(|_| LedgerError::BadExecution {
            height,
            reason: format!("a block of {} bytes is too large to store", body.len()),
        })?;
        let mut guard = self.writer.lock().expect("block file lock poisoned");
        let w = &mut *guard;
        let (mut number, mut offset) = match w.next {
            Some(next) => next,
            None => last()?.map_or((0, 0), |l| (l.file, l.end())),
        };
        let size = padded(body.len());
        let mut fresh = false;
        if offset > 0 && offset + size as u64 > SEGMENT_MAX {
            number += 1;
            offset = 0;
            fresh = true;
        }
        if w.file.as_ref().is_none_or(|(n, _)| *n != number) {
            w.file = Some((number, self.open_for_write(number, fresh)?));
        }
        let buf = w.buf.get(size);
        buf[..8].copy_from_slice(MAGIC);
        buf[8..16].copy_from_slice(&height.to_be_bytes());
        buf[16..24].copy_from_slice(&(body.len() as u64).to_be_bytes());
        buf[24..HEAD].fill(0);
        buf[HEAD..HEAD + body.len()].copy_from_slice(body);
        buf[HEAD + body.len()..].fill(0);
        let path = self.path(number);
        let (_, file) = w.file.as_ref().expect("opened above");
        file.write_all_at(buf, offset)
            .and_then(|()| file.sync_data())
            .map_err(|e| io_error(&path, e))?;
        w.next = Some((number, offset + size as u64));
        Ok(Location {
            file: number,
            offset,
            len,
            digest: *blake3::hash(body).as_bytes(),
        })
    }

    /// The body of the record at `loc`, checked against its length and digest (`height`, the
    /// height it is stored under, is for errors).
    pub fn read(&self, height: u64, loc: &Location) -> Result<Vec<u8>, LedgerError> {
        let corrupt = |what: String| LedgerError::Corrupt { height, what };
        let path = self.path(loc.file);
        let file = File::open(&path).map_err(|e| {
            corrupt(format!(
                "block file {} cannot be opened: {e}",
                path.display()
            ))
        })?;
        // Checked before allocating: a damaged location must not ask for gigabytes.
        let size = file.metadata().map_or(0, |m| m.len());
        if loc.offset.saturating_add((HEAD + loc.len as usize) as u64) > size {
            return Err(corrupt(format!(
                "block record at {}:{} cannot be read: {} bytes from there pass the file's end \
                 ({size} bytes)",
                path.display(),
                loc.offset,
                HEAD + loc.len as usize
            )));
        }
        // Head and body into buffers of their own: the body is returned without a copy.
        let mut head = [0u8; HEAD];
        let mut body = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut head, loc.offset)
            .and_then(|()| file.read_exact_at(&mut body, loc.offset + HEAD as u64))
            .map_err(|e| {
                corrupt(format!(
                    "block record at {}:{} cannot be read: {e}",
                    path.display(),
                    loc.offset
                ))
            })?;
        if &head[..8] != MAGIC || head[16..24] != (loc.len as u64).to_be_bytes() {
            return Err(corrupt(format!(
                "no block record of {} bytes at {}:{}",
                loc.len,
                path.display(),
                loc.offset
            )));
        }
        if blake3::hash(&body).as_bytes() != &loc.digest {
            return Err(corrupt(format!(
                "block record at {}:{} does not match its digest",
                path.display(),
                loc.offset
            )));
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_none() -> Result<Option<Location>, LedgerError> {
        Ok(None)
    }

    #[test]
    fn records_are_aligned_read_back_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let files = BlockFiles::open(dir.path(), false, true).unwrap();
        let a = files.append(0, b"first", last_none).unwrap();
        let b = files.append(1, &vec![7u8; 10_000], last_none).unwrap();
        assert_eq!((a.file, a.offset), (0, 0));
        assert_eq!(
            (b.file, b.offset),
            (0, 4096),
            "a record starts on a 4 KiB boundary"
        );
        assert_eq!(Location::decode(&b.encode()), Some(b));
        assert_eq!(files.read(0, &a).unwrap(), b"first");
        assert_eq!(files.read(1, &b).unwrap(), vec![7u8; 10_000]);
        // Another body's digest, or another length, is refused.
        let forged = Location {
            digest: a.digest,
            ..b
        };
        let err = files.read(1, &forged).unwrap_err().to_string();
        assert!(err.contains("does not match its digest"), "{err}");
        let short = Location { len: 4, ..a };
        let err = files.read(0, &short).unwrap_err().to_string();
        assert!(err.contains("no block record of 4 bytes"), "{err}");
        // A damaged length is refused before anything is allocated for it.
        let huge = Location { len: u32::MAX, ..a };
        let err = files.read(0, &huge).unwrap_err().to_string();
        assert!(err.contains("pass the file's end"), "{err}");
        assert_eq!(Location::decode(&[1, 2, 3]), None);
        let mut unaligned = a.encode();
        unaligned[11] = 1;
        assert_eq!(Location::decode(&unaligned), None);
    }

    /// After a reopen, appends resume at the end of the record the caller names as the last
    /// one pointed at, overwriting whatever was written after it (a crash's leftovers).
    #[test]
    fn appends_resume_after_the_last_record_pointed_at() {
        let dir = tempfile::tempdir().unwrap();
        let kept = {
            let files = BlockFiles::open(dir.path(), false, true).unwrap();
            let kept = files.append(0, b"kept", last_none).unwrap();
            files.append(1, b"orphan", last_none).unwrap();
            kept
        };
        let files = BlockFiles::open(dir.path(), false, true).unwrap();
        let next = files.append(1, b"again", || Ok(Some(kept))).unwrap();
        assert_eq!(
            (next.file, next.offset),
            (0, 4096),
            "the orphan is overwritten"
        );
        assert_eq!(files.read(1, &next).unwrap(), b"again");
        assert_eq!(files.read(0, &kept).unwrap(), b"kept");
    }

    /// A record that would take a file past [`SEGMENT_MAX`] starts the next file.
    #[test]
    fn a_full_file_is_followed_by_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let files = BlockFiles::open(dir.path(), false, true).unwrap();
        let near_end = Location {
            file: 3,
            offset: SEGMENT_MAX - 2 * ALIGN as u64,
            len: 100,
            digest: [0; 32],
        };
        let loc = files
            .append(9, &[5u8; 5000], || Ok(Some(near_end)))
            .unwrap();
        assert_eq!((loc.file, loc.offset), (4, 0));
        assert!(dir.path().join(DIR).join("00000004.blk").is_file());
        assert_eq!(files.read(9, &loc).unwrap(), vec![5u8; 5000]);
    }
}
