//! A disk buffer: records appended to segment files, read back in order, and removed
//! once acknowledged; what was not acknowledged is read again after a restart.
//!
//! Each record is `magic (4) | length (4) | crc32 (4) | seq (8) | appended_ms (8) |
//! body`, little-endian; the checksum covers the sequence number, the time and the
//! body. Segments are files named by their first sequence number
//! (`00000000000000000042.seg`); a new one starts when the current one reaches
//! `segment_size`, and a segment is deleted once every record in it is acknowledged.
//! The acknowledgements are kept in `acked` (the highest sequence number below which
//! all are acknowledged, and those acknowledged above it), written to a temporary file
//! and renamed over the old one.
//!
//! A full disk is a full buffer: [`SegmentLog::has_room_for`] also asks the file
//! system for its free space (keeping [`DISK_RESERVE`] free, for the acknowledgements
//! and a new segment), so a buffer whose `max_size` is more than its disk has fills
//! the disk to that reserve and then says it is full, as at `max_size`: the sink holds
//! back or drops, counted, and never fails on a write the disk refuses. With the disk
//! full and every record of the segment appended to acknowledged, that segment is
//! closed, so that it can go.
//!
//! Durability: an appended record is written to the file at once (it survives the
//! process being killed); [`SegmentLog::sync`] makes it survive a power loss, and the
//! caller decides how often. Acknowledgements are saved by [`SegmentLog::save_acks`];
//! a crash between a delivery and that save delivers those records again
//! (at-least-once).
//!
//! On open, every segment is read through: a record whose checksum or header is wrong
//! is counted and skipped (the reader finds the next record by its magic number), and
//! a record cut short at the end of a segment (a crash mid-write) is counted and cut
//! off. Nothing in a damaged file makes the log panic.
//!
//! Public for the benches (`cargo bench --bench kafka`: append, and recovery of 1 GiB).

use std::collections::{BTreeSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MAGIC: u32 = 0x5041_5452; // "RTAP" little-endian
const HEADER: usize = 28;
/// The largest body a record may hold; a larger length in a header is damage.
pub const MAX_RECORD: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a record of {0} bytes is larger than the {MAX_RECORD} a buffer record may hold")]
    TooLarge(usize),
    #[error(
        "record {0} was never appended: only what was read from the buffer can be acknowledged"
    )]
    NotAppended(u64),
}

/// What opening a log found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Recovery {
    /// Records appended before and not acknowledged: they are read again.
    pub pending: u64,
    /// Damaged records skipped (bad header or checksum).
    pub corrupt: u64,
    /// Bytes cut off the end of segments (a record cut short by a crash).
    pub truncated_bytes: u64,
    pub took: Duration,
}

struct Segment {
    first_seq: u64,
    path: PathBuf,
    bytes: u64,
    /// The highest sequence number in it, once known (none while empty).
    last_seq: Option<u64>,
    /// Its records, how many of them are acknowledged, and how many the reader has
    /// passed (read, or skipped as acknowledged).
    records: u64,
    acked: u64,
    seen: u64,
    /// When its first record was appended (ms since the epoch).
    first_at_ms: Option<u64>,
}

impl Segment {
    fn new(first_seq: u64, path: PathBuf, bytes: u64) -> Segment {
        Segment {
            first_seq,
            path,
            bytes,
            last_seq: None,
            records: 0,
            acked: 0,
            seen: 0,
            first_at_ms: None,
        }
    }

    fn pending(&self) -> u64 {
        self.records - self.acked
    }
}

/// Which records are acknowledged: all up to `upto`, and those in `above`.
#[derive(Debug, Default, Clone, PartialEq)]
struct Acks {
    upto: u64,
    above: BTreeSet<u64>,
}

impl Acks {
    fn contains(&self, seq: u64) -> bool {
        seq <= self.upto || self.above.contains(&seq)
    }

    fn add(&mut self, seq: u64) {
        if seq <= self.upto {
            return;
        }
        self.above.insert(seq);
        self.catch_up();
    }

    /// Every number below `first` is acknowledged (its segment is gone).
    fn acknowledge_below(&mut self, first: u64) {
        if first == 0 || self.upto >= first - 1 {
            return;
        }
        self.upto = first - 1;
        self.above = self.above.split_off(&first);
        self.catch_up();
    }

    /// Moves `upto` over the acknowledged numbers that now follow it.
    fn catch_up(&mut self) {
        while self.above.remove(&(self.upto + 1)) {
            self.upto += 1;
        }
    }

    fn parse(text: &str) -> Option<Acks> {
        let mut numbers = text.split_whitespace().map(str::parse::<u64>);
        let upto = numbers.next()?.ok()?;
        let above = numbers.collect::<Result<BTreeSet<u64>, _>>().ok()?;
        Some(Acks { upto, above })
    }

