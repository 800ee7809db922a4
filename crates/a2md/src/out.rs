//! Output and failures: text lines on stdout, or with `-j` one JSON document
//! `{"status": n, "output": [...], "description"?: "..."}` as the C tool prints it.

use md_core::apr::AprStatus;
use serde_json::{json, Value};

/// A failed command: an APR status (the JSON `status`), a one-line message and the exit code.
#[derive(Debug)]
pub struct Fail {
    /// APR status code (errno values, 20014 for a general error).
    pub status: AprStatus,
    /// One line for the admin.
    pub msg: String,
    /// 1 for a failure, 2 for a usage error.
    pub exit: i32,
}

impl Fail {
    /// A failure with exit code 1.
    pub fn new(status: AprStatus, msg: impl Into<String>) -> Fail {
        Fail {
            status,
            msg: msg.into(),
            exit: 1,
        }
    }
    /// Bad input (EINVAL), exit 1.
    pub fn invalid(msg: impl Into<String>) -> Fail {
        Fail::new(AprStatus::EINVAL, msg)
    }
    /// A usage error (exit 2).
    pub fn usage(msg: impl Into<String>) -> Fail {
        Fail {
            status: AprStatus::EINVAL,
            msg: msg.into(),
            exit: 2,
        }
    }
    /// Something that is not there (ENOENT).
    pub fn not_found(msg: impl Into<String>) -> Fail {
        Fail::new(AprStatus::ENOENT, msg)
    }
    /// Anything else.
    pub fn general(msg: impl Into<String>) -> Fail {
        Fail::new(AprStatus::EGENERAL, msg)
    }
}

impl From<md_core::store::StoreError> for Fail {
    fn from(e: md_core::store::StoreError) -> Fail {
        let status = match &e {
            md_core::store::StoreError::Io { source, .. } => AprStatus::of_io(source),
            _ => AprStatus::EGENERAL,
        };
        Fail::new(status, e.to_string())
    }
}

/// Result of a command.
pub type CmdResult = Result<(), Fail>;

/// Collects what a command reports.
#[derive(Debug, Default)]
pub struct Out {
    /// JSON mode.
    pub json: bool,
    items: Vec<Value>,
}

impl Out {
    /// Output in text or JSON.
    pub fn new(json: bool) -> Out {
        Out {
            json,
            items: Vec::new(),
        }
    }

    /// One result: `text` on stdout (text mode) or `item` in `output` (JSON mode).
    pub fn emit(&mut self, text: &str, item: Value) {
        if self.json {
            self.items.push(item);
        } else {
            println!("{text}");
        }
    }

    /// The JSON document for the command's result (JSON mode).
    pub fn document(&mut self, res: &CmdResult) -> Value {
        let mut doc = json!({
            "status": match res { Ok(()) => 0, Err(f) => f.status.code() },
            "output": std::mem::take(&mut self.items),
        });
        if let Err(f) = res {
            doc["description"] = json!(f.status.description());
            doc["message"] = json!(f.msg);
        }
        doc
    }
}
