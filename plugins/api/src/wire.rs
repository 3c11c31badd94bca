//! pitwall-flow's compact binary encoding of events, for chaining instances through a
//! broker (the `mqtt` sink and source with `payload = "protobuf"`).
//!
//! One message is a `pitwall.v1.Batch` (`proto/pitwall/v1/records.proto`): a list of
//! `Envelope { time_ns, kind, body }`. The kinds that come at a high rate travel as typed
//! protobuf messages (`car_telemetry`, `position`, `standing`, `lap`, `gate_trigger`, and the
//! few whose JSON form is lossy: `track_layout`, `race_metadata`, `bounds`); every other kind
//! travels as its serde JSON, so nothing is ever refused and a new kind needs no schema
//! change. Event time is carried as is: the reader sees the writer's `time_ns`.
//!
//! Encoding is lossless: decoding gives records equal to the encoded ones (`-0.0` in a plain
//! scalar field comes back as `0.0`, which compares equal; proto3 does not write zeros).
//!
//! Reading never trusts the bytes and never panics. [`decode_batch`] is strict: any envelope
//! it cannot read makes the whole batch an error. A long-lived reader uses a [`Decoder`],
//! which skips and counts envelopes it cannot read (a newer writer's kind, a damaged
//! record) while keeping the rest, and shares the `Arc<str>` of strings that repeat from
//! record to record (session keys, game, track, car model, driver).
//!
//! Batches concatenate: [`append_event`] adds one event to a buffer, and any run of such
//! appends is itself a valid batch. That is how a writer splits at a size cap without
//! encoding twice.

use std::collections::HashSet;
use std::sync::Arc;

use prost::Message;

use crate::record::{
    Bounds, CarPosition, Event, FastestLap, GateTrigger, Lap, Point, RaceMetadata, Record,
    RecordKind, SectorPoint, Standing, TrackLayout,
};
use crate::telemetry::CarTelemetry;

/// The `pitwall.v1` protobuf messages, generated at build time from `proto/`.
// The envelope's body is an enum whose car_telemetry variant is much larger than the rest;
// boxing it would cost an allocation per record for nothing: envelopes are short-lived.
#[allow(clippy::large_enum_variant)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/pitwall.v1.rs"));
}

use proto::envelope::Body;

/// Why bytes could not be read as a batch, or an event could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The bytes are not a `pitwall.v1.Batch` at all.
    #[error("not a pitwall.v1 batch: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// One envelope of an otherwise readable batch (0-based index).
    #[error("event {index} of the batch: {message}")]
    Envelope { index: usize, message: String },
    /// A record with no JSON form (a raw JSON value cannot fail; this is for safety).
    #[error("cannot encode a {kind} record: {message}")]
    Encode { kind: RecordKind, message: String },
}

/// Encode events as one batch message. An event that cannot be encoded (none of today's
/// records) is left out; use [`append_event`] to see why.
pub fn encode_batch(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 64);
    for event in events {
        let _ = append_event(&mut out, event);
    }
    out
}

/// Append one event to `out` as a batch entry; returns how many bytes it took. A buffer of
/// appended events is a valid batch message. On error `out` is unchanged.
pub fn append_event(out: &mut Vec<u8>, event: &Event) -> Result<usize, WireError> {
    let envelope = envelope(event)?;
    let before = out.len();
    prost::encoding::message::encode(1, &envelope, out);
    Ok(out.len() - before)
}

/// Decode a batch message, strictly: any envelope that cannot be read is an error.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<Event>, WireError> {
    let batch = proto::Batch::decode(bytes)?;
    let mut decoder = Decoder::default();
    let mut events = Vec::with_capacity(batch.events.len());
    for (index, envelope) in batch.events.into_iter().enumerate() {
        let event = decoder
            .event(envelope)
            .map_err(|message| WireError::Envelope { index, message })?;
        events.push(event);
    }
    Ok(events)
}

/// What [`Decoder::decode_into`] read from one message.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Decoded {
    /// Events appended to the output.
    pub events: usize,
    /// Envelopes that could not be read and were left out.
    pub skipped: usize,
    /// Why the first skipped envelope was left out.
    pub first_problem: Option<String>,
}

/// Most distinct strings a [`Decoder`] keeps before it starts over.
const MAX_INTERNED: usize = 4096;

/// A long-lived reader of batch messages: lenient per envelope, and sharing repeated
/// strings between the records it makes.
#[derive(Debug, Default)]
pub struct Decoder {
    strings: HashSet<Arc<str>>,
}

