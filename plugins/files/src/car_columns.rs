//! Typed Arrow columns for `car_telemetry`, filled straight from the records: the fast path
//! of the `parquet` sink for the highest-rate kind (no serde_json, no schema inference).
//!
//! The columns start with the original converter's (`recorder_reader.py`, FORMATS.md 5b),
//! in its order and with its names:
//!
//! `t_ns, game, session, speed_kmh, gas, brake, gear, steer, rpm, ax_g, ay_g, az_g, lap, pos`
//!
//! (`t_ns` = `monotonic_ns`, `gas` = `throttle`, `steer` = `steering`, `ax_g`/`ay_g`/`az_g` =
//! `acc_g` x/y/z, `lap` = `completed_laps`, `pos` = `place`), then `time_ns` (the event time)
//! and every other field of [`CarTelemetry`] under its own name, arrays flattened with a
//! suffix: `velocity_x`, `tyre_temp_c_fl` .. `tyre_temp_c_rr`, `position_z`. Values keep the
//! record's units and conventions; note `gear` is the record's (-1 reverse, 0 neutral, 1
//! first), where the original converter kept Assetto Corsa's raw count (0 reverse, 1
//! neutral). Floats are `float32` as recorded; optional values (lap times, `driver`, ...)
//! are nullable.
//!
//! Rows are buffered here until the sink writes them as one row group; [`CarColumns::finish`]
//! sorts them by `t_ns` if they did not arrive in order (within a row group only: a file
//! made of several row groups is sorted row group by row group).

use std::sync::{Arc, OnceLock};

use arrow_array::builder::{Float32Builder, Int32Builder, StringBuilder};
use arrow_array::{
    ArrayRef, BooleanArray, Float32Array, Int32Array, Int64Array, RecordBatch, UInt32Array,
};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use pitwall_api::CarTelemetry;

/// The original converter's columns, first in every file.
pub const CONVERTER_COLUMNS: [&str; 14] = [
    "t_ns",
    "game",
    "session",
    "speed_kmh",
    "gas",
    "brake",
    "gear",
    "steer",
    "rpm",
    "ax_g",
    "ay_g",
    "az_g",
    "lap",
    "pos",
];

const WHEELS: [&str; 4] = ["fl", "fr", "rl", "rr"];
const AXES: [&str; 3] = ["x", "y", "z"];

/// Columns written with a dictionary: text, which repeats on every row. Numbers are written
/// plain (snappy still shrinks runs of a repeated value), which costs far less to encode.
pub const DICTIONARY_COLUMNS: [&str; 6] = [
    "game",
    "session",
    "driver",
    "car_model",
    "track",
    "track_configuration",
];

/// Columns with min/max statistics per row group, what readers filter files and row groups
/// by (a time range, a session, a lap). The measurements themselves go without: computing
/// them is a quarter of the encoding time and nobody skips a row group by its top speed.
pub const STATISTICS_COLUMNS: [&str; 8] = [
    "t_ns", "game", "session", "lap", "pos", "time_ns", "car_id", "track",
];

