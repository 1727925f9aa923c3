use super::*;
use std::cell::RefCell;

/// A file-system operation as the recorder saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    CreateTemp,
    Write,
    SyncFile,
    Rename,
    SyncDir,
    RemoveTemp,
}

/// The real file system, recording each operation (and the paths) and failing the one named.
struct Recorder {
    ops: RefCell<Vec<(Op, Vec<PathBuf>)>>,
    fail_at: Option<Op>,
}

impl Recorder {
    fn new(fail_at: Option<Op>) -> Self {
        Recorder {
            ops: RefCell::new(Vec::new()),
            fail_at,
        }
    }

    fn step(&self, op: Op, paths: &[&Path]) -> io::Result<()> {
        self.ops
            .borrow_mut()
            .push((op, paths.iter().map(|p| p.to_path_buf()).collect()));
        if self.fail_at == Some(op) {
            return Err(io::Error::other("injected fault"));
        }
        Ok(())
    }

    fn ops(&self) -> Vec<Op> {
        self.ops.borrow().iter().map(|(op, _)| *op).collect()
    }
}

impl FileSystem for Recorder {
    type File = File;

    fn create_temp(&self, path: &Path, mode: u32) -> io::Result<File> {
        self.step(Op::CreateTemp, &[path])?;
        RealFs.create_temp(path, mode)
    }

    fn write_all(&self, file: &mut File, data: &[u8]) -> io::Result<()> {
        // A fault in the middle of the write: half the data reaches the temporary file.
        if self.fail_at == Some(Op::Write) {
            RealFs.write_all(file, &data[..data.len() / 2])?;
        }
        self.step(Op::Write, &[])?;
        RealFs.write_all(file, data)
    }

    fn sync_file(&self, file: &mut File) -> io::Result<()> {
        self.step(Op::SyncFile, &[])?;
        RealFs.sync_file(file)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.step(Op::Rename, &[from, to])?;
        RealFs.rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.step(Op::SyncDir, &[dir])?;
        RealFs.sync_dir(dir)
    }

    fn remove_temp(&self, path: &Path) -> io::Result<()> {
        self.step(Op::RemoveTemp, &[path])?;
        RealFs.remove_temp(path)
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_steps_run_in_order_with_the_temp_file_beside_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("ak.priv");
    let writer = Writer::with_fs(Recorder::new(None));
    writer.write(&target, b"new", MODE_PRIVATE).unwrap();
    assert_eq!(
        writer.fs().ops(),
        [
            Op::CreateTemp,
            Op::Write,
            Op::SyncFile,
            Op::Rename,
            Op::SyncDir
        ]
    );
    let ops = writer.fs().ops.borrow().clone();
    let tmp = &ops[0].1[0];
    assert_eq!(
        tmp.parent(),
        Some(dir.path()),
        "temp file in the same directory"
    );
    assert_eq!(
        ops[3].1,
        [tmp.clone(), target.clone()],
        "renames the temp file"
    );
    assert_eq!(
        ops[4].1,
        [dir.path().to_path_buf()],
        "syncs the target's directory"
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"new");
    assert_eq!(names(dir.path()), ["ak.priv"]);
}

#[test]
fn a_fault_before_the_rename_leaves_the_old_target_and_no_temp_file() {
    let order = [Op::CreateTemp, Op::Write, Op::SyncFile, Op::Rename];
    for (i, fault) in order.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("device.crt");
        std::fs::write(&target, b"old contents").unwrap();
        let writer = Writer::with_fs(Recorder::new(Some(*fault)));
        let e = writer
            .write(&target, b"new contents", MODE_PUBLIC)
            .unwrap_err();
        let step = match fault {
            Op::CreateTemp => Step::CreateTemp,
            Op::Write => Step::Write,
            Op::SyncFile => Step::SyncFile,
            _ => Step::Rename,
        };
        assert_eq!(e.step(), Some(step), "fault at {fault:?}");
        assert_eq!(e.path(), target);
        // The steps up to the fault, then the clean-up; never a sync of the directory.
        let mut expected = order[..=i].to_vec();
        expected.push(Op::RemoveTemp);
        assert_eq!(writer.fs().ops(), expected, "fault at {fault:?}");
        assert_eq!(
            std::fs::read(&target).unwrap(),
            b"old contents",
            "fault at {fault:?}"
        );
        assert_eq!(names(dir.path()), ["device.crt"], "fault at {fault:?}");
    }
}

