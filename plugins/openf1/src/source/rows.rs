//! OpenF1 rows (JSON arrays) to typed records, for the cache loader and live polling.
//!
//! Two paths, because the data comes in two sizes:
//!
//! - The big per-driver series (`location`, `car_data`, ~3.7 Hz for hours) are parsed with
//!   borrowing serde structs streamed straight into compact samples ([`LocationSample`],
//!   [`CarSample`], a few dozen bytes each), never through `serde_json::Value`. A race of a
//!   million rows then fits in ~30 MB and parses at serde_json's typed speed.
//! - Everything else (drivers, laps, intervals, ...) is small, goes through `Value` so that one
//!   bad row can be skipped on its own, and becomes the `pitwall_api::record` type directly
//!   (their field names are OpenF1's; only `session_key` is turned into text).
//!
//! Outside data is never trusted: a row that does not fit (null date, a string where a number
//! belongs, not an object at all) is skipped and counted in [`Skipped`]. When a fast typed
//! parse of a whole array fails because of one such row, the array is parsed again row by row.

use std::borrow::Cow;
use std::marker::PhantomData;

use pitwall_api::record::{
    parse_iso8601_ns, CarData, CarPosition, Gap, Interval, RacePosition, SessionKey,
};
use serde::de::{DeserializeOwned, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// Rows and files that could not be used.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    /// Rows skipped: malformed, without a usable time, or duplicates.
    pub rows: u64,
    /// Files (or responses) that could not be read or were not a JSON array at all.
    pub files: u64,
}

impl Skipped {
    pub fn add(&mut self, other: Skipped) {
        self.rows += other.rows;
        self.files += other.files;
    }
}

/// One `location` sample in OpenF1's frame (1/10 m). Samples at 0,0 ("car not placed") are
/// never stored.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LocationSample {
    pub time_ns: i64,
    pub x: f32,
    pub y: f32,
    pub z: f32,
}

impl LocationSample {
    pub fn to_record(&self, session_key: &SessionKey, car: u32) -> CarPosition {
        CarPosition {
            session_key: session_key.clone(),
            car,
            x: f64::from(self.x),
            y: f64::from(self.y),
            z: f64::from(self.z),
            spline: None,
        }
    }
}

/// Stands for null in the integer fields of [`CarSample`].
const NO_INT: i16 = i16::MIN;

/// One `car_data` sample; NaN (floats) and `i16::MIN` (integers) stand for null.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CarSample {
    pub time_ns: i64,
    pub speed: f32,
    pub rpm: f32,
    pub throttle: f32,
    pub brake: f32,
    pub gear: i16,
    pub drs: i16,
}

impl CarSample {
    pub fn to_record(&self, session_key: &SessionKey, car: u32) -> CarData {
        let float = |v: f32| (!v.is_nan()).then_some(f64::from(v));
        let int = |v: i16| (v != NO_INT).then_some(i32::from(v));
        CarData {
            session_key: session_key.clone(),
            car,
            speed_kmh: float(self.speed),
            rpm: float(self.rpm),
            gear: int(self.gear),
            throttle_pct: float(self.throttle),
            brake_pct: float(self.brake),
            drs: int(self.drs),
        }
    }

    /// Speed in km/h, when known.
    pub fn speed_kmh(&self) -> Option<f32> {
        (!self.speed.is_nan()).then_some(self.speed)
    }
}

/// What a row converter decided.
pub enum Row<O> {
    Keep(O),
    /// Not wanted but not wrong (a car at 0,0).
    Ignore,
    /// Malformed: counted.
    Bad,
}

#[derive(Default, Deserialize)]
struct LocationRow<'a> {
    #[serde(borrow, default)]
    date: Option<Cow<'a, str>>,
    #[serde(default)]
    driver_number: Option<i64>,
    #[serde(default)]
    x: Option<f64>,
    #[serde(default)]
    y: Option<f64>,
    #[serde(default)]
    z: Option<f64>,
}

