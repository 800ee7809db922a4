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

fn main() {
    const APXS_HINT: &str = "Install the httpd development files: apt-get install apache2-dev \
                             libapr1-dev libaprutil1-dev (or set APXS=/path/to/apxs).";
    let apxs = std::env::var("APXS").unwrap_or_else(|_| "apxs".to_string());
    let httpd_inc = tool_output(&apxs, &["-q", "INCLUDEDIR"], APXS_HINT);
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

    // MMN gates (AP_MODULE_MAGIC_AT_LEAST): the core ssl hooks exist since 20120211:105.
    let mmn = std::fs::read_to_string(format!("{httpd_inc}/ap_mmn.h")).unwrap_or_default();
    let minor = mmn
        .lines()
        .find_map(|l| l.strip_prefix("#define MODULE_MAGIC_NUMBER_MINOR"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0);
    if minor < 105 {
        fail("httpd is too old: mod_md needs httpd >= 2.4.48 (MMN minor >= 105)");
    }

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
