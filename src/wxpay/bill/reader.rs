//! The streaming reader: lines from any `BufRead` (plain text or GZIP), the header first, the data
//! rows as an iterator, the summary last, and the cross-check of the summary against the rows.

use std::io::{self, BufRead, BufReader, Read};
use std::iter::FusedIterator;

use flate2::bufread::GzDecoder;

use super::layout::{BillLayout, Column, SUMMARY_MARKER};
use super::row::{self, ColumnMap, Fields, SummaryMap, Totals};
use super::{BillError, BillRow, BillSummary};

/// The longest line accepted. Real rows are a few hundred bytes (body ≤ 128, attach ≤ 127); the
/// limit keeps a corrupt or hostile file from growing the line buffer without bound.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

const READ_BUFFER_BYTES: usize = 64 * 1024;
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A bill body as downloaded: plain text, or the GZIP stream of `tar_type=GZIP`.
pub enum BillSource<R> {
    Plain(R),
    Gzip(GzDecoder<BufReader<R>>),
}

impl<R: Read> Read for BillSource<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            BillSource::Plain(r) => r.read(buf),
            BillSource::Gzip(r) => r.read(buf),
        }
    }
}

/// What [`BillReader::open`] returns.
pub type OpenedBill<R> = BillReader<BufReader<BillSource<R>>>;

/// Lines of the input, one at a time, in a reused buffer without their `\n` or `\r\n`.
struct Lines<R> {
    input: R,
    buf: Vec<u8>,
    number: u64,
    bytes: u64,
}