#[derive(Default, Deserialize)]
struct CarRow<'a> {
    #[serde(borrow, default)]
    date: Option<Cow<'a, str>>,
    #[serde(default)]
    driver_number: Option<i64>,
    #[serde(default)]
    speed: Option<f64>,
    #[serde(default)]
    rpm: Option<f64>,
    #[serde(default)]
    n_gear: Option<f64>,
    #[serde(default)]
    throttle: Option<f64>,
    #[serde(default)]
    brake: Option<f64>,
    #[serde(default)]
    drs: Option<f64>,
}

#[derive(Default, Deserialize)]
struct PositionRow<'a> {
    #[serde(borrow, default)]
    date: Option<Cow<'a, str>>,
    #[serde(default)]
    driver_number: Option<i64>,
    #[serde(default)]
    position: Option<i64>,
}

impl<'a> FlatRow<'a> for LocationRow<'a> {
    fn set(&mut self, key: &[u8], value: Scalar<'a>) -> Option<()> {
        match key {
            b"date" => self.date = value.text()?.map(Cow::Borrowed),
            b"driver_number" => self.driver_number = value.integer()?,
            b"x" => self.x = value.number()?,
            b"y" => self.y = value.number()?,
            b"z" => self.z = value.number()?,
            _ => {}
        }
        Some(())
    }
}

impl<'a> FlatRow<'a> for CarRow<'a> {
    fn set(&mut self, key: &[u8], value: Scalar<'a>) -> Option<()> {
        match key {
            b"date" => self.date = value.text()?.map(Cow::Borrowed),
            b"driver_number" => self.driver_number = value.integer()?,
            b"speed" => self.speed = value.number()?,
            b"rpm" => self.rpm = value.number()?,
            b"n_gear" => self.n_gear = value.number()?,
            b"throttle" => self.throttle = value.number()?,
            b"brake" => self.brake = value.number()?,
            b"drs" => self.drs = value.number()?,
            _ => {}
        }
        Some(())
    }
}

impl<'a> FlatRow<'a> for PositionRow<'a> {
    fn set(&mut self, key: &[u8], value: Scalar<'a>) -> Option<()> {
        match key {
            b"date" => self.date = value.text()?.map(Cow::Borrowed),
            b"driver_number" => self.driver_number = value.integer()?,
            b"position" => self.position = value.integer()?,
            _ => {}
        }
        Some(())
    }
}

#[derive(Default, Deserialize)]
struct IntervalRow<'a> {
    #[serde(borrow, default)]
    date: Option<Cow<'a, str>>,
    #[serde(default)]
    driver_number: Option<i64>,
    #[serde(default)]
    gap_to_leader: Option<Gap>,
    #[serde(default)]
    interval: Option<Gap>,
}

impl<'a> FlatRow<'a> for IntervalRow<'a> {
    fn set(&mut self, key: &[u8], value: Scalar<'a>) -> Option<()> {
        let gap = |value: Scalar<'a>| match value {
            Scalar::Null => Some(None),
            Scalar::Number(text) => Some(Some(Gap::Seconds(parse_number(text)?))),
            Scalar::Text(text) => Some(Some(Gap::Text(text.to_string()))),
            Scalar::Bool => None,
        };
        match key {
            b"date" => self.date = value.text()?.map(Cow::Borrowed),
            b"driver_number" => self.driver_number = value.integer()?,
            b"gap_to_leader" => self.gap_to_leader = gap(value)?,
            b"interval" => self.interval = gap(value)?,
            _ => {}
        }
        Some(())
    }
}

/// Just the date of a row (sorting downloaded windows, live cursors).
#[derive(Deserialize)]
pub(crate) struct DateOnly<'a> {
    #[serde(borrow, default)]
    pub date: Option<Cow<'a, str>>,
}

fn driver(number: Option<i64>) -> Option<u32> {
    number.and_then(|n| u32::try_from(n).ok())
}

