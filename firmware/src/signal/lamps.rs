//! Thin lamp driver: turns signal-group states into red / yellow / green outputs on
//! embedded-hal pins, flashing at 1 Hz (500 ms on, 500 ms off), writing only on change.

use embedded_hal::digital::OutputPin;

use citygate_protocols::signal::SignalState;

use super::MAX_GROUPS;

/// The pins of one signal head. Pedestrian heads have no yellow.
#[derive(Debug)]
pub struct LampHead<P> {
    /// Red lamp.
    pub red: P,
    /// Yellow (amber) lamp, if the head has one.
    pub yellow: Option<P>,
    /// Green lamp.
    pub green: P,
}

/// A lamp output failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LampError<E> {
    /// 0-based signal group.
    pub group: usize,
    /// The pin error.
    pub error: E,
}

/// Half period of flashing aspects.
pub const FLASH_HALF_PERIOD_MS: u64 = 500;

/// Which lamps (red, yellow, green) a state lights at `now_ms`.
pub fn lamps_for(state: SignalState, now_ms: u64) -> (bool, bool, bool) {
    let on = (now_ms / FLASH_HALF_PERIOD_MS).is_multiple_of(2);
    match state {
        SignalState::Dark => (false, false, false),
        SignalState::Red => (true, false, false),
        SignalState::RedAmber => (true, true, false),
        SignalState::Green => (false, false, true),
        SignalState::Yellow => (false, true, false),
        SignalState::FlashingGreen => (false, false, on),
        SignalState::FlashingYellow => (false, on, false),
    }
}

/// Drives the heads of up to [`MAX_GROUPS`] signal groups.
#[derive(Debug)]
pub struct LampDriver<P> {
    heads: heapless::Vec<LampHead<P>, MAX_GROUPS>,
    shown: heapless::Vec<Option<(bool, bool, bool)>, MAX_GROUPS>,
}

impl<P: OutputPin> LampDriver<P> {
    /// An empty driver.
    pub const fn new() -> Self {
        LampDriver {
            heads: heapless::Vec::new(),
            shown: heapless::Vec::new(),
        }
    }

    /// Adds the head of the next signal group; gives it back if [`MAX_GROUPS`] are taken.
    pub fn add(&mut self, head: LampHead<P>) -> Result<(), LampHead<P>> {
        self.heads.push(head)?;
        let _ = self.shown.push(None);
        Ok(())
    }

    /// Shows `states` (one per head, in order) at `now_ms`. Pins whose level does not change
    /// are not written. All heads are driven even if one fails; the first failure is returned.
    pub fn apply(
        &mut self,
        states: &[SignalState],
        now_ms: u64,
    ) -> Result<(), LampError<P::Error>> {
        let mut first = Ok(());
        for (group, ((head, shown), &state)) in self
            .heads
            .iter_mut()
            .zip(self.shown.iter_mut())
            .zip(states)
            .enumerate()
        {
            let want = lamps_for(state, now_ms);
            if *shown == Some(want) {
                continue;
            }
            match drive(head, *shown, want) {
                Ok(()) => *shown = Some(want),
                Err(error) => {
                    *shown = None; // unknown: rewrite everything next time
                    if first.is_ok() {
                        first = Err(LampError { group, error });
                    }
                }
            }
        }
        first
    }

    /// Gives the heads back.
    pub fn release(self) -> heapless::Vec<LampHead<P>, MAX_GROUPS> {
        self.heads
    }
}

impl<P: OutputPin> Default for LampDriver<P> {
    fn default() -> Self {
        Self::new()
    }
}

fn set<P: OutputPin>(pin: &mut P, on: bool) -> Result<(), P::Error> {
    if on {
        pin.set_high()
    } else {
        pin.set_low()
    }
}

/// Switches lamps off before others on, so a head never briefly shows two aspects it should not.
fn drive<P: OutputPin>(
    head: &mut LampHead<P>,
    old: Option<(bool, bool, bool)>,
    (r, y, g): (bool, bool, bool),
) -> Result<(), P::Error> {
    let (or, oy, og) = match old {
        Some(o) => (Some(o.0), Some(o.1), Some(o.2)),
        None => (None, None, None),
    };
    for pass_on in [false, true] {
        if og != Some(g) && g == pass_on {
            set(&mut head.green, g)?;
        }
        if let Some(yellow) = head.yellow.as_mut() {
            if oy != Some(y) && y == pass_on {
                set(yellow, y)?;
            }
        }
        if or != Some(r) && r == pass_on {
            set(&mut head.red, r)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::digital::{Mock, State, Transaction as T};

    #[test]
    fn vehicle_head_sequence_writes_only_changes_off_before_on() {
        let red = Mock::new(&[T::set(State::High), T::set(State::Low), T::set(State::High)]);
        let yellow = Mock::new(&[T::set(State::Low), T::set(State::High), T::set(State::Low)]);
        let green = Mock::new(&[T::set(State::Low), T::set(State::High), T::set(State::Low)]);
        let mut d = LampDriver::new();
        assert!(d
            .add(LampHead {
                red: red.clone(),
                yellow: Some(yellow.clone()),
                green: green.clone()
            })
            .is_ok());
        use SignalState::*;
        for (state, t) in [
            (Red, 0),
            (Red, 100),
            (Green, 200),
            (Yellow, 300),
            (Red, 400),
        ] {
            assert_eq!(d.apply(&[state], t), Ok(()));
        }
        for mut p in [red, yellow, green] {
            p.done();
        }
    }

    #[test]
    fn flashing_yellow_toggles_at_one_hertz_and_pedestrian_head_has_no_yellow() {
        let red = Mock::new(&[T::set(State::Low)]);
        let yellow = Mock::new(&[T::set(State::High), T::set(State::Low), T::set(State::High)]);
        let green = Mock::new(&[T::set(State::Low)]);
        let p_red = Mock::new(&[T::set(State::Low)]);
        let p_green = Mock::new(&[T::set(State::High), T::set(State::Low), T::set(State::High)]);
        let mut d = LampDriver::new();
        assert!(d
            .add(LampHead {
                red: red.clone(),
                yellow: Some(yellow.clone()),
                green: green.clone()
            })
            .is_ok());
        assert!(d
            .add(LampHead {
                red: p_red.clone(),
                yellow: None,
                green: p_green.clone()
            })
            .is_ok());
        use SignalState::*;
        for t in [0, 250, 500, 999, 1_000] {
            assert_eq!(d.apply(&[FlashingYellow, FlashingGreen], t), Ok(()));
        }
        for mut p in [red, yellow, green, p_red, p_green] {
            p.done();
        }
    }
}
