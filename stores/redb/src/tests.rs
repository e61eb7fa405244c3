use std::sync::Arc;

use authd_store_api::{Store, UserStore};

use super::*;

fn fresh() -> (tempfile::TempDir, RedbStore) {
    let dir = tempfile::tempdir().unwrap();
    let (store, warnings) = open(&dir.path().join("t.redb")).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    (dir, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance() {
    // Each check gets a new file; the folders live until the end of the test.
    let dirs = Arc::new(std::sync::Mutex::new(Vec::new()));
    let make = move || {
        let dirs = Arc::clone(&dirs);
        Box::pin(async move {
            let (dir, store) = fresh();
            dirs.lock().unwrap().push(dir);
            Arc::new(store) as Arc<dyn Store>
        }) as std::pin::Pin<Box<dyn std::future::Future<Output = Arc<dyn Store>> + Send>>
    };
    authd_store_api::conformance::run_all(&make).await;
}

#[cfg(unix)]
#[test]
fn the_file_and_its_new_folder_are_private_and_a_readable_file_is_reported() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new-folder").join("authd.redb");
    let (store, warnings) = open(&path).unwrap();
    assert!(warnings.is_empty());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    drop(store);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (_store, warnings) = open(&path).unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("chmod 600"), "{warnings:?}");
}

#[test]
fn a_second_open_of_the_same_file_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.redb");
    let _first = open(&path).unwrap();
    assert!(matches!(open(&path), Err(OpenError::Locked(_))));
}

#[tokio::test]
async fn unique_v1_entries_are_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.redb");
    {
        let db = Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut users = tx.open_table(USERS).unwrap();
            let user = br#"{"attributes":{"email":"a@x"},"secrets":{"hashed_password":"h"},"session_epoch":2}"#;
            users.insert(("user", 7u128), user.as_slice()).unwrap();
            let mut old = tx.open_table(UNIQUE_V1).unwrap();
            old.insert(("user", "email", "a@x"), 7u128).unwrap();
        }
        tx.commit().unwrap();
    }
    let (store, _) = open(&path).unwrap();
    let key = authd_store_api::UniqueKey::new("email", "a@x");
    let found = store.find_by_unique("user", &key).await.unwrap().unwrap();
    assert_eq!(found.session_epoch, 2);
    assert_eq!(
        found.created_at, 0,
        "a version-1 record reads with defaults"
    );
    assert_eq!(store.unique_of("user", found.id).await.unwrap(), vec![key]);
}

#[test]
fn a_damaged_file_is_a_clear_error_at_open_and_in_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.redb");
    {
        let (store, _) = open(&path).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            for i in 0..200 {
                let user = authd_store_api::NewUser {
                    attributes: [("email".to_string(), serde_json::json!(format!("u{i}@x")))]
                        .into_iter()
                        .collect(),
                    unique: vec![authd_store_api::UniqueKey::new("email", format!("u{i}@x"))],
                    ..Default::default()
                };
                store.insert("user", user).await.unwrap().unwrap();
            }
        });
    }
    // Overwrite every page after the header with garbage.
    let mut bytes = std::fs::read(&path).unwrap();
    for (i, b) in bytes.iter_mut().enumerate().skip(4096) {
        *b = (i as u8).wrapping_mul(31).wrapping_add(7);
    }
    std::fs::write(&path, &bytes).unwrap();
    match open(&path) {
        Err(OpenError::Damaged { reason, .. }) => assert!(!reason.is_empty()),
        Err(other) => {
            // Some damage is reported as a plain open failure; it must still name the file.
            assert!(other.to_string().contains("t.redb"), "{other}");
        }
        Ok(_) => panic!("a damaged file opened"),
    }
    let checked = check(&path);
    assert!(!matches!(checked, Ok(CheckReport::Intact)), "{checked:?}");
}
