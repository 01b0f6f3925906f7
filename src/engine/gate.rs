//! Work at the gate on rows from several shards: type-aware comparison
//! (numbers as numbers, strings through MariaDB's own `weight_string` or,
//! for columns of a known collation, [`crate::collation`]),
//! aggregation of partial results, HAVING, DISTINCT, ORDER BY and LIMIT,
//! with arithmetic that formats results the way MariaDB does.

use std::cmp::Ordering;

use mysql_common::constants::{ColumnFlags, ColumnType};
use mysql_common::packets::Column;
use mysql_common::value::Value;
use sqlparser::ast::{BinaryOperator, UnaryOperator};

use super::row::TextRow;
use crate::collation::Collation;
use crate::error::Error;
use crate::planner::sharded::{AggKind, Gate, GateExpr, Operand, Weight, HIDDEN};
use crate::sql::normalize::Bind;

/// A number or string the gate computes with.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    /// SQL NULL.
    Null,
    /// An exact integer.
    Int(i128),
    /// An exact decimal: its mantissa, the scale it is held at, and the
    /// scale MariaDB shows it at. They differ after a division, which
    /// MariaDB computes to more digits (a multiple of nine) than it shows:
    /// what is computed from a quotient (`avg(x) * 2`) reads those
    /// digits, and only the cell sent is rounded.
    Dec(i128, u32, u32),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(Vec<u8>),
    /// An integer result beyond every BIGINT, signed or unsigned: the
    /// statement fails with MariaDB's 1690 ([`Error::OutOfRange`]), as no
    /// BIGINT column can carry it.
    OutOfRange,
    /// A DATE, DATETIME, TIMESTAMP or TIME, as its text: in arithmetic
    /// the number of its digits (`d + 0` is 20240808), where a string is
    /// the number its text begins with.
    Temporal(Vec<u8>),
}

/// MariaDB's div_precision_increment default.
const DIV_PRECISION: u32 = 4;

fn pow10(n: u32) -> i128 {
    10i128.pow(n.min(38))
}

impl Val {
    fn parse_num(b: &[u8]) -> Val {
        let s = match std::str::from_utf8(b) {
            Ok(s) => s.trim(),
            Err(_) => return Val::Str(b.to_vec()),
        };
        if let Ok(i) = s.parse::<i128>() {
            return Val::Int(i);
        }
        if !s.contains(['e', 'E']) {
            if let Some((int, frac)) = s.split_once('.') {
                let neg = int.starts_with('-');
                let digits = format!("{}{}", int.trim_start_matches(['-', '+']), frac);
                if let Ok(m) = digits.parse::<i128>() {
                    let scale = frac.len() as u32;
                    return Val::Dec(if neg { -m } else { m }, scale, scale);
                }
            }
        }
        s.parse::<f64>()
            .map(Val::Float)
            .unwrap_or(Val::Str(b.to_vec()))
    }

    /// Reads a cell according to its column type.
    pub fn from_cell(v: &Value, col: Option<&Column>) -> Val {
        match v {
            Value::NULL => Val::from_text(None, col),
            Value::Bytes(b) => Val::from_text(Some(b), col),
            Value::Int(i) => Val::Int(*i as i128),
            Value::UInt(u) => Val::Int(*u as i128),
            Value::Float(f) => Val::Float(*f as f64),
            Value::Double(d) => Val::Float(*d),
            other => Val::Str(other.as_sql(true).trim_matches('\'').as_bytes().to_vec()),
        }
    }

    /// Reads a text cell (None: NULL) according to its column type.
    fn from_text(b: Option<&[u8]>, col: Option<&Column>) -> Val {
        let Some(b) = b else { return Val::Null };
        match col {
            // A DOUBLE's text is read as one: what is computed from it
            // (an AVG, a sum of shards' sums) is a DOUBLE, as MariaDB
            // computes it, not a DECIMAL of the digits shown.
            Some(c) if is_float(c) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.trim().parse::<f64>().ok())
                .map_or_else(|| Val::parse_num(b), Val::Float),
            // A DECIMAL stays one at scale 0 (a SUM of integers): what is
            // computed from it is a DECIMAL too, as MariaDB types it.
            Some(c) if is_numeric(c.column_type()) => match Val::parse_num(b) {
                Val::Int(i) if c.column_type() == ColumnType::MYSQL_TYPE_NEWDECIMAL => i
                    .checked_mul(pow10(c.decimals() as u32))
                    .map_or(Val::Int(i), |m| {
                        Val::Dec(m, c.decimals() as u32, c.decimals() as u32)
                    }),
                other => other,
            },
            Some(c) if super::temporal(c).is_some() => Val::Temporal(b.to_vec()),
            Some(_) => Val::Str(b.to_vec()),
            None => Val::parse_num(b),
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            Val::Int(i) => Some(*i as f64),
            Val::Dec(m, s, _) => Some(*m as f64 / pow10(*s) as f64),
            Val::Float(f) => Some(*f),
            Val::Str(b) => Some(string_number(b)),
            Val::Temporal(_) => self.numeric().as_f64(),
            Val::Null | Val::OutOfRange => None,
        }
    }

    /// The number MariaDB computes with for this value: a string's is a
    /// DOUBLE (`'7x' + 1` is 8), a date's or time's its digits.
    fn numeric(&self) -> Val {
        match self {
            Val::Str(b) => Val::Float(string_number(b)),
            Val::Temporal(b) => {
                let digits: Vec<u8> = b
                    .iter()
                    .enumerate()
                    .filter(|&(i, c)| c.is_ascii_digit() || *c == b'.' || (i == 0 && *c == b'-'))
                    .map(|(_, c)| *c)
                    .collect();
                match Val::parse_num(&digits) {
                    Val::Str(_) => Val::Int(0),
                    n => n,
                }
            }
            other => other.clone(),
        }
    }

    /// The cell text MariaDB would send for this value.
    pub fn to_cell(&self) -> Value {
        match self {
            Val::Null | Val::OutOfRange => Value::NULL,
            Val::Int(i) => Value::Bytes(i.to_string().into_bytes()),
            Val::Dec(m, s, shown) => Value::Bytes(
                match rescale(*m, *s, *shown) {
                    Some(m) => format_dec(m, *shown),
                    None => format_dec(*m, *s),
                }
                .into_bytes(),
            ),
            Val::Float(f) => Value::Bytes(format_float(*f).into_bytes()),
            Val::Str(b) | Val::Temporal(b) => Value::Bytes(b.clone()),
        }
    }
}

/// A string as MariaDB reads it as a number: the longest number its
/// text begins with (after spaces), else 0.
fn string_number(b: &[u8]) -> f64 {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let t = &b[start..];
    let digits_from = |i: usize| {
        t[i.min(t.len())..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    let mut end = usize::from(matches!(t.first(), Some(b'-' | b'+')));
    let int = digits_from(end);
    end += int;
    let mut frac = 0;
    if t.get(end) == Some(&b'.') {
        frac = digits_from(end + 1);
        if int + frac > 0 {
            end += 1 + frac;
        }
    }
    if int + frac == 0 {
        return 0.0;
    }
    if matches!(t.get(end), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(t.get(end + 1), Some(b'-' | b'+')));
        let exp = digits_from(end + 1 + sign);
        if exp > 0 {
            end += 1 + sign + exp;
        }
    }
    std::str::from_utf8(&t[..end])
        .ok()
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or(0.0)
}

fn format_dec(m: i128, scale: u32) -> String {
    if scale == 0 {
        return m.to_string();
    }
    let neg = m < 0;
    let digits = m.unsigned_abs().to_string();
    let digits = format!("{digits:0>width$}", width = scale as usize + 1);
    let (int, frac) = digits.split_at(digits.len() - scale as usize);
    format!("{}{int}.{frac}", if neg { "-" } else { "" })
}

fn format_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        return format!("{}", f as i64);
    }
    let s = format!("{f}");
    if s.len() > 20 {
        format!("{f:e}")
    } else {
        s
    }
}

/// Mantissa `m` of scale `from` at scale `to`: more digits are zeros,
/// fewer are rounded half away from zero (MariaDB's rounding of what
/// it shows); None on overflow.
fn rescale(m: i128, from: u32, to: u32) -> Option<i128> {
    if to >= from {
        return m.checked_mul(pow10(to - from));
    }
    let d = pow10(from - to);
    let (q, r) = (m / d, m % d);
    Some(if r.unsigned_abs() * 2 >= d.unsigned_abs() {
        q + m.signum()
    } else {
        q
    })
}

/// Brings two decimals to one scale; None on overflow (the caller falls
/// back to floating point rather than wrap or panic).
fn align(a: i128, sa: u32, b: i128, sb: u32) -> Option<(i128, i128, u32)> {
    let s = sa.max(sb);
    Some((
        a.checked_mul(pow10(s - sa))?,
        b.checked_mul(pow10(s - sb))?,
        s,
    ))
}

fn float_of(a: &Val, b: &Val, f: impl Fn(f64, f64) -> f64) -> Val {
    Val::Float(f(a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0)))
}

/// An integer result as a value: beyond every BIGINT (below the signed
/// one's least, above the unsigned one's most) it is [`Val::OutOfRange`].
/// Between the two (an unsigned result past the signed range, a negative
/// one of an unsigned operand) MariaDB's answer depends on the operands'
/// signedness, which the gate's values do not carry: the value is kept.
fn int_result(r: Option<i128>) -> Val {
    match r {
        Some(r) if (i128::from(i64::MIN)..=i128::from(u64::MAX)).contains(&r) => Val::Int(r),
        _ => Val::OutOfRange,
    }
}

fn add(a: &Val, b: &Val) -> Val {
    match (a.numeric(), b.numeric()) {
        (Val::OutOfRange, _) | (_, Val::OutOfRange) => Val::OutOfRange,
        (Val::Null, _) | (_, Val::Null) => Val::Null,
        (Val::Int(x), Val::Int(y)) => int_result(x.checked_add(y)),
        (Val::Float(_), _) | (_, Val::Float(_)) => float_of(a, b, |p, q| p + q),
        (x, y) => {
            let ((xm, xs, xsh), (ym, ys, ysh)) = (dec_parts(&x), dec_parts(&y));
            align(xm, xs, ym, ys)
                .and_then(|(p, q, s)| Some(Val::Dec(p.checked_add(q)?, s, xsh.max(ysh))))
                .unwrap_or_else(|| float_of(a, b, |p, q| p + q))
        }
    }
}

/// A number's mantissa, scale held and scale shown.
fn dec_parts(v: &Val) -> (i128, u32, u32) {
    match v {
        Val::Int(i) => (*i, 0, 0),
        Val::Dec(m, s, shown) => (*m, *s, *shown),
        _ => (0, 0, 0),
    }
}

