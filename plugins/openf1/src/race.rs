//! Race facts derived from OpenF1 records, shared by the source and `track_layout`.

use pitwall_api::record::{parse_iso8601_ns, GridSlot, Lap};

/// Pocket Pitwall's clock origin: the pole sitter's lap-1 start minus 20 s (FORMATS.md 3).
///
/// The pole sitter is grid position 1; without a grid, the earliest lap-1 start stands in.
/// `None` when no lap 1 has a start time.
pub fn reference_start_ns(laps: &[Lap], grid: &[GridSlot]) -> Option<i64> {
    const LEAD_IN_NS: i64 = 20_000_000_000;
    let lap_one_start = |driver: u32| {
        laps.iter()
            .filter(|lap| lap.driver_number == driver && lap.lap_number == 1)
            .find_map(|lap| lap.date_start.as_deref().and_then(parse_iso8601_ns))
    };
    let pole = grid
        .iter()
        .find(|slot| slot.position == 1)
        .and_then(|slot| lap_one_start(slot.driver_number));
    let earliest = || {
        laps.iter()
            .filter(|lap| lap.lap_number == 1)
            .filter_map(|lap| lap.date_start.as_deref().and_then(parse_iso8601_ns))
            .min()
    };
    pole.or_else(earliest).map(|start| start - LEAD_IN_NS)
}