/// ISO 8601 parsing for long runs of rows: consecutive dates share their hour, so the
/// date-and-hour part is converted once per hour and only `MM:SS.ffffff` per row. Anything
/// but UTC goes the general way.
#[derive(Default)]
pub struct DateParser {
    prefix: [u8; 13],
    hour_ns: i64,
    valid: bool,
}

impl DateParser {
    pub fn parse(&mut self, text: &str) -> Option<i64> {
        let bytes = text.as_bytes();
        let Some(within) = within_hour(bytes) else {
            return parse_iso8601_ns(text);
        };
        if self.valid && bytes[..13] == self.prefix {
            return Some(self.hour_ns + within);
        }
        let full = parse_iso8601_ns(text)?;
        self.prefix.copy_from_slice(&bytes[..13]);
        self.hour_ns = full - within;
        self.valid = true;
        Some(full)
    }
}

/// ns since the start of the hour of a UTC timestamp (`...THH:MM:SS[.f][Z|+00:00]`).
fn within_hour(bytes: &[u8]) -> Option<i64> {
    if bytes.len() < 19 || bytes[13] != b':' || bytes[16] != b':' {
        return None;
    }
    let digit = |i: usize| {
        let b = bytes[i];
        b.is_ascii_digit().then(|| i64::from(b - b'0'))
    };
    let minutes = digit(14)? * 10 + digit(15)?;
    let seconds = digit(17)? * 10 + digit(18)?;
    if minutes > 59 {
        return None;
    }
    let mut rest = &bytes[19..];
    let mut nanos = 0i64;
    if rest.first() == Some(&b'.') {
        rest = &rest[1..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        for (i, &b) in rest[..digits].iter().enumerate().take(9) {
            nanos += i64::from(b - b'0') * 10i64.pow(8 - i as u32);
        }
        rest = &rest[digits..];
    }
    match rest {
        [] | [b'Z'] | b"+00:00" | b"-00:00" => {
            Some((minutes * 60 + seconds) * 1_000_000_000 + nanos)
        }
        _ => None,
    }
}

fn location_row(
    row: LocationRow<'_>,
    dates: &mut DateParser,
) -> Row<(Option<u32>, LocationSample)> {
    let Some(time_ns) = row.date.as_deref().and_then(|d| dates.parse(d)) else {
        return Row::Bad;
    };
    let (Some(x), Some(y)) = (row.x, row.y) else {
        return Row::Bad;
    };
    if !(x.is_finite() && y.is_finite()) {
        return Row::Bad;
    }
    if x == 0.0 && y == 0.0 {
        return Row::Ignore;
    }
    let z = row.z.filter(|z| z.is_finite()).unwrap_or(0.0);
    let sample = LocationSample {
        time_ns,
        x: x as f32,
        y: y as f32,
        z: z as f32,
    };
    Row::Keep((driver(row.driver_number), sample))
}

fn car_row(row: CarRow<'_>, dates: &mut DateParser) -> Row<(Option<u32>, CarSample)> {
    let Some(time_ns) = row.date.as_deref().and_then(|d| dates.parse(d)) else {
        return Row::Bad;
    };
    let float = |v: Option<f64>| v.filter(|v| v.is_finite()).map_or(f32::NAN, |v| v as f32);
    let int = |v: Option<f64>| {
        v.filter(|v| v.is_finite() && v.abs() < 10_000.0)
            .map_or(NO_INT, |v| v as i16)
    };
    let sample = CarSample {
        time_ns,
        speed: float(row.speed),
        rpm: float(row.rpm),
        throttle: float(row.throttle),
        brake: float(row.brake),
        gear: int(row.n_gear),
        drs: int(row.drs),
    };
    Row::Keep((driver(row.driver_number), sample))
}

/// A per-driver `location` file: samples sorted by time, duplicates and 0,0 dropped.
pub fn location_samples(
    text: &str,
    skipped: &mut Skipped,
) -> Result<Vec<LocationSample>, serde_json::Error> {
    let mut dates = DateParser::default();
    let mut samples = parse_array(
        text,
        text.len() / 100,
        |row| match location_row(row, &mut dates) {
            Row::Keep((_, sample)) => Row::Keep(sample),
            Row::Ignore => Row::Ignore,
            Row::Bad => Row::Bad,
        },
        skipped,
    )?;
    skipped.rows += sort_dedup(&mut samples, |s| s.time_ns);
    samples.shrink_to_fit();
    Ok(samples)
}

/// A per-driver `car_data` file: samples sorted by time, duplicates dropped.
pub fn car_samples(text: &str, skipped: &mut Skipped) -> Result<Vec<CarSample>, serde_json::Error> {
    let mut dates = DateParser::default();
    let mut samples = parse_array(
        text,
        text.len() / 140,
        |row| match car_row(row, &mut dates) {
            Row::Keep((_, sample)) => Row::Keep(sample),
            Row::Ignore => Row::Ignore,
            Row::Bad => Row::Bad,
        },
        skipped,
    )?;
    skipped.rows += sort_dedup(&mut samples, |s| s.time_ns);
    samples.shrink_to_fit();
    Ok(samples)
}

/// `location` rows of any drivers (live polling), in response order.
pub fn location_rows(
    text: &str,
    skipped: &mut Skipped,
) -> Result<Vec<(u32, LocationSample)>, serde_json::Error> {
    let mut dates = DateParser::default();
    parse_array(
        text,
        0,
        |row| match location_row(row, &mut dates) {
            Row::Keep((Some(car), sample)) => Row::Keep((car, sample)),
            Row::Keep((None, _)) | Row::Bad => Row::Bad,
            Row::Ignore => Row::Ignore,
        },
        skipped,
    )
}

/// `car_data` rows of any drivers (live polling), in response order.
pub fn car_rows(
    text: &str,
    skipped: &mut Skipped,
) -> Result<Vec<(u32, CarSample)>, serde_json::Error> {
    let mut dates = DateParser::default();
    parse_array(
        text,
        0,
        |row| match car_row(row, &mut dates) {
            Row::Keep((Some(car), sample)) => Row::Keep((car, sample)),
            Row::Keep((None, _)) | Row::Bad => Row::Bad,
            Row::Ignore => Row::Ignore,
        },
        skipped,
    )
}

/// `position` rows: (time, race position).
pub fn race_positions(
    text: &str,
    session_key: &SessionKey,
    skipped: &mut Skipped,
) -> Result<Vec<(i64, RacePosition)>, serde_json::Error> {
    parse_array(
        text,
        0,
        |row: PositionRow<'_>| {
            let time = row.date.as_deref().and_then(parse_iso8601_ns);
            let car = driver(row.driver_number);
            let position = row.position.and_then(|p| u32::try_from(p).ok());
            match (time, car, position) {
                (Some(time), Some(car), Some(position)) => Row::Keep((
                    time,
                    RacePosition {
                        session_key: session_key.clone(),
                        car,
                        position,
                    },
                )),
                _ => Row::Bad,
            }
        },
        skipped,
    )
}