/// A number's mantissa and scale as MariaDB compares and sorts it:
/// rounded to the digits it shows (a quotient's further digits do not
/// count).
fn shown_parts(v: &Val) -> (i128, u32) {
    match *v {
        Val::Dec(m, s, shown) if shown < s => (rescale(m, s, shown).unwrap_or(m), shown),
        _ => {
            let (m, s, _) = dec_parts(v);
            (m, s)
        }
    }
}

/// `a - b`: for integers, the difference's range decides (`-b` alone
/// may be beyond it where `a - b` is not).
fn sub(a: &Val, b: &Val) -> Val {
    match (a.numeric(), b.numeric()) {
        (Val::Int(x), Val::Int(y)) => int_result(x.checked_sub(y)),
        _ => add(a, &neg(b)),
    }
}

/// Unary minus; of an integer, in range as [`int_result`] says.
fn minus(v: &Val) -> Val {
    match v.numeric() {
        Val::Int(i) => int_result(Some(-i)),
        _ => neg(v),
    }
}

fn neg(v: &Val) -> Val {
    match v.numeric() {
        Val::Int(i) => Val::Int(-i),
        Val::Dec(m, s, shown) => Val::Dec(-m, s, shown),
        Val::Float(f) => Val::Float(-f),
        other => other,
    }
}

fn mul(a: &Val, b: &Val) -> Val {
    match (a.numeric(), b.numeric()) {
        (Val::OutOfRange, _) | (_, Val::OutOfRange) => Val::OutOfRange,
        (Val::Null, _) | (_, Val::Null) => Val::Null,
        (Val::Int(x), Val::Int(y)) => int_result(x.checked_mul(y)),
        (Val::Float(_), _) | (_, Val::Float(_)) => float_of(a, b, |p, q| p * q),
        (x, y) => {
            let ((xm, xs, xsh), (ym, ys, ysh)) = (dec_parts(&x), dec_parts(&y));
            let shown = xsh + ysh;
            // Too many digits held for an i128: the operands at the
            // scales they show, before giving up exactness.
            let product = |xm: i128, xs: u32, ym: i128, ys: u32| {
                xm.checked_mul(ym)
                    .filter(|_| xs + ys <= 38)
                    .map(|m| Val::Dec(m, xs + ys, shown))
            };
            product(xm, xs, ym, ys)
                .or_else(|| product(rescale(xm, xs, xsh)?, xsh, rescale(ym, ys, ysh)?, ysh))
                .unwrap_or_else(|| float_of(a, b, |p, q| p * q))
        }
    }
}

/// MOD (`%`) as MariaDB computes it: the dividend's sign, exact for
/// integers and decimals; NULL for a zero divisor.
fn rem(a: &Val, b: &Val) -> Val {
    match (a.numeric(), b.numeric()) {
        (Val::Null, _) | (_, Val::Null) => Val::Null,
        (Val::Float(_), _) | (_, Val::Float(_)) => match b.as_f64() {
            Some(d) if d != 0.0 => Val::Float(a.as_f64().unwrap_or(0.0) % d),
            _ => Val::Null,
        },
        (Val::Int(_), Val::Int(0)) => Val::Null,
        (Val::Int(x), Val::Int(y)) => Val::Int(x % y),
        (x, y) => {
            let ((xm, xs, xsh), (ym, ys, ysh)) = (dec_parts(&x), dec_parts(&y));
            match align(xm, xs, ym, ys) {
                Some((_, 0, _)) => Val::Null,
                Some((p, q, s)) => Val::Dec(p % q, s, xsh.max(ysh)),
                None => float_of(a, b, |p, q| p % q),
            }
        }
    }
}

/// DIV: the quotient truncated toward zero, an integer; NULL for a zero
/// divisor.
fn int_div(a: &Val, b: &Val) -> Val {
    match (a.numeric(), b.numeric()) {
        (Val::Null, _) | (_, Val::Null) => Val::Null,
        (Val::Float(_), _) | (_, Val::Float(_)) => match b.as_f64() {
            Some(d) if d != 0.0 => Val::Int((a.as_f64().unwrap_or(0.0) / d).trunc() as i128),
            _ => Val::Null,
        },
        (x, y) => {
            let ((xm, xs, _), (ym, ys, _)) = (dec_parts(&x), dec_parts(&y));
            match align(xm, xs, ym, ys) {
                Some((_, 0, _)) => Val::Null,
                Some((p, q, _)) => Val::Int(p / q),
                None => Val::Int(
                    (a.as_f64().unwrap_or(0.0) / b.as_f64().unwrap_or(1.0)).trunc() as i128,
                ),
            }
        }
    }
}

/// Division as MariaDB does it: shown with `div_precision_increment`
/// more digits than the dividend shows, held to the digits MariaDB's
/// decimal division keeps (truncated); NULL on division by zero.
fn div(a: &Val, b: &Val) -> Val {
    match (a.numeric(), b.numeric()) {
        (Val::Null, _) | (_, Val::Null) => Val::Null,
        (Val::Float(_), _) | (_, Val::Float(_)) => match b.as_f64() {
            Some(d) if d != 0.0 => Val::Float(a.as_f64().unwrap_or(0.0) / d),
            _ => Val::Null,
        },
        (x, y) => {
            let ((xm, xs, xsh), (ym, ys, _)) = (dec_parts(&x), dec_parts(&y));
            if ym == 0 {
                return Val::Null;
            }
            let shown = xsh + DIV_PRECISION;
            let held = quotient_scale(xs, ys);
            // Too many digits for an i128: one digit past those shown.
            quotient(xm, xs, ym, ys, held)
                .map(|q| Val::Dec(q, held, shown))
                .or_else(|| {
                    quotient(xm, xs, ym, ys, shown + 1).map(|q| Val::Dec(q, shown + 1, shown))
                })
                .unwrap_or_else(|| float_of(a, b, |p, q| p / q))
        }
    }
}

/// The scale MariaDB's decimal division holds its quotient at, from the
/// operands' scales: each counted in whole nine-digit words, plus
/// `div_precision_increment` digits less those the rounding up to words
/// already added, rounded up to a word again.
fn quotient_scale(xs: u32, ys: u32) -> u32 {
    let words = |d: u32| d.div_ceil(9) * 9;
    let (fx, fy) = (words(xs), words(ys));
    let more = DIV_PRECISION.saturating_sub((fx - xs) + (fy - ys));
    words(fx + fy + more)
}

/// `xm / 10^xs` divided by `ym / 10^ys`, truncated at `scale` digits, as
/// a mantissa; None on overflow.
fn quotient(xm: i128, xs: u32, ym: i128, ys: u32, scale: u32) -> Option<i128> {
    if scale + ys >= xs {
        let shift = scale + ys - xs;
        (shift <= 38).then_some(())?;
        Some(xm.checked_mul(pow10(shift))? / ym)
    } else {
        Some(xm / ym.checked_mul(pow10(xs - scale - ys))?)
    }
}

fn is_numeric(t: ColumnType) -> bool {
    use ColumnType::*;
    matches!(
        t,
        MYSQL_TYPE_TINY
            | MYSQL_TYPE_SHORT
            | MYSQL_TYPE_LONG
            | MYSQL_TYPE_INT24
            | MYSQL_TYPE_LONGLONG
            | MYSQL_TYPE_DECIMAL
            | MYSQL_TYPE_NEWDECIMAL
            | MYSQL_TYPE_FLOAT
            | MYSQL_TYPE_DOUBLE
            | MYSQL_TYPE_YEAR
    )
}

/// Compares two values; NULL sorts first, as in MySQL.
pub fn cmp_val(a: &Val, b: &Val) -> Ordering {
    match (a, b) {
        (Val::Null, Val::Null) => Ordering::Equal,
        (Val::Null, _) => Ordering::Less,
        (_, Val::Null) => Ordering::Greater,
        (Val::Str(x), Val::Str(y)) => cmp_folded(x, y),
        // A date or time beside a string: their texts (a literal is
        // written as the column shows its values).
        (Val::Temporal(x), Val::Str(y)) | (Val::Str(x), Val::Temporal(y)) => cmp_folded(x, y),
        (Val::Temporal(_), _) | (_, Val::Temporal(_)) => cmp_val(&a.numeric(), &b.numeric()),
        (Val::Int(x), Val::Int(y)) => x.cmp(y),
        (Val::Dec(..) | Val::Int(_), Val::Dec(..) | Val::Int(_)) => {
            let ((xm, xs), (ym, ys)) = (shown_parts(a), shown_parts(b));
            match align(xm, xs, ym, ys) {
                Some((p, q, _)) => p.cmp(&q),
                None => a
                    .as_f64()
                    .unwrap_or(0.0)
                    .partial_cmp(&b.as_f64().unwrap_or(0.0))
                    .unwrap_or(Ordering::Equal),
            }
        }
        _ => a
            .as_f64()
            .unwrap_or(0.0)
            .partial_cmp(&b.as_f64().unwrap_or(0.0))
            .unwrap_or(Ordering::Equal),
    }
}

/// ASCII case-insensitive order, then bytes (strings without a weight).
fn cmp_folded(x: &[u8], y: &[u8]) -> Ordering {
    let lower = |b: &u8| b.to_ascii_lowercase();
    x.iter()
        .map(lower)
        .cmp(y.iter().map(lower))
        .then_with(|| x.cmp(y))
}

/// How two string cells of one key compare as MariaDB would: by the
/// weight strings the shards sent with them (None: NULL), or in the
/// column's collation (declared in the VSchema or learned from the
/// tablets).
#[derive(Clone, Copy)]
enum Weighed<'a> {
    Sent(Option<&'a [u8]>, Option<&'a [u8]>),
    Collation(Collation),
    /// The collation, over latin1 text (see [`unpadded`]).
    Latin1(Collation),
}

/// A key's [`Weighed`] for two rows; `cells` reads a column of both.
fn weighed<'a>(
    w: Option<Weight>,
    cells: impl FnOnce(usize) -> (Option<&'a [u8]>, Option<&'a [u8]>),
) -> Option<Weighed<'a>> {
    w.map(|w| match w {
        Weight::Column(c) => {
            let (x, y) = cells(c);
            Weighed::Sent(x, y)
        }
        Weight::Collation(c) => Weighed::Collation(c),
    })
}

/// [`weighed`] over two decoded rows.
fn weighed_values<'a>(w: Option<Weight>, a: &'a [Value], b: &'a [Value]) -> Option<Weighed<'a>> {
    weighed(w, |c| (text_of(&a[c]).flatten(), text_of(&b[c]).flatten()))
}

/// Two strings of a key: by their weights when both rows sent one, in the
/// declared collation, else by `fallback`.
fn cmp_strings(
    x: &[u8],
    y: &[u8],
    w: Option<Weighed<'_>>,
    fallback: fn(&[u8], &[u8]) -> Ordering,
) -> Ordering {
    match w {
        Some(Weighed::Sent(Some(wx), Some(wy))) => wx.cmp(wy),
        Some(Weighed::Collation(c)) => c.cmp(x, y),
        Some(Weighed::Latin1(c)) => c.cmp(
            &crate::collation::latin1_to_utf8(x),
            &crate::collation::latin1_to_utf8(y),
        ),
        _ => fallback(x, y),
    }
}

