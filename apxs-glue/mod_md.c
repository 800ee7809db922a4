/* mod_md-rs: the declarative C part of the module.
 *
 * This file only declares: the directive table and the hook registrations (with the ordering
 * constraints against mod_ssl and mod_watchdog), plus a log trampoline for the variadic
 * ap_log_error. Every decision is made in Rust (src/), behind the md_rs_* functions declared in
 * include/md_rs.h.
 *
 * The module record `md_module` itself is defined in Rust (src/module.rs): rustc exports only
 * Rust-defined symbols from a cdylib (its version script hides everything else), so a record
 * declared here with AP_DECLARE_MODULE would not be visible to LoadModule. */
#include <httpd.h>
#include <http_config.h>
#include <http_log.h>
#include <http_protocol.h>
#include <http_ssl.h>
#include <mod_watchdog.h>

#include "md_rs.h"

APLOG_USE_MODULE(md);

/* Directives: tokenized ones go to md_rs_cmd_argv, sections and command lines (kept raw, as the
 * C module stores them) to md_rs_cmd_raw. Arity, placement and values are checked in Rust
 * (md-core's config::directives table, kept in sync with this list by a unit test). */
#define MD_ARGV(name, help) AP_INIT_TAKE_ARGV(name, md_rs_cmd_argv, NULL, RSRC_CONF, help)
#define MD_RAW(name, help) AP_INIT_RAW_ARGS(name, md_rs_cmd_raw, NULL, RSRC_CONF, help)

const command_rec md_rs_glue_cmds[] = {
    MD_RAW("<MDomainSet", "Container for a managed domain with its own settings"),
    MD_RAW("<MDomain", "Short form of <MDomainSet>"),
    MD_RAW("<ManagedDomain", "Legacy name of <MDomainSet>"),
    MD_ARGV("MDomain", "A group of server names with one certificate, optionally ending in auto|manual"),
    MD_ARGV("ManagedDomain", "Legacy name of MDomain"),
    MD_ARGV("MDMember", "Additional domain names of the enclosing MDomain, or auto|manual"),
    MD_ARGV("MDMembers", "auto|manual: add ServerName/ServerAlias of matching vhosts to the MD"),
    MD_ARGV("MDCertificateAuthority", "ACME directory URL(s) or known CA names"),
    MD_ARGV("MDCertificateProtocol", "Protocol used to obtain/renew certificates (ACME)"),
    MD_ARGV("MDCertificateAgreement", "'accepted' or the URL of the CA's terms of service"),
    MD_ARGV("MDContactEmail", "Contact email for the ACME account"),
    MD_ARGV("MDExternalAccountBinding", "'key-id hmac-b64url', a JSON file or 'none'"),
    MD_ARGV("MDCAChallenges", "ACME challenge types to use, in order of preference"),
    MD_ARGV("MDProfile", "ACME certificate profile to order"),
    MD_ARGV("MDProfileMandatory", "on|off: fail when the CA does not offer the profile"),
    MD_ARGV("MDRetryFailover", "Errored renewals before switching to the next CA"),
    MD_ARGV("MDRenewMode", "auto|always|manual: how certificates are renewed"),
    MD_ARGV("MDDriveMode", "Legacy name of MDRenewMode"),
    MD_ARGV("MDRenewWindow", "Time (or percent of lifetime) before expiry to renew"),
    MD_ARGV("MDWarnWindow", "Time (or percent of lifetime) before expiry to warn"),
    MD_ARGV("MDRenewViaARI", "on|off: use ACME Renewal Information"),
    MD_ARGV("MDCheckInterval", "Interval between renewal checks"),
    MD_ARGV("MDInitialDelay", "Delay before the first renewal check"),
    MD_ARGV("MDRetryDelay", "Delay before the first retry after an error, doubled per error"),
    MD_ARGV("MDActivationDelay", "Delay before a renewed certificate is announced as ready"),
    MD_ARGV("MDStoreLocks", "on|off|duration: lock the store during startup sync"),
    MD_ARGV("MDPrivateKeys", "Key types of the certificates (one certificate per key)"),
    MD_ARGV("MDMustStaple", "on|off: request the OCSP must-staple extension"),
    MD_ARGV("MDCertificateFile", "Static certificate chain file of the MD"),
    MD_ARGV("MDCertificateKeyFile", "Static private key file of the MD"),
    MD_ARGV("MDPortMap", "Map public ports 80/443 (http/https) to local ports"),
    MD_RAW("MDChallengeDns01", "Command to set up and tear down dns-01 challenges"),
    MD_ARGV("MDChallengeDns01Version", "1|2: arguments passed to the dns-01 teardown"),
    MD_ARGV("MDHttpProxy", "Proxy URL for outgoing requests"),
    MD_ARGV("MDCACertificateFile", "Trust anchors (PEM) for TLS to the ACME CA"),
    MD_ARGV("MDHttpProxyCACertificateFile", "Trust anchors (PEM) for TLS to the proxy"),
    AP_INIT_TAKE_ARGV("MDRequireHttps", md_rs_cmd_argv, NULL, RSRC_CONF | OR_AUTHCFG,
                      "off|temporary|permanent: redirect http to https for MD names"),
    MD_RAW("MDNotifyCmd", "Command run when a certificate has been renewed"),
    MD_RAW("MDMessageCmd", "Command run on mod_md events"),
    MD_ARGV("MDServerStatus", "on|off: add Managed Certificates to server-status"),
    MD_ARGV("MDCertificateStatus", "on|off: serve /.httpd/certificate-status"),
    MD_ARGV("MDCertificateCheck", "Name and URL prefix of a certificate monitor"),
    MD_ARGV("MDStapling", "on|off: OCSP stapling by mod_md"),
    MD_ARGV("MDStapleOthers", "on|off: also staple certificates not managed by mod_md"),
    MD_ARGV("MDStaplingKeepResponse", "How long to keep OCSP responses on disk"),
    MD_ARGV("MDStaplingRenewWindow", "Time (or percent) before an OCSP response expires to renew"),
    MD_ARGV("MDStoreDir", "Directory of the certificate store"),
    MD_ARGV("MDMatchNames", "all|servernames: how MDs are matched to virtual hosts"),
    MD_ARGV("MDBaseServer", "on|off: manage the base server outside virtual hosts too"),
    {NULL}};

