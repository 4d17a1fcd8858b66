//! Running a program with a time limit. A C compiler given a huge source can run for hours, and a
//! broken one forever; the process that waits for it would hang with it. The program runs in a
//! process group of its own, so that when its time is up it is killed together with everything
//! it started (the compiler driver's `cc1`, `as`, `ld`), and its output goes to anonymous files
//! rather than pipes, so that nothing it leaves behind can keep the caller waiting.

use super::memfd;
use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// How a bounded run ended.
#[derive(Debug)]
pub(crate) enum Finished {
    /// The program exited (successfully or not) within its time.
    Exited(Output),
    /// The time ran out: the program and its process group were killed.
    TimedOut,
}

/// Runs `cmd` to its end, or for at most `limit` (`None`: no limit); stdin is empty.
pub(crate) fn output_within(mut cmd: Command, limit: Option<Duration>) -> io::Result<Finished> {
    let mut stdout = memfd::create("spikeforge-stdout")?;
    let mut stderr = memfd::create("spikeforge-stderr")?;
    cmd.stdin(Stdio::null())
        .stdout(stdout.try_clone()?)
        .stderr(stderr.try_clone()?)
        .process_group(0);
    let mut child = cmd.spawn()?;
    // The parent's copies of the output files go with `cmd`.
    drop(cmd);
    let Some(status) = wait_until(&mut child, limit.map(|l| Instant::now() + l))? else {
        return Ok(Finished::TimedOut);
    };
    let read_all = |f: &mut File| -> io::Result<Vec<u8>> {
        f.rewind()?;
        let mut v = Vec::new();
        f.read_to_end(&mut v)?;
        Ok(v)
    };
    Ok(Finished::Exited(Output {
        status,
        stdout: read_all(&mut stdout)?,
        stderr: read_all(&mut stderr)?,
    }))
}

/// The child's exit status, or `None` (after killing its process group) if `deadline` passed.
fn wait_until(child: &mut Child, deadline: Option<Instant>) -> io::Result<Option<ExitStatus>> {
    // Polling, short at first (most compiles take tens of milliseconds), then every 20 ms: no
    // signal handler to install in a process that is not ours (Python's, XLA's).
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let mut nap = pause;
        if let Some(deadline) = deadline {
            let now = Instant::now();
            if now >= deadline {
                kill_group(child);
                return Ok(None);
            }
            nap = nap.min(deadline - now);
        }
        std::thread::sleep(nap);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Kills the child's process group (it leads one: `process_group(0)`) and reaps the child.
fn kill_group(child: &mut Child) {
    if let Ok(pgid) = i32::try_from(child.id()) {
        // SAFETY: a plain signal to the group the child leads (never 0 or -1: the child's pid is
        // positive and not ours).
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Asserts that every process whose pid is listed in the file `pids` stops within a few seconds
/// (a killed process takes a moment to die): gone, or a zombie waiting to be reaped.
#[cfg(test)]
pub(crate) fn assert_stopped(pids: &std::path::Path) {
    let text = std::fs::read_to_string(pids).unwrap();
    for pid in text.split_whitespace() {
        let t = Instant::now();
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next();
            if matches!(state, None | Some("Z") | Some("X")) {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "process {pid} still runs: {stat}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_and_status_come_back() {
        let mut c = Command::new("sh");
        c.args(["-c", "echo out; echo err >&2; exit 3"]);
        let Finished::Exited(out) = output_within(c, Some(Duration::from_secs(30))).unwrap() else {
            panic!("timed out");
        };
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn a_program_past_its_time_is_killed_with_its_children() {
        let dir = crate::runtime::cache::test_dir("deadline");
        let pids = dir.join("pids");
        // A shell that starts a child which would outlive it, and itself never ends.
        let mut c = Command::new("sh");
        c.arg("-c").arg(format!(
            "sleep 1000 & echo $! > {p}; echo $$ >> {p}; sleep 1000",
            p = pids.display()
        ));
        let t = Instant::now();
        let r = output_within(c, Some(Duration::from_secs(1))).unwrap();
        assert!(matches!(r, Finished::TimedOut), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        assert_stopped(&pids);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn no_limit_waits() {
        let mut c = Command::new("sh");
        c.args(["-c", "sleep 0.2; echo done"]);
        let Finished::Exited(out) = output_within(c, None).unwrap() else {
            panic!("timed out without a limit");
        };
        assert_eq!(out.stdout, b"done\n");
    }
}
