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

use pitwall_api::record::{parse_iso8601_ns, CarData, CarPosition, RacePosition, SessionKey};
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

#[derive(Deserialize)]
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

#[derive(Deserialize)]
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

#[derive(Deserialize)]
struct PositionRow<'a> {
    #[serde(borrow, default)]
    date: Option<Cow<'a, str>>,
    #[serde(default)]
    driver_number: Option<i64>,
    #[serde(default)]
    position: Option<i64>,
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

fn location_row(row: LocationRow<'_>) -> Row<(Option<u32>, LocationSample)> {
    let Some(time_ns) = row.date.as_deref().and_then(parse_iso8601_ns) else {
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

fn car_row(row: CarRow<'_>) -> Row<(Option<u32>, CarSample)> {
    let Some(time_ns) = row.date.as_deref().and_then(parse_iso8601_ns) else {
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
pub fn location_samples(text: &str, skipped: &mut Skipped) -> Result<Vec<LocationSample>, serde_json::Error> {
    let mut samples = parse_array(text, text.len() / 100, |row| match location_row(row) {
        Row::Keep((_, sample)) => Row::Keep(sample),
        Row::Ignore => Row::Ignore,
        Row::Bad => Row::Bad,
    }, skipped)?;
    skipped.rows += sort_dedup(&mut samples, |s| s.time_ns);
    Ok(samples)
}

/// A per-driver `car_data` file: samples sorted by time, duplicates dropped.
pub fn car_samples(text: &str, skipped: &mut Skipped) -> Result<Vec<CarSample>, serde_json::Error> {
    let mut samples = parse_array(text, text.len() / 140, |row| match car_row(row) {
        Row::Keep((_, sample)) => Row::Keep(sample),
        Row::Ignore => Row::Ignore,
        Row::Bad => Row::Bad,
    }, skipped)?;
    skipped.rows += sort_dedup(&mut samples, |s| s.time_ns);
    Ok(samples)
}

/// `location` rows of any drivers (live polling), in response order.
pub fn location_rows(text: &str, skipped: &mut Skipped) -> Result<Vec<(u32, LocationSample)>, serde_json::Error> {
    parse_array(text, 0, |row| match location_row(row) {
        Row::Keep((Some(car), sample)) => Row::Keep((car, sample)),
        Row::Keep((None, _)) | Row::Bad => Row::Bad,
        Row::Ignore => Row::Ignore,
    }, skipped)
}

/// `car_data` rows of any drivers (live polling), in response order.
pub fn car_rows(text: &str, skipped: &mut Skipped) -> Result<Vec<(u32, CarSample)>, serde_json::Error> {
    parse_array(text, 0, |row| match car_row(row) {
        Row::Keep((Some(car), sample)) => Row::Keep((car, sample)),
        Row::Keep((None, _)) | Row::Bad => Row::Bad,
        Row::Ignore => Row::Ignore,
    }, skipped)
}

/// `position` rows: (time, race position).
pub fn race_positions(
    text: &str,
    session_key: &SessionKey,
    skipped: &mut Skipped,
) -> Result<Vec<(i64, RacePosition)>, serde_json::Error> {
    parse_array(text, 0, |row: PositionRow<'_>| {
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
    }, skipped)
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
        Err(error) => return if is_no_results(text) { Ok(Vec::new()) } else { Err(error) },
    };
    let mut out = Vec::with_capacity(values.len());
    for value in values {
        let Value::Object(mut map) = value else {
            skipped.rows += 1;
            continue;
        };
        map.insert("session_key".to_string(), Value::String(session_key.to_string()));
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
        Err(error) => if is_no_results(text) { Ok(Vec::new()) } else { Err(error) },
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
    R: Deserialize<'a>,
{
    let mut out = Vec::with_capacity(capacity);
    let mut bad = 0u64;
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
    let raws = match raw_rows(text) {
        Ok(raws) => raws,
        Err(error) => return Err(error),
    };
    for raw in raws {
        match serde_json::from_str::<R>(raw.get()).map(&mut convert) {
            Ok(Row::Keep(item)) => out.push(item),
            Ok(Row::Ignore) => {}
            Ok(Row::Bad) | Err(_) => skipped.rows += 1,
        }
    }
    Ok(out)
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
    use pitwall_api::record::{Driver, Gap, Interval};

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
        let intervals: Vec<Interval> = records(text, "9158", &mut skipped).unwrap();
        assert_eq!(intervals[0].gap_to_leader, Some(Gap::Text("+1 LAP".into())));
        assert_eq!(intervals[1].interval, Some(Gap::Seconds(0.3)));
    }

    #[test]
    fn no_results_is_empty_and_garbage_is_an_error() {
        let mut skipped = Skipped::default();
        let none: Vec<Driver> = records(r#"{"detail":"No results found."}"#, "1", &mut skipped).unwrap();
        assert!(none.is_empty());
        assert!(location_samples("not json", &mut skipped).is_err());
    }
}