    fn render(&self) -> String {
        let mut text = self.upto.to_string();
        for seq in &self.above {
            text.push(' ');
            text.push_str(&seq.to_string());
        }
        text.push('\n');
        text
    }
}

/// Where the reader is: a segment (by index in `segments`) and an offset in it.
struct Cursor {
    segment: usize,
    reader: Option<BufReader<File>>,
    offset: u64,
}

pub struct SegmentLog {
    dir: PathBuf,
    segment_size: u64,
    max_size: u64,
    segments: VecDeque<Segment>,
    writer: BufWriter<File>,
    next_seq: u64,
    acks: Acks,
    acks_saved: bool,
    /// A segment file was made since the directory was last synced: its name is on
    /// disk only once the directory is.
    dir_synced: bool,
    cursor: Cursor,
    /// Records damaged on disk since they were appended: found by the reader, gone.
    lost: u64,
    disk: DiskSpace,
}

/// Bytes of the buffer's file system kept free: the acknowledgements file, a new
/// segment's start, and what the writer holds unflushed.
pub const DISK_RESERVE: u64 = 1 << 20;

/// The file system's free space as last asked, and what was appended since.
struct DiskSpace {
    free: fn(&Path) -> Option<u64>,
    asked: Option<Instant>,
    free_then: u64,
    appended_since: u64,
    /// Since when it has had room (`None` while short): a shortage is logged once,
    /// and only after a second of room.
    roomy_since: Option<Instant>,
}

/// How long an answer about free space is trusted while it leaves [`DISK_SPARE`] beyond
/// the reserve: other writers on the disk (another buffer, a sink's files) use it too.
/// Closer to full, the disk is asked at each record (a `statvfs`, a microsecond).
const DISK_ASK_EVERY: Duration = Duration::from_secs(1);
const DISK_SPARE: u64 = 16 << 20;

/// The bytes an unprivileged process may still write on `dir`'s file system.
fn free_space(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a statvfs to fill.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.seg"))
}

/// A record's checksum: over its sequence number, time and body.
fn checksum(seq: u64, at_ms: u64, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(&at_ms.to_le_bytes());
    hasher.update(body);
    hasher.finalize()
}

/// One record as found in a segment's bytes.
enum Found {
    Record {
        seq: u64,
        at_ms: u64,
        body: std::ops::Range<usize>,
        end: usize,
    },
    /// Damage at this offset: the next record may start after it.
    Corrupt,
    /// The bytes end inside a record.
    Short,
}

fn read_at(bytes: &[u8], at: usize) -> Found {
    let Some(header) = bytes.get(at..at + HEADER) else {
        return Found::Short;
    };
    let word = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
    let long = |i: usize| u64::from_le_bytes(header[i..i + 8].try_into().expect("8 bytes"));
    let (magic, length, crc) = (word(0), word(4) as usize, word(8));
    let (seq, at_ms) = (long(12), long(20));
    if magic != MAGIC || length > MAX_RECORD {
        return Found::Corrupt;
    }
    let body = at + HEADER..at + HEADER + length;
    let Some(content) = bytes.get(body.clone()) else {
        return Found::Short;
    };
    if checksum(seq, at_ms, content) != crc {
        return Found::Corrupt;
    }
    Found::Record {
        seq,
        at_ms,
        end: body.end,
        body,
    }
}

/// What a segment's bytes hold.
struct Scanned {
    /// Every whole record, in order: (seq, time, body range).
    records: Vec<(u64, u64, std::ops::Range<usize>)>,
    /// Damaged records skipped.
    corrupt: u64,
    /// Where a record cut short by the end of the bytes starts, if one does.
    short_tail: Option<usize>,
}

fn scan(bytes: &[u8]) -> Scanned {
    let mut scanned = Scanned {
        records: Vec::new(),
        corrupt: 0,
        short_tail: None,
    };
    let mut at = 0;
    while at < bytes.len() {
        let damaged = match read_at(bytes, at) {
            Found::Record {
                seq,
                at_ms,
                body,
                end,
            } => {
                scanned.records.push((seq, at_ms, body));
                at = end;
                continue;
            }
            Found::Corrupt => true,
            // A record running past the end is a cut-short tail, unless good records
            // follow (then its length was damaged).
            Found::Short => next_record(bytes, at + 1).is_some(),
        };
        if !damaged {
            scanned.short_tail = Some(at);
            break;
        }
        scanned.corrupt += 1;
        at = next_record(bytes, at + 1).unwrap_or(bytes.len());
    }
    scanned
}