impl Decoder {
    /// Decode one message into `out`. Err when the bytes are not a batch at all (nothing is
    /// appended then); envelopes that cannot be read are skipped and counted in the result.
    pub fn decode_into(
        &mut self,
        bytes: &[u8],
        out: &mut Vec<Event>,
    ) -> Result<Decoded, WireError> {
        let batch = proto::Batch::decode(bytes)?;
        let mut decoded = Decoded::default();
        out.reserve(batch.events.len());
        for (index, envelope) in batch.events.into_iter().enumerate() {
            match self.event(envelope) {
                Ok(event) => {
                    out.push(event);
                    decoded.events += 1;
                }
                Err(message) => {
                    decoded.skipped += 1;
                    decoded
                        .first_problem
                        .get_or_insert_with(|| format!("event {index}: {message}"));
                }
            }
        }
        Ok(decoded)
    }

    fn intern(&mut self, text: String) -> Arc<str> {
        if let Some(shared) = self.strings.get(text.as_str()) {
            return shared.clone();
        }
        if self.strings.len() >= MAX_INTERNED {
            self.strings.clear();
        }
        let shared: Arc<str> = Arc::from(text);
        self.strings.insert(shared.clone());
        shared
    }

    fn event(&mut self, envelope: proto::Envelope) -> Result<Event, String> {
        let time_ns = envelope.time_ns;
        let record = match envelope.body {
            None => {
                return Err(if envelope.kind.is_empty() {
                    "no record (written by a newer version?)".to_string()
                } else {
                    format!("no readable body for a `{}` record", envelope.kind)
                })
            }
            Some(Body::CarTelemetry(car)) => {
                Record::CarTelemetry(Arc::new(self.car_telemetry(car)?))
            }
            Some(Body::Position(p)) => Record::Position(CarPosition {
                session_key: self.intern(p.session_key),
                car: p.car,
                x: p.x,
                y: p.y,
                z: p.z,
                spline: p.spline,
            }),
            Some(Body::Standing(s)) => Record::Standing(Arc::new(Standing {
                session_key: self.intern(s.session_key),
                car: s.car,
                position: s.position,
                driver_name: s.driver_name,
                driver_guid: s.driver_guid,
                car_model: s.car_model,
                gap: s.gap,
                laps: s.laps,
                best_lap_s: s.best_lap_s,
                last_lap_s: s.last_lap_s,
            })),
            Some(Body::Lap(l)) => Record::Lap(Arc::new(Lap {
                session_key: self.intern(l.session_key),
                driver_number: l.driver_number,
                lap_number: l.lap_number,
                date_start: l.date_start,
                lap_duration: l.lap_duration,
                duration_sector_1: l.duration_sector_1,
                duration_sector_2: l.duration_sector_2,
                duration_sector_3: l.duration_sector_3,
                i1_speed: l.i1_speed,
                i2_speed: l.i2_speed,
                st_speed: l.st_speed,
                is_pit_out_lap: l.is_pit_out_lap,
            })),
            Some(Body::GateTrigger(g)) => Record::GateTrigger(GateTrigger {
                lane: g.lane,
                gate_time_ns: g.gate_time_ns,
            }),
            Some(Body::Bounds(b)) => Record::Bounds(bounds_from(b)),
            Some(Body::TrackLayout(t)) => Record::TrackLayout(Arc::new(TrackLayout {
                session_key: self.intern(t.session_key),
                track_path: points_from(&t.track_path, "track_path")?,
                pit_path: points_from(&t.pit_path, "pit_path")?,
                sector_points: t
                    .sector_points
                    .into_iter()
                    .map(|p| SectorPoint {
                        id: p.id,
                        x: p.x,
                        y: p.y,
                    })
                    .collect(),
                bounds: bounds_from(t.bounds.unwrap_or_default()),
            })),
            Some(Body::RaceMetadata(m)) => Record::RaceMetadata(Arc::new(RaceMetadata {
                session_key: self.intern(m.session_key),
                reference_start_time: m.reference_start_time,
                reference_start_ns: m.reference_start_ns,
                race_winner: m.race_winner,
                podium_drivers: m.podium_drivers,
                fastest_lap: m.fastest_lap.map(|f| FastestLap {
                    driver_number: f.driver_number,
                    lap_number: f.lap_number,
                    lap_time: f.lap_time,
                    sector_1: f.sector_1,
                    sector_2: f.sector_2,
                    sector_3: f.sector_3,
                }),
            })),
            Some(Body::Json(json)) => json_record(&envelope.kind, &json)?,
        };
        Ok(Event::new(time_ns, record))
    }