/// The schema of every `car_telemetry` Parquet file.
pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            use DataType::{Boolean, Float32, Int32, Int64, Utf8};
            let mut fields = Vec::new();
            let mut add = |name: String, data_type: DataType, nullable: bool| {
                fields.push(Field::new(name, data_type, nullable));
            };
            for (name, data_type) in [
                ("t_ns", Int64),
                ("game", Utf8),
                ("session", Utf8),
                ("speed_kmh", Float32),
                ("gas", Float32),
                ("brake", Float32),
                ("gear", Int32),
                ("steer", Float32),
                ("rpm", Float32),
                ("ax_g", Float32),
                ("ay_g", Float32),
                ("az_g", Float32),
                ("lap", Int32),
                ("pos", Int32),
                ("time_ns", Int64),
                ("car_id", Int32),
                ("is_player", Boolean),
            ] {
                add(name.into(), data_type, false);
            }
            for name in ["driver", "car_model", "track", "track_configuration"] {
                add(name.into(), Utf8, true);
            }
            add("clutch".into(), Float32, false);
            add("max_rpm".into(), Float32, false);
            for group in ["velocity", "angular_velocity"] {
                for axis in AXES {
                    add(format!("{group}_{axis}"), Float32, false);
                }
            }
            for group in ["tyre_slip", "tyre_load", "tyre_temp_c", "suspension_travel"] {
                for wheel in WHEELS {
                    add(format!("{group}_{wheel}"), Float32, false);
                }
            }
            for axis in AXES {
                add(format!("position_{axis}"), Float32, false);
            }
            add("status".into(), Int32, false);
            add("session_type".into(), Int32, true);
            add("spline".into(), Float32, false);
            for name in ["current_lap_s", "last_lap_s", "best_lap_s", "lap_time_s"] {
                add(name.into(), Float32, true);
            }
            add("delta_lap_s".into(), Float32, false);
            add("in_pit".into(), Boolean, false);
            Arc::new(Schema::new(fields))
        })
        .clone()
}

/// Bytes a row takes in the builders, strings aside: 2 i64 columns, 47 of f32 or i32, 6
/// string offsets, 2 bools (a byte each, generously) and validity bits (2 bytes, rounded up).
const FIXED_ROW_BYTES: usize = 2 * 8 + 47 * 4 + 6 * 4 + 2 + 2;

/// Rows of `car_telemetry` being gathered into a row group.
///
/// Columns without nulls are plain `Vec`s (a push is a store), turned into Arrow arrays
/// without copying by [`CarColumns::finish`]; nullable ones and strings use Arrow builders.
pub struct CarColumns {
    capacity: usize,
    t_ns: Vec<i64>,
    game: StringBuilder,
    session: StringBuilder,
    speed_kmh: Vec<f32>,
    gas: Vec<f32>,
    brake: Vec<f32>,
    gear: Vec<i32>,
    steer: Vec<f32>,
    rpm: Vec<f32>,
    acc_g: [Vec<f32>; 3],
    lap: Vec<i32>,
    pos: Vec<i32>,
    time_ns: Vec<i64>,
    car_id: Vec<i32>,
    is_player: Vec<bool>,
    driver: StringBuilder,
    car_model: StringBuilder,
    track: StringBuilder,
    track_configuration: StringBuilder,
    clutch: Vec<f32>,
    max_rpm: Vec<f32>,
    velocity: [Vec<f32>; 3],
    angular_velocity: [Vec<f32>; 3],
    tyre_slip: [Vec<f32>; 4],
    tyre_load: [Vec<f32>; 4],
    tyre_temp_c: [Vec<f32>; 4],
    suspension_travel: [Vec<f32>; 4],
    position: [Vec<f32>; 3],
    status: Vec<i32>,
    session_type: Int32Builder,
    spline: Vec<f32>,
    current_lap_s: Float32Builder,
    last_lap_s: Float32Builder,
    best_lap_s: Float32Builder,
    lap_time_s: Float32Builder,
    delta_lap_s: Vec<f32>,
    in_pit: Vec<bool>,
    rows: usize,
    bytes: usize,
    last_t_ns: i64,
    sorted: bool,
}

impl Default for CarColumns {
    fn default() -> Self {
        Self::new()
    }
}

fn push_str(builder: &mut StringBuilder, value: &Option<Arc<str>>) -> usize {
    match value {
        Some(text) => {
            builder.append_value(text);
            text.len()
        }
        None => {
            builder.append_null();
            0
        }
    }
}

fn vecs<T, const N: usize>(capacity: usize) -> [Vec<T>; N] {
    std::array::from_fn(|_| Vec::with_capacity(capacity))
}

fn push_all<const N: usize>(columns: &mut [Vec<f32>; N], values: [f32; N]) {
    for (column, value) in columns.iter_mut().zip(values) {
        column.push(value);
    }
}

/// Move a column out as an array, leaving an empty one with room for the next row group.
fn take_f32(column: &mut Vec<f32>, capacity: usize) -> ArrayRef {
    Arc::new(Float32Array::from(std::mem::replace(
        column,
        Vec::with_capacity(capacity),
    )))
}

