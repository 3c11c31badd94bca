//! A `telemetry.v1.TelemetryFrame` decoded straight into [`CarTelemetry`], without the
//! intermediate prost message.
//!
//! Replaying a recording is dominated by decoding: prost builds a `TelemetryFrame` with an
//! owned `String` for every text field (game, session, car model, track, ...) that
//! [`from_frame`](pitwall_api::telemetry::from_frame) then interns and drops, several
//! allocations per frame for strings that repeat on every frame. This decoder reads the
//! same wire format field by field into the record, compares text against the interned
//! [`FrameStrings`] before allocating anything, and gives the same result as
//! `prost::Message::decode` followed by `from_frame`: proto3 defaults for missing fields and
//! pages, the last value of a repeated scalar, sub-messages merged when repeated, unknown
//! fields (groups included) skipped, and errors where prost has them (a truncated field, a
//! field with the wrong wire type, text that is not UTF-8, an invalid varint or tag). The
//! tests check it against prost on well-formed and on corrupted frames.

use pitwall_api::telemetry::{game, lap_time, FrameStrings};
use pitwall_api::CarTelemetry;

/// Why a frame did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(&'static str);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid TelemetryFrame: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

type Result<T> = std::result::Result<T, DecodeError>;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// Unknown groups nest at most this deep (prost's recursion limit).
const MAX_DEPTH: u32 = 100;

struct Wire<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Wire<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64> {
        if let Some(&byte) = self.buf.get(self.pos) {
            if byte < 0x80 {
                self.pos += 1;
                return Ok(u64::from(byte));
            }
        }
        self.varint_slow()
    }

    fn varint_slow(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(DecodeError("invalid varint"));
            };
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err(DecodeError("invalid varint"));
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(DecodeError("invalid varint"))
    }

    /// A field key: (field number, wire type).
    #[inline]
    fn key(&mut self) -> Result<(u32, u8)> {
        let key = self.varint()?;
        if key > u64::from(u32::MAX) {
            return Err(DecodeError("invalid key value"));
        }
        let wire = (key & 7) as u8;
        if wire > FIXED32 {
            return Err(DecodeError("invalid wire type value"));
        }
        let field = (key >> 3) as u32;
        if field == 0 {
            return Err(DecodeError("invalid tag value: 0"));
        }
        Ok((field, wire))
    }

    #[inline(always)]
    fn fixed32(&mut self) -> Result<u32> {
        let bytes = self
            .buf
            .get(self.pos..self.pos + 4)
            .ok_or(DecodeError("buffer underflow"))?;
        self.pos += 4;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    #[inline]
    fn len_delimited(&mut self) -> Result<&'a [u8]> {
        let len = self.varint()?;
        let remaining = (self.buf.len() - self.pos) as u64;
        if len > remaining {
            return Err(DecodeError("buffer underflow"));
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok(&self.buf[start..self.pos])
    }

    fn skip(&mut self, field: u32, wire: u8, depth: u32) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(DecodeError("recursion limit reached"));
        }
        match wire {
            VARINT => {
                self.varint()?;
            }
            FIXED64 => {
                if self.buf.len() - self.pos < 8 {
                    return Err(DecodeError("buffer underflow"));
                }
                self.pos += 8;
            }
            LEN => {
                self.len_delimited()?;
            }
            START_GROUP => loop {
                let (inner, inner_wire) = self.key()?;
                if inner_wire == END_GROUP {
                    if inner != field {
                        return Err(DecodeError("unexpected end group tag"));
                    }
                    break;
                }
                self.skip(inner, inner_wire, depth + 1)?;
            },
            END_GROUP => return Err(DecodeError("unexpected end group tag")),
            _ => {
                if self.buf.len() - self.pos < 4 {
                    return Err(DecodeError("buffer underflow"));
                }
                self.pos += 4;
            }
        }
        Ok(())
    }
}

/// The scalar fields 1..=15 of one message, as read from the wire: fixed32 fields as their
/// bits, varint fields as the raw varint. Zero is the proto3 default of both.
#[derive(Default)]
struct Slots {
    fixed32: [u32; 16],
    varint: [u64; 16],
}

impl Slots {
    fn float(&self, field: usize) -> f32 {
        f32::from_bits(self.fixed32[field])
    }

    fn int32(&self, field: usize) -> i32 {
        self.varint[field] as i32
    }
}

/// Which of a message's fields 1..=15 are `float` (fixed32) and which are int32/uint64
/// (varint), as bit masks.
#[derive(Clone, Copy)]
struct Layout {
    fixed32: u16,
    varint: u16,
}

const fn bits(fields: &[u32]) -> u16 {
    let mut mask = 0;
    let mut i = 0;
    while i < fields.len() {
        mask |= 1 << fields[i];
        i += 1;
    }
    mask
}

