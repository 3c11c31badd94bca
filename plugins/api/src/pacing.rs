//! Replay pacing: release events at the pace of their event time, shared by every
//! replaying source so that `speed`, start offsets and loops mean the same everywhere.

use std::time::Duration;

use tokio::time::Instant;

/// Maps event time to wall-clock time: `speed = 1.0` real time, `10.0` ten times faster,
/// `0.0` as fast as possible.
#[derive(Clone, Debug)]
pub struct Pacer {
    speed: f64,
    /// Release events this much earlier than their due time (event time, so it scales
    /// with speed like everything else).
    lead_ns: i64,
    /// (wall clock, event time) of the first paced event.
    anchor: Option<(Instant, i64)>,
}

impl Pacer {
    pub fn new(speed: f64) -> Self {
        Self {
            speed: if speed.is_finite() && speed > 0.0 {
                speed
            } else {
                0.0
            },
            lead_ns: 0,
            anchor: None,
        }
    }

    /// Release each event `lead_ns` of event time ahead of its due time. A transform that
    /// holds output until it has seen `lag` of event time beyond it (resampling waits for the
    /// next sample) is then on time, and the first of its output goes out at the start.
    pub fn with_lead(mut self, lead_ns: i64) -> Self {
        self.lead_ns = lead_ns.max(0);
        self
    }

    pub fn speed(&self) -> f64 {
        self.speed
    }

    /// How long to wait before releasing an event at `time_ns`, or `None` to release it now.
    pub fn delay_until(&mut self, time_ns: i64) -> Option<Duration> {
        if self.speed == 0.0 {
            return None;
        }
        let (wall, event) = *self.anchor.get_or_insert((Instant::now(), time_ns));
        let ahead_ns = (time_ns - event - self.lead_ns) as f64 / self.speed;
        if ahead_ns <= 0.0 {
            return None;
        }
        let due = wall + Duration::from_nanos(ahead_ns as u64);
        due.checked_duration_since(Instant::now())
    }

    /// Wait until the event at `time_ns` is due.
    pub async fn wait_until(&mut self, time_ns: i64) {
        if let Some(delay) = self.delay_until(time_ns) {
            tokio::time::sleep(delay).await;
        }
    }

    /// Start again from the next event (a loop back to the beginning of a recording).
    pub fn restart(&mut self) {
        self.anchor = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn paces_by_event_time_and_speed() {
        let mut pacer = Pacer::new(2.0);
        assert_eq!(pacer.delay_until(1_000_000_000), None);
        let delay = pacer.delay_until(3_000_000_000).unwrap();
        assert!(delay <= Duration::from_secs(1) && delay > Duration::from_millis(900));
        let mut early = Pacer::new(1.0).with_lead(300_000_000);
        assert_eq!(early.delay_until(0), None);
        assert_eq!(
            early.delay_until(300_000_000),
            None,
            "within the lead: at once"
        );
        let delay = early.delay_until(1_300_000_000).unwrap();
        assert!(delay <= Duration::from_secs(1) && delay > Duration::from_millis(900));
        let mut fast = Pacer::new(0.0);
        assert_eq!(fast.delay_until(0), None);
        assert_eq!(fast.delay_until(i64::MAX), None);
    }
}
