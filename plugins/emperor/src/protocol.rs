//! The race-control WebSocket protocol of Assetto Corsa Server Manager and its Emperor
//! Servers fork (FORMATS.md section 4), as serde types.
//!
//! Every frame is `{"EventType": <int>, "Message": <payload>}`. The envelope is parsed first
//! with the payload left as raw JSON ([`RawValue`]), then the payload is parsed into the type
//! its event type names, so an unknown event type costs no more than its envelope.
//!
//! The server is not ours and its fork adds fields over time, so these types are tolerant:
//! unknown fields are ignored, numbers may come as strings and strings as numbers (see
//! [`Int`], [`Float`], [`Text`]), and `null` anywhere means "absent" (the default value).

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Event types of the envelope.
pub mod event {
    pub const COLLISION_WITH_CAR: i64 = 10;
    pub const COLLISION_WITH_ENV: i64 = 11;
    pub const NEW_SESSION: i64 = 50;
    pub const NEW_CONNECTION: i64 = 51;
    pub const CONNECTION_CLOSED: i64 = 52;
    pub const CAR_UPDATE: i64 = 53;
    pub const END_SESSION: i64 = 55;
    pub const VERSION: i64 = 56;
    pub const CHAT: i64 = 57;
    pub const CLIENT_LOADED: i64 = 58;
    pub const SNAPSHOT: i64 = 200;
}

/// `{"EventType": .., "Message": ..}` with the payload still unparsed.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Envelope<'a> {
    #[serde(default)]
    pub event_type: Int,
    #[serde(default, borrow)]
    pub message: Option<&'a RawValue>,
}

impl<'a> Envelope<'a> {
    /// Parse one text frame's envelope.
    pub fn parse(text: &'a str) -> Result<Self, serde_json::Error> {
        // serde would also read a struct from an array; an envelope is always an object.
        if !text.trim_start().starts_with('{') {
            return Err(de::Error::custom("an event envelope is a JSON object"));
        }
        serde_json::from_str(text)
    }

    /// Parse the payload as `T`; an absent or `null` payload is an error.
    pub fn payload<T: Deserialize<'a>>(&self) -> Result<T, serde_json::Error> {
        match self.message {
            Some(raw) => serde_json::from_str(raw.get()),
            None => Err(de::Error::custom("the message has no payload")),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Tolerant scalars
// ---------------------------------------------------------------------------------------

/// An integer that may arrive as a JSON number (integral or not), a numeric string, a
/// boolean or `null` (0). Text that is not a number reads as 0.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Int(pub i64);

/// A float with the same tolerance as [`Int`]; `null` and non-numeric text read as 0.
#[derive(Copy, Clone, Debug, Default, PartialEq)]
pub struct Float(pub f64);

/// Text that may arrive as a string, a number or a boolean (written out), or `null` (empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Text(pub String);

impl Int {
    /// As a car id or count: negative and oversized values read as 0.
    pub fn u32(self) -> u32 {
        u32::try_from(self.0).unwrap_or(0)
    }
}

impl Text {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `None` for empty text.
    pub fn non_empty(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| self.0.clone())
    }
}

enum Scalar {
    Int(i64),
    Float(f64),
    Null,
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number, a numeric string or null")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Int(i64::from(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::Int(i64::try_from(v).unwrap_or(i64::MAX)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
        let v = v.trim();
        Ok(if let Ok(i) = v.parse::<i64>() {
            Scalar::Int(i)
        } else if let Ok(f) = v.parse::<f64>() {
            Scalar::Float(f)
        } else {
            Scalar::Null
        })
    }
    fn visit_unit<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Int(match d.deserialize_any(ScalarVisitor)? {
            Scalar::Int(i) => i,
            // `as` saturates and maps NaN to 0: what a tolerant reader wants.
            Scalar::Float(f) => f as i64,
            Scalar::Null => 0,
        }))
    }
}

impl<'de> Deserialize<'de> for Float {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Float(match d.deserialize_any(ScalarVisitor)? {
            Scalar::Int(i) => i as f64,
            Scalar::Float(f) => f,
            Scalar::Null => 0.0,
        }))
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, a number or null")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Text, E> {
        Ok(Text(v))
    }
    fn visit_unit<E>(self) -> Result<Text, E> {
        Ok(Text::default())
    }
    fn visit_none<E>(self) -> Result<Text, E> {
        Ok(Text::default())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Text, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

/// For containers and nested objects: `null` reads as the default value.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

// ---------------------------------------------------------------------------------------
// Payloads
// ---------------------------------------------------------------------------------------

/// A point or vector in the game's world frame (metres, Y up).
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Vec3 {
    #[serde(default)]
    pub x: Float,
    #[serde(default)]
    pub y: Float,
    #[serde(default)]
    pub z: Float,
}

/// 53: one car's position, sent every `CurrentRealtimePosInterval` ms per car.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CarUpdate {
    #[serde(default, rename = "CarID")]
    pub car_id: Int,
    #[serde(default, deserialize_with = "null_default")]
    pub pos: Vec3,
    #[serde(default, deserialize_with = "null_default")]
    pub velocity: Vec3,
    /// Displayed gear is `Gear - 1` (0 = reverse, 1 = neutral).
    #[serde(default)]
    pub gear: Int,
    #[serde(default, rename = "EngineRPM")]
    pub engine_rpm: Float,
    #[serde(default)]
    pub normalised_spline_pos: Float,
}