fn take_i32(column: &mut Vec<i32>, capacity: usize) -> ArrayRef {
    Arc::new(Int32Array::from(std::mem::replace(
        column,
        Vec::with_capacity(capacity),
    )))
}

fn take_bool(column: &mut Vec<bool>, capacity: usize) -> ArrayRef {
    let values = std::mem::replace(column, Vec::with_capacity(capacity));
    Arc::new(BooleanArray::from(values))
}

fn take_all<const N: usize>(columns: &mut [Vec<f32>; N], capacity: usize, out: &mut Vec<ArrayRef>) {
    for column in columns {
        out.push(take_f32(column, capacity));
    }
}

impl CarColumns {
    pub fn new() -> Self {
        Self::with_capacity(1024)
    }

    /// Columns sized for a row group of at most `rows` rows and about `bytes` bytes.
    pub fn for_row_group(rows: usize, bytes: usize) -> Self {
        Self::with_capacity(rows.min(bytes / FIXED_ROW_BYTES + 1).clamp(1, 1 << 20))
    }

    /// Columns with room for `capacity` rows before they grow (the expected row group).
    pub fn with_capacity(capacity: usize) -> Self {
        let c = capacity;
        Self {
            capacity: c,
            t_ns: Vec::with_capacity(c),
            game: StringBuilder::with_capacity(c, c * 16),
            session: StringBuilder::with_capacity(c, c * 16),
            speed_kmh: Vec::with_capacity(c),
            gas: Vec::with_capacity(c),
            brake: Vec::with_capacity(c),
            gear: Vec::with_capacity(c),
            steer: Vec::with_capacity(c),
            rpm: Vec::with_capacity(c),
            acc_g: vecs(c),
            lap: Vec::with_capacity(c),
            pos: Vec::with_capacity(c),
            time_ns: Vec::with_capacity(c),
            car_id: Vec::with_capacity(c),
            is_player: Vec::with_capacity(c),
            driver: StringBuilder::new(),
            car_model: StringBuilder::new(),
            track: StringBuilder::new(),
            track_configuration: StringBuilder::new(),
            clutch: Vec::with_capacity(c),
            max_rpm: Vec::with_capacity(c),
            velocity: vecs(c),
            angular_velocity: vecs(c),
            tyre_slip: vecs(c),
            tyre_load: vecs(c),
            tyre_temp_c: vecs(c),
            suspension_travel: vecs(c),
            position: vecs(c),
            status: Vec::with_capacity(c),
            session_type: Int32Builder::with_capacity(c),
            spline: Vec::with_capacity(c),
            current_lap_s: Float32Builder::with_capacity(c),
            last_lap_s: Float32Builder::with_capacity(c),
            best_lap_s: Float32Builder::with_capacity(c),
            lap_time_s: Float32Builder::with_capacity(c),
            delta_lap_s: Vec::with_capacity(c),
            in_pit: Vec::with_capacity(c),
            rows: 0,
            bytes: 0,
            last_t_ns: i64::MIN,
            sorted: true,
        }
    }

