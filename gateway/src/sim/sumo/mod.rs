//! SUMO software-in-the-loop: a TraCI client ([`traci`]), a reader of SUMO networks ([`net`]),
//! the import of a net's traffic lights into an intersection plan ([`plan`]), the controller
//! seam and the net's own fixed-time program ([`control`]), and the run loop that drives SUMO
//! with a controller every simulated second ([`run`]). [`cli`] holds the `citygate sumo` arguments.
pub mod cli;
pub mod control;
pub mod interim;
pub mod net;
pub mod plan;
pub mod run;
pub mod traci;
