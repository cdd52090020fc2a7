//! Files of a collection that became empty, binary, not regular or were deleted leave it when named
//! again (directly or through their folder), with the reason; files new to it keep their clear errors.

mod common;

use std::path::Path;

use common::{fixture_copy, HashEmbedder};
use rightmodel_docs::{Collection, DocsError};

fn files(c: &Collection) -> Vec<String> {
    c.files().iter().map(|f| f.path.clone()).collect()
}

/// Whether any passage still quotes `text`.
fn quotes(c: &Collection, text: &str) -> bool {
    c.passage_texts().any(|p| p.contains(text))
}

#[test]
fn a_named_file_emptied_or_deleted_loses_its_passages() {
    let tmp = fixture_copy();
    let e = HashEmbedder::default();
    let mut c = Collection::create(&tmp.path().join("coll")).unwrap();
    let gym = tmp.path().join("docs/gym.txt");
    std::fs::write(&gym, "The gym opens at seven.\n").unwrap();
    let museum = tmp.path().join("docs/museum.txt");
    c.add_paths(&e, &[&gym, &museum]).unwrap();
    assert!(quotes(&c, "gym opens"));

    // Emptied: named again, its passages go and the report says why.
    std::fs::write(&gym, "").unwrap();
    let r = c.add_paths(&e, &[&gym]).unwrap();
    assert_eq!(r.removals.len(), 1, "{r:?}");
    assert!(r.removals[0].path.ends_with("gym.txt"));
    assert_eq!(r.removals[0].reason, "now empty");
    assert_eq!(r.removed, vec![r.removals[0].path.clone()]);
    assert!(r.skipped.is_empty(), "{r:?}");
    assert!(!quotes(&c, "gym opens"));
    assert!(files(&c).iter().all(|f| !f.ends_with("gym.txt")));
    // Committed: a fresh open sees the same.
    assert!(!quotes(&Collection::open(c.dir()).unwrap(), "gym opens"));
    // Now it is new to the collection again: the old clear error.
    assert!(matches!(c.add_paths(&e, &[&gym]), Err(DocsError::EmptyFile { .. })));

    // Deleted: the same, through a relative spelling of the path.
    std::fs::write(&gym, "The gym opens at eight.\n").unwrap();
    c.add_paths(&e, &[&gym]).unwrap();
    std::fs::remove_file(&gym).unwrap();
    let spelled = tmp.path().join("docs/../docs/gym.txt");
    let r = c.add_paths(&e, &[&spelled]).unwrap();
    assert_eq!(r.removals.len(), 1, "{r:?}");
    assert_eq!(r.removals[0].reason, "deleted or renamed");
    assert!(!quotes(&c, "gym opens"));
    assert!(files(&c).iter().any(|f| f.ends_with("museum.txt")), "other files stay");
    assert!(matches!(c.add_paths(&e, &[&gym]), Err(DocsError::NotFound { .. })));

    // Binary now: removed with the reason.
    std::fs::write(&museum, [0u8, 159, 146, 150]).unwrap();
    let r = c.add_paths(&e, &[&museum]).unwrap();
    assert!(r.removals[0].reason.starts_with("no longer a text file"), "{r:?}");
    assert_eq!(c.passage_count(), 0);
    assert_eq!(Collection::open(c.dir()).unwrap().passage_count(), 0);
}

#[test]
fn a_missing_path_new_to_the_collection_fails_the_call_before_anything_changes() {
    let tmp = fixture_copy();
    let e = HashEmbedder::default();
    let mut c = Collection::create(&tmp.path().join("coll")).unwrap();
    let museum = tmp.path().join("docs/museum.txt");
    c.add_paths(&e, &[&museum]).unwrap();
    std::fs::write(&museum, "").unwrap();
    let before = c.passage_count();
    // The emptied file would be removed, but the missing one was never indexed: nothing is written.
    let err = c.add_paths(&e, &[museum.clone(), tmp.path().join("typo.txt")]).unwrap_err();
    assert!(matches!(err, DocsError::NotFound { .. }), "{err}");
    assert_eq!(Collection::open(c.dir()).unwrap().passage_count(), before);
}