/// Read a message's fields. Scalars of `layout` land in `slots` on a fast path (a one-byte
/// key of the expected wire type: what every encoder writes for fields 1..=15); anything
/// else goes to `other`, which handles the message's own length-delimited fields and
/// returns `false` for the rest: those are then a wrong wire type (an error, as in prost)
/// when the field is one of `layout`'s, or skipped as unknown.
#[inline(always)]
fn scan<'a>(
    mut wire: Wire<'a>,
    layout: Layout,
    slots: &mut Slots,
    mut other: impl FnMut(&mut Wire<'a>, u32, u8) -> Result<bool>,
) -> Result<()> {
    while let Some(&byte) = wire.buf.get(wire.pos) {
        if byte < 0x80 {
            let field = u32::from(byte >> 3);
            let bit = 1u16 << field;
            match byte & 7 {
                FIXED32 if layout.fixed32 & bit != 0 => {
                    wire.pos += 1;
                    slots.fixed32[field as usize] = wire.fixed32()?;
                    continue;
                }
                VARINT if layout.varint & bit != 0 => {
                    wire.pos += 1;
                    slots.varint[field as usize] = wire.varint()?;
                    continue;
                }
                _ => {}
            }
        }
        let (field, wire_type) = wire.key()?;
        if other(&mut wire, field, wire_type)? {
            continue;
        }
        if field < 16 && (layout.fixed32 | layout.varint) & (1 << field) != 0 {
            return Err(DecodeError("invalid wire type"));
        }
        wire.skip(field, wire_type, 0)?;
    }
    Ok(())
}

/// A length-delimited field's bytes, or a wrong-wire-type error.
fn len_field<'a>(wire: &mut Wire<'a>, wire_type: u8) -> Result<&'a [u8]> {
    if wire_type != LEN {
        return Err(DecodeError("invalid wire type"));
    }
    wire.len_delimited()
}

fn text<'a>(wire: &mut Wire<'a>, wire_type: u8) -> Result<&'a str> {
    std::str::from_utf8(len_field(wire, wire_type)?)
        .map_err(|_| DecodeError("invalid string value: data is not UTF-8 encoded"))
}

/// `Vec3f { x = 1; y = 2; z = 3 }` and `Wheel4f { fl = 1; fr = 2; rl = 3; rr = 4 }`.
const VEC3: Layout = Layout {
    fixed32: bits(&[1, 2, 3]),
    varint: 0,
};
const WHEEL4: Layout = Layout {
    fixed32: bits(&[1, 2, 3, 4]),
    varint: 0,
};
/// `Physics`: floats 1-4, 6, 7; `gear = 5`; sub-messages 8-14.
const PHYSICS: Layout = Layout {
    fixed32: bits(&[1, 2, 3, 4, 6, 7]),
    varint: bits(&[5]),
};
/// `Graphics`: int32 1-3, floats 4-9.
const GRAPHICS: Layout = Layout {
    fixed32: bits(&[4, 5, 6, 7, 8, 9]),
    varint: bits(&[1, 2, 3]),
};
/// `Static`: strings 1-3, `max_rpm = 4`.
const STATIC: Layout = Layout {
    fixed32: 0,
    varint: bits(&[4]),
};
/// `TelemetryFrame`: `monotonic_ns = 1`; strings 2, 3; pages 4-6.
const FRAME: Layout = Layout {
    fixed32: 0,
    varint: bits(&[1]),
};

/// Merge a `Vec3f` or `Wheel4f` into `values`.
fn floats<const N: usize>(bytes: &[u8], layout: Layout, values: &mut [f32; N]) -> Result<()> {
    let mut slots = Slots::default();
    for (i, value) in values.iter().enumerate() {
        slots.fixed32[i + 1] = value.to_bits();
    }
    scan(Wire::new(bytes), layout, &mut slots, |_, _, _| Ok(false))?;
    for (i, value) in values.iter_mut().enumerate() {
        *value = slots.float(i + 1);
    }
    Ok(())
}

