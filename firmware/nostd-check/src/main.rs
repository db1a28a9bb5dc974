//! Links citygate-firmware into a freestanding binary: no std, no allocator, no C runtime
//! start files. It runs the signal controller and the Modbus RTU slave (core and serial driver),
//! the lamp driver and the hazard node so that all of their code is instantiated and linked.
#![no_std]
#![no_main]

use core::convert::Infallible;
use core::hint::black_box;
use core::panic::PanicInfo;

use citygate_firmware::bank::{HazardBank, SignalBank};
use citygate_firmware::hazard::{
    Ads1115, GasConfig, HazardNode, HazardStation, MaxSonar, RainConfig, RainGaugeInput,
    WaterConfig, ADS1115_ADDRESS, MAXSONAR_ADDRESS,
};
use citygate_firmware::modbus::serial::RtuSerial;
use citygate_firmware::modbus::RtuSlave;
use citygate_firmware::signal::demo::crossroads;
use citygate_firmware::signal::lamps::{LampDriver, LampHead};
use citygate_firmware::signal::{Command, SignalController};

#[panic_handler]
fn panic(_info: &PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

/// The prebuilt `core` carries unwind tables that name this symbol; with `panic = "abort"`
/// it is never called.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

/// A pin that accepts every level (stands in for a HAL's GPIO).
struct NullPin;

impl embedded_hal::digital::ErrorType for NullPin {
    type Error = Infallible;
}

impl embedded_hal::digital::OutputPin for NullPin {
    fn set_low(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

impl embedded_hal::digital::InputPin for NullPin {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(true)
    }
    fn is_low(&mut self) -> Result<bool, Infallible> {
        Ok(false)
    }
}

/// An I2C bus whose devices read all zeroes.
struct NullBus;

impl embedded_hal::i2c::ErrorType for NullBus {
    type Error = Infallible;
}

impl embedded_hal::i2c::I2c for NullBus {
    fn transaction(
        &mut self,
        _address: u8,
        operations: &mut [embedded_hal::i2c::Operation<'_>],
    ) -> Result<(), Infallible> {
        for op in operations {
            if let embedded_hal::i2c::Operation::Read(buf) = op {
                buf.fill(0);
            }
        }
        Ok(())
    }
}

/// A UART with nothing to receive that swallows what it sends.
struct NullUart;

impl embedded_hal_nb::serial::ErrorType for NullUart {
    type Error = Infallible;
}

impl embedded_hal_nb::serial::Read<u8> for NullUart {
    fn read(&mut self) -> embedded_hal_nb::nb::Result<u8, Infallible> {
        Err(embedded_hal_nb::nb::Error::WouldBlock)
    }
}

impl embedded_hal_nb::serial::Write<u8> for NullUart {
    fn write(&mut self, _word: u8) -> embedded_hal_nb::nb::Result<(), Infallible> {
        Ok(())
    }
    fn flush(&mut self) -> embedded_hal_nb::nb::Result<(), Infallible> {
        Ok(())
    }
}

fn run() -> Option<usize> {
    let mut ctrl = SignalController::new(crossroads()?, 0).ok()?;
    let mut lamps = LampDriver::new();
    for _ in 0..2 {
        lamps
            .add(LampHead {
                red: NullPin,
                yellow: Some(NullPin),
                green: NullPin,
            })
            .ok()?;
    }
    ctrl.command(
        Command {
            stage: Some(1),
            hold: false,
            plan: None,
            sequence: 1,
        },
        0,
    )
    .ok()?;
    for t in 0..200u64 {
        ctrl.tick(black_box(t * 100));
        lamps.apply(ctrl.group_states(), t * 100).ok()?;
    }
    let mut bank = SignalBank::new(ctrl);
    let mut slave = RtuSlave::new(1);
    // read 3 input registers from 0 (current stage, target stage, mode)
    let req = [0x01, 0x04, 0x00, 0x00, 0x00, 0x03, 0xB0, 0x0B];
    let mut resp = [0u8; 256];
    let n = slave.handle_frame(&mut bank, black_box(&req), &mut resp)?;

    let mut hazard = HazardBank::new(HazardNode::new(
        WaterConfig::default(),
        RainConfig::default(),
        GasConfig::default(),
        0,
    ));
    let mut station = HazardStation::new(
        MaxSonar::new(NullBus, MAXSONAR_ADDRESS),
        Ads1115::new(NullBus, ADS1115_ADDRESS),
        0,
        RainGaugeInput::new(NullPin, true),
        1_000,
        0,
    );
    for t in 0..20u64 {
        station.poll(hazard.node_mut(), black_box(t * 100)).ok()?;
    }
    let mut rtu = RtuSerial::new(NullUart, NullPin, 19_200, RtuSlave::new(2));
    rtu.poll(&mut hazard, black_box(10_000)).ok()?;
    Some(n + black_box(resp[0]) as usize)
}

#[no_mangle]
pub extern "C" fn _start() -> ! {
    black_box(run());
    loop {
        core::hint::spin_loop();
    }
}
