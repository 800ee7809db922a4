//! Running admin commands (MDMessageCmd, MDNotifyCmd, MDChallengeDns01) without a shell: the
//! configured line is split into words as httpd splits directive arguments, our arguments are
//! appended, and nothing is ever interpreted by a shell (SPEC 2.4).
//!
//! A command runs in its own process group and is waited for as a process, not as a pipe: a
//! script that leaves a background job behind (`apachectl graceful &`, `nohup ...`) still holds
//! our stderr pipe when it exits, and waiting for that pipe to close hung every renewal until
//! the job ended (the C module hangs the same way).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::values::split_words;

/// How long a command may run before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long to keep reading stderr after the command itself exited, for output still on its
/// way; then a background job that holds the pipe no longer delays the caller.
pub const STDERR_GRACE: Duration = Duration::from_secs(1);

/// At most this many bytes of stderr are kept (each line is logged by the caller); the rest is
/// read and dropped so a chatty command neither eats memory nor blocks on a full pipe.
pub const MAX_STDERR_BYTES: usize = 64 * 1024;

/// At most this many stderr lines are kept: each one becomes a line in the error log.
pub const MAX_STDERR_LINES: usize = 200;

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
///
/// Returns once the command has exited and its stderr is read, or [`STDERR_GRACE`] after it
/// exited when something it started still holds stderr. Processes it left behind after exiting
/// are not touched (an admin's `apachectl graceful &` must keep running); only a command that
/// runs past `timeout` is killed, together with everything in its process group.
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
        .stderr(Stdio::piped())
        // Its own group (pgid = its pid), so a timeout can end it with all it started.
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| {
        let err = ExecError::Spawn {
            program: program.clone(),
            message: e.to_string(),
        };
        (err, ExecOutput::default())
    })?;
    let stderr = StderrReader::start(&mut child);
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if start.elapsed() >= timeout => {
                kill_group(&child);
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
    let output = stderr.finish(STDERR_GRACE);
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

/// SIGKILL to the command's process group. Called only while the command is not reaped yet,
/// so its pid (the group id) cannot have been reused by an unrelated group. rustix is already
/// a dependency (file locks) and does this without `unsafe`; running `/bin/kill -- -<pgid>`
/// would add a process and a PATH assumption to the one path that must not fail.
fn kill_group(child: &Child) {
    if let Some(pgid) = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
    }
}

/// What was read from stderr so far, bounded.
#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    dropped: usize,
}

/// Reads a command's stderr on a thread, so a chatty command never blocks on a full pipe.
struct StderrReader {
    captured: Arc<Mutex<Captured>>,
    eof: mpsc::Receiver<()>,
}

