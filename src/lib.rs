//! mod_md.so: the Apache httpd module. This crate is the FFI layer, the only place with `unsafe`;
//! all behaviour lives in md-core. One file per hook family (see DESIGN.md).
//!
//! Rules kept here (FFI-NOTES): every `extern "C"` entry runs inside [`guard::guard`]; no pool
//! pointers in statics; no threads or network in the httpd parent; strings handed to httpd are
//! pool copies or static C literals.
#![deny(unsafe_op_in_unsafe_fn)]

mod apr;
mod challenge;
mod config;
mod ffi;
mod guard;
mod hooks;
mod log;
mod module;
mod ocsp;
mod offload;
mod redirect;
mod request;
mod restart;
mod state;
mod status;
mod tls_alpn;
mod watchdog;
