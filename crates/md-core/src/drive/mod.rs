//! The renewal driver: deciding when each MD is renewed, and running renewals.

pub mod schedule;