impl<R: BufRead> Lines<R> {
    /// Reads the next line into `buf`; `false` at the end of the input.
    fn next(&mut self) -> Result<bool, BillError> {
        self.buf.clear();
        let mut any = false;
        loop {
            let chunk = match self.input.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(BillError::Io { line: self.number + 1, kind: e.kind(), message: e.to_string() });
                }
            };
            if chunk.is_empty() {
                break;
            }
            any = true;
            let (take, complete) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            if self.buf.len() + take > MAX_LINE_BYTES + 2 {
                return Err(BillError::LineTooLong { line: self.number + 1, limit: MAX_LINE_BYTES });
            }
            self.buf.extend_from_slice(chunk.get(..take).unwrap_or(chunk));
            self.input.consume(take);
            self.bytes += take as u64;
            if complete {
                break;
            }
        }
        if !any {
            return Ok(false);
        }
        self.number += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        if self.number == 1 && self.buf.starts_with(BOM) {
            self.buf.drain(..BOM.len());
        }
        Ok(true)
    }

    /// Reads up to the next line with content; `false` at the end of the input.
    fn next_non_blank(&mut self) -> Result<bool, BillError> {
        while self.next()? {
            if !self.buf.iter().all(u8::is_ascii_whitespace) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn text(&self) -> Result<&str, BillError> {
        std::str::from_utf8(&self.buf).map_err(|_| BillError::NotUtf8 { line: self.number })
    }
}

/// A streaming bill parser: an iterator of rows, then [`finish`](BillReader::finish) for the
/// cross-checked summary.
///
/// The first error ends the bill: the iterator yields it once and then stops, and `finish`
/// returns it again. A bill is a statement of money; a row we cannot read makes every total
/// after it meaningless, so there is no skipping.
pub struct BillReader<R> {
    lines: Lines<R>,
    columns: Vec<String>,
    map: ColumnMap,
    layout: BillLayout,
    spans: Vec<(usize, usize)>,
    totals: Totals,
    /// Set when the summary has been read or an error ended the bill.
    outcome: Option<Result<BillSummary, BillError>>,
}

impl<R: Read> BillReader<BufReader<BillSource<R>>> {
    /// Reads a downloaded bill body, decompressing it first when `gzip`.
    pub fn open(reader: R, gzip: bool) -> Result<Self, BillError> {
        let source = if gzip {
            let mut raw = BufReader::with_capacity(READ_BUFFER_BYTES, reader);
            // Zero bytes are an empty body whether or not they were meant to be GZIP; the
            // decoder would call them a truncated stream.
            match raw.fill_buf() {
                Ok([]) => return Err(BillError::EmptyBody),
                Ok(_) => {}
                Err(e) => return Err(BillError::Io { line: 1, kind: e.kind(), message: e.to_string() }),
            }
            BillSource::Gzip(GzDecoder::new(raw))
        } else {
            BillSource::Plain(reader)
        };
        BillReader::new(BufReader::with_capacity(READ_BUFFER_BYTES, source))
    }
}

impl<R: BufRead> BillReader<R> {
    /// Reads and checks the header line; rows follow through the iterator.
    pub fn new(input: R) -> Result<Self, BillError> {
        let mut lines = Lines { input, buf: Vec::with_capacity(1024), number: 0, bytes: 0 };
        if !lines.next_non_blank()? {
            return Err(if lines.bytes == 0 { BillError::EmptyBody } else { BillError::NoHeader });
        }
        let columns = row::header_names(lines.text()?);
        let map = ColumnMap::new(&columns, lines.number)?;
        let layout = match map.position(Column::Settlement).and_then(|i| columns.get(i)) {
            Some(name) if name == "总金额" => BillLayout::Legacy,
            _ => BillLayout::Current,
        };
        Ok(BillReader {
            lines,
            columns,
            map,
            layout,
            spans: Vec::with_capacity(32),
            totals: Totals::default(),
            outcome: None,
        })
    }

    /// The header's column names, trimmed, in file order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Which format the header is in (legacy when the settlement column is 总金额).
    pub fn layout(&self) -> BillLayout {
        self.layout
    }

    /// Data rows read so far.
    pub fn rows_read(&self) -> u64 {
        self.totals.rows
    }

    /// The last line read (1-based).
    pub fn line_number(&self) -> u64 {
        self.lines.number
    }

    /// Reads any rows left, then returns the summary once it agrees with the rows: the row count
    /// and every total the summary prints must equal the exact sums of the rows.
    pub fn finish(mut self) -> Result<BillSummary, BillError> {
        while self.next().is_some() {}
        let summary = self.outcome.take().unwrap_or(Err(BillError::MissingSummary))?;
        self.totals.check(&summary)?;
        Ok(summary)
    }

    fn step(&mut self) -> Result<Option<BillRow>, BillError> {
        if !self.lines.next_non_blank()? {
            return Err(BillError::MissingSummary);
        }
        let line = self.lines.number;
        let text = self.lines.text()?;
        let first = text.split([',', '，']).next().unwrap_or("").trim();
        if first == SUMMARY_MARKER {
            let names = row::header_names(text);
            let summary = self.read_summary(&names, line)?;
            self.outcome = Some(Ok(summary));
            return Ok(None);
        }
        let body = row::split(text, line, &mut self.spans)?;
        let fields = Fields::align(body, &self.spans, &self.map, line)?;
        let parsed = row::parse_row(&fields, &self.map, line)?;
        self.totals.add(&parsed, line)?;
        Ok(Some(parsed))
    }

    fn read_summary(&mut self, names: &[String], header_line: u64) -> Result<BillSummary, BillError> {
        let map = SummaryMap::new(names, header_line)?;
        if !self.lines.next_non_blank()? {
            return Err(BillError::MissingSummaryValues { line: header_line });
        }
        let line = self.lines.number;
        let text = self.lines.text()?;
        let body = row::split(text, line, &mut self.spans)?;
        let summary = row::parse_summary(&Fields::plain(body, &self.spans), &map, line)?;
        if self.lines.next_non_blank()? {
            return Err(BillError::TrailingData { line: self.lines.number });
        }
        Ok(summary)
    }
}

impl<R: BufRead> Iterator for BillReader<R> {
    type Item = Result<BillRow, BillError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.outcome.is_some() {
            return None;
        }
        match self.step() {
            Ok(row) => row.map(Ok),
            Err(e) => {
                self.outcome = Some(Err(e.clone()));
                Some(Err(e))
            }
        }
    }
}

impl<R: BufRead> FusedIterator for BillReader<R> {}