impl StderrReader {
    fn start(child: &mut Child) -> Self {
        let captured = Arc::new(Mutex::new(Captured::default()));
        let (tx, eof) = mpsc::channel();
        if let Some(mut pipe) = child.stderr.take() {
            let sink = Arc::clone(&captured);
            // Detached when `finish` gives up on it: it then keeps draining until the last
            // holder of the pipe closes it. Closing our end instead would kill a background
            // job with SIGPIPE at its next message (exec resets SIGPIPE to the default), e.g.
            // `apachectl graceful &` printing a warning; a full pipe would block it.
            // Without a thread the output is lost (the pipe closes), the command is not.
            let _ = std::thread::Builder::new()
                .name("md-cmd-stderr".into())
                .spawn(move || {
                    let mut buf = [0u8; 8192];
                    loop {
                        match pipe.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                let mut c = sink.lock().unwrap_or_else(|p| p.into_inner());
                                let room = MAX_STDERR_BYTES.saturating_sub(c.bytes.len());
                                let keep = n.min(room);
                                c.bytes.extend_from_slice(&buf[..keep]);
                                c.dropped += n - keep;
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(_) => break,
                        }
                    }
                    let _ = tx.send(());
                });
        }
        StderrReader { captured, eof }
    }

    /// The output, once stderr is closed or `grace` has passed (the command has exited).
    fn finish(self, grace: Duration) -> ExecOutput {
        // A closed channel (no pipe, or no thread) means nothing more will come either.
        let _ = self.eof.recv_timeout(grace);
        let c = self.captured.lock().unwrap_or_else(|p| p.into_inner());
        let text = String::from_utf8_lossy(&c.bytes);
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        let mut more = c.dropped;
        if lines.len() > MAX_STDERR_LINES {
            more += lines[MAX_STDERR_LINES..]
                .iter()
                .map(|l| l.len() + 1)
                .sum::<usize>();
            lines.truncate(MAX_STDERR_LINES);
        }
        if more > 0 {
            lines.push(format!("(output truncated: {more} more bytes not shown)"));
        }
        ExecOutput {
            stderr_lines: lines,
        }
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

    /// A scratch dir for one test.
    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("md-exec-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The pid a script wrote to `file`, once it is there.
    fn read_pid(file: &std::path::Path) -> i32 {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(s) = std::fs::read_to_string(file) {
                if let Ok(pid) = s.trim().parse() {
                    return pid;
                }
            }
            assert!(Instant::now() < until, "no pid in {}", file.display());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn alive(pid: i32) -> bool {
        // A zombie still answers kill(pid, 0); /proc says whether it really runs.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z')),
            Err(_) => false,
        }
    }

    fn kill_pid(pid: i32) {
        let pid = rustix::process::Pid::from_raw(pid).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }

    #[test]
    fn background_job_does_not_hold_up_the_caller_and_survives() {
        let dir = scratch("bg");
        let pidfile = dir.join("pid");
        // The job inherits stderr (our pipe) and writes to it after the script exited: it
        // must neither delay us by its 120 s nor die of SIGPIPE when it writes later.
        let line = format!(
            "/bin/sh -c 'echo started >&2; (sleep 2; echo late >&2; exec sleep 120) & \
             echo $! > {}; exit 0'",
            pidfile.display()
        );
        let start = Instant::now();
        let out = run_command(&line, &[], &[], t()).unwrap();
        let took = start.elapsed();
        eprintln!("run_command with a background job took {took:?}");
        assert!(took < Duration::from_secs(5), "took {took:?}");
        assert_eq!(out.stderr_lines, vec!["started"]);
        let pid = read_pid(&pidfile);
        std::thread::sleep(Duration::from_secs(3));
        let survived = alive(pid);
        kill_pid(pid);
        std::fs::remove_dir_all(dir).unwrap();
        assert!(survived, "background job {pid} did not survive");
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let dir = scratch("group");
        let pidfile = dir.join("pid");
        let line = format!(
            "/bin/sh -c 'sleep 120 & echo $! > {}; sleep 120'",
            pidfile.display()
        );
        let start = Instant::now();
        let (e, _) = run_command(&line, &[], &[], Duration::from_millis(500)).unwrap_err();
        assert!(matches!(e, ExecError::Timeout { .. }), "{e:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
        let pid = read_pid(&pidfile);
        // The grandchild is reparented to init (or a subreaper) that reaps it shortly.
        let until = Instant::now() + Duration::from_secs(5);
        while alive(pid) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        let survived = alive(pid);
        kill_pid(pid);
        std::fs::remove_dir_all(dir).unwrap();
        assert!(!survived, "grandchild {pid} survived the timeout");
    }

    #[test]
    fn output_is_bounded() {
        // 10 MB on stderr: drained (no blocked writer), at most MAX_STDERR_BYTES kept.
        let line = "/bin/sh -c 'head -c 10000000 /dev/zero | tr \\0 x >&2; echo done >&2'";
        let out = run_command(line, &[], &[], t()).unwrap();
        let kept: usize = out.stderr_lines.iter().map(|l| l.len()).sum();
        assert!(kept <= MAX_STDERR_BYTES + 100, "kept {kept}");
        let last = out.stderr_lines.last().unwrap();
        assert!(last.contains("more bytes not shown"), "{last}");
        // Many short lines: at most MAX_STDERR_LINES plus the note.
        let out = run_command("/bin/sh -c 'seq 1 5000 >&2'", &[], &[], t()).unwrap();
        assert_eq!(out.stderr_lines.len(), MAX_STDERR_LINES + 1);
        assert_eq!(out.stderr_lines[0], "1");
        assert!(out.stderr_lines[MAX_STDERR_LINES].starts_with("(output truncated"));
    }
}