/// Every page of a frame, as read (repeated pages merge into the same slots).
#[derive(Default)]
struct Pages<'a> {
    physics: Slots,
    graphics: Slots,
    stat: Option<(Slots, [&'a str; 3])>,
}

fn physics(bytes: &[u8], slots: &mut Slots, car: &mut CarTelemetry) -> Result<()> {
    scan(
        Wire::new(bytes),
        PHYSICS,
        slots,
        |wire, field, wire_type| {
            match field {
                8..=11 => {
                    let wheels = match field {
                        8 => &mut car.tyre_slip,
                        9 => &mut car.tyre_load,
                        10 => &mut car.tyre_temp_c,
                        _ => &mut car.suspension_travel,
                    };
                    floats(len_field(wire, wire_type)?, WHEEL4, wheels)?;
                }
                12..=14 => {
                    let vector = match field {
                        12 => &mut car.acc_g,
                        13 => &mut car.velocity,
                        _ => &mut car.angular_velocity,
                    };
                    floats(len_field(wire, wire_type)?, VEC3, vector)?;
                }
                _ => return Ok(false),
            }
            Ok(true)
        },
    )
}

fn stat<'a>(bytes: &'a [u8], page: &mut (Slots, [&'a str; 3])) -> Result<()> {
    let (slots, texts) = page;
    scan(Wire::new(bytes), STATIC, slots, |wire, field, wire_type| {
        match field {
            1..=3 => texts[field as usize - 1] = text(wire, wire_type)?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// Decode one frame's bytes into the common record, like `TelemetryFrame::decode` followed
/// by `from_frame`, reusing `strings` for text that repeats.
pub fn decode_car(bytes: &[u8], strings: &mut FrameStrings) -> Result<CarTelemetry> {
    let mut car = CarTelemetry {
        is_player: true,
        ..CarTelemetry::default()
    };
    let mut frame = Slots::default();
    let mut texts = ["", ""];
    let mut pages = Pages::default();
    scan(
        Wire::new(bytes),
        FRAME,
        &mut frame,
        |wire, field, wire_type| {
            match field {
                2 | 3 => texts[field as usize - 2] = text(wire, wire_type)?,
                4 => physics(len_field(wire, wire_type)?, &mut pages.physics, &mut car)?,
                5 => {
                    let bytes = len_field(wire, wire_type)?;
                    scan(
                        Wire::new(bytes),
                        GRAPHICS,
                        &mut pages.graphics,
                        |_, _, _| Ok(false),
                    )?;
                }
                6 => {
                    let bytes = len_field(wire, wire_type)?;
                    stat(bytes, pages.stat.get_or_insert_with(Default::default))?;
                }
                _ => return Ok(false),
            }
            Ok(true)
        },
    )?;
    car.monotonic_ns = frame.varint[1];
    let [game_text, session_text] = texts;
    car.game = if game_text.is_empty() {
        strings.game.get(game::ASSETTO_CORSA)
    } else {
        strings.game.get(game_text)
    };
    car.session = strings.session.get(session_text);
    let physics = &pages.physics;
    car.speed_kmh = physics.float(1);
    car.throttle = physics.float(2);
    car.brake = physics.float(3);
    car.clutch = physics.float(4);
    car.gear = physics.int32(5).wrapping_sub(1);
    car.steering = physics.float(6);
    car.rpm = physics.float(7);
    let graphics = &pages.graphics;
    car.status = graphics.int32(1);
    car.completed_laps = graphics.int32(2);
    car.place = graphics.int32(3);
    car.current_lap_s = lap_time(graphics.float(4));
    car.last_lap_s = lap_time(graphics.float(5));
    car.best_lap_s = lap_time(graphics.float(6));
    car.lap_time_s = lap_time(graphics.float(7));
    car.delta_lap_s = graphics.float(8);
    car.spline = graphics.float(9);
    if let Some((slots, [car_model, track, track_configuration])) = pages.stat {
        car.car_model = strings.car_model.non_empty(car_model);
        car.track = strings.track.non_empty(track);
        car.track_configuration = strings.track_configuration.non_empty(track_configuration);
        car.max_rpm = slots.int32(4) as f32;
    }
    Ok(car)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_api::telemetry::{from_frame, proto};
    use prost::Message;

    fn frame(i: u32) -> proto::TelemetryFrame {
        let f = i as f32;
        let wheels = |b: f32| {
            Some(proto::Wheel4f {
                fl: b,
                fr: b + f,
                rl: -b,
                rr: f,
            })
        };
        let vec3 = |b: f32| {
            Some(proto::Vec3f {
                x: b,
                y: f,
                z: -b * f,
            })
        };
        proto::TelemetryFrame {
            monotonic_ns: u64::from(i) * 1_234_567_891,
            game: if i % 3 == 0 {
                String::new()
            } else {
                "rfactor2".into()
            },
            session_id: format!("rig-{}", i % 2),
            physics: (i % 5 != 1).then(|| proto::Physics {
                speed_kmh: f * 1.5,
                gas: 0.25,
                brake: if i % 2 == 0 { 0.0 } else { 1.0 },
                clutch: 0.5,
                gear: i as i32 % 9 - 1,
                steer: -0.75,
                engine_rpm: 9000.0 - f,
                tyre_slip: wheels(0.1),
                tyre_load: if i % 4 == 0 { None } else { wheels(3000.0) },
                tyre_temp_c: wheels(85.5),
                suspension_travel: wheels(0.02),
                acc_g: vec3(0.9),
                velocity: vec3(55.0),
                angular_velocity: if i % 7 == 0 { None } else { vec3(0.3) },
            }),
            graphics: (i % 6 != 2).then(|| proto::Graphics {
                status: (i % 4) as i32,
                completed_laps: i as i32 / 10,
                position: -(i as i32),
                i_current_time_s: f / 3.0,
                i_last_time_s: if i % 2 == 0 { 0.0 } else { 95.5 },
                i_best_time_s: -1.0,
                lap_time_s: f,
                delta_lap_s: -0.1,
                normalized_car_pos: 0.5,
            }),
            stat: (i % 3 != 0).then(|| proto::Static {
                car_model: if i % 2 == 0 {
                    "bmw_m4".into()
                } else {
                    String::new()
                },
                track: "imola".into(),
                track_configuration: if i % 5 == 0 {
                    "gp".into()
                } else {
                    String::new()
                },
                max_rpm: 7000 + i as i32,
            }),
        }
    }

    fn reference(bytes: &[u8], strings: &mut FrameStrings) -> Option<CarTelemetry> {
        proto::TelemetryFrame::decode(bytes)
            .ok()
            .map(|frame| from_frame(&frame, strings))
    }

    #[test]
    fn matches_prost_and_from_frame_on_well_formed_frames() {
        let mut ours = FrameStrings::default();
        let mut theirs = FrameStrings::default();
        for i in 0..500 {
            let bytes = frame(i).encode_to_vec();
            let want = reference(&bytes, &mut theirs).unwrap();
            let got = decode_car(&bytes, &mut ours).unwrap();
            assert_eq!(got, want, "frame {i}");
        }
        // The empty frame: everything at its default.
        assert_eq!(
            decode_car(&[], &mut ours).unwrap(),
            reference(&[], &mut theirs).unwrap()
        );
    }

    #[test]
    fn merges_repeated_pages_and_skips_unknown_fields_like_prost() {
        let mut bytes = frame(3).encode_to_vec();
        // A second physics page with only the speed, and a second static page: merged.
        proto::TelemetryFrame {
            physics: Some(proto::Physics {
                speed_kmh: 42.0,
                ..Default::default()
            }),
            stat: Some(proto::Static {
                track: "monza".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode(&mut bytes)
        .unwrap();
        // Unknown fields of every wire type, a group with a nested group among them.
        bytes.extend_from_slice(&[0x78, 0x96, 0x01]); // field 15, varint
        bytes.extend_from_slice(&[0x81, 0x01, 1, 2, 3, 4, 5, 6, 7, 8]); // field 16, fixed64
        bytes.extend_from_slice(&[0x8a, 0x01, 2, 0xff, 0xfe]); // field 17, bytes
        bytes.extend_from_slice(&[0x95, 0x01, 1, 2, 3, 4]); // field 18, fixed32
        bytes.extend_from_slice(&[0x9b, 0x01, 0xa3, 0x01, 0x08, 0x01, 0xa4, 0x01, 0x9c, 0x01]); // group 19 { group 20 { 1: 1 } }
        let mut ours = FrameStrings::default();
        let mut theirs = FrameStrings::default();
        let want = reference(&bytes, &mut theirs).unwrap();
        assert_eq!(want.speed_kmh, 42.0);
        assert_eq!(want.track.as_deref(), Some("monza"));
        assert_eq!(decode_car(&bytes, &mut ours).unwrap(), want);
    }

    #[test]
    fn rejects_what_prost_rejects_and_accepts_what_it_accepts() {
        let mut ours = FrameStrings::default();
        let mut theirs = FrameStrings::default();
        let mut rng = fastrand_like(0x5eed);
        let mut disagreements = Vec::new();
        let mut decoded = 0;
        for i in 0..20_000u32 {
            let mut bytes = frame(i % 50).encode_to_vec();
            match i % 4 {
                // Flip a few bytes.
                0 | 1 => {
                    for _ in 0..1 + i % 3 {
                        let at = (rng() as usize) % bytes.len();
                        bytes[at] ^= (rng() as u8) | 1;
                    }
                }
                // Cut it short.
                2 => bytes.truncate((rng() as usize) % bytes.len()),
                // Random bytes.
                _ => bytes = (0..(rng() % 64) as usize).map(|_| rng() as u8).collect(),
            }
            // Debug text, so that NaNs from flipped bits compare equal.
            let reference = reference(&bytes, &mut theirs);
            decoded += u32::from(reference.is_some());
            let want = format!("{reference:?}");
            let got = format!("{:?}", decode_car(&bytes, &mut ours).ok());
            if got != want {
                disagreements.push((bytes, want, got));
            }
        }
        // Both outcomes are well represented.
        assert!((2_000..18_000).contains(&decoded), "{decoded} decoded");
        assert!(
            disagreements.is_empty(),
            "{} disagreements, first: {:?}",
            disagreements.len(),
            disagreements.first()
        );
    }

    /// A small deterministic generator (xorshift), so the test needs no crate.
    fn fastrand_like(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }
}
