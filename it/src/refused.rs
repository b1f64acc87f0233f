//! A `herald` start-up that is expected to be refused: the process must stop by itself, and
//! the test reads why.

use crate::process::{SECRET, WAIT, herald_bin};
use crate::wait::exit_within;
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

/// How a `herald` process that stopped by itself ended.
#[derive(Debug)]
pub struct Stopped {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote to stdout (its log).
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

/// Runs `herald` as [`crate::Herald::start`] does (free ports, `data_dir`, the test secret,
/// then `extra`) and waits for it to exit by itself, as a refused start-up does.
///
/// # Panics
/// When it has not exited within [`WAIT`] (it is killed first), or cannot be started.
pub fn start_refused(data_dir: &Path, extra: &[&str]) -> Stopped {
    let dir = data_dir.display().to_string();
    let mut args = vec![
        "--api-listen",
        "127.0.0.1:0",
        "--connector-listen",
        "127.0.0.1:0",
        "--data-dir",
        &dir,
        "--secret",
        SECRET,
    ];
    args.extend_from_slice(extra);
    let mut child = Command::new(herald_bin())
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn herald");
    // Read both streams while waiting, so that a full pipe cannot stall the process.
    let readers = [
        Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("piped")),
    ]
    .map(|mut stream| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            text
        })
    });
    let Some(status) = exit_within(&mut child, WAIT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("herald did not stop by itself within {WAIT:?}");
    };
    let [stdout, stderr] = readers.map(|r| r.join().expect("reader thread"));
    Stopped {
        status,
        stdout,
        stderr,
    }
}
