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

use arrow_array::builder::{
    BooleanBuilder, Float32Builder, Int32Builder, Int64Builder, StringBuilder,
};
use arrow_array::{ArrayRef, RecordBatch, UInt32Array};
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

/// Columns worth a dictionary (few distinct values): the rest are written plain.
pub const DICTIONARY_COLUMNS: [&str; 12] = [
    "game",
    "session",
    "gear",
    "lap",
    "pos",
    "car_id",
    "driver",
    "car_model",
    "track",
    "track_configuration",
    "status",
    "session_type",
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
pub struct CarColumns {
    t_ns: Int64Builder,
    game: StringBuilder,
    session: StringBuilder,
    speed_kmh: Float32Builder,
    gas: Float32Builder,
    brake: Float32Builder,
    gear: Int32Builder,
    steer: Float32Builder,
    rpm: Float32Builder,
    acc_g: [Float32Builder; 3],
    lap: Int32Builder,
    pos: Int32Builder,
    time_ns: Int64Builder,
    car_id: Int32Builder,
    is_player: BooleanBuilder,
    driver: StringBuilder,
    car_model: StringBuilder,
    track: StringBuilder,
    track_configuration: StringBuilder,
    clutch: Float32Builder,
    max_rpm: Float32Builder,
    velocity: [Float32Builder; 3],
    angular_velocity: [Float32Builder; 3],
    tyre_slip: [Float32Builder; 4],
    tyre_load: [Float32Builder; 4],
    tyre_temp_c: [Float32Builder; 4],
    suspension_travel: [Float32Builder; 4],
    position: [Float32Builder; 3],
    status: Int32Builder,
    session_type: Int32Builder,
    spline: Float32Builder,
    current_lap_s: Float32Builder,
    last_lap_s: Float32Builder,
    best_lap_s: Float32Builder,
    lap_time_s: Float32Builder,
    delta_lap_s: Float32Builder,
    in_pit: BooleanBuilder,
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

fn finish_all<const N: usize>(builders: &mut [Float32Builder; N], out: &mut Vec<ArrayRef>) {
    for builder in builders {
        out.push(Arc::new(builder.finish()));
    }
}

impl CarColumns {
    pub fn new() -> Self {
        Self {
            t_ns: Int64Builder::new(),
            game: StringBuilder::new(),
            session: StringBuilder::new(),
            speed_kmh: Float32Builder::new(),
            gas: Float32Builder::new(),
            brake: Float32Builder::new(),
            gear: Int32Builder::new(),
            steer: Float32Builder::new(),
            rpm: Float32Builder::new(),
            acc_g: Default::default(),
            lap: Int32Builder::new(),
            pos: Int32Builder::new(),
            time_ns: Int64Builder::new(),
            car_id: Int32Builder::new(),
            is_player: BooleanBuilder::new(),
            driver: StringBuilder::new(),
            car_model: StringBuilder::new(),
            track: StringBuilder::new(),
            track_configuration: StringBuilder::new(),
            clutch: Float32Builder::new(),
            max_rpm: Float32Builder::new(),
            velocity: Default::default(),
            angular_velocity: Default::default(),
            tyre_slip: Default::default(),
            tyre_load: Default::default(),
            tyre_temp_c: Default::default(),
            suspension_travel: Default::default(),
            position: Default::default(),
            status: Int32Builder::new(),
            session_type: Int32Builder::new(),
            spline: Float32Builder::new(),
            current_lap_s: Float32Builder::new(),
            last_lap_s: Float32Builder::new(),
            best_lap_s: Float32Builder::new(),
            lap_time_s: Float32Builder::new(),
            delta_lap_s: Float32Builder::new(),
            in_pit: BooleanBuilder::new(),
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
        self.t_ns.append_value(t_ns);
        self.game.append_value(&car.game);
        self.session.append_value(&car.session);
        self.speed_kmh.append_value(car.speed_kmh);
        self.gas.append_value(car.throttle);
        self.brake.append_value(car.brake);
        self.gear.append_value(car.gear);
        self.steer.append_value(car.steering);
        self.rpm.append_value(car.rpm);
        for (builder, value) in self.acc_g.iter_mut().zip(car.acc_g) {
            builder.append_value(value);
        }
        self.lap.append_value(car.completed_laps);
        self.pos.append_value(car.place);
        self.time_ns.append_value(time_ns);
        self.car_id.append_value(car.car_id);
        self.is_player.append_value(car.is_player);
        let mut text = car.game.len() + car.session.len();
        text += push_str(&mut self.driver, &car.driver);
        text += push_str(&mut self.car_model, &car.car_model);
        text += push_str(&mut self.track, &car.track);
        text += push_str(&mut self.track_configuration, &car.track_configuration);
        self.clutch.append_value(car.clutch);
        self.max_rpm.append_value(car.max_rpm);
        for (builder, value) in self.velocity.iter_mut().zip(car.velocity) {
            builder.append_value(value);
        }
        for (builder, value) in self.angular_velocity.iter_mut().zip(car.angular_velocity) {
            builder.append_value(value);
        }
        for (builders, values) in [
            (&mut self.tyre_slip, car.tyre_slip),
            (&mut self.tyre_load, car.tyre_load),
            (&mut self.tyre_temp_c, car.tyre_temp_c),
            (&mut self.suspension_travel, car.suspension_travel),
        ] {
            for (builder, value) in builders.iter_mut().zip(values) {
                builder.append_value(value);
            }
        }
        for (builder, value) in self.position.iter_mut().zip(car.position) {
            builder.append_value(value);
        }
        self.status.append_value(car.status);
        self.session_type.append_option(car.session_type);
        self.spline.append_value(car.spline);
        self.current_lap_s.append_option(car.current_lap_s);
        self.last_lap_s.append_option(car.last_lap_s);
        self.best_lap_s.append_option(car.best_lap_s);
        self.lap_time_s.append_option(car.lap_time_s);
        self.delta_lap_s.append_value(car.delta_lap_s);
        self.in_pit.append_value(car.in_pit);
        self.rows += 1;
        self.bytes += FIXED_ROW_BYTES + text;
    }

    /// The buffered rows as one batch, sorted by `t_ns`; the builders start empty again.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema().fields().len());
        let t_ns = self.t_ns.finish();
        columns.push(Arc::new(t_ns.clone()));
        columns.push(Arc::new(self.game.finish()));
        columns.push(Arc::new(self.session.finish()));
        columns.push(Arc::new(self.speed_kmh.finish()));
        columns.push(Arc::new(self.gas.finish()));
        columns.push(Arc::new(self.brake.finish()));
        columns.push(Arc::new(self.gear.finish()));
        columns.push(Arc::new(self.steer.finish()));
        columns.push(Arc::new(self.rpm.finish()));
        finish_all(&mut self.acc_g, &mut columns);
        columns.push(Arc::new(self.lap.finish()));
        columns.push(Arc::new(self.pos.finish()));
        columns.push(Arc::new(self.time_ns.finish()));
        columns.push(Arc::new(self.car_id.finish()));
        columns.push(Arc::new(self.is_player.finish()));
        columns.push(Arc::new(self.driver.finish()));
        columns.push(Arc::new(self.car_model.finish()));
        columns.push(Arc::new(self.track.finish()));
        columns.push(Arc::new(self.track_configuration.finish()));
        columns.push(Arc::new(self.clutch.finish()));
        columns.push(Arc::new(self.max_rpm.finish()));
        finish_all(&mut self.velocity, &mut columns);
        finish_all(&mut self.angular_velocity, &mut columns);
        finish_all(&mut self.tyre_slip, &mut columns);
        finish_all(&mut self.tyre_load, &mut columns);
        finish_all(&mut self.tyre_temp_c, &mut columns);
        finish_all(&mut self.suspension_travel, &mut columns);
        finish_all(&mut self.position, &mut columns);
        columns.push(Arc::new(self.status.finish()));
        columns.push(Arc::new(self.session_type.finish()));
        columns.push(Arc::new(self.spline.finish()));
        columns.push(Arc::new(self.current_lap_s.finish()));
        columns.push(Arc::new(self.last_lap_s.finish()));
        columns.push(Arc::new(self.best_lap_s.finish()));
        columns.push(Arc::new(self.lap_time_s.finish()));
        columns.push(Arc::new(self.delta_lap_s.finish()));
        columns.push(Arc::new(self.in_pit.finish()));
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
        for name in DICTIONARY_COLUMNS {
            assert!(names.contains(&name), "{name}");
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