void md_rs_glue_register_hooks(apr_pool_t *p)
{
    /* post_config #1 runs before mod_ssl takes the certificates, #2 after it (and before
     * mod_watchdog starts the watchdogs registered there). */
    static const char *const before_ssl[] = {"mod_ssl.c", "mod_tls.c", NULL};
    static const char *const after_ssl[] = {"mod_ssl.c", "mod_tls.c", NULL};
    static const char *const before_wd[] = {"mod_watchdog.c", NULL};

    ap_hook_post_config(md_rs_post_config_before_ssl, NULL, before_ssl, APR_HOOK_FIRST);
    ap_hook_post_config(md_rs_post_config_after_ssl, after_ssl, before_wd, APR_HOOK_LAST);
    ap_hook_ssl_add_cert_files(md_rs_add_cert_files, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_ssl_add_fallback_cert_files(md_rs_add_fallback_cert_files, NULL, NULL,
                                        APR_HOOK_MIDDLE);

    /* http-01 answers run before authentication (so they work behind access restrictions);
     * the HTTPS redirect runs after mod_ssl has marked the request as secure or not. */
    ap_hook_post_read_request(md_rs_http_challenge, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_read_request(md_rs_require_https, after_ssl, NULL, APR_HOOK_LAST);

    /* tls-alpn-01: the acme-tls/1 protocol and the challenge certificate. */
    ap_hook_protocol_propose(md_rs_protocol_propose, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_protocol_switch(md_rs_protocol_switch, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_protocol_get(md_rs_protocol_get, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_ssl_answer_challenge(md_rs_answer_challenge, NULL, NULL, APR_HOOK_MIDDLE);

    md_rs_register_hooks(p);
}


void md_rs_glue_log(const char *file, int line, int level, apr_status_t status,
                    const server_rec *s, const char *msg)
{
    ap_log_error(file, line, APLOG_MODULE_INDEX, level, status, s, "%s", msg);
}

int md_rs_glue_log_is_level(const server_rec *s, int level)
{
    return APLOG_IS_LEVEL(s, level);
}

/* mod_watchdog is reached through its optional functions only: a hard reference would make
 * LoadModule fail where mod_watchdog is a DSO that is not loaded. */
apr_status_t md_rs_glue_watchdog_start(apr_pool_t *p, const char *name,
                                       apr_interval_time_t interval, void *data,
                                       ap_watchdog_callback_fn_t *cb, ap_watchdog_t **pwd)
{
    APR_OPTIONAL_FN_TYPE(ap_watchdog_get_instance) *get_instance =
        APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_get_instance);
    APR_OPTIONAL_FN_TYPE(ap_watchdog_register_callback) *register_cb =
        APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_register_callback);
    apr_status_t rv;

    if (!get_instance || !register_cb) {
        return APR_ENOTIMPL;
    }
    /* parent = 0, singleton = 1: one thread in one child process. */
    rv = get_instance(pwd, name, 0, 1, p);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    return register_cb(*pwd, interval, data, cb);
}

apr_status_t md_rs_glue_watchdog_set_interval(ap_watchdog_t *wd, apr_interval_time_t interval,
                                              void *data, ap_watchdog_callback_fn_t *cb)
{
    APR_OPTIONAL_FN_TYPE(ap_watchdog_set_callback_interval) *set_interval =
        APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_set_callback_interval);
    return set_interval ? set_interval(wd, interval, data, cb) : APR_ENOTIMPL;
}
