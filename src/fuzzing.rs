//! What each fuzz target feeds its bytes to, in one place, so the `cargo fuzz` targets in
//! `fuzz/` and the regression test (`tests/fuzz_regressions.rs`) run exactly the same code.
//!
//! Every entry takes arbitrary bytes from outside and must return without panicking,
//! hanging or allocating without bound, whatever they are. The results are thrown away:
//! what is checked is that every parser of outside input fails with an error, never a crash.

use std::path::Path;

use pitwall_api::telemetry::FrameStrings;
use pitwall_files::pbgz::{self, FrameReader, Next};

use crate::registry::Registry;

/// One fuzz target: its name (the file name in `fuzz/fuzz_targets/`) and its entry.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every fuzz target, by name.
pub const TARGETS: &[Target] = &[
    Target {
        name: "pipeline_file",
        run: pipeline_file,
    },
    Target {
        name: "emperor_message",
        run: emperor_message,
    },
    Target {
        name: "openf1_json",
        run: openf1_json,
    },
    Target {
        name: "mqtt_payload",
        run: mqtt_payload,
    },
    Target {
        name: "pbgz_stream",
        run: pbgz_stream,
    },
    Target {
        name: "ac_udp_packet",
        run: ac_udp_packet,
    },
    Target {
        name: "ac_shm_pages",
        run: ac_shm_pages,
    },
    Target {
        name: "rf2_shm_buffers",
        run: rf2_shm_buffers,
    },
    Target {
        name: "wire_batch",
        run: wire_batch,
    },
];

/// A pipeline file through the whole loader and validator, and its diagnostics rendered.
pub fn pipeline_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let registry = Registry::builtin();
    let env = |name: &str| (name == "SET").then(|| "value".to_string());
    if let Err(diagnostics) =
        crate::config::load_text(Path::new("fuzz.toml"), text.to_string(), &registry, &env)
    {
        for diagnostic in diagnostics {
            let _ = diagnostic.render(false);
        }
    }
}

/// Emperor race-control frames, one per line, applied to one server state in order.
pub fn emperor_message(data: &[u8]) {
    use pitwall_emperor::state::{RaceControl, StateOptions};
    let text = String::from_utf8_lossy(data);
    let mut state = RaceControl::new(StateOptions::default());
    let mut out = Vec::new();
    for (i, frame) in text.split('\n').enumerate() {
        let _ = state.apply(frame, i as i64 * 1_000_000, &mut out);
    }
}

/// An OpenF1 REST answer: the "no results" check, raw rows and car samples.
pub fn openf1_json(data: &[u8]) {
    use pitwall_openf1::source::rows;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = rows::is_no_results(text);
    let _ = rows::raw_rows(text);
    let mut skipped = rows::Skipped::default();
    let _ = rows::car_samples(text, &mut skipped);
}

/// An MQTT payload in every payload mode, and the gate time read from it.
pub fn mqtt_payload(data: &[u8]) {
    use pitwall_mqtt::source::{decode_payload, gate_time_ns, PayloadMode};
    for mode in [PayloadMode::Auto, PayloadMode::Json, PayloadMode::Text] {
        if let Ok(value) = decode_payload(mode, data) {
            let _ = gate_time_ns(&value);
        }
    }
}

/// A `.pb.gz` recording, as a gzip file and as an already inflated stream of frames.
pub fn pbgz_stream(data: &[u8]) {
    fn read_all<R: std::io::Read>(mut reader: FrameReader<R>) {
        let mut strings = FrameStrings::default();
        for _ in 0..100_000 {
            match reader.next_frame() {
                Next::Frame(bytes) => {
                    let _ = pbgz::decode_car(bytes, &mut strings);
                }
                Next::End(_) => return,
            }
        }
    }
    read_all(pbgz::open(data));
    read_all(FrameReader::new(data));
}

/// An Assetto Corsa UDP datagram, read as every packet the protocol has.
pub fn ac_udp_packet(data: &[u8]) {
    use pitwall_assetto::assetto_udp::{
        parse_car_info, parse_handshake_reply, parse_lap, parse_request,
    };
    let _ = parse_request(data);
    let _ = parse_handshake_reply(data);
    let _ = parse_car_info(data);
    let _ = parse_lap(data);
}

/// Assetto Corsa shared memory, read as each of the three pages.
pub fn ac_shm_pages(data: &[u8]) {
    use pitwall_assetto::assetto_shm::{parse_graphics, parse_physics, parse_static};
    let _ = parse_physics(data);
    let _ = parse_graphics(data);
    let _ = parse_static(data);
}

/// rFactor 2 buffers: the version block, and the bytes as telemetry and scoring, whole and
/// split in two.
pub fn rf2_shm_buffers(data: &[u8]) {
    use pitwall_rfactor2::parse::{parse_scoring, parse_telemetry, version_block};
    let (telemetry, scoring) = data.split_at(data.len() / 2);
    let _ = version_block(data);
    let _ = parse_telemetry(data);
    let _ = parse_scoring(data);
    let _ = parse_telemetry(telemetry);
    let _ = parse_scoring(scoring);
}

/// An edge-to-hub MQTT message in the protobuf wire format.
pub fn wire_batch(data: &[u8]) {
    let _ = pitwall_api::wire::decode_batch(data);
}