#[test]
fn a_folder_added_again_gives_the_real_reason_for_each_removal() {
    let tmp = fixture_copy();
    let e = HashEmbedder::default();
    let mut c = Collection::create(&tmp.path().join("coll")).unwrap();
    let docs = tmp.path().join("docs");
    c.add_paths(&e, &[&docs]).unwrap();
    std::fs::write(docs.join("museum.txt"), "  \n").unwrap();
    std::fs::write(docs.join("bridges.md"), [0u8, 1, 2]).unwrap();
    let r = c.add_paths(&e, &[&docs]).unwrap();
    let reason = |name: &str| r.removals.iter().find(|x| x.path.ends_with(name)).map(|x| x.reason.clone());
    assert_eq!(reason("museum.txt").as_deref(), Some("now empty"), "{r:?}");
    assert!(reason("bridges.md").is_some_and(|x| x.starts_with("no longer a text file")), "{r:?}");
    assert!(r.skipped.is_empty(), "files that were indexed are removals, not skips: {r:?}");
    assert_eq!(r.removals[0].to_string(), format!("{}: {}", r.removals[0].path, r.removals[0].reason));

    // A whole folder deleted and named again: all of its files go.
    let sub = tmp.path().join("more");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(sub.join("a.txt"), "The ferry leaves at noon.\n").unwrap();
    c.add_paths(&e, &[&sub]).unwrap();
    std::fs::remove_dir_all(&sub).unwrap();
    let r = c.add_paths(&e, &[&sub]).unwrap();
    assert_eq!(r.removed.len(), 1, "{r:?}");
    assert!(!quotes(&c, "ferry"));
}

#[cfg(unix)]
#[test]
fn a_named_pipe_is_an_error_by_name_and_a_skip_in_a_folder() {
    let tmp = fixture_copy();
    let fifo = tmp.path().join("docs/pipe.txt");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().map(|s| s.success()).unwrap_or(false);
    if !made {
        eprintln!("no mkfifo here; skipped");
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let root = tmp.path().to_path_buf();
    std::thread::spawn(move || {
        let e = HashEmbedder::default();
        let mut c = Collection::create(&root.join("coll")).unwrap();
        let named = c.add_paths(&e, &[root.join("docs/pipe.txt")]).map(|_| ()).map_err(|e| e.to_string());
        let found = c.add_paths(&e, &[root.join("docs")]).map_err(|e| e.to_string());
        let _ = tx.send((named, found));
    });
    let (named, found) = rx.recv_timeout(std::time::Duration::from_secs(20)).expect("blocked on the pipe");
    let err = named.unwrap_err();
    assert!(err.contains("pipe.txt") && err.contains("not a regular file"), "{err}");
    let r = found.unwrap();
    assert!(r.skipped.iter().any(|s| s.path.ends_with("pipe.txt") && s.reason.contains("named pipe")), "{r:?}");
    assert!(Path::new(&r.added[0]).exists());
}

#[test]
fn a_missing_path_that_resolves_onto_existing_files_removes_none_of_them() {
    let tmp = fixture_copy();
    let e = HashEmbedder::default();
    let mut c = Collection::create(&tmp.path().join("coll")).unwrap();
    let museum = tmp.path().join("docs/museum.txt");
    c.add_paths(&e, &[&museum]).unwrap();
    let before = c.passage_count();
    // `typo/..` does not exist, but spelled out it is the folder of files that do.
    let detour = tmp.path().join("docs/typo/..");
    assert!(matches!(c.add_paths(&e, &[&detour]), Err(DocsError::NotFound { .. })));
    assert_eq!(Collection::open(c.dir()).unwrap().passage_count(), before);
}