    /// Rows buffered.
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// About how many bytes the buffered rows take.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Add one record at event time `time_ns`.
    pub fn push(&mut self, time_ns: i64, car: &CarTelemetry) {
        let t_ns = i64::try_from(car.monotonic_ns).unwrap_or(i64::MAX);
        if t_ns < self.last_t_ns {
            self.sorted = false;
        }
        self.last_t_ns = t_ns;
        self.t_ns.push(t_ns);
        self.game.append_value(&car.game);
        self.session.append_value(&car.session);
        self.speed_kmh.push(car.speed_kmh);
        self.gas.push(car.throttle);
        self.brake.push(car.brake);
        self.gear.push(car.gear);
        self.steer.push(car.steering);
        self.rpm.push(car.rpm);
        push_all(&mut self.acc_g, car.acc_g);
        self.lap.push(car.completed_laps);
        self.pos.push(car.place);
        self.time_ns.push(time_ns);
        self.car_id.push(car.car_id);
        self.is_player.push(car.is_player);
        let mut text = car.game.len() + car.session.len();
        text += push_str(&mut self.driver, &car.driver);
        text += push_str(&mut self.car_model, &car.car_model);
        text += push_str(&mut self.track, &car.track);
        text += push_str(&mut self.track_configuration, &car.track_configuration);
        self.clutch.push(car.clutch);
        self.max_rpm.push(car.max_rpm);
        push_all(&mut self.velocity, car.velocity);
        push_all(&mut self.angular_velocity, car.angular_velocity);
        push_all(&mut self.tyre_slip, car.tyre_slip);
        push_all(&mut self.tyre_load, car.tyre_load);
        push_all(&mut self.tyre_temp_c, car.tyre_temp_c);
        push_all(&mut self.suspension_travel, car.suspension_travel);
        push_all(&mut self.position, car.position);
        self.status.push(car.status);
        self.session_type.append_option(car.session_type);
        self.spline.push(car.spline);
        self.current_lap_s.append_option(car.current_lap_s);
        self.last_lap_s.append_option(car.last_lap_s);
        self.best_lap_s.append_option(car.best_lap_s);
        self.lap_time_s.append_option(car.lap_time_s);
        self.delta_lap_s.push(car.delta_lap_s);
        self.in_pit.push(car.in_pit);
        self.rows += 1;
        self.bytes += FIXED_ROW_BYTES + text;
    }

