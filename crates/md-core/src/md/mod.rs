//! The managed domain (MD) model.

pub mod keyspec;

pub use keyspec::KeySpec;