    fn car_telemetry(&mut self, c: proto::CarTelemetry) -> Result<CarTelemetry, String> {
        Ok(CarTelemetry {
            game: self.intern(c.game),
            session: self.intern(c.session),
            car_id: c.car_id,
            is_player: c.is_player,
            monotonic_ns: c.monotonic_ns,
            driver: c.driver.map(|s| self.intern(s)),
            car_model: c.car_model.map(|s| self.intern(s)),
            track: c.track.map(|s| self.intern(s)),
            track_configuration: c.track_configuration.map(|s| self.intern(s)),
            speed_kmh: c.speed_kmh,
            throttle: c.throttle,
            brake: c.brake,
            clutch: c.clutch,
            steering: c.steering,
            gear: c.gear,
            rpm: c.rpm,
            max_rpm: c.max_rpm,
            acc_g: fixed(c.acc_g, "acc_g")?,
            velocity: fixed(c.velocity, "velocity")?,
            angular_velocity: fixed(c.angular_velocity, "angular_velocity")?,
            tyre_slip: fixed(c.tyre_slip, "tyre_slip")?,
            tyre_load: fixed(c.tyre_load, "tyre_load")?,
            tyre_temp_c: fixed(c.tyre_temp_c, "tyre_temp_c")?,
            suspension_travel: fixed(c.suspension_travel, "suspension_travel")?,
            position: fixed(c.position, "position")?,
            status: c.status,
            session_type: c.session_type,
            completed_laps: c.completed_laps,
            place: c.place,
            spline: c.spline,
            current_lap_s: c.current_lap_s,
            last_lap_s: c.last_lap_s,
            best_lap_s: c.best_lap_s,
            lap_time_s: c.lap_time_s,
            delta_lap_s: c.delta_lap_s,
            in_pit: c.in_pit,
        })
    }
}

/// A record from a `json` body: kind `json` is the raw value, any other kind the record's
/// serde form, whose own `kind` tag must agree with the envelope's.
fn json_record(kind: &str, json: &[u8]) -> Result<Record, String> {
    if kind == RecordKind::Json.name() {
        let value: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| format!("kind `json`: {e}"))?;
        return Ok(Record::Json(Arc::new(value)));
    }
    let record: Record = serde_json::from_slice(json).map_err(|e| {
        if kind.is_empty() {
            format!("a JSON record: {e}")
        } else {
            format!("a `{kind}` record: {e}")
        }
    })?;
    if !kind.is_empty() && record.kind().name() != kind {
        return Err(format!(
            "the envelope says `{kind}` but its JSON is a `{}` record",
            record.kind()
        ));
    }
    Ok(record)
}

fn fixed<const N: usize>(values: Vec<f32>, field: &str) -> Result<[f32; N], String> {
    let len = values.len();
    <[f32; N]>::try_from(values)
        .map_err(|_| format!("car_telemetry `{field}` has {len} values, not {N}"))
}

fn bounds_from(b: proto::Bounds) -> Bounds {
    Bounds {
        min_x: b.min_x,
        max_x: b.max_x,
        min_y: b.min_y,
        max_y: b.max_y,
    }
}

fn bounds_to(b: &Bounds) -> proto::Bounds {
    proto::Bounds {
        min_x: b.min_x,
        max_x: b.max_x,
        min_y: b.min_y,
        max_y: b.max_y,
    }
}

fn points_from(flat: &[f64], field: &str) -> Result<Vec<Point>, String> {
    if !flat.len().is_multiple_of(2) {
        return Err(format!(
            "track_layout `{field}` has an odd number of coordinates"
        ));
    }
    Ok(flat
        .chunks_exact(2)
        .map(|xy| Point { x: xy[0], y: xy[1] })
        .collect())
}

fn points_to(points: &[Point]) -> Vec<f64> {
    points.iter().flat_map(|p| [p.x, p.y]).collect()
}

fn text(s: &Option<Arc<str>>) -> Option<String> {
    s.as_deref().map(str::to_owned)
}

