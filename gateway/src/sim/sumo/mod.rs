//! SUMO software-in-the-loop: a TraCI client ([`traci`]), a reader of SUMO networks ([`net`]),
//! the import of a net's traffic lights as the gateway's `[[intersection]]` config
//! ([`import`], with the links between intersections in [`coordination`]), the binding of an intersection to a SUMO traffic light ([`binding`]), and the
//! run loop that drives SUMO with the gateway's controllers every simulated second ([`run`]).
//! [`cli`] holds the `citygate sumo` arguments.
pub mod binding;
pub mod cli;
pub mod coordination;
pub mod import;
pub mod net;
pub mod run;
pub mod traci;