/// `intervals` rows: (time, interval). Gaps are seconds, text such as "+1 LAP", or null.
pub fn intervals(
    text: &str,
    session_key: &SessionKey,
    skipped: &mut Skipped,
) -> Result<Vec<(i64, Interval)>, serde_json::Error> {
    parse_array(
        text,
        0,
        |row: IntervalRow<'_>| {
            let time = row.date.as_deref().and_then(parse_iso8601_ns);
            match (time, driver(row.driver_number)) {
                (Some(time), Some(driver_number)) => Row::Keep((
                    time,
                    Interval {
                        session_key: session_key.clone(),
                        driver_number,
                        date: row.date.map(Cow::into_owned),
                        gap_to_leader: row.gap_to_leader,
                        interval: row.interval,
                    },
                )),
                _ => Row::Bad,
            }
        },
        skipped,
    )
}

/// Rows of a small endpoint as record type `T` (drivers, laps, intervals, ...), each row's
/// numeric `session_key` replaced by `session_key` as text. Rows that do not fit are skipped.
pub fn records<T: DeserializeOwned>(
    text: &str,
    session_key: &str,
    skipped: &mut Skipped,
) -> Result<Vec<T>, serde_json::Error> {
    let values: Vec<Value> = match serde_json::from_str(text) {
        Ok(values) => values,
        Err(error) => {
            return if is_no_results(text) {
                Ok(Vec::new())
            } else {
                Err(error)
            }
        }
    };
    let mut out = Vec::with_capacity(values.len());
    for value in values {
        let Value::Object(mut map) = value else {
            skipped.rows += 1;
            continue;
        };
        map.insert(
            "session_key".to_string(),
            Value::String(session_key.to_string()),
        );
        match T::deserialize(Value::Object(map)) {
            Ok(record) => out.push(record),
            Err(_) => skipped.rows += 1,
        }
    }
    Ok(out)
}

