//! Shard rows read where they lie. A scatter's rows arrive as text-protocol
//! row packets, or as binary-protocol ones whose every cell is a
//! length-coded string (then each cell's bytes are what the text protocol
//! sends: see [`index_binary`]); the engine indexes each packet's cells
//! once and compares, trims and hands them on in place ([`TextRow`]), so
//! a row crosses the merge without an allocation per cell (decoding every
//! cell into a `Value` made allocation the largest cost of a scatter).

use mysql_common::value::Value;

/// Where one cell of a [`TextRow`] lies in its packet.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cell {
    /// Offset of the cell's bytes (for NULL, of the byte after its marker).
    at: u32,
    /// Length of the cell's bytes; [`NULL`] for SQL NULL.
    len: u32,
}

/// The length that marks a NULL cell.
const NULL: u32 = u32::MAX;

impl Cell {
    fn end(self) -> usize {
        if self.len == NULL {
            self.at as usize
        } else {
            (self.at + self.len) as usize
        }
    }
}

/// One row of text cells: its packet payload and the cells found in it.
/// Borrowed from the stream that read it, valid until that stream moves on.
#[derive(Debug, Clone, Copy)]
pub struct TextRow<'a> {
    payload: &'a [u8],
    cells: &'a [Cell],
    /// For a binary-protocol packet, how many cells it holds (its NULL
    /// bitmap's width); 0 for a text-protocol one.
    binary_width: u32,
}

impl<'a> TextRow<'a> {
    /// A row over text-protocol `payload` whose cells `cells` located
    /// ([`index`]).
    pub fn new(payload: &'a [u8], cells: &'a [Cell]) -> TextRow<'a> {
        TextRow {
            payload,
            cells,
            binary_width: 0,
        }
    }

    /// A row over binary-protocol `payload` whose cells `cells` located
    /// ([`index_binary`]).
    pub fn new_binary(payload: &'a [u8], cells: &'a [Cell]) -> TextRow<'a> {
        TextRow {
            payload,
            cells,
            binary_width: cells.len() as u32,
        }
    }

    /// Number of cells.
    pub fn width(&self) -> usize {
        self.cells.len()
    }

    /// Cell `i`'s bytes, None for NULL.
    pub fn cell(&self, i: usize) -> Option<&'a [u8]> {
        let c = self.cells[i];
        (c.len != NULL).then(|| &self.payload[c.at as usize..(c.at + c.len) as usize])
    }

    /// The cells in order.
    pub fn cells(&self) -> impl Iterator<Item = Option<&'a [u8]>> + '_ {
        (0..self.cells.len()).map(|i| self.cell(i))
    }

    /// The row's first `n` cells (the hidden columns a merge sorted by
    /// are cut off the end): a text row's packet is cut with them, a
    /// binary row's stays whole (its NULL bitmap counts every cell).
    pub fn truncated(&self, n: usize) -> TextRow<'a> {
        if n >= self.cells.len() {
            return *self;
        }
        if self.binary_width > 0 {
            return TextRow {
                cells: &self.cells[..n],
                ..*self
            };
        }
        let end = n.checked_sub(1).map_or(0, |last| self.cells[last].end());
        TextRow {
            payload: &self.payload[..end],
            cells: &self.cells[..n],
            binary_width: 0,
        }
    }

    /// The row as a text-protocol row packet's payload, when it came as one.
    pub fn text_payload(&self) -> Option<&'a [u8]> {
        (self.binary_width == 0).then_some(self.payload)
    }

    /// The row as a binary-protocol row packet's payload, when it came as
    /// one holding just these cells: a prepared statement's client takes
    /// it as it is.
    pub fn binary_payload(&self) -> Option<&'a [u8]> {
        (self.binary_width > 0 && self.binary_width as usize == self.cells.len())
            .then_some(self.payload)
    }

    /// Appends the row as a text-protocol row packet's payload.
    pub fn write_text(&self, out: &mut Vec<u8>) {
        if let Some(p) = self.text_payload() {
            out.extend_from_slice(p);
            return;
        }
        for c in self.cells() {
            put_text_cell(out, c);
        }
    }

    /// The row decoded (for the gate's gathered rows and sinks that take values).
    pub fn to_values(&self) -> Vec<Value> {
        self.cells()
            .map(|c| c.map_or(Value::NULL, |b| Value::Bytes(b.to_vec())))
            .collect()
    }
}

/// Locates the cells of a text row packet into `cells`; false (a malformed
/// row) unless it holds exactly `width` cells and nothing after them.
pub fn index(payload: &[u8], width: usize, cells: &mut Vec<Cell>) -> bool {
    cells.clear();
    let mut at = 0usize;
    for _ in 0..width {
        if payload.get(at) == Some(&0xFB) {
            cells.push(Cell {
                at: at as u32 + 1,
                len: NULL,
            });
            at += 1;
            continue;
        }
        let Some(cell) = lenenc_cell(payload, at) else {
            return false;
        };
        at = cell.end();
        cells.push(cell);
    }
    at == payload.len()
}

