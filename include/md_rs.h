/* The contract between the C glue (apxs-glue/mod_md.c) and the Rust FFI layer (src/).
 * Functions named md_rs_* without "glue" are implemented in Rust and called by the glue;
 * md_rs_glue_* are implemented in C and called by Rust. */
#ifndef MD_RS_H
#define MD_RS_H

#include <httpd.h>
#include <http_config.h>
#include <mod_watchdog.h>
#include <http_ssl.h>

/* The module record, defined in Rust (src/module.rs). */
extern module AP_MODULE_DECLARE_DATA md_module;

/* The directive table and hook registration, declared in the glue. */
extern const command_rec md_rs_glue_cmds[];
void md_rs_glue_register_hooks(apr_pool_t *p);

/* --- Rust: configuration --- */
void *md_rs_create_server_config(apr_pool_t *p, server_rec *s);
void *md_rs_merge_server_config(apr_pool_t *p, void *base, void *add);
/* Every directive except the raw-argument ones: tokenized by httpd. */
const char *md_rs_cmd_argv(cmd_parms *cmd, void *dc, int argc, char *const argv[]);
/* Sections and command lines: the raw rest of the line. */
const char *md_rs_cmd_raw(cmd_parms *cmd, void *dc, const char *args);

/* --- Rust: hooks --- */
int md_rs_post_config_before_ssl(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                                 server_rec *s);
int md_rs_post_config_after_ssl(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                                server_rec *s);
int md_rs_http_challenge(request_rec *r);
int md_rs_require_https(request_rec *r);
int md_rs_protocol_propose(conn_rec *c, request_rec *r, server_rec *s,
                           const apr_array_header_t *offers, apr_array_header_t *proposals);
int md_rs_protocol_switch(conn_rec *c, request_rec *r, server_rec *s, const char *protocol);
const char *md_rs_protocol_get(const conn_rec *c);
int md_rs_answer_challenge(conn_rec *c, const char *server_name, const char **pcert_pem,
                           const char **pkey_pem);
int md_rs_monitor(apr_pool_t *p, server_rec *s);
void md_rs_child_init(apr_pool_t *pchild, server_rec *s);
int md_rs_status_handler(request_rec *r);
int md_rs_certificate_status(request_rec *r);
int md_rs_status_hook(request_rec *r, int flags);
int md_rs_ocsp_prime(server_rec *s, apr_pool_t *p, const char *id, apr_size_t id_len,
                     const char *pem);
int md_rs_ocsp_get_resp(server_rec *s, conn_rec *c, const char *id, apr_size_t id_len,
                        ap_ssl_ocsp_copy_resp *cb, void *userdata);
int md_rs_add_cert_files(server_rec *s, apr_pool_t *p, apr_array_header_t *cert_files,
                         apr_array_header_t *key_files);

/* --- C glue, called from Rust --- */
/* Log one pre-formatted line through ap_log_error with md_module's index. */
void md_rs_glue_log(const char *file, int line, int level, apr_status_t status,
                    const server_rec *s, const char *msg);
/* Non-zero when a line of this level for this server would be logged for module md. */
int md_rs_glue_log_is_level(const server_rec *s, int level);
/* Start a singleton child watchdog `name` calling `cb(state, data, pool)` after `interval`. */
apr_status_t md_rs_glue_watchdog_start(apr_pool_t *p, const char *name,
                                       apr_interval_time_t interval, void *data,
                                       ap_watchdog_callback_fn_t *cb, ap_watchdog_t **pwd);
/* Reschedule the watchdog callback. */
apr_status_t md_rs_glue_watchdog_set_interval(ap_watchdog_t *wd, apr_interval_time_t interval,
                                              void *data, ap_watchdog_callback_fn_t *cb);

int md_rs_add_fallback_cert_files(server_rec *s, apr_pool_t *p, apr_array_header_t *cert_files,
                                  apr_array_header_t *key_files);

#endif
