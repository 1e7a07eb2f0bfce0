//! Fault injection: the seedable dice that decide, per API call and per notify, which of the
//! configured faults strike, and the corruption applied to "garbled" replies.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::config::Faults;

/// The current fault settings and the RNG that applies them.
pub(crate) struct FaultDice {
    pub faults: Faults,
    rng: StdRng,
}

/// What strikes one API call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ApiFaults {
    pub system_error: bool,
    pub slow: Option<Duration>,
    pub garbled: bool,
}

/// What strikes one notify (payment or refund).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct NotifyPlan {
    pub dropped: bool,
    pub duplicates: u32,
    pub concurrent: u32,
    /// How long the first delivery is held back (the late-notify fault).
    pub late: Option<Duration>,
}

impl FaultDice {
    pub fn new(faults: Faults, seed: Option<u64>) -> FaultDice {
        let rng = match seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => rand::make_rng(),
        };
        FaultDice { faults, rng }
    }

    /// Draws exactly one number per call whatever `p` is, so a seeded run replays the same
    /// sequence even when rates change between runs.
    fn chance(&mut self, p: f64) -> bool {
        let x: f64 = self.rng.random();
        x < p.clamp(0.0, 1.0)
    }

    pub fn roll_api(&mut self) -> ApiFaults {
        let f = self.faults.clone();
        let system_error = self.chance(f.system_error_rate);
        let slow = self.chance(f.slow_rate).then(|| Duration::from_millis(f.slow_ms));
        let garbled = self.chance(f.garbled_rate);
        ApiFaults { system_error, slow, garbled }
    }

    /// Whether a v3 answer or notify delivery carries a `WECHATPAY/SIGNTEST/` probe. Drawn only
    /// when probes are on, so that seeded runs without them replay their old sequences.
    pub fn roll_signtest(&mut self) -> bool {
        let rate = self.faults.v3_signtest_rate;
        rate > 0.0 && self.chance(rate)
    }

    pub fn roll_notify(&mut self) -> NotifyPlan {
        let f = self.faults.clone();
        let dropped = self.chance(f.drop_notify_rate);
        // Drawn only when late notifies are on, so that runs without them replay the sequences
        // they drew before this fault existed; with them on, two draws whatever the rate.
        let late = (f.late_notify_rate > 0.0).then(|| {
            let late = self.chance(f.late_notify_rate);
            let by = self.rng.random_range(0..=f.late_notify_ms);
            late.then(|| Duration::from_millis(by))
        });
        NotifyPlan {
            dropped,
            duplicates: f.duplicate_notifies,
            concurrent: f.concurrent_notifies,
            late: late.flatten(),
        }
    }
}

/// Corrupts an XML reply the way a cut connection does: it ends in the middle of a tag.
pub(crate) fn garble(xml: &str) -> String {
    // The middle may fall inside a character (a Chinese trade_state_desc): start at its start.
    let half = (0..=xml.len() / 2).rev().find(|&i| xml.is_char_boundary(i)).unwrap_or(0);
    // Cut two bytes into the first tag that starts after the middle (tags are ASCII).
    let cut = xml[half..].find('<').map(|i| half + i + 2).filter(|&c| c < xml.len()).unwrap_or(half.max(1));
    let cut = (0..=cut).rev().find(|&i| xml.is_char_boundary(i)).unwrap_or(0);
    xml[..cut].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wxpay::xml;

    fn faults(rate: f64) -> Faults {
        Faults { system_error_rate: rate, slow_rate: rate, slow_ms: 7, garbled_rate: rate, ..Faults::default() }
    }

    #[test]
    fn seeded_dice_replay_the_same_sequence() {
        let mut a = FaultDice::new(faults(0.5), Some(42));
        let mut b = FaultDice::new(faults(0.5), Some(42));
        let seq_a: Vec<_> = (0..50).map(|_| a.roll_api()).collect();
        let seq_b: Vec<_> = (0..50).map(|_| b.roll_api()).collect();
        assert_eq!(seq_a, seq_b);
        let hits = seq_a.iter().filter(|f| f.system_error).count();
        assert!((5..45).contains(&hits), "{hits} of 50 at p=0.5");
        assert!(seq_a.iter().any(|f| f.slow == Some(Duration::from_millis(7))));
    }

    #[test]
    fn zero_and_one_are_exact() {
        let mut never = FaultDice::new(faults(0.0), None);
        let mut always = FaultDice::new(faults(1.0), None);
        for _ in 0..100 {
            assert_eq!(never.roll_api(), ApiFaults::default());
            let f = always.roll_api();
            assert!(f.system_error && f.garbled && f.slow.is_some());
        }
        let mut d = FaultDice::new(Faults { drop_notify_rate: 1.0, duplicate_notifies: 2, ..Faults::default() }, None);
        assert_eq!(d.roll_notify(), NotifyPlan { dropped: true, duplicates: 2, concurrent: 0, late: None });
        assert!(!never.roll_signtest());
        let mut probes = FaultDice::new(Faults { v3_signtest_rate: 1.0, ..Faults::default() }, None);
        assert!(probes.roll_signtest());
    }

    #[test]
    fn late_notifies_are_held_back_within_the_bound() {
        let late = Faults { late_notify_rate: 1.0, late_notify_ms: 40, ..Faults::default() };
        let mut d = FaultDice::new(late, Some(3));
        let delays: Vec<Duration> = (0..200).map(|_| d.roll_notify().late.expect("every notify is late")).collect();
        assert!(delays.iter().all(|l| *l <= Duration::from_millis(40)), "{delays:?}");
        assert!(delays.iter().any(|l| *l >= Duration::from_millis(20)), "the delays spread over the bound");
        let mut never = FaultDice::new(Faults { late_notify_ms: 40, ..Faults::default() }, Some(3));
        assert!((0..50).all(|_| never.roll_notify().late.is_none()));
    }

    #[test]
    fn garbled_xml_does_not_parse() {
        let doc = "<xml><return_code><![CDATA[SUCCESS]]></return_code><prepay_id>wx1</prepay_id><body><![CDATA[中文]]></body></xml>";
        let g = garble(doc);
        assert!(g.len() < doc.len() && doc.starts_with(&g));
        assert!(xml::parse(g.as_bytes()).is_err());
        assert_eq!(garble(""), "");
        assert!(xml::parse(garble("<xml/>").as_bytes()).is_err());
    }

    #[test]
    fn a_reply_whose_middle_is_inside_a_character_is_garbled_too() {
        // 75 bytes: the middle (byte 37) is inside 单 (bytes 35..38). This used to panic, and the
        // app saw an HTTP 500 instead of the truncated reply.
        let doc = "<xml><trade_state_desc><![CDATA[订单未支付]]></trade_state_desc></xml>";
        assert!(!doc.is_char_boundary(doc.len() / 2));
        let g = garble(doc);
        assert!(g.len() < doc.len() && doc.starts_with(&g), "{g}");
        assert!(xml::parse(g.as_bytes()).is_err());
    }
}
