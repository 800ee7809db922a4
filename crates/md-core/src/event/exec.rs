//! Running admin commands (MDMessageCmd, MDNotifyCmd, MDChallengeDns01) without a shell: the
//! configured line is split into words as httpd splits directive arguments, our arguments are
//! appended, and nothing is ever interpreted by a shell (SPEC 2.4).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::values::split_words;

/// How long a command may run before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Outcome of a command that could not be counted as success.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExecError {
    /// The configured line has no program.
    #[error("empty command line")]
    Empty,
    /// The program could not be started.
    #[error("cannot run '{program}': {message}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        message: String,
    },
    /// It exited with a non-zero status.
    #[error("'{program}' exited with status {code}")]
    Failed {
        /// The program.
        program: String,
        /// Its exit code.
        code: i32,
    },
    /// It was ended by a signal (or exited > 127): the C module calls this "incomplete".
    #[error("'{program}' did not complete (killed or crashed)")]
    Incomplete {
        /// The program.
        program: String,
    },
    /// It ran longer than allowed and was killed.
    #[error("'{program}' timed out after {secs} s")]
    Timeout {
        /// The program.
        program: String,
        /// The limit.
        secs: u64,
    },
}

/// A finished command: what it wrote to stderr (each line is logged by the caller).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// stderr, split into lines.
    pub stderr_lines: Vec<String>,
}

/// Run `line` with `args` appended and the extra environment `env`; stdout is discarded.
pub fn run_command(
    line: &str,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<ExecOutput, (ExecError, ExecOutput)> {
    let words = split_words(line);
    let Some((program, fixed)) = words.split_first() else {
        return Err((ExecError::Empty, ExecOutput::default()));
    };
    let mut cmd = Command::new(program);
    cmd.args(fixed)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        let err = ExecError::Spawn {
            program: program.clone(),
            message: e.to_string(),
        };
        (err, ExecOutput::default())
    })?;
    // Read stderr on a thread so a chatty command cannot block on a full pipe.
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut s) = stderr {
            use std::io::Read;
            let _ = s.read_to_string(&mut text);
        }
        text
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(ExecError::Timeout {
                    program: program.clone(),
                    secs: timeout.as_secs(),
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                break Err(ExecError::Spawn {
                    program: program.clone(),
                    message: e.to_string(),
                })
            }
        }
    };
    let output = ExecOutput {
        stderr_lines: reader
            .join()
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect(),
    };
    let status = status.map_err(|e| (e, output.clone()))?;
    match status.code() {
        Some(0) => Ok(output),
        Some(code) if code <= 127 => Err((
            ExecError::Failed {
                program: program.clone(),
                code,
            },
            output,
        )),
        _ => Err((
            ExecError::Incomplete {
                program: program.clone(),
            },
            output,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Duration {
        Duration::from_secs(10)
    }

    #[test]
    fn arguments_are_never_shell_interpreted() {
        let dir = std::env::temp_dir().join(format!("md-exec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("args");
        let script = dir.join("rec.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\nfor a in \"$@\"; do echo \"[$a]\"; done > \"$OUT\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let line = format!("{} 'fixed arg' x", script.display());
        let hostile = "$(touch /tmp/md-pwned); `id` | rm -rf /";
        run_command(
            &line,
            &["renewed", hostile],
            &[("OUT", out.to_str().unwrap())],
            t(),
        )
        .unwrap();
        let got = std::fs::read_to_string(&out).unwrap();
        assert_eq!(got, format!("[fixed arg]\n[x]\n[renewed]\n[{hostile}]\n"));
        assert!(!std::path::Path::new("/tmp/md-pwned").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn exit_codes_and_stderr() {
        let (e, out) =
            run_command("/bin/sh -c 'echo oops >&2; exit 3'", &[], &[], t()).unwrap_err();
        assert_eq!(
            e,
            ExecError::Failed {
                program: "/bin/sh".into(),
                code: 3
            }
        );
        assert_eq!(out.stderr_lines, vec!["oops"]);
        let (e, _) = run_command("/bin/sh -c 'kill -9 $$'", &[], &[], t()).unwrap_err();
        assert!(matches!(e, ExecError::Incomplete { .. }), "{e:?}");
        let (e, _) = run_command("/nonexistent/cmd", &[], &[], t()).unwrap_err();
        assert!(matches!(e, ExecError::Spawn { .. }));
        assert_eq!(
            run_command("  ", &[], &[], t()).unwrap_err().0,
            ExecError::Empty
        );
        assert!(run_command("/bin/true", &["a"], &[], t()).is_ok());
    }

    #[test]
    fn timeout_kills() {
        let (e, _) = run_command("/bin/sleep 5", &[], &[], Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, ExecError::Timeout { .. }));
    }
}