/// Compares two cells of one column: numbers numerically, strings as
/// `w` says ([`cmp_key`]).
fn cmp_cells(a: &Value, b: &Value, col: &Column, w: Option<Weighed<'_>>) -> Ordering {
    match (text_of(a), text_of(b)) {
        (Some(x), Some(y)) => cmp_key(col, is_numeric(col.column_type()), x, y, w),
        _ => cmp_val(&Val::from_cell(a, Some(col)), &Val::from_cell(b, Some(col))),
    }
}

/// [`cmp_cells`] of text cells (None: NULL), as grouping compares them:
/// NULL first, numbers by value, strings by weight string when both have
/// one or by the declared collation, else by their bytes. `numeric` is
/// [`is_numeric`] of the column's type (a merge finds it once).
fn cmp_key(
    col: &Column,
    numeric: bool,
    a: Option<&[u8]>,
    b: Option<&[u8]>,
    w: Option<Weighed<'_>>,
) -> Ordering {
    let (x, y) = match (a, b) {
        (None, None) => return Ordering::Equal,
        (None, _) => return Ordering::Less,
        (_, None) => return Ordering::Greater,
        (Some(x), Some(y)) => (x, y),
    };
    if numeric {
        return cmp_val(&Val::from_text(a, Some(col)), &Val::from_text(b, Some(col)));
    }
    if let Some(o) = cmp_times(col, x, y) {
        return o;
    }
    cmp_strings(x, y, unpadded(col, w), <[u8]>::cmp)
}

/// Two TIME cells by the durations they are: their text orders wrong past
/// 99 hours (`100:00:00` before `20:00:00`) and below zero (`-10:00:00`
/// after `-02:00:00`). None for another type, or text that is no time.
fn cmp_times(col: &Column, x: &[u8], y: &[u8]) -> Option<Ordering> {
    use ColumnType::*;
    if !matches!(col.column_type(), MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2) {
        return None;
    }
    Some(time_micros(x)?.cmp(&time_micros(y)?))
}

/// A TIME's text (`[-]h:mm:ss[.ffffff]`) as signed microseconds.
fn time_micros(t: &[u8]) -> Option<i64> {
    let t = std::str::from_utf8(t).ok()?;
    let (negative, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let (whole, fraction) = t.split_once('.').unwrap_or((t, ""));
    let mut parts = whole.split(':');
    let (h, m, s): (i64, i64, i64) = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    let digits: String = fraction.chars().chain("000000".chars()).take(6).collect();
    let micros = ((h * 60 + m) * 60 + s) * 1_000_000 + digits.parse::<i64>().ok()?;
    Some(if negative { -micros } else { micros })
}

/// The shards' weight strings are of values without trailing spaces (see
/// `sharded::weight_string`): right for text, which MariaDB compares
/// padded with spaces, but a binary string's trailing spaces count, so
/// such a column (MariaDB's character set 63, also that of dates and
/// times, whose text orders as they do) is compared by its bytes.
///
/// A declared collation compares UTF-8 text; a client that set latin1 as
/// its connection's character set is sent latin1 text (its settings are
/// replayed on the tablets), which is read as the characters it stands
/// for first.
fn unpadded<'a>(col: &Column, w: Option<Weighed<'a>>) -> Option<Weighed<'a>> {
    match w {
        Some(Weighed::Sent(..)) if col.character_set() == super::BINARY_CHARSET => {
            Some(Weighed::Collation(Collation::Binary))
        }
        Some(Weighed::Collation(c))
            if c != Collation::Binary && crate::collation::is_latin1(col.character_set()) =>
        {
            Some(Weighed::Latin1(c))
        }
        w => w,
    }
}

fn bind_val(binds: &[Bind], i: usize) -> Val {
    binds
        .get(i)
        .map(|b| match &b.value {
            Value::Bytes(bytes) if b.is_quoted_string() => Val::Str(bytes.clone()),
            v => Val::from_cell(v, None),
        })
        .unwrap_or(Val::Null)
}

fn truth(v: &Val) -> Option<bool> {
    match v {
        Val::Null => None,
        other => Some(other.as_f64().unwrap_or(0.0) != 0.0),
    }
}

fn bool_val(b: Option<bool>) -> Val {
    match b {
        None => Val::Null,
        Some(b) => Val::Int(b as i128),
    }
}

/// A row with its evaluated sort keys and its group index.
/// Context of one group for evaluation.
struct Row<'a> {
    cells: &'a [Value],
    cols: &'a [Column],
    distinct_counts: &'a [DistinctPart],
}

/// A group's distinct values of one argument: (its column, how many,
/// their sum).
type DistinctPart = (usize, i128, Val);

fn distinct_of<'r>(row: &'r Row<'_>, col: usize) -> Option<&'r DistinctPart> {
    row.distinct_counts.iter().find(|d| d.0 == col)
}

fn eval(e: &GateExpr, row: &Row<'_>, binds: &[Bind]) -> Val {
    match e {
        GateExpr::Col(i) => Val::from_cell(&row.cells[*i], row.cols.get(*i)),
        GateExpr::Bind(i) => bind_val(binds, *i),
        GateExpr::Lit(v) => Val::from_cell(v, None),
        GateExpr::CountDistinct(i) => Val::Int(distinct_of(row, *i).map_or(0, |d| d.1)),
        GateExpr::SumDistinct(i) => distinct_of(row, *i).map_or(Val::Null, |d| d.2.clone()),
        GateExpr::AvgDistinct(i) => match distinct_of(row, *i) {
            Some((_, n, sum)) if *n > 0 => div(sum, &Val::Int(*n)),
            _ => Val::Null,
        },
        GateExpr::Avg { sum, count } => {
            let s = Val::from_cell(&row.cells[*sum], row.cols.get(*sum));
            let c = Val::from_cell(&row.cells[*count], row.cols.get(*count));
            match c {
                Val::Int(0) | Val::Null => Val::Null,
                c => div(&s, &c),
            }
        }
        GateExpr::Unary(op, inner) => {
            let v = eval(inner, row, binds);
            if v == Val::OutOfRange {
                return v;
            }
            match op {
                UnaryOperator::Minus => minus(&v),
                UnaryOperator::Not => bool_val(truth(&v).map(|b| !b)),
                _ => v,
            }
        }
        GateExpr::IsNull(inner, is) => {
            Val::Int(((eval(inner, row, binds) == Val::Null) == *is) as i128)
        }
        GateExpr::Collate(inner, _) => eval(inner, row, binds),
        GateExpr::Binary(l, op, r) => {
            let (a, b) = (eval(l, row, binds), eval(r, row, binds));
            if a == Val::OutOfRange || b == Val::OutOfRange {
                return Val::OutOfRange;
            }
            match op {
                BinaryOperator::Plus => add(&a, &b),
                BinaryOperator::Minus => sub(&a, &b),
                BinaryOperator::Multiply => mul(&a, &b),
                BinaryOperator::Divide => div(&a, &b),
                BinaryOperator::Modulo => rem(&a, &b),
                BinaryOperator::MyIntegerDivide => int_div(&a, &b),
                BinaryOperator::Xor => match (truth(&a), truth(&b)) {
                    (Some(x), Some(y)) => Val::Int((x != y) as i128),
                    _ => Val::Null,
                },
                BinaryOperator::And => match (truth(&a), truth(&b)) {
                    (Some(false), _) | (_, Some(false)) => Val::Int(0),
                    (Some(true), Some(true)) => Val::Int(1),
                    _ => Val::Null,
                },
                BinaryOperator::Or => match (truth(&a), truth(&b)) {
                    (Some(true), _) | (_, Some(true)) => Val::Int(1),
                    (Some(false), Some(false)) => Val::Int(0),
                    _ => Val::Null,
                },
                cmp_op => {
                    if a == Val::Null || b == Val::Null {
                        // `<=>`: equal when both are NULL.
                        return match cmp_op {
                            BinaryOperator::Spaceship => Val::Int((a == b) as i128),
                            _ => Val::Null,
                        };
                    }
                    let o = match (&a, &b, l.as_ref()) {
                        (Val::Str(x), Val::Str(y), GateExpr::Collate(inner, c)) => {
                            let weighed = match latin1_column(inner, row) {
                                true => Weighed::Latin1(*c),
                                false => Weighed::Collation(*c),
                            };
                            cmp_strings(x, y, Some(weighed), cmp_folded)
                        }
                        (Val::Str(_), Val::Str(_), _)
                        | (Val::Temporal(_), Val::Str(_), _)
                        | (Val::Str(_), Val::Temporal(_), _) => cmp_val(&a, &b),
                        _ => cmp_val(&a.numeric(), &b.numeric()),
                    };
                    bool_val(Some(match cmp_op {
                        BinaryOperator::Eq | BinaryOperator::Spaceship => o == Ordering::Equal,
                        BinaryOperator::NotEq => o != Ordering::Equal,
                        BinaryOperator::Lt => o == Ordering::Less,
                        BinaryOperator::LtEq => o != Ordering::Greater,
                        BinaryOperator::Gt => o == Ordering::Greater,
                        BinaryOperator::GtEq => o != Ordering::Less,
                        _ => return Val::Null,
                    }))
                }
            }
        }
    }
}

/// Whether `e` reads a column whose text comes as latin1 (see
/// [`unpadded`]): a value compared with it (a literal the client wrote)
/// is in the client's latin1 as well.
fn latin1_column(e: &GateExpr, row: &Row<'_>) -> bool {
    match e {
        GateExpr::Col(i) => row
            .cols
            .get(*i)
            .is_some_and(|c| crate::collation::is_latin1(c.character_set())),
        _ => false,
    }
}

/// Resolves hidden-column references (see [`HIDDEN`]) for a row width.
fn resolve(i: usize, width: usize, hidden: usize) -> usize {
    if i >= HIDDEN {
        width - hidden + (i - HIDDEN)
    } else {
        i
    }
}

/// A LIMIT or OFFSET operand as a count.
pub fn operand_u64(op: &Operand, binds: &[Bind]) -> Result<u64, Error> {
    let v = match op {
        Operand::Bind(i) => binds
            .get(*i)
            .map(|b| b.value.clone())
            .unwrap_or(Value::NULL),
        Operand::Lit(v) => v.clone(),
    };
    let count = match &v {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::UInt(u) => Some(*u),
        // A prepared statement's count sent as a string (PHP's PDO sends
        // every value so): MariaDB reads its number.
        Value::Bytes(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.trim().parse().ok()),
        _ => None,
    };
    count.ok_or_else(|| {
        Error::Plan(crate::planner::PlanError::Syntax(format!(
            "LIMIT needs a non-negative integer, got {v:?}"
        )))
    })
}