/// 10 and 11: a collision with another car or with the environment.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CollisionEvent {
    #[serde(default, rename = "CarID")]
    pub car_id: Int,
    #[serde(default, rename = "OtherCarID")]
    pub other_car_id: Int,
    #[serde(default)]
    pub impact_speed: Float,
    #[serde(default, deserialize_with = "null_default")]
    pub world_pos: Vec3,
    #[serde(default, deserialize_with = "null_default")]
    pub rel_pos: Vec3,
}

/// 51 and 52: a driver connected or disconnected.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConnectionEvent {
    #[serde(default, rename = "CarID")]
    pub car_id: Int,
    #[serde(default)]
    pub driver_name: Text,
    #[serde(default, rename = "DriverGUID")]
    pub driver_guid: Text,
    #[serde(default)]
    pub car_model: Text,
    #[serde(default)]
    pub car_skin: Text,
}

/// 57: a chat message.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChatEvent {
    #[serde(default, rename = "CarID")]
    pub car_id: Option<Int>,
    #[serde(default)]
    pub message: Text,
    #[serde(default, rename = "DriverGUID")]
    pub driver_guid: Text,
    #[serde(default)]
    pub driver_name: Text,
    #[serde(default)]
    pub time: Text,
}

/// The session part of 50 and of the 200 snapshot.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SessionInfo {
    #[serde(default)]
    pub server_name: Text,
    #[serde(default)]
    pub track: Text,
    #[serde(default)]
    pub track_config: Text,
    /// The session's name: `Practice`, `Qualify`, `Race`, ...
    #[serde(default)]
    pub name: Text,
    /// 0 booking, 1 practice, 2 qualifying, 3 race.
    #[serde(default, rename = "Type")]
    pub session_type: Int,
    /// Minutes (timed sessions).
    #[serde(default)]
    pub time: Int,
    #[serde(default)]
    pub laps: Int,
    #[serde(default)]
    pub elapsed_milliseconds: Int,
    #[serde(default)]
    pub ambient_temp: Float,
    #[serde(default)]
    pub road_temp: Float,
}

/// How world X/Z map onto the track map image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize)]
pub struct TrackMapData {
    #[serde(default, alias = "Width")]
    pub width: Float,
    #[serde(default, alias = "Height")]
    pub height: Float,
    #[serde(default, alias = "Margin")]
    pub margin: Float,
    #[serde(default, alias = "ScaleFactor")]
    pub scale_factor: Float,
    #[serde(default, alias = "OffsetX")]
    pub offset_x: Float,
    #[serde(default, alias = "OffsetY", alias = "OffsetZ", alias = "offset_z")]
    pub offset_y: Float,
}

/// The track's `ui_track.json`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct TrackInfo {
    #[serde(default, alias = "Name")]
    pub name: Text,
    #[serde(default, alias = "City")]
    pub city: Text,
    #[serde(default, alias = "Country")]
    pub country: Text,
    #[serde(default, alias = "Length")]
    pub length: Text,
}

/// 200: the server's whole race-control state.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Snapshot {
    #[serde(default, deserialize_with = "null_default")]
    pub session_info: SessionInfo,
    #[serde(default)]
    pub track_map_data: Option<TrackMapData>,
    #[serde(default, deserialize_with = "null_default")]
    pub track_info: TrackInfo,
    /// Go `time.Time`, RFC 3339.
    #[serde(default)]
    pub session_start_time: Text,
    #[serde(default)]
    pub current_realtime_pos_interval: Int,
    #[serde(default, deserialize_with = "null_default")]
    pub connected_drivers: DriverMap,
    #[serde(default, deserialize_with = "null_default")]
    pub disconnected_drivers: DriverMap,
    #[serde(default, rename = "CarIDToGUID", deserialize_with = "null_default")]
    pub car_id_to_guid: HashMap<Text, Text>,
}

/// `{Drivers: {GUID: Driver}, GUIDsInPositionalOrder: [GUID]}`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DriverMap {
    #[serde(default, deserialize_with = "null_default")]
    pub drivers: HashMap<String, SnapshotDriver>,
    #[serde(
        default,
        rename = "GUIDsInPositionalOrder",
        deserialize_with = "null_default"
    )]
    pub guids_in_positional_order: Vec<Text>,
}

