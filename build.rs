//! Build script of mod_md.so: bindgen over include/wrapper.h and the C glue (apxs-glue/*.c).
//!
//! Include paths and flags come from the installed httpd/APR tools (`apxs -q`, `apr-1-config`,
//! `apu-1-config`) so the module is built against the same httpd it will be loaded into.

use std::path::PathBuf;
use std::process::Command;

fn tool_output(tool: &str, args: &[&str], hint: &str) -> String {
    match Command::new(tool).args(args).output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Ok(out) => fail(&format!(
            "`{tool} {}` failed: {}\n{hint}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => fail(&format!("cannot run `{tool}`: {e}\n{hint}")),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("\nmod_md build error: {msg}\n");
    panic!("mod_md build error: {msg}");
}

/// The hooks of httpd's core that mod_ssl calls and the module implements (http_ssl.h).
/// They came with MMN 20120211.103-105 (2.4.47-dev, first released in httpd 2.4.48).
const SSL_HOOKS: [&str; 5] = [
    "ssl_add_cert_files",
    "ssl_add_fallback_cert_files",
    "ssl_answer_challenge",
    "ssl_ocsp_prime_hook",
    "ssl_ocsp_get_resp_hook",
];
const MMN_MAJOR: u32 = 20120211;
const MMN_MINOR_SSL_HOOKS: u32 = 105;

fn mmn_value(mmn_h: &str, name: &str) -> Option<u32> {
    mmn_h
        .lines()
        .find_map(|l| {
            l.trim_start()
                .strip_prefix("#define")?
                .trim_start()
                .strip_prefix(name)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse::<u32>().ok())
}

/// Fails the build with an explanation when the httpd found by apxs is older than 2.4.48:
/// its ap_mmn.h is below 20120211.105 or its http_ssl.h lacks one of [`SSL_HOOKS`]
/// (see patches/README.md).
fn check_httpd_has_ssl_hooks(httpd_inc: &str) {
    println!("cargo:rerun-if-changed={httpd_inc}/ap_mmn.h");
    println!("cargo:rerun-if-changed={httpd_inc}/http_ssl.h");
    const WHY: &str = "mod_md-rs needs httpd >= 2.4.48: the certificate, fallback, ACME challenge \
                       and OCSP stapling hooks of mod_ssl are in httpd's core (http_ssl.h) since \
                       then. There is no patch for older httpd; see patches/README.md.";
    let mmn = std::fs::read_to_string(format!("{httpd_inc}/ap_mmn.h"))
        .unwrap_or_else(|e| fail(&format!("cannot read {httpd_inc}/ap_mmn.h: {e}")));
    let major = mmn_value(&mmn, "MODULE_MAGIC_NUMBER_MAJOR").unwrap_or(0);
    let minor = mmn_value(&mmn, "MODULE_MAGIC_NUMBER_MINOR").unwrap_or(0);
    if major != MMN_MAJOR || minor < MMN_MINOR_SSL_HOOKS {
        fail(&format!(
            "httpd in {httpd_inc} has module magic number {major}:{minor}, needs \
             {MMN_MAJOR}:{MMN_MINOR_SSL_HOOKS} or later (a 2.4 httpd >= 2.4.48).\n{WHY}"
        ));
    }
    let ssl_h: String = std::fs::read_to_string(format!("{httpd_inc}/http_ssl.h"))
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let missing: Vec<&str> = SSL_HOOKS
        .iter()
        .copied()
        .filter(|h| !ssl_h.contains(&format!("AP_DECLARE_HOOK(int,{h},")))
        .collect();
    if !missing.is_empty() {
        fail(&format!(
            "{httpd_inc}/http_ssl.h lacks the hook(s) {} (MMN {major}:{minor}).\n{WHY}",
            missing.join(", ")
        ));
    }
}

fn main() {
    const APXS_HINT: &str = "Install the httpd development files: apt-get install apache2-dev \
                             libapr1-dev libaprutil1-dev (or set APXS=/path/to/apxs).";
    let apxs = std::env::var("APXS").unwrap_or_else(|_| "apxs".to_string());
    let httpd_inc = tool_output(&apxs, &["-q", "INCLUDEDIR"], APXS_HINT);
    check_httpd_has_ssl_hooks(&httpd_inc);
    let apr_config = tool_output(&apxs, &["-q", "APR_CONFIG"], APXS_HINT);
    let apr_config = if apr_config.is_empty() {
        "apr-1-config".into()
    } else {
        apr_config
    };
    let apr_inc = tool_output(&apr_config, &["--includedir"], APXS_HINT);
    let apr_cppflags = tool_output(&apr_config, &["--cppflags"], APXS_HINT);
    let apu_config = tool_output(&apxs, &["-q", "APU_CONFIG"], APXS_HINT);
    let apu_inc = if apu_config.is_empty() {
        apr_inc.clone()
    } else {
        tool_output(&apu_config, &["--includedir"], APXS_HINT)
    };

    let mut clang_args = vec![
        format!("-I{httpd_inc}"),
        format!("-I{apr_inc}"),
        format!("-I{apu_inc}"),
        "-Iinclude".to_string(),
    ];
    clang_args.extend(apr_cppflags.split_whitespace().map(String::from));

    println!("cargo:rerun-if-changed=include/wrapper.h");
    println!("cargo:rerun-if-changed=include/md_rs.h");
    println!("cargo:rerun-if-changed=apxs-glue/mod_md.c");
    println!("cargo:rerun-if-env-changed=APXS");

    // bindgen panics when libclang cannot be loaded; turn that into an actionable message.
    let builder = bindgen::Builder::default()
        .header("include/wrapper.h")
        .clang_args(&clang_args)
        .allowlist_function("(ap|apr|apu|md_rs_glue)_.*")
        .allowlist_type(
            "(ap|apr)_.*|request_rec|server_rec|conn_rec|process_rec|module|module_struct|\
             command_rec|cmd_parms|cmd_how|cmd_func|ap_directive_t|server_addr_rec|.*_OFN_.*",
        )
        .allowlist_var(
            "(AP|APR|APLOG|HTTP|M|MODULE_MAGIC|RSRC|ACCESS|OR|EXEC|NOT|GLOBAL)_.*|OK|DECLINED|DONE|\
             md_rs_glue_.*|ap_server_conf|ap_server_root|ap_unixd_config|ap_listeners",
        )
        .default_macro_constant_type(bindgen::MacroTypeVariation::Signed)
        .derive_debug(false)
        .derive_default(false)
        .layout_tests(false)
        .generate_comments(false);
    let bindings = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        builder.generate()
    })) {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => fail(&format!("bindgen failed on include/wrapper.h: {e}")),
        Err(_) => fail(
            "bindgen could not run (libclang missing?). Install it: apt-get install libclang-dev \
             clang (or set LIBCLANG_PATH).",
        ),
    };
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .unwrap_or_else(|e| fail(&format!("cannot write bindings: {e}")));

    let mut cc = cc::Build::new();
    cc.file("apxs-glue/mod_md.c")
        .include(&httpd_inc)
        .include(&apr_inc)
        .include(&apu_inc);
    cc.include("include").warnings(true).extra_warnings(false);
    for flag in apr_cppflags.split_whitespace() {
        if let Some(def) = flag.strip_prefix("-D") {
            let (k, v) = def
                .split_once('=')
                .map_or((def, None), |(k, v)| (k, Some(v)));
            cc.define(k, v);
        }
    }
    cc.compile("md_glue");
}
