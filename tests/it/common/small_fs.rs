//! A small filesystem a test can fill: a size-limited tmpfs mounted on a
//! fresh directory (the tests run as root, here and in CI), unmounted when
//! dropped. It never skips: a mount that fails fails the test.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::Command,
};

pub struct SmallFilesystem {
    dir: tempfile::TempDir,
    filler: PathBuf,
}

impl SmallFilesystem {
    /// A tmpfs of `bytes` (rounded up to pages by the kernel).
    pub fn mount(bytes: u64) -> SmallFilesystem {
        let dir = tempfile::Builder::new()
            .prefix("registrar-small-fs-")
            .tempdir_in("/tmp")
            .unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}")])
            .arg("tmpfs")
            .arg(dir.path())
            .output()
            .expect("mount runs");
        assert!(
            output.status.success(),
            "mounting a {bytes}-byte tmpfs on {} failed (the tests need root): {}",
            dir.path().display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let filler = dir.path().join("filler");
        SmallFilesystem { dir, filler }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a filler file until the filesystem is full.
    pub fn fill(&self) {
        let mut file = fs::File::create(&self.filler).expect("the filler file opens");
        let block = vec![0u8; 64 * 1024];
        loop {
            if file.write_all(&block).is_err() {
                break;
            }
        }
        // the last bytes, one at a time, so that not even a page is left
        while file.write_all(&[0]).is_ok() && file.flush().is_ok() {}
    }

    /// Removes the filler: the space is free again.
    pub fn free(&self) {
        let _ = fs::remove_file(&self.filler);
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