    /// The buffered rows as one batch, sorted by `t_ns`; the columns start empty again.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let c = self.capacity;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema().fields().len());
        let t_ns = Int64Array::from(std::mem::replace(&mut self.t_ns, Vec::with_capacity(c)));
        columns.push(Arc::new(t_ns.clone()));
        columns.push(Arc::new(self.game.finish()));
        columns.push(Arc::new(self.session.finish()));
        columns.push(take_f32(&mut self.speed_kmh, c));
        columns.push(take_f32(&mut self.gas, c));
        columns.push(take_f32(&mut self.brake, c));
        columns.push(take_i32(&mut self.gear, c));
        columns.push(take_f32(&mut self.steer, c));
        columns.push(take_f32(&mut self.rpm, c));
        take_all(&mut self.acc_g, c, &mut columns);
        columns.push(take_i32(&mut self.lap, c));
        columns.push(take_i32(&mut self.pos, c));
        columns.push(Arc::new(Int64Array::from(std::mem::replace(
            &mut self.time_ns,
            Vec::with_capacity(c),
        ))));
        columns.push(take_i32(&mut self.car_id, c));
        columns.push(take_bool(&mut self.is_player, c));
        columns.push(Arc::new(self.driver.finish()));
        columns.push(Arc::new(self.car_model.finish()));
        columns.push(Arc::new(self.track.finish()));
        columns.push(Arc::new(self.track_configuration.finish()));
        columns.push(take_f32(&mut self.clutch, c));
        columns.push(take_f32(&mut self.max_rpm, c));
        take_all(&mut self.velocity, c, &mut columns);
        take_all(&mut self.angular_velocity, c, &mut columns);
        take_all(&mut self.tyre_slip, c, &mut columns);
        take_all(&mut self.tyre_load, c, &mut columns);
        take_all(&mut self.tyre_temp_c, c, &mut columns);
        take_all(&mut self.suspension_travel, c, &mut columns);
        take_all(&mut self.position, c, &mut columns);
        columns.push(take_i32(&mut self.status, c));
        columns.push(Arc::new(self.session_type.finish()));
        columns.push(take_f32(&mut self.spline, c));
        columns.push(Arc::new(self.current_lap_s.finish()));
        columns.push(Arc::new(self.last_lap_s.finish()));
        columns.push(Arc::new(self.best_lap_s.finish()));
        columns.push(Arc::new(self.lap_time_s.finish()));
        columns.push(take_f32(&mut self.delta_lap_s, c));
        columns.push(take_bool(&mut self.in_pit, c));
        let sorted = self.sorted;
        self.rows = 0;
        self.bytes = 0;
        self.last_t_ns = i64::MIN;
        self.sorted = true;
        let batch = RecordBatch::try_new(schema(), columns)?;
        if sorted {
            return Ok(batch);
        }
        let times = t_ns.values();
        let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
        order.sort_by_key(|&i| times[i as usize]);
        arrow_select::take::take_record_batch(&batch, &UInt32Array::from(order))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, Int32Type, Int64Type};
    use arrow_array::Array;

    #[test]
    fn the_converter_columns_come_first_then_every_field() {
        let schema = schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names[..14], CONVERTER_COLUMNS);
        assert_eq!(names[14], "time_ns");
        for name in [
            "tyre_temp_c_fl",
            "tyre_temp_c_rr",
            "suspension_travel_rl",
            "velocity_z",
            "angular_velocity_x",
            "position_y",
            "best_lap_s",
            "in_pit",
            "session_type",
            "max_rpm",
        ] {
            assert!(names.contains(&name), "{name}");
        }
        let unique: std::collections::HashSet<&&str> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "no column twice");
        for name in DICTIONARY_COLUMNS.iter().chain(&STATISTICS_COLUMNS) {
            assert!(names.contains(name), "{name}");
        }
        // FIXED_ROW_BYTES counts every column.
        assert_eq!(names.len(), 2 + 47 + 6 + 2);
    }

    #[test]
    fn rows_become_typed_columns_sorted_by_t_ns() {
        let mut columns = CarColumns::new();
        for (i, t) in [30u64, 10, 20].into_iter().enumerate() {
            columns.push(
                100 + i as i64,
                &CarTelemetry {
                    game: "rfactor2".into(),
                    session: "s".into(),
                    monotonic_ns: t,
                    speed_kmh: t as f32,
                    acc_g: [1.0, 2.0, 3.0],
                    tyre_temp_c: [80.0, 81.0, 82.0, t as f32],
                    completed_laps: 4,
                    place: 2,
                    gear: -1,
                    best_lap_s: (t > 10).then_some(99.5),
                    driver: (t == 20).then(|| "Ann".into()),
                    ..Default::default()
                },
            );
        }
        assert_eq!(columns.len(), 3);
        assert!(columns.bytes() >= 3 * FIXED_ROW_BYTES);
        let batch = columns.finish().unwrap();
        assert!(columns.is_empty());
        let ints = |name: &str| -> Vec<i64> {
            batch
                .column_by_name(name)
                .unwrap()
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        };
        assert_eq!(ints("t_ns"), vec![10, 20, 30]);
        assert_eq!(ints("time_ns"), vec![101, 102, 100], "rows moved whole");
        let floats = |name: &str| -> Vec<Option<f32>> {
            batch
                .column_by_name(name)
                .unwrap()
                .as_primitive::<Float32Type>()
                .iter()
                .collect()
        };
        assert_eq!(
            floats("speed_kmh"),
            vec![Some(10.0), Some(20.0), Some(30.0)]
        );
        assert_eq!(floats("az_g"), vec![Some(3.0); 3]);
        assert_eq!(
            floats("tyre_temp_c_rr"),
            vec![Some(10.0), Some(20.0), Some(30.0)]
        );
        assert_eq!(floats("best_lap_s"), vec![None, Some(99.5), Some(99.5)]);
        let gear = batch
            .column_by_name("gear")
            .unwrap()
            .as_primitive::<Int32Type>();
        assert_eq!(gear.value(0), -1);
        let driver = batch.column_by_name("driver").unwrap().as_string::<i32>();
        assert_eq!(
            driver.iter().collect::<Vec<_>>(),
            vec![None, Some("Ann"), None]
        );
        assert_eq!(batch.column_by_name("lap").unwrap().null_count(), 0);
        // The builders are reusable.
        columns.push(1, &CarTelemetry::default());
        assert_eq!(columns.finish().unwrap().num_rows(), 1);
    }
}
