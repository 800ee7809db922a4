//! The APR status codes the C module records in job.json `last` (`status` and
//! `status-description`, SPEC 3.4): md-status pages and monitoring read them, so a failure
//! shows the same number and text as with the C module.

/// An APR status: errno values below 20000, APR's own codes above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AprStatus(pub i32);

impl AprStatus {
    /// ENOENT.
    pub const ENOENT: AprStatus = AprStatus(2);
    /// EAGAIN.
    pub const EAGAIN: AprStatus = AprStatus(11);
    /// EACCES.
    pub const EACCES: AprStatus = AprStatus(13);
    /// EINVAL.
    pub const EINVAL: AprStatus = AprStatus(22);
    /// ECONNABORTED (the C module's status for a failed TLS handshake, curl error 35).
    pub const ECONNABORTED: AprStatus = AprStatus(103);
    /// ECONNREFUSED (the C module's status for any failure to reach the host: refused,
    /// unreachable, unknown name; curl errors 5, 6, 7).
    pub const ECONNREFUSED: AprStatus = AprStatus(111);
    /// APR_EGENERAL: everything without a more specific code (for example an untrusted
    /// server certificate, curl error 60).
    pub const EGENERAL: AprStatus = AprStatus(20014);
    /// APR_TIMEUP.
    pub const TIMEUP: AprStatus = AprStatus(70007);
    /// APR_BADARG.
    pub const BADARG: AprStatus = AprStatus(70013);

    /// The status of a failed file operation: its errno, as the C module records it (e.g. 28
    /// "No space left on device"); APR_EGENERAL when there is none.
    pub fn of_io(e: &std::io::Error) -> AprStatus {
        e.raw_os_error().map_or(AprStatus::EGENERAL, AprStatus)
    }

    /// The number recorded as `status`.
    pub fn code(self) -> i32 {
        self.0
    }

    /// `apr_strerror()`'s text for the code, recorded as `status-description` (texts taken
    /// from libapr-1 on Linux).
    pub fn description(self) -> &'static str {
        match self.0 {
            1 => "Operation not permitted",
            2 => "No such file or directory",
            5 => "Input/output error",
            11 => "Resource temporarily unavailable",
            13 => "Permission denied",
            22 => "Invalid argument",
            28 => "No space left on device",
            30 => "Read-only file system",
            103 => "Software caused connection abort",
            111 => "Connection refused",
            122 => "Disk quota exceeded",
            70007 => "The timeout specified has expired",
            70013 => "Missing parameter for the specified command line option",
            _ => "Internal error (specific information not available)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_apr_strerror() {
        assert_eq!(AprStatus::ECONNREFUSED.description(), "Connection refused");
        assert_eq!(
            AprStatus::EGENERAL.description(),
            "Internal error (specific information not available)"
        );
        assert_eq!(
            AprStatus::TIMEUP.description(),
            "The timeout specified has expired"
        );
        assert_eq!(AprStatus::EINVAL.code(), 22);
    }
}
