pub mod hazard;