/// Where the next whole record at or after `from` starts.
fn next_record(bytes: &[u8], mut from: usize) -> Option<usize> {
    while from < bytes.len() {
        from += find_magic(&bytes[from..])?;
        if matches!(read_at(bytes, from), Found::Record { .. }) {
            return Some(from);
        }
        from += 1;
    }
    None
}

fn find_magic(bytes: &[u8]) -> Option<usize> {
    let magic = MAGIC.to_le_bytes();
    bytes.windows(4).position(|w| w == magic)
}

impl SegmentLog {
    /// Opens (or creates) the log in `dir`: reads what a previous run left, cuts off a
    /// record cut short, and counts the damage.
    pub fn open(
        dir: &Path,
        max_size: u64,
        segment_size: u64,
    ) -> Result<(SegmentLog, Recovery), LogError> {
        let started = Instant::now();
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let acks_path = dir.join("acked");
        let acks = match std::fs::read_to_string(&acks_path) {
            Ok(text) => Acks::parse(&text).unwrap_or_else(|| {
                tracing::warn!(path = %acks_path.display(), "the buffer's acknowledgements cannot be read; every record in it is delivered again");
                Acks::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Acks::default(),
            Err(e) => return Err(io(&acks_path)(e)),
        };
        let mut firsts: Vec<u64> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|entry| {
                let name = entry.ok()?.file_name();
                name.to_str()?.strip_suffix(".seg")?.parse().ok()
            })
            .collect();
        firsts.sort_unstable();
        let mut recovery = Recovery::default();
        let mut segments = VecDeque::new();
        let mut next_seq = acks.upto + 1;
        for first_seq in firsts {
            // A segment is named after the first number it holds: every number below
            // was handed out, even when the segments holding them were deleted and
            // their acknowledgements not yet saved.
            next_seq = next_seq.max(first_seq);
            let path = segment_path(dir, first_seq);
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            let Scanned {
                records,
                corrupt,
                short_tail,
            } = scan(&bytes);
            recovery.corrupt += corrupt;
            if let Some(good_end) = short_tail {
                recovery.truncated_bytes += (bytes.len() - good_end) as u64;
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io(&path))?;
                file.set_len(good_end as u64).map_err(io(&path))?;
            }
            let bytes = std::fs::metadata(&path).map_err(io(&path))?.len();
            let mut segment = Segment::new(first_seq, path, bytes);
            for (seq, at_ms, _) in records {
                segment.last_seq = Some(seq);
                segment.first_at_ms.get_or_insert(at_ms);
                segment.records += 1;
                next_seq = next_seq.max(seq + 1);
                match acks.contains(seq) {
                    true => segment.acked += 1,
                    false => recovery.pending += 1,
                }
            }
            segments.push_back(segment);
        }
        // Never reuse a number already acknowledged (its record may be gone).
        if let Some(last) = acks.above.last() {
            next_seq = next_seq.max(last + 1);
        }
        // Appends go to a fresh segment: the last one may end in damage.
        let path = segment_path(dir, next_seq);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let bytes = file.metadata().map_err(io(&path))?.len();
        if segments.back().is_none_or(|s| s.first_seq != next_seq) {
            segments.push_back(Segment::new(next_seq, path, bytes));
        }
        let mut log = SegmentLog {
            dir: dir.to_path_buf(),
            segment_size: segment_size.max(HEADER as u64 + 1),
            max_size,
            segments,
            writer: BufWriter::new(file),
            next_seq,
            acks,
            acks_saved: true,
            dir_synced: false,
            cursor: Cursor {
                segment: 0,
                reader: None,
                offset: 0,
            },
            lost: 0,
            disk: DiskSpace {
                free: free_space,
                asked: None,
                free_then: 0,
                appended_since: 0,
                roomy_since: Instant::now().checked_sub(DISK_ASK_EVERY),
            },
        };
        log.remove_acknowledged()?;
        recovery.took = started.elapsed();
        Ok((log, recovery))
    }

    /// Bytes the segments take on disk.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Records not yet acknowledged.
    pub fn records(&self) -> u64 {
        self.segments.iter().map(Segment::pending).sum()
    }

    /// The age of the oldest segment holding a record not yet acknowledged (of its
    /// first record: the oldest waiting record is at most a segment younger).
    pub fn oldest_age(&self) -> Option<Duration> {
        let segment = self.segments.iter().find(|s| s.pending() > 0)?;
        let at_ms = segment.first_at_ms?;
        Some(Duration::from_millis(now_ms().saturating_sub(at_ms)))
    }