/// One driver of a snapshot.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnapshotDriver {
    #[serde(default, deserialize_with = "null_default")]
    pub car_info: CarInfo,
    /// 1-based; 0 when the server has not placed the driver.
    #[serde(default)]
    pub position: Int,
    /// The server's own gap text.
    #[serde(default)]
    pub split: Text,
    #[serde(default)]
    pub total_num_laps: Int,
    #[serde(default, deserialize_with = "null_default")]
    pub last_pos: Vec3,
    /// Per car model the driver has used.
    #[serde(default, deserialize_with = "null_default")]
    pub cars: HashMap<String, CarStats>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CarInfo {
    #[serde(default, rename = "CarID")]
    pub car_id: Int,
    #[serde(default)]
    pub driver_name: Text,
    #[serde(default, rename = "DriverGUID")]
    pub driver_guid: Text,
    #[serde(default)]
    pub car_model: Text,
    #[serde(default)]
    pub car_name: Text,
    #[serde(default)]
    pub driver_initials: Text,
}

/// Lap statistics of one driver in one car model. Times are int64 nanoseconds, 0 = none.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CarStats {
    #[serde(default)]
    pub best_lap: Int,
    #[serde(default)]
    pub last_lap: Int,
    #[serde(default)]
    pub total_lap_time: Int,
    #[serde(default)]
    pub num_laps: Int,
    #[serde(default)]
    pub top_speed_best_lap: Float,
    #[serde(default)]
    pub top_speed_this_lap: Float,
    /// RFC 3339; `0001-01-01T00:00:00Z` = never.
    #[serde(default)]
    pub last_lap_completed_time: Text,
}

impl SnapshotDriver {
    /// The statistics of the car the driver is in now (by `CarInfo.CarModel`), else of the
    /// car with the most laps.
    pub fn current_car(&self) -> Option<&CarStats> {
        self.cars.get(self.car_info.car_model.as_str()).or_else(|| {
            self.cars
                .iter()
                .max_by(|a, b| a.1.num_laps.0.cmp(&b.1.num_laps.0).then(b.0.cmp(a.0)))
                .map(|(_, stats)| stats)
        })
    }

    /// Laps completed: `TotalNumLaps`, else the sum over cars of `NumLaps`.
    pub fn laps(&self) -> u32 {
        let total = self.total_num_laps.u32();
        if total > 0 {
            return total;
        }
        self.cars
            .values()
            .map(|c| c.num_laps.u32())
            .fold(0u32, u32::saturating_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerant_scalars() {
        let v: CarUpdate = serde_json::from_str(
            r#"{"CarID":"3","Pos":{"X":1.5,"Y":"2","Z":null},"Gear":2.0,"EngineRPM":"n/a","Tyres":"S","NormalisedSplinePos":0.25}"#,
        )
        .unwrap();
        assert_eq!(v.car_id, Int(3));
        assert_eq!(v.pos.x, Float(1.5));
        assert_eq!(v.pos.y, Float(2.0));
        assert_eq!(v.pos.z, Float(0.0));
        assert_eq!(v.gear, Int(2));
        assert_eq!(v.engine_rpm, Float(0.0));
        assert_eq!(v.normalised_spline_pos, Float(0.25));
        let c: ConnectionEvent =
            serde_json::from_str(r#"{"CarID":1,"DriverName":42,"DriverGUID":null}"#).unwrap();
        assert_eq!(c.driver_name.as_str(), "42");
        assert_eq!(c.driver_guid.non_empty(), None);
    }

    #[test]
    fn envelope_keeps_the_payload_raw() {
        let e = Envelope::parse(r#"{"Message":7,"EventType":56}"#).unwrap();
        assert_eq!(e.event_type, Int(56));
        assert_eq!(e.payload::<Int>().unwrap(), Int(7));
        let e = Envelope::parse(r#"{"EventType":"55"}"#).unwrap();
        assert_eq!(e.event_type, Int(55));
        assert!(e.payload::<Int>().is_err());
        assert!(Envelope::parse("[1,2]").is_err());
    }

    #[test]
    fn snapshot_with_nulls_parses() {
        let s: Snapshot = serde_json::from_str(
            r#"{"SessionInfo":null,"ConnectedDrivers":{"Drivers":null,"GUIDsInPositionalOrder":null},
                "DisconnectedDrivers":null,"CarIDToGUID":{"0":"765","1":null},"TrackMapData":null}"#,
        )
        .unwrap();
        assert!(s.connected_drivers.drivers.is_empty());
        assert_eq!(s.car_id_to_guid.len(), 2);
        assert!(s.track_map_data.is_none());
    }
}
