//! Direct I/O for vault blobs. A blob is written once and read rarely, so it bypasses the page
//! cache (`O_DIRECT`), as databases do with their data files: the bytes go from an aligned
//! buffer to the disk and back without the kernel copying them into cache pages it must first
//! allocate, which on this project's machines cost more than the disk itself (see
//! `benches/RESULTS.md`), and a 500 MB blob does not push the ledger's hot data out of memory.
//! Where a filesystem refuses `O_DIRECT` (tmpfs), the same code does buffered I/O.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Alignment of buffers, offsets and lengths for `O_DIRECT` (a multiple of the block sizes in
/// use: 512 and 4096).
const ALIGN: usize = 4096;
/// Bytes per direct write or read.
const DIRECT_CHUNK: usize = 1 << 20;

/// A buffer whose usable part starts on an [`ALIGN`] boundary.
struct Aligned {
    raw: Vec<u8>,
    off: usize,
}

impl Aligned {
    fn new() -> Aligned {
        let raw = vec![0u8; DIRECT_CHUNK + ALIGN];
        let off = raw.as_ptr().align_offset(ALIGN).min(ALIGN);
        Aligned { raw, off }
    }
    fn buf(&self) -> &[u8] {
        &self.raw[self.off..self.off + DIRECT_CHUNK]
    }
    fn buf_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.off..self.off + DIRECT_CHUNK]
    }
}

fn open(options: &mut OpenOptions, path: &Path) -> io::Result<(File, bool)> {
    match options.clone().custom_flags(libc::O_DIRECT).open(path) {
        Ok(f) => Ok((f, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok((options.open(path)?, false)),
        Err(e) => Err(e),
    }
}

/// Writes a new file in aligned blocks; [`DirectWriter::finish`] writes the tail and syncs.
pub struct DirectWriter {
    file: File,
    direct: bool,
    buf: Aligned,
    fill: usize,
    size: u64,
}

impl std::fmt::Debug for DirectWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DirectWriter({} bytes, direct: {})",
            self.size, self.direct
        )
    }
}

impl DirectWriter {
    /// Creates `path` (which must not exist).
    pub fn create(path: &Path) -> io::Result<DirectWriter> {
        let (file, direct) = open(OpenOptions::new().write(true).create_new(true), path)?;
        Ok(DirectWriter {
            file,
            direct,
            buf: Aligned::new(),
            fill: 0,
            size: 0,
        })
    }

    /// Writes what is buffered (the last block padded, then the file cut to its size) and
    /// syncs data and metadata. Returns the size.
    pub fn finish(mut self) -> io::Result<u64> {
        if self.fill > 0 {
            let end = if self.direct {
                self.fill.div_ceil(ALIGN) * ALIGN
            } else {
                self.fill
            };
            let fill = self.fill;
            self.buf.buf_mut()[fill..end].fill(0);
            self.file.write_all(&self.buf.buf()[..end])?;
            if end != fill {
                self.file.set_len(self.size)?;
            }
        }
        self.file.sync_all()?;
        Ok(self.size)
    }
}

impl Write for DirectWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(DIRECT_CHUNK - self.fill);
        let fill = self.fill;
        self.buf.buf_mut()[fill..fill + n].copy_from_slice(&data[..n]);
        self.fill += n;
        self.size += n as u64;
        if self.fill == DIRECT_CHUNK {
            self.file.write_all(self.buf.buf())?;
            self.fill = 0;
        }
        Ok(n)
    }

    /// Nothing: whole blocks go out as they fill, and [`DirectWriter::finish`] writes the rest.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads a file in aligned chunks.
pub struct BlobReader {
    file: File,
    buf: Aligned,
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlobReader")
    }
}

impl BlobReader {
    /// Opens `path` for reading.
    pub fn open(path: &Path) -> io::Result<BlobReader> {
        let (file, _) = open(OpenOptions::new().read(true), path)?;
        Ok(BlobReader {
            file,
            buf: Aligned::new(),
        })
    }

    /// The next chunk of the file (up to 1 MiB; empty at the end).
    pub fn next_chunk(&mut self) -> io::Result<&[u8]> {
        let n = fill_aligned(&mut self.file, self.buf.buf_mut())?;
        Ok(&self.buf.buf()[..n])
    }
}

/// Reads into an aligned buffer until it is full or the file ends; returns the bytes read.
fn fill_aligned(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = match file.read(&mut buf[n..]) {
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        n += k;
        // A short read that is not whole blocks is the end of the file.
        if k == 0 || k % ALIGN != 0 {
            break;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_size_around_the_block_and_chunk_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        for size in [
            0,
            1,
            ALIGN - 1,
            ALIGN,
            ALIGN + 1,
            DIRECT_CHUNK - 1,
            DIRECT_CHUNK,
            DIRECT_CHUNK + 7,
            3 * DIRECT_CHUNK + 5000,
        ] {
            let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            let path = dir.path().join(format!("f{size}"));
            let mut w = DirectWriter::create(&path).unwrap();
            // Uneven writes, as the vault's callers make them.
            for piece in data.chunks(70_001) {
                w.write_all(piece).unwrap();
            }
            assert_eq!(w.finish().unwrap(), size as u64);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), size as u64);
            let mut r = BlobReader::open(&path).unwrap();
            let mut back = Vec::new();
            loop {
                let c = r.next_chunk().unwrap();
                if c.is_empty() {
                    break;
                }
                back.extend_from_slice(c);
            }
            assert_eq!(back, data, "size {size}");
        }
        assert!(
            DirectWriter::create(&dir.path().join("f0")).is_err(),
            "never overwrites"
        );
    }
}