    /// Whether a record of `body` bytes fits within `max_size`, and on the disk with
    /// [`DISK_RESERVE`] to spare. The disk is asked at most once a second while it has
    /// room to spare, at each call once it has not. With the disk short and the segment
    /// appended to all acknowledged, that segment is closed (and goes), making room.
    pub fn has_room_for(&mut self, body: usize) -> Result<bool, LogError> {
        let size = (HEADER + body) as u64;
        if self.bytes() + size > self.max_size {
            return Ok(false);
        }
        if self.disk_has_room(size) {
            return Ok(true);
        }
        // Only when it is the only segment: with an older one still pending, closing
        // this one frees nothing.
        let current = self.segments.back().expect("there is always a segment");
        if self.segments.len() == 1 && current.bytes > 0 && current.pending() == 0 {
            self.roll()?;
            self.remove_acknowledged()?;
            self.disk.asked = None;
            return Ok(self.disk_has_room(size));
        }
        Ok(false)
    }

    fn disk_has_room(&mut self, size: u64) -> bool {
        let disk = &mut self.disk;
        let needed = size + DISK_RESERVE;
        let fresh = disk.asked.is_some_and(|at| at.elapsed() < DISK_ASK_EVERY);
        if fresh && disk.free_then.saturating_sub(disk.appended_since) >= needed + DISK_SPARE {
            return true;
        }
        let Some(free) = (disk.free)(&self.dir) else {
            // A file system that cannot say: only `max_size` bounds the buffer.
            return true;
        };
        (disk.asked, disk.free_then, disk.appended_since) = (Some(Instant::now()), free, 0);
        let short = free < needed;
        // Once per shortage that follows a second with room, not once per segment
        // delivered.
        if short
            && disk
                .roomy_since
                .is_some_and(|at| at.elapsed() >= DISK_ASK_EVERY)
        {
            tracing::warn!(path = %self.dir.display(), free_bytes = free, "the disk buffer's disk is full (a buffer's `max_size` larger than its disk): the buffer counts as full until deliveries free room");
        }
        disk.roomy_since = match short {
            true => None,
            false => disk.roomy_since.or(Some(Instant::now())),
        };
        !short
    }

    /// Appends a record (written to the file at once); its sequence number.
    pub fn append(&mut self, body: &[u8]) -> Result<u64, LogError> {
        if body.len() > MAX_RECORD {
            return Err(LogError::TooLarge(body.len()));
        }
        let current = self.segments.back().expect("there is always a segment");
        let size = (HEADER + body.len()) as u64;
        if current.bytes > 0 && current.bytes + size > self.segment_size {
            self.roll()?;
        }
        let (seq, at_ms) = (self.next_seq, now_ms());
        let mut header = [0u8; HEADER];
        header[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        header[4..8].copy_from_slice(&(body.len() as u32).to_le_bytes());
        header[8..12].copy_from_slice(&checksum(seq, at_ms, body).to_le_bytes());
        header[12..20].copy_from_slice(&seq.to_le_bytes());
        header[20..28].copy_from_slice(&at_ms.to_le_bytes());
        let segment = self.segments.back_mut().expect("there is always a segment");
        let path = &segment.path;
        self.writer.write_all(&header).map_err(io(path))?;
        self.writer.write_all(body).map_err(io(path))?;
        segment.bytes += size;
        segment.last_seq = Some(seq);
        segment.records += 1;
        segment.first_at_ms.get_or_insert(at_ms);
        self.next_seq += 1;
        self.disk.appended_since += size;
        Ok(seq)
    }

    /// Hands what was appended to the operating system (a killed process loses none
    /// of it); call after each batch of appends.
    pub fn flush(&mut self) -> Result<(), LogError> {
        let path = &self.segments.back().expect("a segment").path;
        self.writer.flush().map_err(io(path))
    }

    /// Makes what was appended survive a power loss: the segment's data, and the
    /// directory when a segment was made since (a new file's name is not on disk
    /// until its directory is).
    pub fn sync(&mut self) -> Result<(), LogError> {
        self.flush()?;
        let path = &self.segments.back().expect("a segment").path;
        self.writer.get_ref().sync_data().map_err(io(path))?;
        if !self.dir_synced {
            File::open(&self.dir)
                .and_then(|dir| dir.sync_all())
                .map_err(io(&self.dir))?;
            self.dir_synced = true;
        }
        Ok(())
    }

    fn roll(&mut self) -> Result<(), LogError> {
        self.sync()?;
        let path = segment_path(&self.dir, self.next_seq);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        self.writer = BufWriter::new(file);
        self.dir_synced = false;
        self.segments
            .push_back(Segment::new(self.next_seq, path, 0));
        Ok(())
    }

    /// The next record not yet read (nor acknowledged): its sequence number and body.
    pub fn read_next(&mut self) -> Result<Option<(u64, Vec<u8>)>, LogError> {
        loop {
            let Some(segment) = self.segments.get(self.cursor.segment) else {
                return Ok(None);
            };
            let is_last = self.cursor.segment + 1 == self.segments.len();
            if self.cursor.offset >= segment.bytes {
                if is_last {
                    return Ok(None);
                }
                // Records of it the reader never met were damaged since they were
                // appended: gone.
                let segment = &mut self.segments[self.cursor.segment];
                let lost = segment.records.saturating_sub(segment.seen);
                if lost > 0 {
                    segment.records -= lost;
                    segment.acked = segment.acked.min(segment.records);
                    self.lost += lost;
                }
                self.cursor = Cursor {
                    segment: self.cursor.segment + 1,
                    reader: None,
                    offset: 0,
                };
                self.remove_acknowledged()?;
                continue;
            }
            let path = segment.path.clone();
            let (available, offset) = (segment.bytes - self.cursor.offset, self.cursor.offset);
            if is_last {
                // What the reader reads must be in the file.
                self.flush()?;
            }
            if self.cursor.reader.is_none() {
                let mut file = File::open(&path).map_err(io(&path))?;
                file.seek(SeekFrom::Start(offset)).map_err(io(&path))?;
                self.cursor.reader = Some(BufReader::with_capacity(64 << 10, file));
            }
            let reader = self.cursor.reader.as_mut().expect("opened above");
            let mut header = [0u8; HEADER];
            if let Err(e) = reader.read_exact(&mut header) {
                self.cut_short(&path, e)?;
                continue;
            }
            let length = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")) as usize;
            let whole = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) == MAGIC
                && length <= MAX_RECORD
                && (HEADER + length) as u64 <= available;
            if !whole {
                self.skip_damage(&path)?;
                continue;
            }
            let mut record = header.to_vec();
            record.resize(HEADER + length, 0);
            if let Err(e) = reader.read_exact(&mut record[HEADER..]) {
                self.cut_short(&path, e)?;
                continue;
            }
            let Found::Record { seq, body, .. } = read_at(&record, 0) else {
                self.skip_damage(&path)?;
                continue;
            };
            self.cursor.offset += record.len() as u64;
            self.segments[self.cursor.segment].seen += 1;
            if self.acks.contains(seq) {
                continue;
            }
            record.drain(..body.start);
            return Ok(Some((seq, record)));
        }
    }

