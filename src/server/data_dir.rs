//! The data directory belongs to one server at a time: an exclusive `flock` on `DATA_DIR/lock`, held for the
//! life of the process (the kernel lets go when it exits, however it exits), with the holder's pid written in it
//! so a second server can say who has it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Held while the server runs; dropping it releases the directory.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the data directory {dir} is in use by another broadcasting server (pid {holder}; lock file {lock}); \
         stop it or give this one another --data-dir"
    )]
    Held { dir: PathBuf, lock: PathBuf, holder: String },
    #[error("cannot lock the data directory with {lock}: {source}")]
    Io { lock: PathBuf, source: std::io::Error },
}

/// Takes the data directory (creating it), or says which process has it.
pub fn lock(dir: &Path) -> Result<DataDirLock, LockError> {
    let path = dir.join("lock");
    let io = |source| LockError::Io { lock: path.clone(), source };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
    if !try_lock(&file).map_err(io)? {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = if holder.trim().is_empty() { "unknown".to_owned() } else { holder.trim().to_owned() };
        return Err(LockError::Held { dir: dir.to_path_buf(), lock: path, holder });
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(DataDirLock { _file: file })
}

/// Ok(false) when another open file description holds the lock.
#[cfg(unix)]
fn try_lock(file: &File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this `File` owns and keeps open.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}

#[cfg(not(unix))]
fn try_lock(_file: &File) -> std::io::Result<bool> {
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_the_second_is_told_who() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let held = lock(&data).unwrap();
        let err = lock(&data).unwrap_err().to_string();
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
        assert!(err.contains(&data.join("lock").display().to_string()), "{err}");
        drop(held);
        lock(&data).unwrap();
    }
}