fn envelope(event: &Event) -> Result<proto::Envelope, WireError> {
    let mut kind = String::new();
    let body = match &event.record {
        Record::CarTelemetry(c) => Body::CarTelemetry(proto::CarTelemetry {
            game: c.game.to_string(),
            session: c.session.to_string(),
            car_id: c.car_id,
            is_player: c.is_player,
            monotonic_ns: c.monotonic_ns,
            driver: text(&c.driver),
            car_model: text(&c.car_model),
            track: text(&c.track),
            track_configuration: text(&c.track_configuration),
            speed_kmh: c.speed_kmh,
            throttle: c.throttle,
            brake: c.brake,
            clutch: c.clutch,
            steering: c.steering,
            gear: c.gear,
            rpm: c.rpm,
            max_rpm: c.max_rpm,
            acc_g: c.acc_g.to_vec(),
            velocity: c.velocity.to_vec(),
            angular_velocity: c.angular_velocity.to_vec(),
            tyre_slip: c.tyre_slip.to_vec(),
            tyre_load: c.tyre_load.to_vec(),
            tyre_temp_c: c.tyre_temp_c.to_vec(),
            suspension_travel: c.suspension_travel.to_vec(),
            position: c.position.to_vec(),
            status: c.status,
            session_type: c.session_type,
            completed_laps: c.completed_laps,
            place: c.place,
            spline: c.spline,
            current_lap_s: c.current_lap_s,
            last_lap_s: c.last_lap_s,
            best_lap_s: c.best_lap_s,
            lap_time_s: c.lap_time_s,
            delta_lap_s: c.delta_lap_s,
            in_pit: c.in_pit,
        }),
        Record::Position(p) => Body::Position(proto::CarPosition {
            session_key: p.session_key.to_string(),
            car: p.car,
            x: p.x,
            y: p.y,
            z: p.z,
            spline: p.spline,
        }),
        Record::Standing(s) => Body::Standing(proto::Standing {
            session_key: s.session_key.to_string(),
            car: s.car,
            position: s.position,
            driver_name: s.driver_name.clone(),
            driver_guid: s.driver_guid.clone(),
            car_model: s.car_model.clone(),
            gap: s.gap.clone(),
            laps: s.laps,
            best_lap_s: s.best_lap_s,
            last_lap_s: s.last_lap_s,
        }),
        Record::Lap(l) => Body::Lap(proto::Lap {
            session_key: l.session_key.to_string(),
            driver_number: l.driver_number,
            lap_number: l.lap_number,
            date_start: l.date_start.clone(),
            lap_duration: l.lap_duration,
            duration_sector_1: l.duration_sector_1,
            duration_sector_2: l.duration_sector_2,
            duration_sector_3: l.duration_sector_3,
            i1_speed: l.i1_speed,
            i2_speed: l.i2_speed,
            st_speed: l.st_speed,
            is_pit_out_lap: l.is_pit_out_lap,
        }),
        Record::GateTrigger(g) => Body::GateTrigger(proto::GateTrigger {
            lane: g.lane,
            gate_time_ns: g.gate_time_ns,
        }),
        Record::Bounds(b) => Body::Bounds(bounds_to(b)),
        Record::TrackLayout(t) => Body::TrackLayout(proto::TrackLayout {
            session_key: t.session_key.to_string(),
            track_path: points_to(&t.track_path),
            pit_path: points_to(&t.pit_path),
            sector_points: t
                .sector_points
                .iter()
                .map(|p| proto::SectorPoint {
                    id: p.id.clone(),
                    x: p.x,
                    y: p.y,
                })
                .collect(),
            bounds: Some(bounds_to(&t.bounds)),
        }),
        Record::RaceMetadata(m) => Body::RaceMetadata(proto::RaceMetadata {
            session_key: m.session_key.to_string(),
            reference_start_time: m.reference_start_time.clone(),
            reference_start_ns: m.reference_start_ns,
            race_winner: m.race_winner,
            podium_drivers: m.podium_drivers.clone(),
            fastest_lap: m.fastest_lap.as_ref().map(|f| proto::FastestLap {
                driver_number: f.driver_number,
                lap_number: f.lap_number,
                lap_time: f.lap_time,
                sector_1: f.sector_1,
                sector_2: f.sector_2,
                sector_3: f.sector_3,
            }),
        }),
        Record::Json(value) => {
            kind = RecordKind::Json.name().to_string();
            Body::Json(serde_json::to_vec(&**value).map_err(|e| WireError::Encode {
                kind: RecordKind::Json,
                message: e.to_string(),
            })?)
        }
        other => {
            kind = other.kind().name().to_string();
            Body::Json(serde_json::to_vec(other).map_err(|e| WireError::Encode {
                kind: other.kind(),
                message: e.to_string(),
            })?)
        }
    };
    Ok(proto::Envelope {
        time_ns: event.time_ns,
        kind,
        body: Some(body),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::*;
    use std::collections::BTreeMap;

    fn car() -> CarTelemetry {
        CarTelemetry {
            game: "rfactor2".into(),
            session: "rig-7".into(),
            car_id: 12,
            is_player: true,
            monotonic_ns: 123_456_789_012,
            driver: Some("Ana Lima".into()),
            car_model: Some("".into()),
            track: Some("monza".into()),
            track_configuration: None,
            speed_kmh: 212.5,
            throttle: 1.0,
            brake: 0.0,
            clutch: 0.25,
            steering: -0.125,
            gear: -1,
            rpm: 7800.0,
            max_rpm: 15000.0,
            acc_g: [0.5, 1.0, -0.25],
            velocity: [10.0, 0.0, 58.5],
            angular_velocity: [0.0, 0.125, 0.0],
            tyre_slip: [0.1, 0.2, 0.3, 0.4],
            tyre_load: [3000.0, 3100.0, 3200.0, 3300.0],
            tyre_temp_c: [80.0, 81.0, 82.0, f32::MAX],
            suspension_travel: [0.01, 0.02, 0.03, 0.04],
            position: [-120.5, 3.25, 4410.0],
            status: 2,
            session_type: Some(0),
            completed_laps: 3,
            place: 1,
            spline: 0.42,
            current_lap_s: Some(41.2),
            last_lap_s: Some(108.3),
            best_lap_s: None,
            lap_time_s: Some(41.2),
            delta_lap_s: -0.3,
            in_pit: true,
        }
    }

    /// One record of `kind`, with most optional fields filled in. The match has no
    /// catch-all arm: a new kind does not compile until it has a sample here.
    fn sample(kind: RecordKind) -> Record {
        let key: SessionKey = "9158".into();
        match kind {
            RecordKind::Session => Record::Session(Arc::new(Session {
                session_key: key,
                meeting_key: Some(1229),
                session_name: Some("Race".into()),
                year: Some(2024),
                note: Some("simulated".into()),
                ..Session::default()
            })),
            RecordKind::Driver => Record::Driver(Arc::new(Driver {
                session_key: key,
                driver_number: 44,
                name_acronym: Some("HAM".into()),
                team_colour: Some("27F4D2".into()),
                ..Driver::default()
            })),
            RecordKind::Position => Record::Position(CarPosition {
                session_key: key,
                car: 44,
                x: -1234.5,
                y: 987.25,
                z: 0.0,
                spline: Some(0.5),
            }),
            RecordKind::CarData => Record::CarData(CarData {
                session_key: key,
                car: 1,
                speed_kmh: Some(301.0),
                gear: Some(8),
                drs: Some(12),
                ..CarData::default()
            }),
            RecordKind::RacePosition => Record::RacePosition(RacePosition {
                session_key: key,
                car: 16,
                position: 2,
            }),
            RecordKind::Lap => Record::Lap(Arc::new(Lap {
                session_key: key,
                driver_number: 44,
                lap_number: 7,
                date_start: Some("2024-05-26T13:10:00.5+00:00".into()),
                lap_duration: Some(78.5),
                duration_sector_1: Some(20.25),
                duration_sector_2: None,
                duration_sector_3: Some(30.0),
                i1_speed: Some(250.0),
                i2_speed: None,
                st_speed: Some(301.0),
                is_pit_out_lap: Some(false),
            })),
            RecordKind::Interval => Record::Interval(Arc::new(Interval {
                session_key: key,
                driver_number: 4,
                date: None,
                gap_to_leader: Some(Gap::Text("+1 LAP".into())),
                interval: Some(Gap::Seconds(0.5)),
            })),
            RecordKind::Stint => Record::Stint(Arc::new(Stint {
                session_key: key,
                driver_number: 4,
                stint_number: 2,
                compound: Some("HARD".into()),
                lap_start: Some(20),
                ..Stint::default()
            })),
            RecordKind::Pit => Record::Pit(Arc::new(Pit {
                session_key: key,
                driver_number: 4,
                lap_number: Some(19),
                stop_duration: Some(2.5),
                ..Pit::default()
            })),
            RecordKind::RaceControl => Record::RaceControl(Arc::new(RaceControlMessage {
                session_key: key,
                flag: Some("YELLOW".into()),
                sector: Some(3),
                message: Some("YELLOW IN TRACK SECTOR 3".into()),
                ..RaceControlMessage::default()
            })),
            RecordKind::Weather => Record::Weather(Arc::new(Weather {
                session_key: key,
                air_temperature: Some(24.5),
                rainfall: Some(0.0),
                ..Weather::default()
            })),
            RecordKind::SessionResult => Record::SessionResult(Arc::new(SessionResultEntry {
                session_key: key,
                driver_number: 1,
                position: Some(1),
                duration: Some(serde_json::json!([80.5, 79.25, null])),
                dnf: Some(false),
                points: Some(25.0),
                ..SessionResultEntry::default()
            })),
            RecordKind::StartingGrid => Record::StartingGrid(Arc::new(GridSlot {
                session_key: key,
                driver_number: 16,
                position: 1,
                lap_duration: Some(70.25),
            })),
            RecordKind::ReferencePath => Record::ReferencePath(Arc::new(ReferencePath {
                session_key: key,
                path: PathKind::PitLane,
                car: 44,
                lap_number: Some(3),
                samples: vec![(1, 0.5, -2.0), (2, 1.5, -3.0)],
                sector_durations: vec![20.5, 30.25],
            })),
            RecordKind::Bounds => Record::Bounds(Bounds {
                min_x: f64::INFINITY,
                max_x: f64::NEG_INFINITY,
                min_y: -5.5,
                max_y: 7.0,
            }),
            RecordKind::TrackLayout => Record::TrackLayout(Arc::new(TrackLayout {
                session_key: key,
                track_path: vec![Point { x: 1.0, y: 2.0 }, Point { x: -3.5, y: 4.0 }],
                pit_path: vec![Point { x: 0.5, y: 0.25 }],
                sector_points: vec![SectorPoint {
                    id: "Start/Finish".into(),
                    x: 1.0,
                    y: 2.0,
                }],
                bounds: Bounds {
                    min_x: -3.5,
                    max_x: 1.0,
                    min_y: 2.0,
                    max_y: 4.0,
                },
            })),
            RecordKind::RaceMetadata => Record::RaceMetadata(Arc::new(RaceMetadata {
                session_key: key,
                reference_start_time: "2024-05-26T13:03:15.000000+00:00".into(),
                reference_start_ns: 1_716_728_595_000_000_000,
                race_winner: Some(16),
                podium_drivers: vec![16, 81, 55],
                fastest_lap: Some(FastestLap {
                    driver_number: 44,
                    lap_number: 70,
                    lap_time: 74.25,
                    sector_1: Some(20.0),
                    sector_2: None,
                    sector_3: Some(30.5),
                }),
            })),
            RecordKind::Frame => Record::Frame(Arc::new(Frame {
                session_key: key,
                t_ms: 123_400,
                cars: vec![FrameCar {
                    car: 1,
                    x: 10.5,
                    y: -20.0,
                    position: 1,
                }],
            })),
            RecordKind::Document => Record::Document(Arc::new(Document {
                session_key: key,
                name: "drivers".into(),
                body: serde_json::json!([{"driver_number": 1}, {"kind": "not a tag"}]),
            })),
            RecordKind::Tick => Record::Tick,
            RecordKind::SessionEnd => Record::SessionEnd(SessionEnd { session_key: key }),
            RecordKind::Standing => Record::Standing(Arc::new(Standing {
                session_key: key,
                car: 3,
                position: 2,
                driver_name: Some("Ana".into()),
                driver_guid: None,
                car_model: Some("ks_porsche_911_gt3_r".into()),
                gap: Some("+1.234".into()),
                laps: 12,
                best_lap_s: Some(101.5),
                last_lap_s: None,
            })),
            RecordKind::Connection => Record::Connection(Arc::new(Connection {
                session_key: key,
                car: 3,
                connected: true,
                driver_name: Some("Ana".into()),
                ..Connection::default()
            })),
            RecordKind::Collision => Record::Collision(Arc::new(Collision {
                session_key: key,
                car: 3,
                other_car: Some(4),
                impact_speed_kmh: 45.5,
                x: 1.0,
                y: 2.0,
                z: -3.0,
            })),
            RecordKind::Chat => Record::Chat(Arc::new(Chat {
                session_key: key,
                car: None,
                driver_name: Some("Server".into()),
                message: "Welcome \"all\" ✓".into(),
            })),
            RecordKind::GateTrigger => Record::GateTrigger(GateTrigger {
                lane: 2,
                gate_time_ns: Some(-5),
            }),
            RecordKind::MqttMessage => Record::MqttMessage(Arc::new(MqttMessage {
                topic: "carrera/track1/finish".into(),
                fields: BTreeMap::from([("lane".to_string(), "1".to_string())]),
                payload: serde_json::json!({"t_ms": 5}),
            })),
            RecordKind::Command => Record::Command(Arc::new(Command {
                name: "start".into(),
            })),
            RecordKind::RaceEvent => Record::RaceEvent(Arc::new(RaceEvent {
                message: serde_json::json!({"type": "light", "light_id": 1, "state": "on"}),
            })),
            RecordKind::RaceState => Record::RaceState(Arc::new(RaceState {
                status: "running".into(),
                lanes: vec![LaneState {
                    lane: 1,
                    laps: vec![5.5, 5.25],
                    lap_started_ns: Some(1_700_000_000_000_000_000),
                }],
            })),
            RecordKind::LinkStatus => Record::LinkStatus(Arc::new(LinkStatus {
                peer: "mqtt://127.0.0.1:1883".into(),
                connected: false,
                message: "unreachable".into(),
            })),
            RecordKind::CarTelemetry => Record::CarTelemetry(Arc::new(car())),
            RecordKind::Json => Record::Json(Arc::new(serde_json::json!([1, "two", {"kind": 3}]))),
        }
    }

    fn every_kind() -> Vec<Event> {
        RecordKind::ALL
            .iter()
            .enumerate()
            .map(|(i, kind)| Event::new(1_716_728_615_123_000_000 + i as i64, sample(*kind)))
            .collect()
    }

    #[test]
    fn every_record_kind_round_trips_equal() {
        let events = every_kind();
        for event in &events {
            assert_eq!(event.kind(), event.record.kind());
        }
        let bytes = encode_batch(&events);
        let back = decode_batch(&bytes).expect("our own batch decodes");
        assert_eq!(back.len(), RecordKind::ALL.len());
        for (sent, got) in events.iter().zip(&back) {
            assert_eq!(sent, got, "{}", sent.kind());
        }
        // Also one kind per message, and through the lenient decoder.
        let mut decoder = Decoder::default();
        for event in &events {
            let mut out = Vec::new();
            let decoded = decoder
                .decode_into(&encode_batch(std::slice::from_ref(event)), &mut out)
                .unwrap();
            assert_eq!(decoded.skipped, 0, "{:?}", decoded.first_problem);
            assert_eq!(out, vec![event.clone()]);
        }
    }

    #[test]
    fn negative_zero_and_extremes_survive() {
        let mut car = car();
        car.tyre_slip = [-0.0, f32::MIN_POSITIVE, f32::MIN, f32::INFINITY];
        car.gear = i32::MIN;
        car.monotonic_ns = u64::MAX;
        let event = Event::new(i64::MIN, Record::CarTelemetry(Arc::new(car.clone())));
        let back = decode_batch(&encode_batch(std::slice::from_ref(&event))).unwrap();
        let Record::CarTelemetry(got) = &back[0].record else {
            panic!("not telemetry: {:?}", back[0]);
        };
        assert_eq!(**got, car);
        assert_eq!(back[0].time_ns, i64::MIN);
        assert!(
            got.tyre_slip[0].is_sign_negative(),
            "packed arrays keep -0.0"
        );
        // NaN is not equal to itself, so check it on its own.
        car.rpm = f32::NAN;
        let event = Event::new(0, Record::CarTelemetry(Arc::new(car)));
        let back = decode_batch(&encode_batch(&[event])).unwrap();
        let Record::CarTelemetry(got) = &back[0].record else {
            panic!("not telemetry");
        };
        assert!(got.rpm.is_nan());
    }

    #[test]
    fn appended_events_are_a_batch_and_sizes_add_up() {
        let events = every_kind();
        let mut out = Vec::new();
        let mut total = 0;
        for event in &events {
            total += append_event(&mut out, event).unwrap();
        }
        assert_eq!(total, out.len());
        assert_eq!(out, encode_batch(&events));
        assert_eq!(encode_batch(&[]), Vec::<u8>::new());
        assert_eq!(decode_batch(&[]).unwrap(), Vec::new(), "an empty batch");
    }

    #[test]
    fn high_rate_kinds_are_typed_and_compact() {
        let telemetry = Event::new(
            1_716_728_615_123_000_000,
            Record::CarTelemetry(Arc::new(car())),
        );
        let bytes = encode_batch(std::slice::from_ref(&telemetry));
        let envelope = proto::Batch::decode(bytes.as_slice())
            .unwrap()
            .events
            .remove(0);
        assert!(matches!(envelope.body, Some(Body::CarTelemetry(_))));
        // 278 bytes against 800 when this was written.
        assert_eq!(envelope.kind, "", "typed bodies do not repeat their kind");
        let json = serde_json::to_vec(&telemetry).unwrap();
        assert!(
            bytes.len() * 5 < json.len() * 2,
            "protobuf {} bytes vs JSON {} bytes",
            bytes.len(),
            json.len()
        );
        let chat = encode_batch(&[Event::new(1, sample(RecordKind::Chat))]);
        let envelope = proto::Batch::decode(chat.as_slice())
            .unwrap()
            .events
            .remove(0);
        assert_eq!(envelope.kind, "chat");
        assert!(matches!(envelope.body, Some(Body::Json(_))));
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        assert!(matches!(
            decode_batch(b"not protobuf at all"),
            Err(WireError::Protobuf(_))
        ));
        assert!(decode_batch(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        let mut decoder = Decoder::default();
        let mut out = Vec::new();
        assert!(decoder
            .decode_into(b"{\"kind\":\"tick\"}", &mut out)
            .is_err());
        assert!(out.is_empty());

        // Every cut of a real batch, and random bytes: errors or fewer events, no panic.
        let bytes = encode_batch(&every_kind());
        for cut in 0..bytes.len() {
            if let Ok(events) = decode_batch(&bytes[..cut]) {
                assert!(events.len() < RecordKind::ALL.len());
            }
        }
        let mut rng = fastrand::Rng::with_seed(7);
        let mut errors = 0;
        for _ in 0..5000 {
            let len = rng.usize(0..200);
            let mut noise: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            if rng.bool() && !noise.is_empty() {
                // Start like a batch entry so the noise reaches the envelope decoder.
                noise[0] = 0x0a;
            }
            if decode_batch(&noise).is_err() {
                errors += 1;
            }
            let _ = decoder.decode_into(&noise, &mut out);
        }
        assert!(
            errors > 4000,
            "only {errors} of 5000 noise inputs were errors"
        );
    }

    #[test]
    fn the_lenient_decoder_skips_what_it_cannot_read_and_keeps_the_rest() {
        let good = Event::new(5, sample(RecordKind::GateTrigger));
        let mut bytes = encode_batch(std::slice::from_ref(&good));
        let bad = [
            // A kind from a newer version.
            proto::Envelope {
                time_ns: 1,
                kind: "hologram".into(),
                body: Some(Body::Json(br#"{"kind":"hologram","x":1}"#.to_vec())),
            },
            // A body field this version does not know decodes as no body.
            proto::Envelope {
                time_ns: 2,
                kind: String::new(),
                body: None,
            },
            // The envelope and its JSON disagree.
            proto::Envelope {
                time_ns: 3,
                kind: "chat".into(),
                body: Some(Body::Json(br#"{"kind":"command","name":"start"}"#.to_vec())),
            },
            // A wheel array of the wrong length.
            proto::Envelope {
                time_ns: 4,
                kind: String::new(),
                body: Some(Body::CarTelemetry(proto::CarTelemetry {
                    tyre_slip: vec![1.0],
                    ..Default::default()
                })),
            },
        ];
        for envelope in &bad {
            prost::encoding::message::encode(1, envelope, &mut bytes);
        }
        append_event(&mut bytes, &good).unwrap();

        let mut out = Vec::new();
        let decoded = Decoder::default().decode_into(&bytes, &mut out).unwrap();
        assert_eq!(decoded.events, 2);
        assert_eq!(decoded.skipped, 4);
        assert!(
            decoded
                .first_problem
                .as_deref()
                .unwrap()
                .contains("event 1"),
            "{decoded:?}"
        );
        assert_eq!(out, vec![good.clone(), good]);
        let strict = decode_batch(&bytes).unwrap_err();
        assert!(strict.to_string().contains("event 1"), "{strict}");
    }

    #[test]
    fn repeated_strings_are_shared() {
        let events: Vec<Event> = (0..3)
            .map(|i| Event::new(i, Record::CarTelemetry(Arc::new(car()))))
            .collect();
        let mut back = Vec::new();
        Decoder::default()
            .decode_into(&encode_batch(&events), &mut back)
            .unwrap();
        let sessions: Vec<Arc<str>> = back
            .iter()
            .map(|e| match &e.record {
                Record::CarTelemetry(c) => c.session.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(Arc::ptr_eq(&sessions[0], &sessions[1]));
        assert!(Arc::ptr_eq(&sessions[1], &sessions[2]));
        assert_eq!(&*sessions[0], "rig-7");
    }
}
