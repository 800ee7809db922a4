//! Directive handlers and per-server config (create/merge). Parsing and validation are md-core's
//! (`config::ModConfig::apply`); this file only converts httpd's arguments and contexts.

use std::ffi::{c_char, c_int, c_void};
use std::ptr::null;

use crate::guard::{guard, test_panic_point};
use crate::state::mod_state;
use crate::{apr, ffi};
use md_core::config::{ArgValue, Context, Origin, Outcome, Settings};

/// Per-server config record (main server and each `<VirtualHost>`).
#[derive(Debug, Clone, Default)]
pub struct SrvConf {
    /// What this server's own directives set (merged with the main server's for vhosts).
    pub settings: Settings,
}

/// The config of server `s`.
///
/// # Safety
/// `s` must be a live server_rec whose config was created by this module.
pub unsafe fn srv_conf<'a>(s: *const ffi::server_rec) -> &'a SrvConf {
    // SAFETY: ap_get_module_config returns our SrvConf pointer (created below).
    unsafe {
        let p = ffi::ap_get_module_config((*s).module_config, crate::module::MD_MODULE.as_ptr());
        &*(p as *const SrvConf)
    }
}

/// httpd: create the config record of a server.
#[no_mangle]
pub unsafe extern "C" fn md_rs_create_server_config(
    p: *mut ffi::apr_pool_t,
    s: *mut ffi::server_rec,
) -> *mut c_void {
    guard("create_server_config", s, std::ptr::null_mut(), || {
        // SAFETY: p is the live config pool.
        unsafe { apr::pool_box(p, SrvConf::default()) as *mut c_void }
    })
}

/// httpd: merge a vhost's record over the main server's.
#[no_mangle]
pub unsafe extern "C" fn md_rs_merge_server_config(
    p: *mut ffi::apr_pool_t,
    base: *mut c_void,
    add: *mut c_void,
) -> *mut c_void {
    guard("merge_server_config", null(), add, || {
        // SAFETY: both records were created by md_rs_create_server_config.
        let (base, add) = unsafe { (&*(base as *const SrvConf), &*(add as *const SrvConf)) };
        let merged = SrvConf {
            settings: Settings::merge(&base.settings, &add.settings),
        };
        // SAFETY: p is the live config pool.
        unsafe { apr::pool_box(p, merged) as *mut c_void }
    })
}

/// httpd: a tokenized directive.
#[no_mangle]
pub unsafe extern "C" fn md_rs_cmd_argv(
    cmd: *mut ffi::cmd_parms,
    _dc: *mut c_void,
    argc: c_int,
    argv: *const *mut c_char,
) -> *const c_char {
    // SAFETY: argv holds argc C strings (httpd's TAKE_ARGV contract); cmd is httpd's live
    // cmd_parms. run_directive guards the directive; this guard covers the conversion.
    guard("directive", std::ptr::null(), null(), || unsafe {
        let words = (0..argc.max(0) as usize)
            .map(|i| apr::to_string(*argv.add(i)))
            .collect();
        run_directive(cmd, ArgValue::Words(words))
    })
}

/// httpd: a raw-argument directive (sections, command lines).
#[no_mangle]
pub unsafe extern "C" fn md_rs_cmd_raw(
    cmd: *mut ffi::cmd_parms,
    _dc: *mut c_void,
    args: *const c_char,
) -> *const c_char {
    // SAFETY: args is a C string, cmd httpd's live cmd_parms. run_directive guards the
    // directive; this guard covers the conversion.
    guard("directive", std::ptr::null(), null(), || unsafe {
        run_directive(cmd, ArgValue::Raw(apr::to_string(args)))
    })
}

/// Apply one directive; returns null or an error message allocated in the config pool.
unsafe fn run_directive(cmd: *mut ffi::cmd_parms, args: ArgValue) -> *const c_char {
    // SAFETY: cmd is valid for the whole call.
    let (pool, server) = unsafe { ((*cmd).pool, (*cmd).server) };
    // SAFETY: cmd->cmd is the table entry being run.
    let name = unsafe { apr::to_string((*(*cmd).cmd).name) };
    let result = guard(
        "directive",
        server,
        Err(format!("{name}: internal error (panic)")),
        || {
            test_panic_point(&format!("directive:{name}"));
            // SAFETY: cmd is valid; see apply_in_context.
            unsafe { apply_in_context(cmd, &name, args) }
        },
    );
    match result {
        Ok(p) => p,
        // SAFETY: pool is the live config pool.
        Err(msg) => unsafe { apr::pstrdup(pool, &msg) },
    }
}

/// The httpd side of a directive: context, origin, and walking `<MDomain>` sections.
/// `Ok(ptr)` passes an error httpd already produced (from nested directives) through.
unsafe fn apply_in_context(
    cmd: *mut ffi::cmd_parms,
    name: &str,
    args: ArgValue,
) -> Result<*const c_char, String> {
    // SAFETY: all pointers come from httpd's live cmd_parms.
    unsafe {
        let c = &*cmd;
        let s = c.server;
        let dir = c.directive;
        let origin = if dir.is_null() {
            Origin::default()
        } else {
            Origin {
                file: apr::to_string((*dir).filename),
                line: (*dir).line_num.max(0) as u32,
            }
        };
        // Only MDRequireHttps (RSRC_CONF|OR_AUTHCFG) gets here from a directory context. The
        // C module refuses it inside <Directory>, <Location> (and their Match forms) and
        // <Limit>, with httpd's message; inside <If>/<ElseIf>/<Else> and <Files> it accepts
        // it (the condition is ignored: it sets the server's value). NOT_IN_FILES would also
        // refuse <If>, and the combined NOT_IN_DIR_CONTEXT any section with a path.
        // One section kind at a time, in the order httpd checks them, so the message names
        // the section as the C module's does.
        let dir_err = [
            ffi::NOT_IN_LIMIT,
            ffi::NOT_IN_DIRECTORY,
            ffi::NOT_IN_LOCATION,
        ]
        .into_iter()
        .map(|bits| ffi::ap_check_cmd_context(cmd, bits as u32))
        .find(|e| !e.is_null())
        .unwrap_or(std::ptr::null());
        let ctx = Context {
            in_vhost: (*s).is_virtual != 0,
            origin,
            server_root: apr::to_string(ffi::ap_server_root),
            server_key: s as usize,
            dir_context_error: (!dir_err.is_null()).then(|| apr::to_string(dir_err)),
            help: apr::to_string((*c.cmd).errmsg),
        };
        let conf = ffi::ap_get_module_config((*s).module_config, crate::module::MD_MODULE.as_ptr())
            as *mut SrvConf;
        let state = mod_state(c.pool);
        match state
            .config
            .apply(&mut (*conf).settings, &ctx, name, args)?
        {
            Outcome::Done => Ok(null()),
            Outcome::WalkSection => {
                let err = ffi::ap_walk_config((*dir).first_child, cmd, c.context);
                mod_state(c.pool).config.close_section();
                Ok(err)
            }
        }
    }
}