/// LIMIT + OFFSET for the shards (each must send enough rows).
pub fn pushdown_limit(gate: &Gate, binds: &[Bind]) -> Result<u64, Error> {
    let l = gate
        .limit
        .as_ref()
        .map(|o| operand_u64(o, binds))
        .transpose()?
        .unwrap_or(u64::MAX);
    let o = gate
        .offset
        .as_ref()
        .map(|o| operand_u64(o, binds))
        .transpose()?
        .unwrap_or(0);
    Ok(l.saturating_add(o))
}

/// The columns of rows that are each their own part of an aggregate (a
/// nested-loop join's), typed as a shard's partial aggregates would be,
/// so the combined result has MySQL's types: SUM of integers a DECIMAL,
/// COUNT a BIGINT.
pub fn per_row_columns(gate: &Gate, cols: &[Column]) -> Vec<Column> {
    let integer = |c: &Column| {
        matches!(
            c.column_type(),
            ColumnType::MYSQL_TYPE_TINY
                | ColumnType::MYSQL_TYPE_SHORT
                | ColumnType::MYSQL_TYPE_INT24
                | ColumnType::MYSQL_TYPE_LONG
                | ColumnType::MYSQL_TYPE_LONGLONG
                | ColumnType::MYSQL_TYPE_YEAR
        )
    };
    cols.iter()
        .enumerate()
        .map(|(i, c)| {
            let name = String::from_utf8_lossy(c.name_ref()).into_owned();
            match gate.aggregate.get(i) {
                Some(AggKind::Sum) if integer(c) => synth_column(&name, &Val::Dec(0, 0, 0)),
                Some(AggKind::Count) => synth_column(&name, &Val::Int(0)),
                _ => c.clone(),
            }
        })
        .collect()
}

fn synth_column(name: &str, sample: &Val) -> Column {
    let (t, len, dec, cs, flags) = match sample {
        Val::Int(_) => (
            ColumnType::MYSQL_TYPE_LONGLONG,
            21,
            0,
            63,
            ColumnFlags::BINARY_FLAG | ColumnFlags::NUM_FLAG,
        ),
        Val::Dec(_, _, s) => (
            ColumnType::MYSQL_TYPE_NEWDECIMAL,
            65,
            *s as u8,
            63,
            ColumnFlags::BINARY_FLAG | ColumnFlags::NUM_FLAG,
        ),
        Val::Float(_) => (
            ColumnType::MYSQL_TYPE_DOUBLE,
            23,
            31,
            63,
            ColumnFlags::BINARY_FLAG | ColumnFlags::NUM_FLAG,
        ),
        _ => (
            ColumnType::MYSQL_TYPE_VAR_STRING,
            1024,
            0,
            45,
            ColumnFlags::empty(),
        ),
    };
    Column::new(t)
        .with_name(name.as_bytes())
        .with_column_length(len)
        .with_decimals(dec)
        .with_character_set(cs)
        .with_flags(flags)
}

/// Refuses a shard row whose width the plan did not expect (a shard with a
/// different schema), instead of indexing out of bounds.
pub fn check_width(got: usize, width: usize) -> Result<(), Error> {
    if got == width {
        return Ok(());
    }
    Err(Error::Plan(crate::planner::PlanError::Unsupported(
        "shard results do not match the plan: rows of different widths".into(),
    )))
}

/// Refuses shard results that were to come sorted and did not (a key
/// type the shards order otherwise than the gate compares), rather than
/// answer with a group twice.
pub fn unsorted() -> Error {
    Error::Plan(crate::planner::PlanError::Unsupported(
        "shard results do not match the plan: groups arrived out of order".into(),
    ))
}

/// Refuses results whose shape the plan did not expect (a shard with a
/// different schema), instead of indexing out of bounds.
fn check_shape(gate: &Gate, width: usize, rows: &[Vec<Value>]) -> Result<(), Error> {
    let bad = |why: String| {
        Error::Plan(crate::planner::PlanError::Unsupported(format!(
            "shard results do not match the plan: {why}"
        )))
    };
    for r in rows {
        check_width(r.len(), width)?;
    }
    if gate.hidden > width || (!gate.aggregate.is_empty() && gate.aggregate.len() != width) {
        return Err(bad(format!("{width} columns")));
    }
    fn walk(e: &GateExpr, m: &mut usize, hidden: usize, bad_hidden: &mut bool) {
        match e {
            GateExpr::Col(i) if *i >= HIDDEN => *bad_hidden |= i - HIDDEN >= hidden,
            GateExpr::Col(i) => *m = (*m).max(*i + 1),
            GateExpr::Avg { sum, count } => *m = (*m).max(sum.max(count) + 1),
            GateExpr::CountDistinct(i) | GateExpr::SumDistinct(i) | GateExpr::AvgDistinct(i) => {
                *m = (*m).max(*i + 1)
            }
            GateExpr::Binary(l, _, r) => {
                walk(l, m, hidden, bad_hidden);
                walk(r, m, hidden, bad_hidden);
            }
            GateExpr::Unary(_, x) | GateExpr::IsNull(x, _) | GateExpr::Collate(x, _) => {
                walk(x, m, hidden, bad_hidden)
            }
            _ => {}
        }
    }
    let mut need = 0;
    let mut bad_hidden = false;
    for (k, w) in &gate.group_keys {
        need = need
            .max(k + 1)
            .max(w.and_then(Weight::column).map_or(0, |w| w + 1));
    }
    let exprs = gate
        .output
        .iter()
        .flatten()
        .map(|(e, _)| e)
        .chain(gate.order.iter().map(|k| &k.expr))
        .chain(gate.having.iter());
    for e in exprs {
        walk(e, &mut need, gate.hidden, &mut bad_hidden);
    }
    for k in &gate.order {
        if let Some(w) = k.weight.and_then(Weight::column) {
            walk(&GateExpr::Col(w), &mut need, gate.hidden, &mut bad_hidden);
        }
    }
    for kind in &gate.aggregate {
        if let AggKind::Min {
            weight: Some(Weight::Column(w)),
        }
        | AggKind::Max {
            weight: Some(Weight::Column(w)),
        }
        | AggKind::DistinctArg {
            weight: Some(Weight::Column(w)),
        } = kind
        {
            need = need.max(w + 1);
        }
    }
    if bad_hidden || need > width {
        return Err(bad(format!("{width} columns, the plan reads {need}")));
    }
    Ok(())
}

/// Orders two internal rows by the gate's ORDER BY as MariaDB would, for
/// both the full sort at the gate and the merge of sorted shard streams:
/// strings by the weight strings the shards sent (ASCII case-folded when
/// there is none), numbers by value. Column keys are read in place (no
/// copies); other keys are evaluated over each row's group.
pub fn cmp_rows(
    gate: &Gate,
    binds: &[Bind],
    cols: &[Column],
    a: &[Value],
    b: &[Value],
) -> Ordering {
    cmp_groups(gate, binds, cols, (a, &[]), (b, &[]))
}

/// How a sorted merge orders rows read in place: its keys resolved once
/// per statement (internal columns placed, weight columns found), so
/// comparing two shards' head rows reads cells and compares them, no
/// more. ORDER BY's keys compare as [`cmp_rows`] does, grouping keys as
/// each shard sorted its groups (the merge of a streamed grouping, see
/// [`streamed`]). Built over columns whose shape [`Window::new`] has
/// checked, so every key it places lies in the rows.
pub struct RowOrder<'c> {
    keys: Vec<PlacedKey<'c>>,
    grouping: bool,
}

/// One key of a [`RowOrder`].
struct PlacedKey<'c> {
    col: &'c Column,
    at: usize,
    weight: Option<Weight>,
    desc: bool,
    /// Compared by value ([`is_numeric`]), else as strings.
    numeric: bool,
}

