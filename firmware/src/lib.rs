//! Device logic of citygate's own field devices, `no_std` and allocation-free.
#![no_std]
