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
#include <mpm_common.h>
#include <mod_status.h>

#include "md_rs.h"

APLOG_USE_MODULE(md);

/* Directives: tokenized ones go to md_rs_cmd_argv, sections and command lines (kept raw, as the
 * C module stores them) to md_rs_cmd_raw. Arity, placement and values are checked in Rust
 * (md-core's config::directives table, kept in sync with this list by a unit test). */
#define MD_ARGV(name, help) AP_INIT_TAKE_ARGV(name, md_rs_cmd_argv, NULL, RSRC_CONF, help)
#define MD_RAW(name, help) AP_INIT_RAW_ARGS(name, md_rs_cmd_raw, NULL, RSRC_CONF, help)

const command_rec md_rs_glue_cmds[] = {
    /* Help texts are the C module's: httpd quotes them in argument count errors. */
    MD_RAW("<MDomainSet", "Container for a managed domain with common settings and certificate."),
    MD_RAW("<MDomain", "Short form for <MDomainSet> container."),
    MD_RAW("<ManagedDomain", "Legacy name of <MDomainSet> (mod_md 0.x/1.x)."),
    MD_ARGV("MDomain", "A group of server names with one certificate"),
    MD_ARGV("ManagedDomain", "Legacy name of MDomain (mod_md 0.x/1.x)."),
    MD_ARGV("MDMember",
           "Define domain name(s) part of the Managed Domain. Use 'auto' or 'manual' to "
           "enable/disable auto adding names from virtual hosts."),
    MD_ARGV("MDMembers",
           "Define domain name(s) part of the Managed Domain. Use 'auto' or 'manual' to "
           "enable/disable auto adding names from virtual hosts."),
    MD_ARGV("MDCertificateAuthority", "URL(s) or known name(s) of CA issuing the certificates"),
    MD_ARGV("MDCertificateProtocol", "Protocol used to obtain/renew certificates"),
    MD_ARGV("MDCertificateAgreement",
           "either 'accepted' or the URL of CA Terms-of-Service agreement you accept"),
    MD_ARGV("MDContactEmail", "Email address used for account registration"),
    MD_ARGV("MDExternalAccountBinding",
           "Set the external account binding keyid and hmac values to use at CA"),
    MD_ARGV("MDCAChallenges", "A list of challenge types to be used."),
    MD_ARGV("MDProfile", "The name of an CA profile to order certificates for."),
    MD_ARGV("MDProfileMandatory", "Determines if a configured CA profile is mandatory."),
    MD_ARGV("MDRetryFailover",
           "The number of errors before a failover to another CA is triggered."),
    MD_ARGV("MDRenewMode", "Controls how renewal of Managed Domain certificates shall be handled."),
    MD_ARGV("MDDriveMode", "deprecated, older name for MDRenewMode"),
    MD_ARGV("MDRenewWindow",
           "Time length for renewal before certificate expires (defaults to days)."),
    MD_ARGV("MDWarnWindow",
           "When less time remains for a certificate, send our/log a warning (defaults to days)"),
    MD_ARGV("MDRenewViaARI", "Enable/Disable ACME ARI (RFC 9773) to trigger renewals."),
    MD_ARGV("MDCheckInterval", "Time between certificate checks."),
    MD_ARGV("MDInitialDelay", "How long to delay the first certificate check."),
    MD_ARGV("MDRetryDelay", "Time length for first retry, doubled on every consecutive error."),
    MD_ARGV("MDActivationDelay", "How long to delay activation of new certificates"),
    MD_ARGV("MDStoreLocks", "Configure locking of store for updates."),
    MD_ARGV("MDPrivateKeys", "set the type and parameters for private key generation"),
    MD_ARGV("MDMustStaple", "Enable/Disable the Must-Staple flag for new certificates."),
    MD_ARGV("MDCertificateFile", "set the static certificate (chain) file to use for this domain."),
    MD_ARGV("MDCertificateKeyFile", "set the static private key file to use for this domain."),
    MD_ARGV("MDPortMap",
           "Declare the mapped ports 80 and 443 on the local server. E.g. 80:8000 to indicate "
           "that the server port 8000 is reachable as port 80 from the internet. Use 80:- to "
           "indicate that port 80 is not reachable from the outside."),
    MD_RAW("MDChallengeDns01", "Set the command for setup/teardown of dns-01 challenges"),
    MD_ARGV("MDChallengeDns01Version", "Set the type of arguments to call `MDChallengeDns01` with"),
    MD_ARGV("MDHttpProxy", "URL of a HTTP(S) proxy to use for outgoing connections"),
    MD_ARGV("MDCACertificateFile", "Set the CA file to use for connections"),
    MD_ARGV("MDHttpProxyCACertificateFile",
           "Set the CA file to use for connections to the HTTP(S) proxy"),
    AP_INIT_TAKE_ARGV("MDRequireHttps", md_rs_cmd_argv, NULL, RSRC_CONF | OR_AUTHCFG,
                      "Redirect non-secure requests to the https: equivalent."),
    MD_RAW("MDNotifyCmd", "Set the command to run when signup/renew of domain is complete."),
    MD_RAW("MDMessageCmd", "Set the command run when a message about a domain is issued."),
    MD_ARGV("MDServerStatus", "On to see Managed Domains in server-status."),
    MD_ARGV("MDCertificateStatus", "On to see Managed Domain expose /.httpd/certificate-status."),
    MD_ARGV("MDCertificateCheck", "Set name and URL pattern for a certificate monitoring site."),
    MD_ARGV("MDStapling", "Enable/Disable OCSP Stapling for this/all Managed Domain(s)."),
    MD_ARGV("MDStapleOthers",
           "Enable/Disable OCSP Stapling for certificates not in Managed Domains."),
    MD_ARGV("MDStaplingKeepResponse", "The amount of time to keep an OCSP response in the store."),
    MD_ARGV("MDStaplingRenewWindow",
           "Time length for renewal before OCSP responses expire (defaults to days)."),
    MD_ARGV("MDStoreDir", "the directory for file system storage of managed domain data."),
    MD_ARGV("MDMatchNames", "Determines how DNS names are matched to vhosts."),
    MD_ARGV("MDBaseServer", "Allow managing of base server outside virtual hosts."),
    MD_ARGV("MDPreferredChain",
            "issuer name of the preferred chain among the CA's alternates (mod_md-rs)"),
    MD_ARGV("MDActivationRestart",
            "on|off: the parent activates finished renewals with a graceful restart"),
    MD_ARGV("MDClusterDatabase",
            "file with the PostgreSQL connection string of the cluster (mod_md-rs)"),
    MD_ARGV("MDClusterKeyFile",
            "file with the key that encrypts private keys in the cluster (mod_md-rs)"),
    MD_ARGV("MDClusterNode", "this node's name in the cluster (mod_md-rs)"),
    MD_ARGV("MDClusterLease", "how long a node may renew an MD without renewing its lease"),
    MD_ARGV("MDClusterPoll", "how often a node looks for certificates others obtained"),
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

    /* OCSP stapling: mod_ssl asks us first (for every certificate with an issuer). */
    ap_hook_ssl_ocsp_prime_hook(md_rs_ocsp_prime, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_ssl_ocsp_get_resp_hook(md_rs_ocsp_get_resp, NULL, NULL, APR_HOOK_MIDDLE);

    /* http-01 answers run before authentication (so they work behind access restrictions);
     * the HTTPS redirect runs after mod_ssl has marked the request as secure or not. */
    ap_hook_post_read_request(md_rs_http_challenge, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_read_request(md_rs_require_https, after_ssl, NULL, APR_HOOK_LAST);

    /* tls-alpn-01: the acme-tls/1 protocol and the challenge certificate. */
    ap_hook_protocol_propose(md_rs_protocol_propose, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_protocol_switch(md_rs_protocol_switch, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_protocol_get(md_rs_protocol_get, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_ssl_answer_challenge(md_rs_answer_challenge, NULL, NULL, APR_HOOK_MIDDLE);

    /* A child lets its renewal work finish before it exits (OpenSSL is torn down at exit). */
    ap_hook_child_init(md_rs_child_init, NULL, NULL, APR_HOOK_MIDDLE);

    /* MDActivationRestart: the MPM parent's maintenance loop (root, single-threaded). */
    ap_hook_monitor(md_rs_monitor, NULL, NULL, APR_HOOK_MIDDLE);

    /* Monitoring. certificate-status runs before mod_ssl's post_read_request, which answers
     * 503 on connections that got a fallback certificate. mod_status is reached through its
     * optional hook only (APR_OPTIONAL_HOOK adds by name: no symbol of mod_status is
     * referenced, so LoadModule works without it and the hook is simply never called). */
    ap_hook_handler(md_rs_status_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_read_request(md_rs_certificate_status, NULL, before_ssl, APR_HOOK_MIDDLE);
    APR_OPTIONAL_HOOK(ap, status_hook, md_rs_status_hook, NULL, NULL, APR_HOOK_MIDDLE);

    (void)p;
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