#[test]
fn a_fault_syncing_the_directory_is_reported_after_the_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("policy.json");
    std::fs::write(&target, b"old").unwrap();
    let writer = Writer::with_fs(Recorder::new(Some(Op::SyncDir)));
    let e = writer.write(&target, b"new", MODE_PUBLIC).unwrap_err();
    assert_eq!(e.step(), Some(Step::SyncDir));
    assert_eq!(
        e.to_string(),
        format!(
            "cannot write {}: syncing its directory failed",
            target.display()
        )
    );
    // The rename is done and cannot be taken back: the new contents, and no temp file.
    assert_eq!(std::fs::read(&target).unwrap(), b"new");
    assert_eq!(names(dir.path()), ["policy.json"]);
}

#[test]
fn new_files_get_the_mode_given_and_replacements_too() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    write(&key, b"secret", MODE_PRIVATE).unwrap();
    assert_eq!(mode_of(&key), 0o600);
    let cert = dir.path().join("cert");
    write(&cert, b"public", MODE_PUBLIC).unwrap();
    assert_eq!(mode_of(&cert), 0o644);
    // Replacing a public file with a private one leaves it private, and the reverse.
    write(&cert, b"now secret", MODE_PRIVATE).unwrap();
    assert_eq!(mode_of(&cert), 0o600);
    assert_eq!(std::fs::read(&cert).unwrap(), b"now secret");
    write(&key, b"", MODE_PUBLIC).unwrap();
    assert_eq!(mode_of(&key), 0o644);
    assert_eq!(std::fs::read(&key).unwrap(), b"");
    assert_eq!(names(dir.path()), ["cert", "key"]);
}

#[test]
fn overwrite_replaces_longer_contents_whole() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("state");
    write(&p, &[7u8; 10_000], MODE_PRIVATE).unwrap();
    write(&p, b"short", MODE_PRIVATE).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"short");
}

#[test]
fn a_stale_temp_file_is_replaced_not_reused() {
    // What a crashed writer with the same temporary name leaves behind: other contents, other mode.
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join(".state.1-0.tmp");
    std::fs::write(&tmp, b"half").unwrap();
    std::fs::set_permissions(&tmp, Permissions::from_mode(0o666)).unwrap();
    let mut f = RealFs.create_temp(&tmp, MODE_PRIVATE).unwrap();
    RealFs.write_all(&mut f, b"x").unwrap();
    drop(f);
    assert_eq!(std::fs::read(&tmp).unwrap(), b"x");
    assert_eq!(mode_of(&tmp), 0o600);
}

#[test]
fn a_missing_directory_is_an_error_naming_the_target_and_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("absent").join("device.id");
    let e = write(&p, b"x", MODE_PUBLIC).unwrap_err();
    assert_eq!(e.step(), Some(Step::CreateTemp));
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    assert_eq!(e.path(), p);
    let msg = e.to_string();
    assert!(msg.contains("device.id") && msg.contains("creating the temporary file"));
    assert!(!dir.path().join("absent").exists());
    // As an I/O error it keeps the kind and names the step; the cause stays its source.
    let io: io::Error = e.into();
    assert_eq!(io.kind(), io::ErrorKind::NotFound);
    assert_eq!(io.to_string(), "creating the temporary file failed");
    assert!(std::error::Error::source(&io).is_some());
}

#[test]
fn a_path_without_a_file_name_is_refused() {
    for p in ["/", "", "dir/.."] {
        let e = write(Path::new(p), b"x", MODE_PUBLIC).unwrap_err();
        assert!(
            matches!(e, Error::NotAFile { .. }),
            "{p:?} gave {e:?} instead"
        );
    }
}

#[test]
fn a_relative_file_name_is_written_in_the_current_directory() {
    // Path::new("f").parent() is "": the directory to sync is ".".
    let writer = Writer::with_fs(Recorder::new(Some(Op::CreateTemp)));
    let _ = writer.write(Path::new("vouch-durable-test-never-created"), b"x", 0o600);
    let ops = writer.fs().ops.borrow().clone();
    assert_eq!(ops[0].1[0].parent(), Some(Path::new(".")));
    assert!(!Path::new("vouch-durable-test-never-created").exists());
}