/// Locates the cells of a binary-protocol row packet whose every column
/// is of a type the binary protocol sends as a length-coded string, as
/// the text protocol does (strings, decimals, bits: see
/// [`crate::backend::lean`]'s check of the column definitions), into
/// `cells`; false (a malformed row) unless it holds exactly `width`
/// cells and nothing after them. NULLs are the bitmap's.
pub fn index_binary(payload: &[u8], width: usize, cells: &mut Vec<Cell>) -> bool {
    cells.clear();
    let bitmap = (width + 7 + 2) / 8;
    if payload.first() != Some(&0) || payload.len() < 1 + bitmap {
        return false;
    }
    let mut at = 1 + bitmap;
    for i in 0..width {
        let bit = i + 2;
        if payload[1 + bit / 8] & (1 << (bit % 8)) != 0 {
            cells.push(Cell {
                at: at as u32,
                len: NULL,
            });
            continue;
        }
        let Some(cell) = lenenc_cell(payload, at) else {
            return false;
        };
        at = cell.end();
        cells.push(cell);
    }
    at == payload.len()
}

/// The length-coded string at `at`, None when it is malformed or runs
/// past the payload.
fn lenenc_cell(payload: &[u8], at: usize) -> Option<Cell> {
    let (len, head) = match *payload.get(at)? {
        0xFC => (le(payload, at + 1, 2)?, 3),
        0xFD => (le(payload, at + 1, 3)?, 4),
        0xFE => (le(payload, at + 1, 8)?, 9),
        0xFB | 0xFF => return None,
        n => (n as u64, 1),
    };
    let start = at + head;
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| start.checked_add(l))?;
    // Offsets are kept in 32 bits: MySQL packets carry at most 16 MB
    // each, and a row over several packets is joined before it is indexed.
    if end > payload.len() || end >= NULL as usize {
        return None;
    }
    Some(Cell {
        at: start as u32,
        len: len as u32,
    })
}

/// Appends one cell of a text-protocol row: its bytes length-coded, or
/// the NULL marker.
fn put_text_cell(out: &mut Vec<u8>, cell: Option<&[u8]>) {
    match cell {
        Some(b) => crate::frontend::packets::put_lenenc_str(out, b),
        None => out.push(0xFB),
    }
}

/// `n` little-endian bytes at `at`, None when the payload ends first.
fn le(p: &[u8], at: usize, n: usize) -> Option<u64> {
    let b = p.get(at..at + n)?;
    Some(b.iter().rev().fold(0u64, |v, &x| (v << 8) | x as u64))
}

