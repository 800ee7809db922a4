//! The exported module record `md_module` (what `LoadModule md_module mod_md.so` looks up).

use std::cell::UnsafeCell;
use std::ptr::null_mut;

use crate::ffi;

/// The module record. httpd writes into it at load time (module_index, next, dynamic_load_handle),
/// so it must live in writable memory: hence the `UnsafeCell` (FFI-NOTES (a)).
#[repr(transparent)]
pub struct ModuleCell(UnsafeCell<ffi::module>);

// SAFETY: httpd mutates the record only while loading modules, single-threaded, before any of our
// code reads it; afterwards it is only read (module_index).
unsafe impl Sync for ModuleCell {}

/// Always merge vhost configs, even for vhosts without any of our directives
/// (AP_MODULE_FLAG_ALWAYS_MERGE).
const AP_MODULE_FLAG_ALWAYS_MERGE: i32 = 1;

/// The record itself: directive table and hook registration come from the C glue.
#[unsafe(export_name = "md_module")]
pub static MD_MODULE: ModuleCell = ModuleCell(UnsafeCell::new(ffi::module {
    version: ffi::MODULE_MAGIC_NUMBER_MAJOR,
    minor_version: ffi::MODULE_MAGIC_NUMBER_MINOR,
    module_index: -1,
    name: c"mod_md.c".as_ptr(),
    dynamic_load_handle: null_mut(),
    next: null_mut(),
    magic: ffi::MODULE_MAGIC_COOKIE as _,
    rewrite_args: None,
    create_dir_config: None,
    merge_dir_config: None,
    create_server_config: Some(crate::config::md_rs_create_server_config),
    merge_server_config: Some(crate::config::md_rs_merge_server_config),
    // Only the address of the C table is taken; httpd reads the table at load time.
    cmds: std::ptr::addr_of!(ffi::md_rs_glue_cmds) as *const ffi::command_rec,
    register_hooks: Some(ffi::md_rs_glue_register_hooks),
    flags: AP_MODULE_FLAG_ALWAYS_MERGE,
}));

/// Pointer to the record, for httpd APIs that take a `module *`.
impl ModuleCell {
    pub fn as_ptr(&self) -> *mut ffi::module {
        self.0.get()
    }
}