    /// The file ends before the segment should (cut from outside): the rest of it is
    /// gone. Other read errors are the disk's, and fail.
    fn cut_short(&mut self, path: &Path, error: std::io::Error) -> Result<(), LogError> {
        if error.kind() != std::io::ErrorKind::UnexpectedEof {
            return Err(io(path)(error));
        }
        tracing::warn!(path = %path.display(), offset = self.cursor.offset, "a buffer segment is shorter than what was written to it; the rest of it is lost");
        self.cursor.offset = self.segments[self.cursor.segment].bytes;
        self.cursor.reader = None;
        Ok(())
    }

    /// Damage under the cursor (found at open, or since): the rest of the segment is
    /// scanned for the next good record, and the cursor moves there.
    fn skip_damage(&mut self, path: &Path) -> Result<(), LogError> {
        tracing::debug!(path = %path.display(), offset = self.cursor.offset, "skipping a damaged record");
        let bytes = std::fs::read(path).map_err(io(path))?;
        let end = self.segments[self.cursor.segment].bytes;
        self.cursor.offset = next_record(&bytes, self.cursor.offset as usize + 1)
            .map_or(end, |at| at as u64)
            .max(self.cursor.offset + 1);
        self.cursor.reader = None;
        Ok(())
    }

    /// Marks record `seq` delivered. Segments wholly delivered are deleted. A number
    /// never appended is refused: counted, it would let a segment go with a record in
    /// it still undelivered.
    pub fn ack(&mut self, seq: u64) -> Result<(), LogError> {
        if seq == 0 || seq >= self.next_seq {
            return Err(LogError::NotAppended(seq));
        }
        if self.acks.contains(seq) {
            return Ok(());
        }
        self.acks.add(seq);
        self.acks_saved = false;
        let holding = self.segments.partition_point(|s| s.first_seq <= seq);
        if let Some(segment) = holding
            .checked_sub(1)
            .and_then(|i| self.segments.get_mut(i))
        {
            segment.acked = (segment.acked + 1).min(segment.records);
        }
        self.remove_acknowledged()
    }