/// One shard's rows of a scatter, as it reads them: each row is read in
/// place and stays readable until the next is asked for.
pub trait ShardRows: Send {
    /// Makes the next row readable with [`ShardRows::row`] (true), or
    /// reports the result's end (false); the row handed out before is
    /// given up. A row is as wide as its shard's result (the merge checks
    /// that against the columns it was planned for).
    fn poll_next_row(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<bool, crate::error::Error>>;

    /// [`ShardRows::poll_next_row`] when its answer is at hand (the next
    /// row is already read, or the result has ended); None when it is not,
    /// and then the caller polls. A sorted merge moves a shard on this way
    /// first: most rows are buffered, and a plain call costs a fraction of
    /// a poll through an async wait.
    fn next_at_hand(&mut self) -> Option<Result<bool, crate::error::Error>> {
        None
    }

    /// The row the last successful [`ShardRows::poll_next_row`] made readable.
    fn row(&self) -> TextRow<'_>;

    /// The width of every row, when the stream refuses rows of any other
    /// (then a merge need not check each row's); None when it does not.
    fn row_width(&self) -> Option<usize> {
        None
    }

    /// Hands the rows this stream has already read whole behind its
    /// current row (which is given up: poll the next before reading one)
    /// to `sink` as they were framed, when they are `width` cells wide
    /// and in the protocol the client takes (`binary`); false when it
    /// has none at hand or cannot. An unordered scatter's rows that need
    /// no cut then cross the gate as one copy per read.
    fn forward_run(
        &mut self,
        sink: &mut dyn super::PacketSink,
        binary: bool,
        width: usize,
    ) -> bool {
        let _ = (sink, binary, width);
        false
    }
}

/// Waits for a shard's next row (see [`ShardRows::poll_next_row`]).
pub async fn next(rows: &mut (dyn ShardRows + '_)) -> Result<bool, crate::error::Error> {
    if let Some(r) = rows.next_at_hand() {
        return r;
    }
    std::future::poll_fn(|cx| rows.poll_next_row(cx)).await
}

/// A text row kept past its stream's next read (a group's first row), or
/// built here; its buffers are reused from row to row.
#[derive(Debug, Default)]
pub struct OwnedRow {
    payload: Vec<u8>,
    cells: Vec<Cell>,
    binary_width: u32,
}

impl OwnedRow {
    /// Becomes a copy of `row`.
    pub fn copy_from(&mut self, row: TextRow<'_>) {
        self.payload.clear();
        self.payload.extend_from_slice(row.payload);
        self.cells.clear();
        self.cells.extend_from_slice(row.cells);
        self.binary_width = row.binary_width;
    }

    /// Becomes the row of `row`'s cells `picks`, in that order.
    pub fn pick_from(&mut self, row: TextRow<'_>, picks: &[usize]) {
        self.payload.clear();
        for &i in picks {
            put_text_cell(&mut self.payload, row.cell(i));
        }
        self.reindex(picks.len());
    }

    /// Becomes the row of text `values`.
    pub fn set(&mut self, values: &[Value]) {
        self.payload.clear();
        crate::frontend::packets::text_row(&mut self.payload, values);
        self.reindex(values.len());
    }

    fn reindex(&mut self, width: usize) {
        let whole = index(&self.payload, width, &mut self.cells);
        debug_assert!(whole, "a row encoded here indexes");
        self.binary_width = 0;
    }

    /// The row.
    pub fn row(&self) -> TextRow<'_> {
        TextRow {
            payload: &self.payload,
            cells: &self.cells,
            binary_width: self.binary_width,
        }
    }
}

/// Rows already in memory, encoded as a shard would send them: a test's
/// or benchmark's shard.
#[derive(Debug, Default)]
pub struct BufferedRows {
    rows: std::collections::VecDeque<Vec<Value>>,
    current: OwnedRow,
}

impl BufferedRows {
    /// Rows of text values (each as wide as it is).
    pub fn new(rows: impl IntoIterator<Item = Vec<Value>>) -> BufferedRows {
        BufferedRows {
            rows: rows.into_iter().collect(),
            current: OwnedRow::default(),
        }
    }
}

impl ShardRows for BufferedRows {
    fn poll_next_row(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<bool, crate::error::Error>> {
        std::task::Poll::Ready(Ok(match self.rows.pop_front() {
            Some(next) => {
                self.current.set(&next);
                true
            }
            None => false,
        }))
    }

    fn row(&self) -> TextRow<'_> {
        self.current.row()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(values: &[Value]) -> Vec<u8> {
        let mut p = Vec::new();
        crate::frontend::packets::text_row(&mut p, values);
        p
    }

    #[test]
    fn cells_are_found_in_place_and_truncation_cuts_the_packet() {
        let long = vec![b'x'; 70_000];
        let values = vec![
            Value::Bytes(b"1".to_vec()),
            Value::NULL,
            Value::Bytes(vec![b'y'; 300]),
            Value::Bytes(long.clone()),
            Value::Bytes(Vec::new()),
        ];
        let p = encode(&values);
        let mut cells = Vec::new();
        assert!(index(&p, 5, &mut cells));
        let row = TextRow::new(&p, &cells);
        assert_eq!(row.to_values(), values);
        assert_eq!(row.cell(3), Some(&long[..]));
        assert_eq!(
            row.truncated(2).text_payload(),
            Some(&encode(&values[..2])[..])
        );
        assert_eq!(row.truncated(0).text_payload(), Some(&b""[..]));
        assert_eq!(row.truncated(9).width(), 5);
        // Too few cells, too many, a length past the end, a stray 0xFF.
        assert!(!index(&p, 6, &mut cells));
        assert!(!index(&p, 4, &mut cells));
        assert!(!index(&p[..p.len() - 2], 5, &mut cells));
        assert!(!index(b"\xff", 1, &mut cells));
        assert!(!index(b"\xfc\x01", 1, &mut cells));
        assert!(!index(
            b"\xfe\xff\xff\xff\xff\xff\xff\xff\xff",
            1,
            &mut cells
        ));
    }

    #[test]
    fn binary_rows_read_as_text_cells() {
        // Three string cells, the middle one NULL (bit 1 + 2 of the bitmap).
        let p = b"\x00\x08\x02ab\x01c";
        let mut cells = Vec::new();
        assert!(index_binary(p, 3, &mut cells));
        let row = TextRow::new_binary(p, &cells);
        assert_eq!(
            row.cells().collect::<Vec<_>>(),
            [Some(&b"ab"[..]), None, Some(&b"c"[..])]
        );
        // Whole, it goes to a binary client as it came; it has no text form.
        assert_eq!(row.binary_payload(), Some(&p[..]));
        assert_eq!(row.text_payload(), None);
        let mut text = Vec::new();
        row.write_text(&mut text);
        let values = row.to_values();
        assert_eq!(text, encode(&values));
        // Cut, the bitmap no longer fits its cells.
        let cut = row.truncated(2);
        assert_eq!(cut.width(), 2);
        assert_eq!(cut.binary_payload(), None);
        // A copy keeps its form.
        let mut owned = OwnedRow::default();
        owned.copy_from(row);
        assert_eq!(owned.row().binary_payload(), Some(&p[..]));
        // Not a binary row, a cell past the end, bytes left over, no bitmap.
        assert!(!index_binary(b"\x01\x08\x02ab\x01c", 3, &mut cells));
        assert!(!index_binary(b"\x00\x08\x03ab\x01c", 3, &mut cells));
        assert!(!index_binary(b"\x00\x08\x02ab\x01cd", 3, &mut cells));
        assert!(!index_binary(b"\x00", 3, &mut cells));
    }
}