/// The raw JSON objects of an array, unparsed (for re-writing downloaded windows).
pub fn raw_rows(text: &str) -> Result<Vec<&RawValue>, serde_json::Error> {
    match serde_json::from_str(text) {
        Ok(rows) => Ok(rows),
        Err(error) => {
            if is_no_results(text) {
                Ok(Vec::new())
            } else {
                Err(error)
            }
        }
    }
}

/// OpenF1's empty answer, `{"detail": "No results found."}`, stored or received as a body.
pub fn is_no_results(text: &str) -> bool {
    #[derive(Deserialize)]
    struct Detail<'a> {
        #[serde(borrow)]
        detail: Cow<'a, str>,
    }
    serde_json::from_str::<Detail<'_>>(text).is_ok_and(|d| d.detail.contains("No results"))
}

/// Sort by key (stable, only when needed) and drop later rows with an equal key; returns how
/// many were dropped.
pub fn sort_dedup<T>(items: &mut Vec<T>, key: impl Fn(&T) -> i64) -> u64 {
    if !items.is_sorted_by_key(&key) {
        items.sort_by_key(&key);
    }
    let before = items.len();
    items.dedup_by(|later, earlier| key(later) == key(earlier));
    (before - items.len()) as u64
}

/// Parse a JSON array of rows `R`, converting each on the fly. Fast path: one typed pass.
/// If any row breaks the typed parse, parse again row by row and skip the bad ones.
fn parse_array<'a, R, O>(
    text: &'a str,
    capacity: usize,
    mut convert: impl FnMut(R) -> Row<O>,
    skipped: &mut Skipped,
) -> Result<Vec<O>, serde_json::Error>
where
    R: Deserialize<'a> + FlatRow<'a>,
{
    let mut out = Vec::with_capacity(capacity);
    let mut bad = 0u64;
    if scan_flat_rows(text, &mut out, &mut bad, &mut convert).is_some() {
        skipped.rows += bad;
        return Ok(out);
    }
    out.clear();
    bad = 0;
    let fast = {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let visitor = RowVisitor {
            out: &mut out,
            bad: &mut bad,
            convert: &mut convert,
            row: PhantomData,
        };
        deserializer
            .deserialize_seq(visitor)
            .and_then(|()| deserializer.end())
    };
    if fast.is_ok() {
        skipped.rows += bad;
        return Ok(out);
    }
    out.clear();
    let raws = raw_rows(text)?;
    for raw in raws {
        match serde_json::from_str::<R>(raw.get()).map(&mut convert) {
            Ok(Row::Keep(item)) => out.push(item),
            Ok(Row::Ignore) => {}
            Ok(Row::Bad) | Err(_) => skipped.rows += 1,
        }
    }
    Ok(out)
}

