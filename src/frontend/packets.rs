//! Payload encoders for the packets shardgate writes, and the parser of
//! COM_STMT_EXECUTE parameters. Column definitions are serialized by
//! mysql_common exactly as the tablet sent them.

use mysql_common::constants::{ColumnFlags, ColumnType};
use mysql_common::io::ParseBuf;
use mysql_common::packets::Column;
use mysql_common::proto::MyDeserialize;
use mysql_common::value::{BinValue, Value, ValueDeserializer};

use crate::engine::row::TextRow;
use crate::error::{Error, MysqlError};

/// Appends a length-encoded integer.
pub fn put_lenenc_int(out: &mut Vec<u8>, n: u64) {
    match n {
        0..=250 => out.push(n as u8),
        251..=0xFFFF => {
            out.push(0xFC);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        0x1_0000..=0xFF_FFFF => {
            out.push(0xFD);
            out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xFE);
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
}

/// Appends a length-encoded string.
pub fn put_lenenc_str(out: &mut Vec<u8>, s: &[u8]) {
    put_lenenc_int(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// OK packet payload (protocol 4.1; session tracking announced, no state
/// change ever reported).
pub fn ok(affected: u64, last_insert_id: u64, status: u16, warnings: u16, info: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(16 + info.len());
    p.push(0x00);
    put_lenenc_int(&mut p, affected);
    put_lenenc_int(&mut p, last_insert_id);
    p.extend_from_slice(&status.to_le_bytes());
    p.extend_from_slice(&warnings.to_le_bytes());
    // Servers write the info length-encoded (the mysql client reads it so).
    if !info.is_empty() {
        put_lenenc_str(&mut p, info.as_bytes());
    }
    p
}

/// The OK packet that stands for an EOF with `CLIENT_DEPRECATE_EOF`: an
/// OK's fields (no rows affected, no insert id) behind EOF's 0xFE header.
pub fn eof_ok(status: u16, warnings: u16) -> [u8; 7] {
    let [w0, w1] = warnings.to_le_bytes();
    let [s0, s1] = status.to_le_bytes();
    [0xFE, 0, 0, s0, s1, w0, w1]
}

/// EOF packet payload.
pub fn eof(status: u16, warnings: u16) -> [u8; 5] {
    let [w0, w1] = warnings.to_le_bytes();
    let [s0, s1] = status.to_le_bytes();
    [0xFE, w0, w1, s0, s1]
}

/// ERR packet payload.
pub fn err(e: &MysqlError) -> Vec<u8> {
    let mut p = Vec::with_capacity(9 + e.message.len());
    p.push(0xFF);
    p.extend_from_slice(&e.code.to_le_bytes());
    p.push(b'#');
    let mut state = [b'H', b'Y', b'0', b'0', b'0'];
    for (d, s) in state.iter_mut().zip(e.state.bytes()) {
        *d = s;
    }
    p.extend_from_slice(&state);
    // Keep messages within what clients print comfortably.
    let msg = e.message.as_bytes();
    p.extend_from_slice(&msg[..msg.len().min(4096)]);
    p
}

/// A column definition payload (ColumnDefinition41), every field as the
/// tablet sent it. (mysql_common 0.37's own serializer writes the length
/// before the character set, which clients then misread.)
pub fn column_def(c: &Column) -> Vec<u8> {
    let mut p = Vec::with_capacity(64);
    put_lenenc_str(&mut p, b"def");
    put_lenenc_str(&mut p, c.schema_ref());
    put_lenenc_str(&mut p, c.table_ref());
    put_lenenc_str(&mut p, c.org_table_ref());
    put_lenenc_str(&mut p, c.name_ref());
    put_lenenc_str(&mut p, c.org_name_ref());
    p.push(0x0c);
    p.extend_from_slice(&c.character_set().to_le_bytes());
    p.extend_from_slice(&c.column_length().to_le_bytes());
    p.push(c.column_type() as u8);
    p.extend_from_slice(&c.flags().bits().to_le_bytes());
    p.push(c.decimals());
    p.extend_from_slice(&[0, 0]);
    p
}

/// A text-protocol row payload.
pub fn text_row(out: &mut Vec<u8>, values: &[Value]) {
    for v in values {
        match v {
            Value::NULL => out.push(0xFB),
            Value::Bytes(b) => put_lenenc_str(out, b),
            other => put_lenenc_str(out, other.as_sql(true).trim_matches('\'').as_bytes()),
        }
    }
}

/// A binary-protocol row payload: the tablet's text values converted to the
/// binary form of each column's type, typed values (a tablet's binary row)
/// written directly.
pub fn binary_row(out: &mut Vec<u8>, cols: &[Column], values: &[Value]) -> Result<(), Error> {
    binary_cells(out, cols, values, |out, c, v| {
        match v {
            Value::NULL => return Ok(false),
            Value::Bytes(b) => encode_binary(out, c, b)?,
            other => {
                if !put_typed(out, c, other) {
                    let s = other.as_sql(true);
                    encode_binary(out, c, s.trim_matches('\'').as_bytes())?
                }
            }
        }
        Ok(true)
    })
}

/// [`binary_row`] of a row read in place (a merge's rows).
pub fn binary_text_row(out: &mut Vec<u8>, cols: &[Column], row: TextRow<'_>) -> Result<(), Error> {
    binary_cells(out, cols, row.cells(), |out, c, cell| match cell {
        Some(b) => encode_binary(out, c, b).map(|()| true),
        None => Ok(false),
    })
}

/// A binary row's header and NULL bitmap around cells that `put` writes
/// (false: the cell is NULL and wrote nothing).
fn binary_cells<T>(
    out: &mut Vec<u8>,
    cols: &[Column],
    cells: impl IntoIterator<Item = T>,
    put: impl Fn(&mut Vec<u8>, &Column, T) -> Result<bool, Error>,
) -> Result<(), Error> {
    out.push(0x00);
    let bitmap_at = out.len();
    let bitmap_len = (cols.len() + 7 + 2) / 8;
    out.resize(bitmap_at + bitmap_len, 0);
    for (i, (c, v)) in cols.iter().zip(cells).enumerate() {
        if !put(out, c, v)? {
            let bit = i + 2;
            out[bitmap_at + bit / 8] |= 1 << (bit % 8);
        }
    }
    Ok(())
}

fn encode_binary(out: &mut Vec<u8>, c: &Column, text: &[u8]) -> Result<(), Error> {
    use ColumnType::*;
    let bad = || Error::Encode {
        column: c.name_str().into_owned(),
        kind: format!("{:?}", c.column_type()),
        value: String::from_utf8_lossy(text).into_owned(),
    };
    let s = || std::str::from_utf8(text).map_err(|_| bad());
    let unsigned = c.flags().contains(ColumnFlags::UNSIGNED_FLAG);
    let int = |bytes: usize, out: &mut Vec<u8>| -> Result<(), Error> {
        let t = s()?;
        let v: u64 = if unsigned {
            t.parse::<u64>().map_err(|_| bad())?
        } else {
            t.parse::<i64>().map_err(|_| bad())? as u64
        };
        out.extend_from_slice(&v.to_le_bytes()[..bytes]);
        Ok(())
    };
    match c.column_type() {
        MYSQL_TYPE_TINY => int(1, out)?,
        MYSQL_TYPE_SHORT | MYSQL_TYPE_YEAR => int(2, out)?,
        MYSQL_TYPE_LONG | MYSQL_TYPE_INT24 => int(4, out)?,
        MYSQL_TYPE_LONGLONG => int(8, out)?,
        MYSQL_TYPE_FLOAT => {
            out.extend_from_slice(&s()?.parse::<f32>().map_err(|_| bad())?.to_le_bytes())
        }
        MYSQL_TYPE_DOUBLE => {
            out.extend_from_slice(&s()?.parse::<f64>().map_err(|_| bad())?.to_le_bytes())
        }
        MYSQL_TYPE_DATE
        | MYSQL_TYPE_NEWDATE
        | MYSQL_TYPE_DATETIME
        | MYSQL_TYPE_DATETIME2
        | MYSQL_TYPE_TIMESTAMP
        | MYSQL_TYPE_TIMESTAMP2 => {
            let (y, mo, d, h, mi, se, us) = parse_datetime(s()?).ok_or_else(bad)?;
            put_datetime(out, (y, mo, d, h, mi, se, us));
        }
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => {
            let (neg, days, h, mi, se, us) = parse_time(s()?).ok_or_else(bad)?;
            put_time(out, neg, days, h, mi, se, us);
        }
        _ => put_lenenc_str(out, text),
    }
    Ok(())
}

type DateTimeParts = (u16, u8, u8, u8, u8, u8, u32);

/// A binary-protocol DATE/DATETIME/TIMESTAMP value: the shortest of the
/// 0/4/7/11-byte forms that holds it.
fn put_datetime(out: &mut Vec<u8>, (y, mo, d, h, mi, se, us): DateTimeParts) {
    let len: u8 = if us != 0 {
        11
    } else if h != 0 || mi != 0 || se != 0 {
        7
    } else if y != 0 || mo != 0 || d != 0 {
        4
    } else {
        0
    };
    out.push(len);
    if len >= 4 {
        out.extend_from_slice(&y.to_le_bytes());
        out.extend_from_slice(&[mo, d]);
    }
    if len >= 7 {
        out.extend_from_slice(&[h, mi, se]);
    }
    if len == 11 {
        out.extend_from_slice(&us.to_le_bytes());
    }
}

/// A binary-protocol TIME value (0, 8 or 12 bytes).
fn put_time(out: &mut Vec<u8>, neg: bool, days: u32, h: u8, mi: u8, se: u8, us: u32) {
    if days == 0 && h == 0 && mi == 0 && se == 0 && us == 0 {
        out.push(0);
        return;
    }
    out.push(if us != 0 { 12 } else { 8 });
    out.push(neg as u8);
    out.extend_from_slice(&days.to_le_bytes());
    out.extend_from_slice(&[h, mi, se]);
    if us != 0 {
        out.extend_from_slice(&us.to_le_bytes());
    }
}

/// Writes a typed value (from a tablet's binary-protocol row) in the
/// binary form of its column; false when the pair needs the text route.
fn put_typed(out: &mut Vec<u8>, c: &Column, v: &Value) -> bool {
    use ColumnType::*;
    let width = match c.column_type() {
        MYSQL_TYPE_TINY => 1,
        MYSQL_TYPE_SHORT | MYSQL_TYPE_YEAR => 2,
        MYSQL_TYPE_LONG | MYSQL_TYPE_INT24 => 4,
        MYSQL_TYPE_LONGLONG => 8,
        _ => 0,
    };
    match (v, c.column_type()) {
        (Value::Int(i), _) if width > 0 => out.extend_from_slice(&i.to_le_bytes()[..width]),
        (Value::UInt(u), _) if width > 0 => out.extend_from_slice(&u.to_le_bytes()[..width]),
        (Value::Float(f), MYSQL_TYPE_FLOAT) => out.extend_from_slice(&f.to_le_bytes()),
        (Value::Double(d), MYSQL_TYPE_DOUBLE) => out.extend_from_slice(&d.to_le_bytes()),
        (
            Value::Date(y, mo, d, h, mi, se, us),
            MYSQL_TYPE_DATE
            | MYSQL_TYPE_NEWDATE
            | MYSQL_TYPE_DATETIME
            | MYSQL_TYPE_DATETIME2
            | MYSQL_TYPE_TIMESTAMP
            | MYSQL_TYPE_TIMESTAMP2,
        ) => put_datetime(out, (*y, *mo, *d, *h, *mi, *se, *us)),
        (Value::Time(neg, days, h, mi, se, us), MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2) => {
            put_time(out, *neg, *days, *h, *mi, *se, *us)
        }
        _ => return false,
    }
    true
}

fn parse_datetime(s: &str) -> Option<DateTimeParts> {
    let (date, time) = match s.split_once([' ', 'T']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut d = date.splitn(3, '-');
    let y = d.next()?.parse().ok()?;
    let mo = d.next()?.parse().ok()?;
    let day = d.next()?.parse().ok()?;
    let (h, mi, se, us) = match time {
        Some(t) => {
            let (_, h, mi, se, us) = parse_hms(t)?;
            (u8::try_from(h).ok()?, mi, se, us)
        }
        None => (0, 0, 0, 0),
    };
    Some((y, mo, day, h, mi, se, us))
}

fn parse_hms(t: &str) -> Option<(bool, u32, u8, u8, u32)> {
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t),
    };
    let (hms, frac) = match t.split_once('.') {
        Some((a, f)) => (a, f),
        None => (t, ""),
    };
    let mut p = hms.splitn(3, ':');
    let h: u32 = p.next()?.parse().ok()?;
    let mi: u8 = p.next()?.parse().ok()?;
    let se: u8 = p.next()?.parse().ok()?;
    let us = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
        digits.parse().ok()?
    };
    Some((neg, h, mi, se, us))
}

fn parse_time(s: &str) -> Option<(bool, u32, u8, u8, u8, u32)> {
    let (neg, h, mi, se, us) = parse_hms(s)?;
    Some((neg, h / 24, (h % 24) as u8, mi, se, us))
}

/// Parameter types a client may bind (mysql_common's decoder handles
/// exactly these; it must never see another).
fn param_type_ok(t: ColumnType) -> bool {
    use ColumnType::*;
    matches!(
        t,
        MYSQL_TYPE_STRING
            | MYSQL_TYPE_VAR_STRING
            | MYSQL_TYPE_BLOB
            | MYSQL_TYPE_TINY_BLOB
            | MYSQL_TYPE_MEDIUM_BLOB
            | MYSQL_TYPE_LONG_BLOB
            | MYSQL_TYPE_SET
            | MYSQL_TYPE_ENUM
            | MYSQL_TYPE_DECIMAL
            | MYSQL_TYPE_VARCHAR
            | MYSQL_TYPE_BIT
            | MYSQL_TYPE_NEWDECIMAL
            | MYSQL_TYPE_GEOMETRY
            | MYSQL_TYPE_JSON
            | MYSQL_TYPE_TINY
            | MYSQL_TYPE_SHORT
            | MYSQL_TYPE_YEAR
            | MYSQL_TYPE_LONG
            | MYSQL_TYPE_INT24
            | MYSQL_TYPE_LONGLONG
            | MYSQL_TYPE_FLOAT
            | MYSQL_TYPE_DOUBLE
            | MYSQL_TYPE_TIMESTAMP
            | MYSQL_TYPE_DATE
            | MYSQL_TYPE_NEWDATE
            | MYSQL_TYPE_DATETIME
            | MYSQL_TYPE_TIME
            | MYSQL_TYPE_NULL
    )
}

/// Parses COM_STMT_EXECUTE's body after the command byte: returns the
/// statement id and the parameter values. `types` holds the types bound by
/// an earlier execute and is updated when the client sends new ones.
pub fn parse_execute(
    body: &[u8],
    n_params: usize,
    types: &mut Vec<(ColumnType, bool)>,
    long_data: &mut crate::fasthash::FastMap<u16, Vec<u8>>,
) -> Result<Vec<Value>, Error> {
    let bad = |what: &str| Error::Malformed(format!("COM_STMT_EXECUTE: {what}"));
    // stmt id (4), flags (1), iteration count (4) were read by the caller.
    let mut buf = ParseBuf(body);
    if n_params == 0 {
        return Ok(Vec::new());
    }
    let bitmap = buf
        .checked_eat(n_params.div_ceil(8))
        .ok_or_else(|| bad("truncated null bitmap"))?;
    let new_bound = buf
        .checked_eat_u8()
        .ok_or_else(|| bad("truncated bound flag"))?;
    if new_bound == 1 {
        types.clear();
        for _ in 0..n_params {
            let t = buf
                .checked_eat_u8()
                .ok_or_else(|| bad("truncated parameter types"))?;
            let flags = buf
                .checked_eat_u8()
                .ok_or_else(|| bad("truncated parameter types"))?;
            let ct = ColumnType::try_from(t)
                .ok()
                .filter(|ct| param_type_ok(*ct))
                .ok_or_else(|| bad("unsupported parameter type"))?;
            types.push((ct, flags & 0x80 != 0));
        }
    }
    if types.len() != n_params {
        return Err(bad("parameter types were never bound"));
    }
    let mut values = Vec::with_capacity(n_params);
    for (i, (ct, unsigned)) in types.iter().enumerate() {
        if let Some(data) = long_data.remove(&(i as u16)) {
            values.push(Value::Bytes(data));
            continue;
        }
        if bitmap[i / 8] & (1 << (i % 8)) != 0 || *ct == ColumnType::MYSQL_TYPE_NULL {
            values.push(Value::NULL);
            continue;
        }
        let flags = if *unsigned {
            ColumnFlags::UNSIGNED_FLAG
        } else {
            ColumnFlags::empty()
        };
        let v: ValueDeserializer<BinValue> = ValueDeserializer::deserialize((*ct, flags), &mut buf)
            .map_err(|e| bad(&format!("parameter {i}: {e}")))?;
        values.push(v.0);
    }
    Ok(values)
}

/// What a COM_CHANGE_USER carries (after its command byte), as a 4.1
/// client with secure connection sends it: the user, the answer to the
/// greeting's scramble, the database, then optionally the character set's
/// collation and the client's auth plugin (its connection attributes are
/// not read). mysql_common's own reader keeps its fields private.
#[derive(Debug, PartialEq, Eq)]
pub struct ChangeUser<'a> {
    /// The user to become.
    pub user: &'a [u8],
    /// The scramble's answer (length-prefixed by one byte).
    pub auth: &'a [u8],
    /// The database to use (empty: none).
    pub db: &'a [u8],
    /// The collation the connection is to speak, when sent.
    pub collation: Option<u16>,
    /// The plugin `auth` was made with, when sent.
    pub plugin: Option<&'a [u8]>,
}

/// Reads a COM_CHANGE_USER's body; None when it is cut short.
pub fn change_user(body: &[u8]) -> Option<ChangeUser<'_>> {
    fn c_string<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
        let end = memchr::memchr(0, b)?;
        let s = &b[..end];
        *b = &b[end + 1..];
        Some(s)
    }
    let mut b = body;
    let user = c_string(&mut b)?;
    let (&len, rest) = b.split_first()?;
    let auth = rest.get(..usize::from(len))?;
    b = &rest[usize::from(len)..];
    // Old clients end the packet after the database without its NUL.
    let db = c_string(&mut b).unwrap_or_else(|| std::mem::take(&mut b));
    let collation = b.get(..2).map(|c| u16::from_le_bytes([c[0], c[1]]));
    let plugin = b
        .get(2..)
        .filter(|p| !p.is_empty())
        .map(|p| p.split(|&c| c == 0).next().unwrap_or(p));
    Some(ChangeUser {
        user,
        auth,
        db,
        collation,
        plugin,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_change_user_is_read_as_clients_send_it() {
        let mut full = b"bob\0".to_vec();
        full.push(20);
        full.extend_from_slice(&[7; 20]);
        full.extend_from_slice(b"customer\0");
        full.extend_from_slice(&45u16.to_le_bytes());
        full.extend_from_slice(b"mysql_native_password\0");
        full.extend_from_slice(&[3, 1, b'k', 0]);
        let c = super::change_user(&full).unwrap();
        assert_eq!(c.user, b"bob");
        assert_eq!(c.auth, &[7; 20]);
        assert_eq!(c.db, b"customer");
        assert_eq!(c.collation, Some(45));
        assert_eq!(c.plugin, Some(&b"mysql_native_password"[..]));
        // No password, no database, nothing after.
        let c = super::change_user(b"app\0\0\0").unwrap();
        assert_eq!((c.user, c.auth, c.db), (&b"app"[..], &b""[..], &b""[..]));
        assert_eq!((c.collation, c.plugin), (None, None));
        // A database without its NUL at the packet's end.
        assert_eq!(super::change_user(b"app\0\0ks").unwrap().db, b"ks");
        // Cut short: no user's end, or fewer scramble bytes than announced.
        assert_eq!(super::change_user(b"app"), None);
        assert_eq!(super::change_user(b"app\0\x14abc"), None);
        assert_eq!(super::change_user(b""), None);
    }

    use super::*;

    fn col(t: ColumnType, flags: ColumnFlags) -> Column {
        Column::new(t).with_flags(flags).with_name(b"c")
    }

    fn bin(t: ColumnType, flags: ColumnFlags, text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        encode_binary(&mut out, &col(t, flags), text.as_bytes()).unwrap();
        out
    }

    #[test]
    fn column_definitions_parse_back_identically() {
        let c = Column::new(ColumnType::MYSQL_TYPE_NEWDECIMAL)
            .with_schema(b"vt_commerce")
            .with_table(b"t")
            .with_org_table(b"t_org")
            .with_name(b"price")
            .with_org_name(b"price_org")
            .with_character_set(63)
            .with_column_length(22)
            .with_flags(ColumnFlags::NOT_NULL_FLAG | ColumnFlags::UNSIGNED_FLAG)
            .with_decimals(6);
        let bytes = column_def(&c);
        let back = Column::deserialize((), &mut ParseBuf(&bytes)).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn text_to_binary_values() {
        use ColumnType::*;
        assert_eq!(bin(MYSQL_TYPE_TINY, ColumnFlags::empty(), "-1"), vec![0xFF]);
        assert_eq!(
            bin(
                MYSQL_TYPE_LONGLONG,
                ColumnFlags::UNSIGNED_FLAG,
                "18446744073709551615"
            ),
            vec![0xFF; 8]
        );
        assert_eq!(
            bin(MYSQL_TYPE_DOUBLE, ColumnFlags::empty(), "0.1"),
            0.1f64.to_le_bytes().to_vec()
        );
        assert_eq!(
            bin(MYSQL_TYPE_DATE, ColumnFlags::empty(), "2024-02-29"),
            vec![4, 0xE8, 7, 2, 29]
        );
        assert_eq!(
            bin(
                MYSQL_TYPE_DATETIME,
                ColumnFlags::empty(),
                "2024-02-29 01:02:03.5"
            ),
            vec![11, 0xE8, 7, 2, 29, 1, 2, 3, 0x20, 0xA1, 7, 0]
        );
        assert_eq!(
            bin(
                MYSQL_TYPE_DATETIME,
                ColumnFlags::empty(),
                "0000-00-00 00:00:00"
            ),
            vec![0]
        );
        assert_eq!(
            bin(MYSQL_TYPE_TIME, ColumnFlags::empty(), "-838:59:59"),
            vec![8, 1, 34, 0, 0, 0, 22, 59, 59]
        );
        assert_eq!(
            bin(MYSQL_TYPE_NEWDECIMAL, ColumnFlags::empty(), "1.50"),
            b"\x041.50".to_vec()
        );
        let mut out = Vec::new();
        assert!(encode_binary(
            &mut out,
            &col(MYSQL_TYPE_LONG, ColumnFlags::empty()),
            b"abc"
        )
        .is_err());
    }

    #[test]
    fn binary_values_round_trip_through_mysql_common() {
        use ColumnType::*;
        let cases = [
            (MYSQL_TYPE_LONG, "-123", Value::Int(-123)),
            (
                MYSQL_TYPE_DATETIME,
                "2001-02-03 04:05:06",
                Value::Date(2001, 2, 3, 4, 5, 6, 0),
            ),
            (
                MYSQL_TYPE_TIME,
                "25:00:01.000002",
                Value::Time(false, 1, 1, 0, 1, 2),
            ),
            (
                MYSQL_TYPE_VAR_STRING,
                "héllo",
                Value::Bytes("héllo".as_bytes().to_vec()),
            ),
        ];
        for (t, text, want) in cases {
            let mut out = Vec::new();
            encode_binary(&mut out, &col(t, ColumnFlags::empty()), text.as_bytes()).unwrap();
            let got: ValueDeserializer<BinValue> =
                ValueDeserializer::deserialize((t, ColumnFlags::empty()), &mut ParseBuf(&out))
                    .unwrap();
            assert_eq!(got.0, want, "{t:?} {text}");
        }
    }

    #[test]
    fn execute_params_parse_and_reject_truncation() {
        // two params: LONGLONG 7 and NULL
        let mut body = vec![0b10, 1, 8, 0, 6, 0];
        body.extend_from_slice(&7i64.to_le_bytes());
        let mut types = Vec::new();
        let mut ld = Default::default();
        let v = parse_execute(&body, 2, &mut types, &mut ld).unwrap();
        assert_eq!(v, vec![Value::Int(7), Value::NULL]);
        // Found by fuzzing: a TIMESTAMP2 (0x11) parameter type made the
        // decoder panic; it is refused instead.
        let mut types = Vec::new();
        let crash = [0b00, 1, 0x11, 0, 0, 0, 0, 0];
        assert!(parse_execute(&crash, 1, &mut types, &mut ld).is_err());
        for t in 0u8..=255 {
            let mut types = Vec::new();
            let body = [0u8, 1, t, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
            let _ = parse_execute(&body, 1, &mut types, &mut ld);
        }
        for cut in 0..body.len() {
            let mut types = Vec::new();
            assert!(
                parse_execute(&body[..cut], 2, &mut types, &mut ld).is_err(),
                "cut {cut}"
            );
        }
    }
}
