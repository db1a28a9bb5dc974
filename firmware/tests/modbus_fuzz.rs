//! Property tests of the RTU slave on arbitrary input: it never panics, answers only
//! well-formed frames for its own unit, and every answer carries a correct CRC and echoes the
//! unit and function (or the function with the exception bit and a known exception code).

use citygate_firmware::bank::SignalBank;
use citygate_firmware::modbus::crc::{crc16, frame_crc_ok};
use citygate_firmware::modbus::{FrameAssembler, RtuSlave};
use citygate_firmware::signal::{
    ControllerConfig, GroupConfig, GroupSet, IntergreenMatrix, Plan, SignalController,
};
use proptest::prelude::*;

fn bank() -> SignalBank {
    let mut cfg = ControllerConfig::default();
    cfg.groups
        .push(GroupConfig::vehicle(5_000, 0, 3_000))
        .expect("fits");
    cfg.groups
        .push(GroupConfig::vehicle(5_000, 0, 3_000))
        .expect("fits");
    let mut ig = IntergreenMatrix::new();
    ig.set_conflict(0, 1, 5_000, 5_000);
    cfg.intergreen = ig;
    cfg.stages.push(GroupSet::of(&[0])).expect("fits");
    cfg.stages.push(GroupSet::of(&[1])).expect("fits");
    cfg.plans
        .push(Plan::from_steps(&[(0, 10_000), (1, 10_000)]).expect("fits"))
        .expect("fits");
    cfg.watchdog_timeout_ms = 5_000;
    cfg.detectors = 4;
    cfg.detector_interval_ms = 60_000;
    SignalBank::new(SignalController::new(cfg, 0).expect("valid"))
}

fn with_crc(mut body: Vec<u8>) -> Vec<u8> {
    let c = crc16(&body);
    body.extend_from_slice(&c.to_le_bytes());
    body
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_bad_crc_is_silent(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut b = bank();
        let mut s = RtuSlave::new(1);
        let mut resp = [0u8; 256];
        let answered = s.handle_frame(&mut b, &bytes, &mut resp);
        if !frame_crc_ok(&bytes) {
            prop_assert_eq!(answered, None);
        }
    }

    #[test]
    fn well_formed_requests_get_well_formed_answers(
        unit in prop_oneof![Just(0u8), Just(1u8), Just(2u8)],
        function in prop_oneof![1u8..=6, Just(15u8), Just(16u8), any::<u8>()],
        tail in prop::collection::vec(any::<u8>(), 0..260),
        now in 0u64..100_000,
    ) {
        let mut b = bank();
        b.tick(now);
        let mut s = RtuSlave::new(1);
        let mut body = vec![unit, function];
        body.extend(tail);
        let req = with_crc(body);
        let mut resp = [0u8; 256];
        let answered = s.handle_frame(&mut b, &req, &mut resp);
        if unit != 1 || req.len() > 256 {
            prop_assert_eq!(answered, None);
        } else {
            let n = answered.expect("own unit is always answered");
            let r = &resp[..n];
            prop_assert!(frame_crc_ok(r));
            prop_assert_eq!(r[0], 1);
            if r[1] & 0x80 != 0 {
                prop_assert_eq!(r[1], function | 0x80);
                prop_assert_eq!(n, 5);
                prop_assert!((1..=4).contains(&r[2]));
            } else {
                prop_assert_eq!(r[1], function);
            }
        }
    }

    #[test]
    fn assembler_recovers_frames_separated_by_t35(frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..40), 1..6), baud in prop_oneof![Just(9_600u32), Just(19_200), Just(115_200)]) {
        let t35 = citygate_firmware::modbus::frame::t35_us(baud) as u64;
        let char_us = 11_000_000 / baud as u64;
        let mut a = FrameAssembler::new(baud);
        let mut out = [0u8; 256];
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut t = 0u64;
        for f in &frames {
            for &byte in f {
                if let Some(n) = a.push(byte, t, &mut out) {
                    got.push(out[..n].to_vec());
                }
                t += char_us;
            }
            t += t35;
        }
        if let Some(n) = a.poll(t, &mut out) {
            got.push(out[..n].to_vec());
        }
        prop_assert_eq!(got, frames);
    }
}