impl<'c> RowOrder<'c> {
    /// The gate's ORDER BY over rows of `cols`; None when a key is an
    /// expression (those are evaluated over decoded rows, [`cmp_rows`]).
    pub fn sort(gate: &Gate, cols: &'c [Column]) -> Option<Self> {
        let width = cols.len();
        let hidden = gate.hidden.min(width);
        let keys = gate
            .order
            .iter()
            .map(|k| {
                let GateExpr::Col(c) = k.expr else {
                    return None;
                };
                let at = resolve(c, width, hidden);
                Some(PlacedKey {
                    col: &cols[at],
                    numeric: is_numeric(cols[at].column_type()),
                    at,
                    weight: k.weight.map(|w| match w {
                        Weight::Column(w) => Weight::Column(resolve(w, width, hidden)),
                        other => other,
                    }),
                    desc: k.desc,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(RowOrder {
            keys,
            grouping: false,
        })
    }

    /// The gate's grouping keys over rows of `cols`.
    pub fn groups(gate: &Gate, cols: &'c [Column]) -> Self {
        let keys = gate
            .group_keys
            .iter()
            .map(|&(at, weight)| PlacedKey {
                col: &cols[at],
                numeric: is_numeric(cols[at].column_type()),
                at,
                weight,
                desc: false,
            })
            .collect();
        RowOrder {
            keys,
            grouping: true,
        }
    }

    /// Orders two rows by the keys.
    pub fn cmp(&self, a: TextRow<'_>, b: TextRow<'_>) -> Ordering {
        for k in &self.keys {
            let w = weighed(k.weight, |w| (a.cell(w), b.cell(w)));
            let (x, y) = (a.cell(k.at), b.cell(k.at));
            let o = if self.grouping {
                cmp_key(k.col, k.numeric, x, y, w)
            } else {
                cmp_col(k.col, k.numeric, x, y, w)
            };
            let o = if k.desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }
}

/// A text cell's bytes (Some(None): NULL); None for a typed value.
fn text_of(v: &Value) -> Option<Option<&[u8]>> {
    match v {
        Value::NULL => Some(None),
        Value::Bytes(b) => Some(Some(b)),
        _ => None,
    }
}

/// Orders two text cells of column `col` for ORDER BY: strings by their
/// weight strings when both have one or by the declared collation (`w`),
/// else ASCII case-folded; numbers by value; NULL first. `numeric` as for
/// [`cmp_key`].
fn cmp_col(
    col: &Column,
    numeric: bool,
    x: Option<&[u8]>,
    y: Option<&[u8]>,
    w: Option<Weighed<'_>>,
) -> Ordering {
    if let (Some(x), Some(y)) = (x, y) {
        if let Some(o) = cmp_times(col, x, y) {
            return o;
        }
        if !numeric {
            return cmp_strings(x, y, unpadded(col, w), cmp_folded);
        }
    }
    cmp_val(&Val::from_text(x, Some(col)), &Val::from_text(y, Some(col)))
}

/// [`cmp_rows`] for rows that carry COUNT(DISTINCT) results.
fn cmp_groups(
    gate: &Gate,
    binds: &[Bind],
    cols: &[Column],
    (a, a_counts): (&[Value], &[DistinctPart]),
    (b, b_counts): (&[Value], &[DistinctPart]),
) -> Ordering {
    let width = cols.len();
    let hidden = gate.hidden.min(width);
    for k in &gate.order {
        let w = weighed(k.weight, |w| {
            let w = resolve(w, width, hidden);
            (text_of(&a[w]).flatten(), text_of(&b[w]).flatten())
        });
        let o = match &k.expr {
            GateExpr::Col(c) => {
                let c = resolve(*c, width, hidden);
                let col = &cols[c];
                match (text_of(&a[c]), text_of(&b[c])) {
                    (Some(x), Some(y)) => cmp_col(col, is_numeric(col.column_type()), x, y, w),
                    _ => cmp_val(
                        &Val::from_cell(&a[c], Some(col)),
                        &Val::from_cell(&b[c], Some(col)),
                    ),
                }
            }
            e => {
                let row = |cells, distinct_counts| Row {
                    cells,
                    cols,
                    distinct_counts,
                };
                let va = eval(e, &row(a, a_counts), binds);
                let vb = eval(e, &row(b, b_counts), binds);
                match (&va, &vb) {
                    (Val::Str(x), Val::Str(y)) => cmp_strings(x, y, w, cmp_folded),
                    _ => cmp_val(&va, &vb),
                }
            }
        };
        let o = if k.desc { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// How a grouped aggregation passes the gate as the shards' sorted groups
/// are merged ([`RowOrder::groups`]), instead of being gathered first.
#[derive(Debug, PartialEq)]
pub enum Streamed {
    /// Grouping only (DISTINCT, GROUP BY without aggregate functions) and
    /// output that picks these columns: each group's first row is sent as
    /// it lies.
    Picks(Vec<usize>),
    /// Aggregate functions: each group is folded as its rows pass, then
    /// filtered by HAVING and projected ([`finish_group`]).
    Groups,
}

/// Whether the gate can combine groups as the shards' sorted results pass:
/// no COUNT(DISTINCT) or DISTINCT over the output, output columns whose
/// types are known before the first group (columns and AVG), and an ORDER
/// BY that is the grouping's own order. The keys must sort at the shards as
/// the gate compares them: numbers, or strings with weight strings (not
/// ENUM or SET, which MariaDB sorts by their index; not dates or times,
/// whose order the gate does not take from their text). None: gather.
pub fn streamed(gate: &Gate, cols: &[Column]) -> Option<Streamed> {
    let shaped = !gate.group_keys.is_empty()
        && gate.aggregate.len() == cols.len()
        && !gate
            .aggregate
            .iter()
            .any(|k| matches!(k, AggKind::DistinctArg { .. }))
        && !gate.distinct
        && (gate.order.is_empty() || orders_as_grouped(gate, cols));
    let sorts_alike = gate.group_keys.iter().all(|&(k, w)| {
        let Some(col) = cols.get(k) else { return false };
        use ColumnType::*;
        let string = matches!(
            col.column_type(),
            MYSQL_TYPE_VARCHAR
                | MYSQL_TYPE_VAR_STRING
                | MYSQL_TYPE_STRING
                | MYSQL_TYPE_TINY_BLOB
                | MYSQL_TYPE_BLOB
                | MYSQL_TYPE_MEDIUM_BLOB
                | MYSQL_TYPE_LONG_BLOB
        ) && !col
            .flags()
            .intersects(ColumnFlags::ENUM_FLAG | ColumnFlags::SET_FLAG);
        let weighed = match w {
            Some(Weight::Column(w)) => w < cols.len(),
            Some(Weight::Collation(_)) => true,
            None => false,
        };
        is_numeric(col.column_type()) || (string && weighed)
    });
    let output = gate.output.as_ref()?;
    let known = output.iter().all(|(e, _)| match e {
        GateExpr::Col(c) => *c < cols.len(),
        GateExpr::Avg { sum, count } => *sum < cols.len() && *count < cols.len(),
        _ => false,
    });
    if !shaped || !sorts_alike || !known {
        return None;
    }
    let grouping_only = gate
        .aggregate
        .iter()
        .all(|k| matches!(k, AggKind::Key | AggKind::Weight));
    let picks: Option<Vec<usize>> = output
        .iter()
        .map(|(e, _)| match e {
            GateExpr::Col(c) => Some(*c),
            _ => None,
        })
        .collect();
    Some(match picks {
        Some(p) if grouping_only && gate.having.is_none() => Streamed::Picks(p),
        _ => Streamed::Groups,
    })
}

/// A folded group's output row: None when HAVING drops it.
pub fn finish_group(
    gate: &Gate,
    binds: &[Bind],
    cols: &[Column],
    group: &[Value],
) -> Result<Option<Vec<Value>>, Error> {
    let row = Row {
        cells: group,
        cols,
        distinct_counts: &[],
    };
    if let Some(h) = &gate.having {
        if truth(&checked(eval(h, &row, binds), "HAVING", binds)?) != Some(true) {
            return Ok(None);
        }
    }
    let exprs = gate.output.as_deref().unwrap_or_default();
    exprs
        .iter()
        .map(|(e, name)| {
            Ok(match e {
                GateExpr::Col(c) => group[*c].clone(),
                other => checked(eval(other, &row, binds), name, binds)?.to_cell(),
            })
        })
        .collect::<Result<Vec<Value>, Error>>()
        .map(Some)
}

/// `v`, or MariaDB's 1690 when it is [`Val::OutOfRange`]; `what` names
/// the expression (as the plan's template: its values are put back).
fn checked(v: Val, what: &str, binds: &[Bind]) -> Result<Val, Error> {
    match v {
        Val::OutOfRange => Err(Error::OutOfRange(crate::sql::normalize::column_name(
            what, binds,
        ))),
        v => Ok(v),
    }
}

/// The columns of a streamed aggregation's output (see [`streamed`]),
/// named as the client wrote them.
pub fn output_columns(gate: &Gate, binds: &[Bind], cols: &[Column]) -> Vec<Column> {
    let exprs = gate.output.as_deref().unwrap_or_default();
    exprs
        .iter()
        .map(|(e, name)| output_column(e, name, binds, cols, None))
        .collect()
}

/// One output column: a picked column keeps the shard's definition under
/// the client's name; AVG and COUNT(DISTINCT) have types of their own; any
/// other expression is typed by a value it produced (`sample`).
fn output_column(
    e: &GateExpr,
    name: &str,
    binds: &[Bind],
    cols: &[Column],
    sample: Option<&Val>,
) -> Column {
    let name = crate::sql::normalize::column_name(name, binds);
    match e {
        GateExpr::Col(c) => cols[*c].clone().with_name(name.as_bytes()),
        GateExpr::Avg { sum, .. } => {
            let s = &cols[*sum];
            let sample = if is_float(s) {
                Val::Float(0.0)
            } else {
                let shown = s.decimals() as u32 + DIV_PRECISION;
                Val::Dec(0, shown, shown)
            };
            synth_column(&name, &sample)
        }
        GateExpr::CountDistinct(_) => synth_column(&name, &Val::Int(0)),
        // As MySQL types them: a sum of integers is a DECIMAL, an average
        // has four more decimals.
        GateExpr::SumDistinct(c) | GateExpr::AvgDistinct(c) => {
            let a = &cols[*c];
            let avg = matches!(e, GateExpr::AvgDistinct(_));
            let sample = if is_float(a) {
                Val::Float(0.0)
            } else {
                let shown = a.decimals() as u32 + if avg { DIV_PRECISION } else { 0 };
                Val::Dec(0, shown, shown)
            };
            synth_column(&name, &sample)
        }
        // A comparison's or a logical operator's truth value: an INT(1).
        e if is_truth(e) => int_column(&name, 1),
        // An integer literal of up to nine characters is an INT, as
        // MariaDB types it (a longer one a BIGINT).
        GateExpr::Lit(_) | GateExpr::Bind(_) => match sample {
            Some(Val::Int(i)) if i.to_string().len() <= 9 => {
                int_column(&name, i.to_string().len() as u32)
            }
            _ => synth_column(&name, sample.unwrap_or(&Val::Int(0))),
        },
        _ => synth_column(&name, sample.unwrap_or(&Val::Int(0))),
    }
}

/// An INT column of display width `len`.
fn int_column(name: &str, len: u32) -> Column {
    Column::new(ColumnType::MYSQL_TYPE_LONG)
        .with_name(name.as_bytes())
        .with_column_length(len)
        .with_character_set(super::BINARY_CHARSET)
        .with_flags(ColumnFlags::BINARY_FLAG | ColumnFlags::NUM_FLAG)
}

/// Whether `e` is a truth value (1, 0 or NULL): a comparison, a logical
/// operator, IS NULL.
fn is_truth(e: &GateExpr) -> bool {
    match e {
        GateExpr::IsNull(..) | GateExpr::Unary(UnaryOperator::Not, _) => true,
        GateExpr::Binary(_, op, _) => matches!(
            op,
            BinaryOperator::Eq
                | BinaryOperator::NotEq
                | BinaryOperator::Lt
                | BinaryOperator::LtEq
                | BinaryOperator::Gt
                | BinaryOperator::GtEq
                | BinaryOperator::Spaceship
                | BinaryOperator::And
                | BinaryOperator::Or
                | BinaryOperator::Xor
        ),
        _ => false,
    }
}

/// True when the gate only orders, skips, limits and drops hidden columns:
/// then each shard's (already sorted) rows can flow to the client as they
/// arrive instead of being gathered first.
pub fn streams(gate: &Gate) -> bool {
    gate.aggregate.is_empty()
        && gate.group_keys.is_empty()
        && gate.output.is_none()
        && gate.having.is_none()
        && !gate.distinct
}

/// OFFSET, LIMIT and hidden-column removal applied row by row, for a
/// streaming gate.
#[derive(Debug)]
pub struct Window {
    skip: u64,
    left: u64,
    width: usize,
    visible: usize,
}

impl Window {
    /// The window of `gate` (if any) over rows `width` columns wide.
    pub fn new(gate: Option<&Gate>, binds: &[Bind], width: usize) -> Result<Window, Error> {
        let Some(g) = gate else {
            return Ok(Window {
                skip: 0,
                left: u64::MAX,
                width,
                visible: width,
            });
        };
        check_shape(g, width, &[])?;
        let num = |o: &Option<Operand>| o.as_ref().map(|o| operand_u64(o, binds)).transpose();
        Ok(Window {
            skip: num(&g.offset)?.unwrap_or(0),
            left: num(&g.limit)?.unwrap_or(u64::MAX),
            width,
            visible: width - g.hidden.min(width),
        })
    }

    /// How many columns the client sees.
    pub fn visible(&self) -> usize {
        self.visible
    }

    /// Whether every row goes out whole: no OFFSET, no LIMIT, no hidden
    /// columns.
    pub fn passes_all(&self) -> bool {
        self.skip == 0 && self.left == u64::MAX && self.visible == self.width
    }

    /// Whether no further row can be sent.
    pub fn full(&self) -> bool {
        self.left == 0
    }

    /// Takes the next row in output order, `width` cells wide: true when
    /// it is sent (its first [`Window::visible`] cells), false when it
    /// falls before the OFFSET or after the LIMIT. A row of the wrong
    /// width (a shard with another schema) is an error, never an
    /// out-of-bounds read.
    pub fn admit(&mut self, width: usize) -> Result<bool, Error> {
        check_width(width, self.width)?;
        if self.skip > 0 {
            self.skip -= 1;
            return Ok(false);
        }
        if self.left == 0 {
            return Ok(false);
        }
        self.left -= 1;
        Ok(true)
    }
}

/// Runs the gate over every shard's rows: returns the columns and rows to send.
pub fn run(
    gate: &Gate,
    binds: &[Bind],
    cols: &[Column],
    mut rows: Vec<Vec<Value>>,
) -> Result<(Vec<Column>, Vec<Vec<Value>>), Error> {
    let width = cols.len();
    check_shape(gate, width, &rows)?;
    let hidden = gate.hidden.min(width);
    let mut distinct_counts: Vec<Vec<DistinctPart>> = Vec::new();

    // 1. Aggregate.
    let aggregated = !gate.aggregate.is_empty();
    if aggregated {
        let kinds = &gate.aggregate;
        let distinct_col = kinds
            .iter()
            .position(|k| matches!(k, AggKind::DistinctArg { .. }));
        let key_cmp = |a: &Vec<Value>, b: &Vec<Value>| -> Ordering {
            for &(k, w) in &gate.group_keys {
                let o = cmp_cells(&a[k], &b[k], &cols[k], weighed_values(w, a, b));
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        };
        let dist_cmp = |a: &Vec<Value>, b: &Vec<Value>| -> Ordering {
            match distinct_col {
                Some(d) => {
                    let w = match kinds[d] {
                        AggKind::DistinctArg { weight } => weight,
                        _ => None,
                    };
                    cmp_cells(&a[d], &b[d], &cols[d], weighed_values(w, a, b))
                }
                None => Ordering::Equal,
            }
        };
        rows.sort_by(|a, b| key_cmp(a, b).then_with(|| dist_cmp(a, b)));
        let mut out: Vec<Vec<Value>> = Vec::new();
        let mut last_distinct: Option<Vec<Value>> = None;
        for mut row in rows {
            let same_group = out
                .last()
                .is_some_and(|g| key_cmp(g, &row) == Ordering::Equal);
            if !same_group {
                distinct_counts.push(
                    distinct_col
                        .map(|d| (d, 0, Val::Null))
                        .into_iter()
                        .collect(),
                );
                last_distinct = None;
                for &(k, _) in &gate.group_keys {
                    unsigned_zero(&mut row[k], &cols[k]);
                }
                if distinct_col.is_none() {
                    out.push(row);
                    continue;
                }
                out.push(row.clone());
            } else {
                let g = out.last_mut().expect("group");
                fold(gate, cols, g, &row);
            }
            if let Some(d) = distinct_col {
                let new_value = row[d] != Value::NULL
                    && last_distinct
                        .as_ref()
                        .is_none_or(|prev| dist_cmp(prev, &row) != Ordering::Equal);
                if new_value {
                    if let Some(c) = distinct_counts.last_mut().and_then(|v| v.first_mut()) {
                        c.1 += 1;
                        // A sum of integers is a DECIMAL (MariaDB's), past
                        // every BIGINT too.
                        let v = match Val::from_cell(&row[d], cols.get(d)).numeric() {
                            Val::Int(i) => Val::Dec(i, 0, 0),
                            v => v,
                        };
                        c.2 = match &c.2 {
                            Val::Null => v,
                            sum => add(sum, &v),
                        };
                    }
                }
                if row[d] != Value::NULL {
                    last_distinct = Some(row);
                }
            }
        }
        if out.is_empty() && gate.scalar {
            out.push(
                kinds
                    .iter()
                    .map(|k| match k {
                        AggKind::Count => Value::Bytes(b"0".to_vec()),
                        _ => Value::NULL,
                    })
                    .collect(),
            );
            distinct_counts.push(
                distinct_col
                    .map(|d| (d, 0, Val::Null))
                    .into_iter()
                    .collect(),
            );
        }
        rows = out;
    }

    // 2. HAVING.
    let empty: Vec<DistinctPart> = Vec::new();
    let counts = |i: usize| distinct_counts.get(i).unwrap_or(&empty);
    let mut keep: Vec<(usize, Vec<Value>)> = Vec::with_capacity(rows.len());
    for (i, r) in rows.into_iter().enumerate() {
        if let Some(h) = &gate.having {
            let row = Row {
                cells: &r,
                cols,
                distinct_counts: counts(i),
            };
            if truth(&checked(eval(h, &row, binds), "HAVING", binds)?) != Some(true) {
                continue;
            }
        }
        keep.push((i, r));
    }

    // 3. ORDER BY (over internal rows), before projection drops columns.
    // Groups already come out in grouping-key order; an ORDER BY of those
    // keys (DISTINCT x ORDER BY x, GROUP BY x ORDER BY x) needs no sort.
    let presorted = aggregated && orders_as_grouped(gate, cols);
    if !gate.order.is_empty() && !presorted {
        keep.sort_by(|(ia, ra), (ib, rb)| {
            cmp_groups(gate, binds, cols, (ra, counts(*ia)), (rb, counts(*ib)))
        });
    }

    // 4. Projection.
    let (out_cols, mut out_rows): (Vec<Column>, Vec<Vec<Value>>) = match &gate.output {
        None => {
            let n = width - hidden;
            (
                cols[..n].to_vec(),
                keep.into_iter()
                    .map(|(_, mut r)| {
                        r.truncate(n);
                        r
                    })
                    .collect(),
            )
        }
        Some(exprs) => {
            let mut out_rows = Vec::with_capacity(keep.len());
            let mut samples: Vec<Option<Val>> = vec![None; exprs.len()];
            // Output that only picks columns, each once, moves the cells.
            let picks: Option<Vec<usize>> = exprs
                .iter()
                .map(|(e, _)| match e {
                    GateExpr::Col(c) => Some(*c),
                    _ => None,
                })
                .collect::<Option<Vec<usize>>>()
                .filter(|p| p.iter().enumerate().all(|(k, c)| !p[..k].contains(c)));
            let keep = match picks {
                Some(p) => {
                    for (_, mut r) in keep {
                        out_rows.push(
                            p.iter()
                                .map(|&c| std::mem::replace(&mut r[c], Value::NULL))
                                .collect(),
                        );
                    }
                    Vec::new()
                }
                None => keep,
            };
            for (i, r) in &keep {
                let row = Row {
                    cells: r,
                    cols,
                    distinct_counts: counts(*i),
                };
                let mut out = Vec::with_capacity(exprs.len());
                for (k, (e, name)) in exprs.iter().enumerate() {
                    match e {
                        GateExpr::Col(c) => out.push(r[*c].clone()),
                        other => {
                            let v = checked(eval(other, &row, binds), name, binds)?;
                            if v != Val::Null && samples[k].is_none() {
                                samples[k] = Some(v.clone());
                            }
                            out.push(v.to_cell());
                        }
                    }
                }
                out_rows.push(out);
            }
            let out_cols = exprs
                .iter()
                .enumerate()
                .map(|(k, (e, name))| output_column(e, name, binds, cols, samples[k].as_ref()))
                .collect();
            (out_cols, out_rows)
        }
    };

    // 5. DISTINCT (stable: keeps the first of equal rows, order preserved).
    // Sorting row indices (stably) puts equal rows next to each other with
    // the earliest first: O(n log n) rather than comparing every pair.
    if gate.distinct {
        let decimals: Vec<usize> = (0..out_cols.len())
            .filter(|&i| is_decimal(&out_cols[i]))
            .collect();
        for r in out_rows.iter_mut().filter(|_| !decimals.is_empty()) {
            for &i in &decimals {
                unsigned_zero(&mut r[i], &out_cols[i]);
            }
        }
        let cmp_rows = |a: &[Value], b: &[Value]| {
            a.iter()
                .zip(b)
                .zip(&out_cols)
                .map(|((x, y), c)| cmp_cells(x, y, c, None))
                .find(|o| *o != Ordering::Equal)
                .unwrap_or(Ordering::Equal)
        };
        let mut order: Vec<usize> = (0..out_rows.len()).collect();
        order.sort_by(|&a, &b| cmp_rows(&out_rows[a], &out_rows[b]));
        let mut keep = vec![false; out_rows.len()];
        for (n, &i) in order.iter().enumerate() {
            keep[i] = n == 0 || cmp_rows(&out_rows[order[n - 1]], &out_rows[i]) != Ordering::Equal;
        }
        let mut keep = keep.into_iter();
        out_rows.retain(|_| keep.next().unwrap_or(false));
    }

    // 6. OFFSET / LIMIT.
    let offset = gate
        .offset
        .as_ref()
        .map(|o| operand_u64(o, binds))
        .transpose()?
        .unwrap_or(0) as usize;
    let limit = gate
        .limit
        .as_ref()
        .map(|o| operand_u64(o, binds))
        .transpose()?;
    let out_rows: Vec<Vec<Value>> = out_rows
        .into_iter()
        .skip(offset)
        .take(limit.map(|l| l as usize).unwrap_or(usize::MAX))
        .collect();
    Ok((out_cols, out_rows))
}

/// Folds `row` into its group's row `g` (the gathered rows, sorted, or a
/// streamed aggregation's, merged in group order): counts and sums add
/// up, MIN and MAX keep the better value (and its weight string); the
/// rest keep the group's first.
pub fn fold(gate: &Gate, cols: &[Column], g: &mut [Value], row: &[Value]) {
    for (i, kind) in gate.aggregate.iter().enumerate() {
        match kind {
            AggKind::Count | AggKind::Sum => {
                let s = add_cells(&g[i], &row[i], &cols[i]);
                g[i] = s;
            }
            AggKind::Concat(sep, n) => match (&mut g[i], &row[i]) {
                (_, Value::NULL) => {}
                (Value::Bytes(have), Value::Bytes(more)) => {
                    have.extend_from_slice(&sep[..usize::from(*n).min(8)]);
                    have.extend_from_slice(more);
                }
                (have, more) => *have = more.clone(),
            },
            AggKind::BitAnd | AggKind::BitOr | AggKind::BitXor => {
                let bits = |v: &Value| match v {
                    Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse::<u64>().ok(),
                    Value::UInt(u) => Some(*u),
                    Value::Int(i) => Some(*i as u64),
                    _ => None,
                };
                // Each shard's part is a number (its empty set gives the
                // operation's identity); a NULL part adds nothing.
                if let (Some(a), Some(b)) = (bits(&g[i]), bits(&row[i])) {
                    let c = match kind {
                        AggKind::BitAnd => a & b,
                        AggKind::BitOr => a | b,
                        _ => a ^ b,
                    };
                    g[i] = Value::Bytes(c.to_string().into_bytes());
                } else if g[i] == Value::NULL {
                    g[i] = row[i].clone();
                }
            }
            AggKind::Min { weight } | AggKind::Max { weight } => {
                let o = cmp_cells(&row[i], &g[i], &cols[i], weighed_values(*weight, row, g));
                let wanted = match kind {
                    AggKind::Min { .. } => Ordering::Less,
                    _ => Ordering::Greater,
                };
                if g[i] == Value::NULL || (row[i] != Value::NULL && o == wanted) {
                    g[i] = row[i].clone();
                    if let Some(Weight::Column(w)) = weight {
                        g[*w] = row[*w].clone();
                    }
                }
            }
            _ => {}
        }
    }
}

/// The ORDER BY asks for the order aggregation leaves groups in: its keys
/// are the leading grouping keys, ascending, each compared the same way
/// both times (by its weight string, or as a number).
fn orders_as_grouped(gate: &Gate, cols: &[Column]) -> bool {
    let width = cols.len();
    let hidden = gate.hidden.min(width);
    gate.order.len() <= gate.group_keys.len()
        && gate
            .order
            .iter()
            .zip(&gate.group_keys)
            .all(|(k, &(g, gw))| {
                let GateExpr::Col(c) = k.expr else {
                    return false;
                };
                let c = resolve(c, width, hidden);
                let w = k.weight.map(|w| match w {
                    Weight::Column(w) => Weight::Column(resolve(w, width, hidden)),
                    w => w,
                });
                !k.desc
                    && c == g
                    && w == gw
                    && cols
                        .get(c)
                        .is_some_and(|col| w.is_some() || is_numeric(col.column_type()))
            })
}

/// A DECIMAL's negative zero as MariaDB stores it: unsigned. A row's
/// `amt % 3` over `-3.00` is `-0.00`, but a value MariaDB groups, dedupes
/// or unions passes through a DECIMAL field of a temporary table, which
/// keeps no sign on zero (`0.00`); the gate's groups and DISTINCT rows do
/// the same for the values it keeps.
fn unsigned_zero(v: &mut Value, col: &Column) {
    if let Value::Bytes(b) = v {
        if is_decimal(col)
            && b.len() > 1
            && b[0] == b'-'
            && b[1..].iter().all(|&c| c == b'0' || c == b'.')
        {
            b.remove(0);
        }
    }
}

fn is_decimal(c: &Column) -> bool {
    matches!(
        c.column_type(),
        ColumnType::MYSQL_TYPE_NEWDECIMAL | ColumnType::MYSQL_TYPE_DECIMAL
    )
}

/// Whether `c` holds a FLOAT or a DOUBLE.
pub(super) fn is_float(c: &Column) -> bool {
    matches!(
        c.column_type(),
        ColumnType::MYSQL_TYPE_FLOAT | ColumnType::MYSQL_TYPE_DOUBLE
    )
}

fn add_cells(a: &Value, b: &Value, col: &Column) -> Value {
    match (a, b) {
        (Value::NULL, x) | (x, Value::NULL) => x.clone(),
        _ => {
            let s = add(&Val::from_cell(a, Some(col)), &Val::from_cell(b, Some(col)));
            match (s, col.column_type()) {
                (Val::Dec(m, sc, _), ColumnType::MYSQL_TYPE_NEWDECIMAL)
                    if (sc as u8) < col.decimals() =>
                {
                    let d = col.decimals() as u32;
                    m.checked_mul(pow10(d - sc))
                        .map_or(Val::Dec(m, sc, sc), |m| Val::Dec(m, d, d))
                        .to_cell()
                }
                (s, _) => s.to_cell(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::sharded::SortKey;

    fn col(t: ColumnType, dec: u8) -> Column {
        Column::new(t).with_decimals(dec).with_name(b"c")
    }

    fn b(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    #[test]
    fn times_compare_as_durations() {
        let t = col(ColumnType::MYSQL_TYPE_TIME, 0);
        let ordered = [
            "-838:59:59",
            "-10:00:00",
            "-02:00:00",
            "-00:00:00.5",
            "00:00:00",
            "00:30:00.000001",
            "20:00:00",
            "100:00:00",
        ];
        for pair in ordered.windows(2) {
            let (x, y) = (pair[0].as_bytes(), pair[1].as_bytes());
            assert_eq!(
                cmp_key(&t, false, Some(x), Some(y), None),
                Ordering::Less,
                "{pair:?}"
            );
            assert_eq!(
                cmp_col(&t, false, Some(y), Some(x), None),
                Ordering::Greater,
                "{pair:?}"
            );
        }
        // Not a TIME: its text.
        let s = col(ColumnType::MYSQL_TYPE_VAR_STRING, 0);
        assert_eq!(cmp_times(&s, b"100", b"20"), None);
    }

    #[test]
    fn groupings_stream_only_over_keys_the_shards_sort_alike() {
        let distinct = Gate {
            aggregate: vec![AggKind::Key, AggKind::Weight],
            group_keys: vec![(0, Some(Weight::Column(1)))],
            output: Some(vec![(GateExpr::Col(0), "c".into())]),
            ..Gate::default()
        };
        let string = col(ColumnType::MYSQL_TYPE_VAR_STRING, 0);
        let weight = col(ColumnType::MYSQL_TYPE_VAR_STRING, 0);
        let cols = vec![string.clone(), weight.clone()];
        let picks = Some(Streamed::Picks(vec![0]));
        assert_eq!(streamed(&distinct, &cols), picks);
        let numeric = vec![col(ColumnType::MYSQL_TYPE_LONG, 0), weight.clone()];
        assert_eq!(streamed(&distinct, &numeric), picks);
        // MariaDB sorts ENUM by index, dates and times as values.
        let e = string.clone().with_flags(ColumnFlags::ENUM_FLAG);
        assert_eq!(streamed(&distinct, &[e, weight.clone()]), None);
        let t = col(ColumnType::MYSQL_TYPE_TIME, 0);
        assert_eq!(streamed(&distinct, &[t, weight.clone()]), None);
        // Aggregate functions fold as groups pass; an expression over
        // them (typed by its first value), COUNT(DISTINCT) or a
        // descending ORDER BY gather.
        let counted = Gate {
            aggregate: vec![AggKind::Key, AggKind::Weight, AggKind::Count],
            output: Some(vec![
                (GateExpr::Col(0), "c".into()),
                (GateExpr::Col(2), "n".into()),
            ]),
            ..distinct.clone()
        };
        let with_count = vec![string, weight, col(ColumnType::MYSQL_TYPE_LONGLONG, 0)];
        assert_eq!(streamed(&counted, &with_count), Some(Streamed::Groups));
        let plus_one = Gate {
            output: Some(vec![(
                GateExpr::Binary(
                    Box::new(GateExpr::Col(2)),
                    BinaryOperator::Plus,
                    Box::new(GateExpr::Lit(b("1"))),
                ),
                "n + 1".into(),
            )]),
            ..counted.clone()
        };
        assert_eq!(streamed(&plus_one, &with_count), None);
        let count_distinct = Gate {
            aggregate: vec![
                AggKind::Key,
                AggKind::Weight,
                AggKind::DistinctArg {
                    weight: Some(Weight::Column(1)),
                },
            ],
            ..counted
        };
        assert_eq!(streamed(&count_distinct, &with_count), None);
        let desc = Gate {
            order: vec![SortKey {
                expr: GateExpr::Col(0),
                weight: Some(Weight::Column(1)),
                desc: true,
            }],
            ..distinct
        };
        assert_eq!(streamed(&desc, &cols), None);
    }

    #[test]
    fn overflow_falls_back_instead_of_panicking() {
        let big = Val::Int(i128::MAX);
        assert_eq!(add(&big, &big), Val::OutOfRange);
        assert!(matches!(mul(&big, &Val::Dec(15, 1, 1)), Val::Float(_)));
        // Integers beyond every BIGINT are MariaDB's 1690; between the
        // signed and the unsigned range they are kept.
        let most = Val::Int(i128::from(u64::MAX));
        assert_eq!(add(&most, &Val::Int(1)), Val::OutOfRange);
        assert_eq!(mul(&most, &Val::Int(2)), Val::OutOfRange);
        assert_eq!(minus(&most), Val::OutOfRange);
        assert_eq!(sub(&most, &most), Val::Int(0));
        assert_eq!(
            sub(&Val::Int(i128::from(i64::MIN)), &Val::Int(1)),
            Val::OutOfRange
        );
        assert_eq!(
            add(&Val::Int(i128::from(i64::MAX)), &Val::Int(1)),
            Val::Int(i128::from(i64::MAX) + 1)
        );
        assert!(matches!(
            div(&Val::Dec(i128::MAX, 30, 30), &Val::Dec(3, 30, 30)),
            Val::Float(_)
        ));
        let _ = cmp_val(&Val::Dec(i128::MAX, 0, 0), &Val::Dec(1, 37, 37));
    }

    #[test]
    fn division_and_avg_format_like_mariadb() {
        assert_eq!(div(&Val::Int(7), &Val::Int(2)).to_cell(), b("3.5000"));
        assert_eq!(div(&Val::Int(2), &Val::Int(3)).to_cell(), b("0.6667"));
        assert_eq!(div(&Val::Int(-2), &Val::Int(3)).to_cell(), b("-0.6667"));
        assert_eq!(
            div(&Val::Dec(1250, 2, 2), &Val::Int(4)).to_cell(),
            b("3.125000")
        );
        assert_eq!(div(&Val::Int(1), &Val::Int(0)), Val::Null);
        assert_eq!(add(&Val::Dec(5, 1, 1), &Val::Int(2)).to_cell(), b("2.5"));
        // A DOUBLE column's average is a DOUBLE: no scale of its own.
        let double = col(ColumnType::MYSQL_TYPE_DOUBLE, 31);
        let sum = Val::from_cell(&b("50.25"), Some(&double));
        assert_eq!(div(&sum, &Val::Int(2)).to_cell(), b("25.125"));
        let parts = add_cells(&b("0.1"), &b("0.2"), &double);
        assert_eq!(parts, b("0.30000000000000004"));
    }

    /// A quotient holds the digits MariaDB's decimal division keeps (in
    /// nine-digit words, truncated), shows its dividend's and four more,
    /// and compares as shown.
    #[test]
    fn quotients_hold_more_digits_than_they_show() {
        let avg = div(&Val::Dec(1401, 2, 2), &Val::Int(7));
        assert_eq!(avg, Val::Dec(2_001_428_571, 9, 6));
        assert_eq!(avg.to_cell(), b("2.001429"));
        assert_eq!(mul(&avg, &Val::Int(2)).to_cell(), b("4.002857"));
        assert_eq!(mul(&avg, &Val::Int(7)).to_cell(), b("14.010000"));
        assert_eq!(
            mul(&div(&Val::Int(8), &Val::Int(3)), &Val::Int(3)).to_cell(),
            b("8.0000")
        );
        assert_eq!(quotient_scale(0, 0), 9);
        assert_eq!(quotient_scale(2, 0), 9);
        assert_eq!(quotient_scale(5, 0), 9);
        assert_eq!(quotient_scale(6, 0), 18);
        assert_eq!(quotient_scale(9, 0), 18);
        assert_eq!(quotient_scale(9, 9), 27);
        assert_eq!(cmp_val(&avg, &Val::Dec(2_001_429, 6, 6)), Ordering::Equal);
        assert_eq!(
            cmp_val(&avg, &Val::Dec(20_014_285, 7, 7)),
            Ordering::Greater
        );
        assert_eq!(div(&Val::Int(-2), &Val::Int(3)).to_cell(), b("-0.6667"));
    }

    /// A string is the number its text begins with; a date's or time's
    /// number is its digits.
    #[test]
    fn strings_and_times_as_numbers() {
        for (text, n) in [
            ("7x", 7.0),
            ("  -1.5e1abc", -15.0),
            (".5", 0.5),
            ("5.", 5.0),
            ("1e", 1.0),
            ("2e+", 2.0),
            ("abc", 0.0),
            ("-", 0.0),
            (".", 0.0),
            ("", 0.0),
        ] {
            assert_eq!(string_number(text.as_bytes()), n, "{text}");
        }
        let d = Val::Temporal(b"2024-08-08".to_vec());
        assert_eq!(d.numeric(), Val::Int(20240808));
        let t = Val::Temporal(b"-838:59:59.5".to_vec());
        assert_eq!(t.numeric(), Val::Dec(-83859595, 1, 1));
        assert_eq!(add(&d, &Val::Int(1)), Val::Int(20240809));
        assert_eq!(
            add(&Val::Str(b"7x".to_vec()), &Val::Int(1)),
            Val::Float(8.0)
        );
        assert_eq!(
            cmp_val(&d, &Val::Str(b"2024-05-01".to_vec())),
            Ordering::Greater
        );
    }

    #[test]
    fn modulo_and_integer_division_as_mariadb() {
        assert_eq!(rem(&Val::Int(7), &Val::Int(3)), Val::Int(1));
        assert_eq!(rem(&Val::Int(-7), &Val::Int(3)), Val::Int(-1));
        assert_eq!(rem(&Val::Int(7), &Val::Int(0)), Val::Null);
        assert_eq!(
            rem(&Val::Dec(-1234, 2, 2), &Val::Int(3)).to_cell(),
            b("-0.34")
        );
        assert_eq!(rem(&Val::Float(7.5), &Val::Int(2)), Val::Float(1.5));
        assert_eq!(int_div(&Val::Int(-7), &Val::Int(2)), Val::Int(-3));
        assert_eq!(int_div(&Val::Dec(1250, 2, 2), &Val::Int(4)), Val::Int(3));
        assert_eq!(int_div(&Val::Int(1), &Val::Int(0)), Val::Null);
    }

    /// A row's DECIMAL `-0.00` (MariaDB's `-3.00 % 3`) is `0.00` once
    /// grouped or deduped, as MariaDB's temporary table stores it; a
    /// string's `-0.00` stays.
    #[test]
    fn grouped_and_distinct_decimals_have_no_negative_zero() {
        let cols = vec![
            col(ColumnType::MYSQL_TYPE_NEWDECIMAL, 2),
            col(ColumnType::MYSQL_TYPE_LONGLONG, 0),
        ];
        let gate = Gate {
            aggregate: vec![AggKind::Key, AggKind::Count],
            group_keys: vec![(0, None)],
            ..Gate::default()
        };
        let rows = vec![
            vec![b("-0.00"), b("1")],
            vec![b("-1.50"), b("1")],
            vec![b("0.00"), b("1")],
        ];
        let (_, r) = run(&gate, &[], &cols, rows).unwrap();
        assert_eq!(r, vec![vec![b("-1.50"), b("1")], vec![b("0.00"), b("2")]]);
        let distinct = Gate {
            distinct: true,
            ..Gate::default()
        };
        let rows = vec![vec![b("-0.00"), b("1")], vec![b("0.00"), b("1")]];
        let (_, r) = run(&distinct, &[], &cols, rows).unwrap();
        assert_eq!(r, vec![vec![b("0.00"), b("1")]]);
        let mut text = b("-0.00");
        unsigned_zero(&mut text, &col(ColumnType::MYSQL_TYPE_VAR_STRING, 0));
        assert_eq!(text, b("-0.00"));
    }

    #[test]
    fn scalar_aggregate_merges_partials() {
        // count(*), sum(x), min(x) + weight, from three shards
        let cols = vec![
            col(ColumnType::MYSQL_TYPE_LONGLONG, 0),
            col(ColumnType::MYSQL_TYPE_NEWDECIMAL, 0),
            col(ColumnType::MYSQL_TYPE_LONG, 0),
            col(ColumnType::MYSQL_TYPE_VAR_STRING, 0),
        ];
        let gate = Gate {
            aggregate: vec![
                AggKind::Count,
                AggKind::Sum,
                AggKind::Min {
                    weight: Some(Weight::Column(3)),
                },
                AggKind::Weight,
            ],
            scalar: true,
            output: Some(vec![
                (GateExpr::Col(0), "count(*)".into()),
                (GateExpr::Col(1), "sum(x)".into()),
                (GateExpr::Col(2), "min(x)".into()),
                (GateExpr::Avg { sum: 1, count: 0 }, "avg(x)".into()),
            ]),
            ..Gate::default()
        };
        let rows = vec![
            vec![b("2"), b("10"), b("-3"), b("x")],
            vec![b("0"), Value::NULL, Value::NULL, Value::NULL],
            vec![b("3"), b("5"), b("4"), b("y")],
        ];
        let (c, r) = run(&gate, &[], &cols, rows).unwrap();
        assert_eq!(r, vec![vec![b("5"), b("15"), b("-3"), b("3.0000")]]);
        assert_eq!(c[3].column_type(), ColumnType::MYSQL_TYPE_NEWDECIMAL);
        assert_eq!(c[3].decimals(), 4);
    }

    #[test]
    fn order_by_uses_weights_and_limits() {
        let cols = vec![
            col(ColumnType::MYSQL_TYPE_VAR_STRING, 0),
            col(ColumnType::MYSQL_TYPE_VAR_STRING, 0),
            col(ColumnType::MYSQL_TYPE_VAR_STRING, 0),
        ];
        let gate = Gate {
            hidden: 2,
            order: vec![SortKey {
                expr: GateExpr::Col(HIDDEN),
                weight: Some(Weight::Column(HIDDEN + 1)),
                desc: false,
            }],
            limit: Some(Operand::Lit(Value::Int(2))),
            offset: Some(Operand::Lit(Value::Int(1))),
            ..Gate::default()
        };
        let rows = vec![
            vec![b("b"), b("b"), b("B")],
            vec![b("A"), b("A"), b("A")],
            vec![b("c"), b("c"), b("C")],
            vec![Value::NULL, Value::NULL, Value::NULL],
        ];
        let (c, r) = run(&gate, &[], &cols, rows).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(r, vec![vec![b("A")], vec![b("b")]]);
    }

    #[test]
    fn row_order_compares_rows_in_place_as_decoded_rows_compare() {
        use super::super::row::OwnedRow;
        // A string in a collation, a number, a string with its weight
        // column (hidden), NULLs among them.
        let cols = vec![
            col(ColumnType::MYSQL_TYPE_VAR_STRING, 0),
            col(ColumnType::MYSQL_TYPE_LONG, 0),
            col(ColumnType::MYSQL_TYPE_VAR_STRING, 0),
            col(ColumnType::MYSQL_TYPE_VAR_STRING, 0),
        ];
        let general = Some(Weight::Collation(Collation::Utf8GeneralCi));
        let rows: Vec<Vec<Value>> = [
            ("a", Some(10), "x"),
            ("A", Some(9), "X"),
            ("b", None, "y"),
            ("a", Some(10), "y"),
            ("B", Some(-3), "x"),
            ("", Some(100), "z"),
        ]
        .iter()
        .flat_map(|&(s, n, w)| {
            let n = n.map_or(Value::NULL, |n: i64| b(&n.to_string()));
            [
                vec![b(s), n.clone(), b(w), b(&w.to_uppercase())],
                vec![Value::NULL, n, Value::NULL, Value::NULL],
            ]
        })
        .collect();
        let owned: Vec<OwnedRow> = rows
            .iter()
            .map(|r| {
                let mut o = OwnedRow::default();
                o.set(r);
                o
            })
            .collect();
        let sorted = Gate {
            hidden: 2,
            order: vec![
                SortKey {
                    expr: GateExpr::Col(0),
                    weight: general,
                    desc: true,
                },
                SortKey {
                    expr: GateExpr::Col(HIDDEN),
                    weight: Some(Weight::Column(HIDDEN + 1)),
                    desc: false,
                },
                SortKey {
                    expr: GateExpr::Col(1),
                    weight: None,
                    desc: false,
                },
            ],
            ..Gate::default()
        };
        let grouped = Gate {
            group_keys: vec![(1, None), (0, general), (2, Some(Weight::Column(3)))],
            ..Gate::default()
        };
        let order = RowOrder::sort(&sorted, &cols).expect("column keys");
        let groups = RowOrder::groups(&grouped, &cols);
        let mut unequal = 0;
        for (a, oa) in rows.iter().zip(&owned) {
            for (b, ob) in rows.iter().zip(&owned) {
                let want = cmp_rows(&sorted, &[], &cols, a, b);
                assert_eq!(order.cmp(oa.row(), ob.row()), want, "{a:?} {b:?}");
                let want = grouped
                    .group_keys
                    .iter()
                    .map(|&(k, w)| cmp_cells(&a[k], &b[k], &cols[k], weighed_values(w, a, b)))
                    .find(|o| o.is_ne())
                    .unwrap_or(Ordering::Equal);
                assert_eq!(groups.cmp(oa.row(), ob.row()), want, "{a:?} {b:?}");
                unequal += usize::from(want.is_ne());
            }
        }
        assert!(unequal > rows.len());
        // An expression key is left to the decoded rows.
        let expr = Gate {
            order: vec![SortKey {
                expr: GateExpr::Lit(Value::Int(1)),
                weight: None,
                desc: false,
            }],
            ..Gate::default()
        };
        assert!(RowOrder::sort(&expr, &cols).is_none());
    }
}