/// A scalar JSON value as the flat-row scanner sees it.
#[derive(Clone, Copy)]
pub(crate) enum Scalar<'a> {
    Null,
    Bool,
    Number(&'a str),
    Text(&'a str),
}

impl<'a> Scalar<'a> {
    /// `Some(None)` for null, `None` when the value is not a string (the row is bad).
    fn text(self) -> Option<Option<&'a str>> {
        match self {
            Self::Null => Some(None),
            Self::Text(text) => Some(Some(text)),
            _ => None,
        }
    }

    fn number(self) -> Option<Option<f64>> {
        match self {
            Self::Null => Some(None),
            Self::Number(text) => Some(Some(parse_number(text)?)),
            _ => None,
        }
    }

    fn integer(self) -> Option<Option<i64>> {
        match self {
            Self::Null => Some(None),
            Self::Number(text) => Some(Some(text.parse().ok()?)),
            _ => None,
        }
    }
}

/// Integers (what OpenF1 sends nearly always) without going through float parsing.
fn parse_number(text: &str) -> Option<f64> {
    let bytes = text.as_bytes();
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    if !digits.is_empty() && digits.len() <= 15 && digits.iter().all(u8::is_ascii_digit) {
        let value = digits
            .iter()
            .fold(0i64, |v, d| v * 10 + i64::from(d - b'0'));
        return Some(if negative { -value } else { value } as f64);
    }
    text.parse().ok()
}

/// A row type the flat-row scanner can fill, field by field. `None` marks the row bad.
pub(crate) trait FlatRow<'a>: Default {
    fn set(&mut self, key: &[u8], value: Scalar<'a>) -> Option<()>;
}