    /// Deletes the segments whose every record is acknowledged (the one appended to,
    /// once full). Everything before the first segment left counts as acknowledged:
    /// a number lost with a damaged record, or acknowledged in a run that was killed
    /// before it saved, leaves no gap behind.
    fn remove_acknowledged(&mut self) -> Result<(), LogError> {
        while self.segments.len() > 1 && self.segments[0].pending() == 0 {
            let first = self.segments.pop_front().expect("more than one");
            match std::fs::remove_file(&first.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&first.path)(e)),
            }
            self.cursor = match self.cursor.segment {
                // The cursor was in it: the next segment's start.
                0 => Cursor {
                    segment: 0,
                    reader: None,
                    offset: 0,
                },
                n => Cursor {
                    segment: n - 1,
                    ..std::mem::replace(
                        &mut self.cursor,
                        Cursor {
                            segment: 0,
                            reader: None,
                            offset: 0,
                        },
                    )
                },
            };
        }
        let front = self.segments[0].first_seq;
        self.acks.acknowledge_below(front);
        let everything_acked = self.records() == 0;
        let current = self.segments.back().expect("a segment");
        if everything_acked && current.bytes >= self.segment_size / 2 {
            self.roll()?;
            return self.remove_acknowledged();
        }
        Ok(())
    }

    /// Records damaged on disk since they were appended, found by the reader since
    /// the last call: they cannot be delivered.
    pub fn take_lost(&mut self) -> u64 {
        std::mem::take(&mut self.lost)
    }

    /// Saves which records are acknowledged (when any changed since the last save).
    pub fn save_acks(&mut self) -> Result<(), LogError> {
        if self.acks_saved {
            return Ok(());
        }
        let path = self.dir.join("acked");
        let temporary = self.dir.join("acked.tmp");
        let mut file = File::create(&temporary).map_err(io(&temporary))?;
        file.write_all(self.acks.render().as_bytes())
            .map_err(io(&temporary))?;
        file.sync_data().map_err(io(&temporary))?;
        std::fs::rename(&temporary, &path).map_err(io(&path))?;
        self.acks_saved = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> (SegmentLog, Recovery) {
        SegmentLog::open(dir, 1 << 20, 1000).unwrap()
    }

    fn body(i: u64) -> Vec<u8> {
        format!("sample number {i:04}").into_bytes()
    }

    fn read_all(log: &mut SegmentLog) -> Vec<(u64, Vec<u8>)> {
        std::iter::from_fn(|| log.read_next().unwrap()).collect()
    }

    #[test]
    fn records_come_back_in_order_and_acknowledged_segments_go() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, recovery) = open(dir.path());
        assert_eq!(
            recovery,
            Recovery {
                took: recovery.took,
                ..Recovery::default()
            }
        );
        for i in 0..100 {
            assert_eq!(log.append(&body(i)).unwrap(), i + 1);
        }
        log.flush().unwrap();
        assert_eq!(log.records(), 100);
        let read = read_all(&mut log);
        assert_eq!(read.len(), 100);
        assert!(read
            .iter()
            .enumerate()
            .all(|(i, (seq, b))| *seq == i as u64 + 1 && *b == body(i as u64)));
        let segments = || std::fs::read_dir(dir.path()).unwrap().count();
        let before = segments();
        assert!(before > 3, "1000-byte segments: {before} files");
        for (seq, _) in &read[..50] {
            log.ack(*seq).unwrap();
        }
        assert_eq!(log.records(), 50);
        assert!(segments() < before, "delivered segments are deleted");
        // More appended after a read to the end are read next.
        log.append(b"late").unwrap();
        assert_eq!(log.read_next().unwrap().unwrap().1, b"late");
        assert!(log.read_next().unwrap().is_none());
    }

    #[test]
    fn a_number_never_appended_cannot_acknowledge_a_record_away() {
        let dir = tempfile::tempdir().unwrap();
        // 1000-byte segments: the records fill several.
        let (mut log, _) = SegmentLog::open(dir.path(), 1000, 400).unwrap();
        for i in 0..100 {
            log.append(&body(i)).unwrap();
        }
        log.flush().unwrap();
        let read = read_all(&mut log);
        // Everything delivered but the last record.
        for (seq, _) in &read[..99] {
            log.ack(*seq).unwrap();
        }
        for never in [0, 101, 102, u64::MAX] {
            assert!(matches!(log.ack(never), Err(LogError::NotAppended(n)) if n == never));
        }
        assert_eq!(log.records(), 1);
        log.save_acks().unwrap();
        drop(log);
        let (mut log, recovery) = SegmentLog::open(dir.path(), 1000, 400).unwrap();
        assert_eq!(recovery.pending, 1);
        let read = read_all(&mut log);
        assert_eq!(
            read,
            [(100, body(99))],
            "record 100 is still there to deliver"
        );
    }

    /// Delivered and acknowledged, the segments deleted, then killed before the
    /// acknowledgements were saved: what is left names the next number, which is never
    /// handed out again, and the numbers delivered can still be acknowledged (a parquet
    /// sink's commit marker does so at its next start).
    #[test]
    fn numbers_are_never_reused_after_acknowledged_segments_went_unsaved() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, _) = SegmentLog::open(dir.path(), 1 << 20, 400).unwrap();
            for i in 0..100 {
                log.append(&body(i)).unwrap();
            }
            log.flush().unwrap();
        }
        {
            // A new run: appends would go to a fresh segment named 101.
            let (mut log, _) = SegmentLog::open(dir.path(), 1 << 20, 400).unwrap();
            for (seq, _) in read_all(&mut log) {
                log.ack(seq).unwrap();
            }
            assert_eq!(log.records(), 0);
            // Killed here: the acknowledgements were never saved.
        }
        let (mut log, recovery) = SegmentLog::open(dir.path(), 1 << 20, 400).unwrap();
        assert_eq!(recovery.pending, 0, "the segments holding 1..=100 are gone");
        for seq in 1..=100 {
            log.ack(seq).unwrap();
        }
        assert_eq!(log.append(b"next").unwrap(), 101);
        assert_eq!(
            log.records(),
            1,
            "the new record is not taken for delivered"
        );
        assert_eq!(read_all(&mut log), [(101, b"next".to_vec())]);
    }

    #[test]
    fn what_was_not_acknowledged_is_read_again_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, _) = open(dir.path());
            for i in 0..40 {
                log.append(&body(i)).unwrap();
            }
            // Delivered out of order: 1..=10, and 15.
            for seq in (1..=10).chain([15]) {
                log.ack(seq).unwrap();
            }
            log.save_acks().unwrap();
            log.ack(11).unwrap(); // delivered, not saved: read again (at least once)
            log.flush().unwrap();
        }
        let (mut log, recovery) = open(dir.path());
        assert_eq!(
            (recovery.pending, recovery.corrupt, recovery.truncated_bytes),
            (29, 0, 0)
        );
        let seqs: Vec<u64> = read_all(&mut log).into_iter().map(|(s, _)| s).collect();
        let expected: Vec<u64> = (11..=40).filter(|s| *s != 15).collect();
        assert_eq!(seqs, expected);
        assert_eq!(log.append(b"next").unwrap(), 41, "numbering carries on");
    }

    #[test]
    fn a_damaged_record_and_a_cut_short_tail_are_counted_and_the_rest_read() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, _) = SegmentLog::open(dir.path(), 1 << 20, 1 << 20).unwrap();
            for i in 0..20 {
                log.append(&body(i)).unwrap();
            }
            log.flush().unwrap();
        }
        let segment = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "seg"))
            .unwrap();
        let mut bytes = std::fs::read(&segment).unwrap();
        let record = HEADER + body(0).len();
        // Damage the body of record 5 and the length of record 9; cut the last in half.
        bytes[5 * record + HEADER + 2] ^= 0xFF;
        bytes[9 * record + 5] = 0x7F;
        bytes.truncate(bytes.len() - record / 2);
        std::fs::write(&segment, &bytes).unwrap();

        let (mut log, recovery) = SegmentLog::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        assert_eq!(recovery.corrupt, 2);
        assert_eq!(recovery.truncated_bytes, (record - record / 2) as u64);
        assert_eq!(recovery.pending, 17);
        let seqs: Vec<u64> = read_all(&mut log).into_iter().map(|(s, _)| s).collect();
        let expected: Vec<u64> = (1..=19).filter(|s| ![6, 10].contains(s)).collect();
        assert_eq!(seqs, expected);
        assert_eq!(
            std::fs::metadata(&segment).unwrap().len(),
            (19 * record) as u64,
            "the cut-short record is cut off"
        );
    }

    #[test]
    fn the_bound_is_on_disk_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = SegmentLog::open(dir.path(), 1000, 400).unwrap();
        let mut appended = 0;
        while log.has_room_for(100).unwrap() {
            log.append(&[7; 100]).unwrap();
            appended += 1;
        }
        assert_eq!(appended, 1000 / (HEADER + 100));
        assert!(log.bytes() <= 1000);
        for seq in 1..=appended {
            log.ack(seq as u64).unwrap();
        }
        log.flush().unwrap();
        assert!(
            log.has_room_for(100).unwrap(),
            "delivered segments free their room"
        );
    }

    /// A file system of [`DISK_RESERVE`] + 1,000 bytes, the buffer alone on it.
    fn small_disk(dir: &Path) -> Option<u64> {
        let used: u64 = std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        Some((DISK_RESERVE + 1000).saturating_sub(used))
    }

    #[test]
    fn a_full_disk_is_a_full_buffer_and_delivered_records_free_it() {
        let dir = tempfile::tempdir().unwrap();
        // `max_size` far beyond the disk, and every record in one segment.
        let (mut log, _) = SegmentLog::open(dir.path(), 1 << 30, 1 << 20).unwrap();
        log.disk.free = small_disk;
        let fill = |log: &mut SegmentLog| {
            let mut appended = Vec::new();
            while log.has_room_for(100).unwrap() {
                appended.push(log.append(&[7; 100]).unwrap());
                log.flush().unwrap();
            }
            appended
        };
        let first = fill(&mut log);
        // 1,000 bytes: seven records of 128 bytes, the reserve kept.
        assert_eq!(first.len(), 1000 / (HEADER + 100));
        assert!(small_disk(dir.path()).unwrap() >= DISK_RESERVE);
        assert!(!log.has_room_for(100).unwrap(), "full until deliveries");
        // All delivered but the last: the segment it is in cannot go.
        for seq in &first[..first.len() - 1] {
            log.ack(*seq).unwrap();
        }
        assert!(!log.has_room_for(100).unwrap());
        // The last too: its segment, the one appended to, is closed and goes.
        log.ack(*first.last().unwrap()).unwrap();
        assert!(log.has_room_for(100).unwrap());
        let second = fill(&mut log);
        assert_eq!(second.len(), first.len());
        assert_eq!(log.records(), second.len() as u64);
    }

    #[test]
    fn acknowledgements_lost_in_a_kill_leave_no_gap_behind() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, _) = open(dir.path());
            for i in 0..100 {
                log.append(&body(i)).unwrap();
            }
            log.save_acks().unwrap();
            // Delivered, their segments deleted, and killed before the save.
            for seq in 1..=60 {
                log.ack(seq).unwrap();
            }
            log.flush().unwrap();
        }
        let (mut log, recovery) = open(dir.path());
        assert!(recovery.pending <= 40 + 20, "{recovery:?}");
        let read: Vec<u64> = read_all(&mut log).into_iter().map(|(s, _)| s).collect();
        for seq in &read {
            log.ack(*seq).unwrap();
        }
        assert_eq!(log.records(), 0);
        assert!(log.acks.above.is_empty(), "no gap: {:?}", log.acks);
        assert_eq!(log.acks.upto, 100);
        assert_eq!(segments_of(dir.path()).len(), 1, "delivered segments went");
    }

    #[test]
    fn a_record_damaged_after_it_was_written_is_lost_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path());
        for i in 0..60 {
            log.append(&body(i)).unwrap();
        }
        log.flush().unwrap();
        let first = segments_of(dir.path())[0].clone();
        let mut bytes = std::fs::read(&first).unwrap();
        bytes[HEADER + 3] ^= 0xFF;
        std::fs::write(&first, &bytes).unwrap();
        let read: Vec<u64> = read_all(&mut log).into_iter().map(|(s, _)| s).collect();
        assert_eq!(read.len(), 59);
        assert_eq!(log.take_lost(), 1);
        for seq in read {
            log.ack(seq).unwrap();
        }
        assert_eq!(log.records(), 0, "the lost record is not waited for");
    }

    fn segments_of(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        files.sort();
        files
    }

    proptest::proptest! {
        #[test]
        fn any_damage_to_a_segment_is_survived(flips in proptest::collection::vec((0usize..4000, 0u8..=255), 0..8), cut in 0usize..4000) {
            let dir = tempfile::tempdir().unwrap();
            {
                let (mut log, _) = SegmentLog::open(dir.path(), 1 << 20, 1 << 20).unwrap();
                for i in 0..100 {
                    log.append(&body(i)).unwrap();
                }
                log.flush().unwrap();
            }
            let segment = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).next().unwrap();
            let mut bytes = std::fs::read(&segment).unwrap();
            for (at, value) in flips {
                if let Some(b) = bytes.get_mut(at) {
                    *b = value;
                }
            }
            bytes.truncate(bytes.len().saturating_sub(cut));
            std::fs::write(&segment, &bytes).unwrap();
            let (mut log, recovery) = SegmentLog::open(dir.path(), 1 << 20, 1 << 20).unwrap();
            let read = read_all(&mut log);
            proptest::prop_assert_eq!(read.len() as u64, recovery.pending);
            for (seq, b) in read {
                proptest::prop_assert_eq!(b, body(seq - 1), "a record read is a record written");
            }
        }
    }
}