/// The fastest path, for arrays of flat objects without escapes (every OpenF1 series):
/// a byte scanner that fills `R` field by field. Returns `None`, having decided nothing,
/// as soon as the text holds anything else (nested values, escapes, bad syntax); the serde
/// paths then take over.
fn scan_flat_rows<'a, R: FlatRow<'a>, O>(
    text: &'a str,
    out: &mut Vec<O>,
    bad: &mut u64,
    convert: &mut impl FnMut(R) -> Row<O>,
) -> Option<()> {
    let bytes = text.as_bytes();
    let mut at = 0usize;
    let skip_ws = |at: &mut usize| {
        while *at < bytes.len() && bytes[*at].is_ascii_whitespace() {
            *at += 1;
        }
    };
    // A string starting after its opening quote; `at` ends after the closing quote.
    let string = |at: &mut usize| -> Option<&'a str> {
        let start = *at;
        let length = bytes[start..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\')?;
        if bytes[start + length] != b'"' {
            return None;
        }
        *at = start + length + 1;
        text.get(start..start + length)
    };
    skip_ws(&mut at);
    if bytes.get(at) != Some(&b'[') {
        return None;
    }
    at += 1;
    skip_ws(&mut at);
    if bytes.get(at) == Some(&b']') {
        at += 1;
    } else {
        loop {
            skip_ws(&mut at);
            if bytes.get(at) != Some(&b'{') {
                return None;
            }
            at += 1;
            let mut row = R::default();
            let mut row_ok = true;
            skip_ws(&mut at);
            if bytes.get(at) == Some(&b'}') {
                at += 1;
            } else {
                loop {
                    skip_ws(&mut at);
                    if bytes.get(at) != Some(&b'"') {
                        return None;
                    }
                    at += 1;
                    let key = string(&mut at)?;
                    skip_ws(&mut at);
                    if bytes.get(at) != Some(&b':') {
                        return None;
                    }
                    at += 1;
                    skip_ws(&mut at);
                    let value = match *bytes.get(at)? {
                        b'"' => {
                            at += 1;
                            Scalar::Text(string(&mut at)?)
                        }
                        b'n' if bytes[at..].starts_with(b"null") => {
                            at += 4;
                            Scalar::Null
                        }
                        b't' if bytes[at..].starts_with(b"true") => {
                            at += 4;
                            Scalar::Bool
                        }
                        b'f' if bytes[at..].starts_with(b"false") => {
                            at += 5;
                            Scalar::Bool
                        }
                        b'-' | b'0'..=b'9' => {
                            let start = at;
                            while at < bytes.len()
                                && matches!(
                                    bytes[at],
                                    b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'
                                )
                            {
                                at += 1;
                            }
                            Scalar::Number(text.get(start..at)?)
                        }
                        _ => return None,
                    };
                    if row_ok && row.set(key.as_bytes(), value).is_none() {
                        row_ok = false;
                    }
                    skip_ws(&mut at);
                    match bytes.get(at) {
                        Some(b',') => at += 1,
                        Some(b'}') => {
                            at += 1;
                            break;
                        }
                        _ => return None,
                    }
                }
            }
            if row_ok {
                match convert(row) {
                    Row::Keep(item) => out.push(item),
                    Row::Ignore => {}
                    Row::Bad => *bad += 1,
                }
            } else {
                *bad += 1;
            }
            skip_ws(&mut at);
            match bytes.get(at) {
                Some(b',') => at += 1,
                Some(b']') => {
                    at += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    skip_ws(&mut at);
    (at == bytes.len()).then_some(())
}

struct RowVisitor<'c, R, O, F> {
    out: &'c mut Vec<O>,
    bad: &'c mut u64,
    convert: &'c mut F,
    row: PhantomData<fn() -> R>,
}

impl<'de, R, O, F> Visitor<'de> for RowVisitor<'_, R, O, F>
where
    R: Deserialize<'de>,
    F: FnMut(R) -> Row<O>,
{
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of OpenF1 rows")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(row) = seq.next_element::<R>()? {
            match (self.convert)(row) {
                Row::Keep(item) => self.out.push(item),
                Row::Ignore => {}
                Row::Bad => *self.bad += 1,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_api::record::Driver;

    #[test]
    fn location_skips_garbage_and_unplaced_cars_and_sorts() {
        let text = r#"[
            {"date":"2024-05-26T13:00:01.000000+00:00","driver_number":1,"x":10,"y":20,"z":1},
            {"date":"2024-05-26T13:00:00.000000+00:00","driver_number":1,"x":5,"y":6,"z":1},
            {"date":"2024-05-26T13:00:02.000000+00:00","driver_number":1,"x":0,"y":0,"z":0},
            {"date":null,"driver_number":1,"x":1,"y":2,"z":3},
            {"date":"2024-05-26T13:00:03.000000+00:00","driver_number":1,"x":null,"y":2,"z":3},
            {"date":"2024-05-26T13:00:01.000000+00:00","driver_number":1,"x":11,"y":21,"z":1}
        ]"#;
        let mut skipped = Skipped::default();
        let samples = location_samples(text, &mut skipped).unwrap();
        assert_eq!(samples.len(), 2);
        assert!(samples[0].time_ns < samples[1].time_ns);
        assert_eq!((samples[1].x, samples[1].y), (10.0, 20.0));
        // null date, null x, one duplicate
        assert_eq!(skipped.rows, 3);
    }

    #[test]
    fn a_row_of_the_wrong_type_is_skipped_alone() {
        let text = r#"[
            {"date":"2024-05-26T13:00:00+00:00","speed":300,"rpm":11000,"n_gear":8,"throttle":99,"brake":0,"drs":12},
            {"date":"2024-05-26T13:00:01+00:00","speed":"fast"},
            42,
            {"date":"2024-05-26T13:00:02+00:00","speed":null,"n_gear":null}
        ]"#;
        let mut skipped = Skipped::default();
        let samples = car_samples(text, &mut skipped).unwrap();
        assert_eq!(samples.len(), 2);
        assert_eq!(skipped.rows, 2);
        let record = samples[1].to_record(&"1".into(), 4);
        assert_eq!(record.speed_kmh, None);
        assert_eq!(record.gear, None);
        assert_eq!(samples[0].to_record(&"1".into(), 4).gear, Some(8));
    }

    #[test]
    fn small_endpoints_become_records_with_text_session_keys() {
        let text = r#"[
            {"session_key":9158,"meeting_key":1,"driver_number":1,"name_acronym":"VER","team_colour":"3671C6"},
            {"session_key":9158,"driver_number":"one"},
            {"session_key":9158,"driver_number":44,"name_acronym":null}
        ]"#;
        let mut skipped = Skipped::default();
        let drivers: Vec<Driver> = records(text, "9158", &mut skipped).unwrap();
        assert_eq!(drivers.len(), 2);
        assert_eq!(&*drivers[0].session_key, "9158");
        assert_eq!(skipped.rows, 1);

        let text = r#"[{"date":"2024-05-26T13:00:00+00:00","driver_number":1,"gap_to_leader":"+1 LAP","interval":null},
                       {"date":"2024-05-26T13:00:00+00:00","driver_number":2,"gap_to_leader":1.5,"interval":0.3}]"#;
        let typed: Vec<Interval> = records(text, "9158", &mut skipped).unwrap();
        let fast = intervals(text, &"9158".into(), &mut skipped).unwrap();
        assert_eq!(fast.len(), 2);
        for (record, (time, fast)) in typed.iter().zip(&fast) {
            assert_eq!(record, fast);
            assert_eq!(Some(*time), parse_iso8601_ns("2024-05-26T13:00:00+00:00"));
        }
        assert_eq!(typed[0].gap_to_leader, Some(Gap::Text("+1 LAP".into())));
        assert_eq!(typed[1].interval, Some(Gap::Seconds(0.3)));
    }

    #[test]
    fn the_hour_cache_agrees_with_the_general_parser() {
        let mut dates = DateParser::default();
        for text in [
            "2024-05-26T13:03:35.123000+00:00",
            "2024-05-26T13:59:59.999999+00:00",
            "2024-05-26T13:00:00Z",
            "2024-05-26T13:07:01",
            "2024-05-26T14:00:00.5+00:00",
            "2024-05-26T14:00:00.5+02:00",
            "2024-05-26T14:61:00+00:00",
            "2024-05-27T14:00:00.25+00:00",
        ] {
            assert_eq!(dates.parse(text), parse_iso8601_ns(text), "{text}");
        }
    }

    #[test]
    fn the_scanner_and_serde_agree() {
        let plain = r#"[ {"date":"2024-05-26T13:00:00.5+00:00", "driver_number": 4, "x": -12, "y": 3.5e1, "z": null, "flag": true, "meta": 1} ,
            {"date":"2024-05-26T13:00:01+00:00","x":"12","y":1} ]"#;
        // Escapes and nested values are left to serde; the result is the same.
        let escaped = r#"[ {"date":"2024-05-26T13:00:00.5+00:00", "driver_number": 4, "x": -12, "y": 3.5e1, "z": null, "flag": true, "meta": {"a": [1]}, "n\u0061me": "\"q\""},
            {"date":"2024-05-26T13:00:01+00:00","x":"12","y":1} ]"#;
        for text in [plain, escaped] {
            let mut skipped = Skipped::default();
            let rows = location_rows(text, &mut skipped).unwrap();
            assert_eq!(rows.len(), 1, "{text}");
            assert_eq!(rows[0].0, 4);
            assert_eq!((rows[0].1.x, rows[0].1.y, rows[0].1.z), (-12.0, 35.0, 0.0));
            assert_eq!(rows[0].1.time_ns % 1_000_000_000, 500_000_000);
            assert_eq!(skipped.rows, 1, "{text}");
        }
        let mut skipped = Skipped::default();
        assert!(location_samples("[]", &mut skipped).unwrap().is_empty());
        assert!(location_samples("[{\"x\":1,}]", &mut skipped).is_err());
    }

    #[test]
    fn no_results_is_empty_and_garbage_is_an_error() {
        let mut skipped = Skipped::default();
        let none: Vec<Driver> =
            records(r#"{"detail":"No results found."}"#, "1", &mut skipped).unwrap();
        assert!(none.is_empty());
        assert!(location_samples("not json", &mut skipped).is_err());
    }
}
