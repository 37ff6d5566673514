//! Opening files relative to an open directory, and the store's cache of
//! open fanout directories.
//!
//! `File::open("root/objects/ab/cdef…")` makes the kernel look up every
//! component of the path again for every object; reading small objects,
//! that lookup is a measurable share of the cost (docs/BENCHMARKS.md). An
//! `openat` on an open handle of `objects/ab/` looks up one name. std has no
//! `openat`, so on Linux this module declares it itself: the crate's only
//! foreign function. Elsewhere [`Dir::open_file`] joins the path and calls
//! `File::open`, with the same results.
//!
//! # Stale handles
//! A handle keeps naming the directory it was opened on even after that
//! directory is removed or renamed (`clean`, a store moved away). A file
//! found through a stale handle is still the object its name says (every
//! read verifies the bytes against the id), so a stale handle can only turn
//! a hit into a miss. [`FanoutDirs::open_object`] therefore retries every
//! miss by the full path and, when the full path finds the file, replaces
//! the handle.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// An open directory, for opening files in it by name.
#[derive(Debug)]
pub struct Dir {
    handle: File,
    path: PathBuf,
}

impl Dir {
    /// Opens the directory at `path`.
    ///
    /// # Errors
    /// What the `open` reported (`NotFound` when there is no directory).
    pub fn open(path: &Path) -> io::Result<Dir> {
        let handle = File::open(path)?;
        if !handle.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", path.display()),
            ));
        }
        Ok(Dir {
            handle,
            path: path.to_path_buf(),
        })
    }

    /// The path the directory was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the file `name` in this directory for reading, as
    /// `File::open(self.path().join(name))` would, looking up one name.
    ///
    /// # Errors
    /// What the `open` reported; `InvalidInput` for a name holding `/` or a
    /// NUL byte, which could not name a file in this directory.
    pub fn open_file(&self, name: &str) -> io::Result<File> {
        if name.is_empty() || name.bytes().any(|b| b == b'/' || b == 0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is not a file name"),
            ));
        }
        sys::open_at(self, name)
    }
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
mod sys {
    //! Without `openat`: by the joined path.
    use std::fs::File;
    use std::io;

    pub fn open_at(dir: &super::Dir, name: &str) -> io::Result<File> {
        let _ = &dir.handle;
        File::open(dir.path.join(name))
    }
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod sys {
    //! `openat(2)` on Linux (where `O_CLOEXEC` has the value below).
    use std::ffi::{c_char, c_int};
    use std::fs::File;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd};

    /// `O_RDONLY | O_CLOEXEC`: the flags `File::open` uses.
    const FLAGS: c_int = 0o2_000_000;
    /// Names up to this long are NUL-terminated on the stack.
    const STACK_NAME: usize = 255;

    unsafe extern "C" {
        fn openat(dirfd: c_int, pathname: *const c_char, flags: c_int, ...) -> c_int;
    }

    /// Opens `name` (non-empty, no `/`, no NUL: checked by the caller)
    /// relative to `dir`.
    pub fn open_at(dir: &super::Dir, name: &str) -> io::Result<File> {
        let mut buf = [0u8; STACK_NAME + 1];
        let owned;
        let c_name: &[u8] = if name.len() <= STACK_NAME {
            buf[..name.len()].copy_from_slice(name.as_bytes());
            &buf[..=name.len()]
        } else {
            owned = [name.as_bytes(), &[0]].concat();
            &owned
        };
        loop {
            // SAFETY: `c_name` is NUL-terminated and outlives the call;
            // `dir` is an open descriptor borrowed for the call; `openat`
            // with these flags takes no mode argument.
            let fd = unsafe { openat(dir.handle.as_raw_fd(), c_name.as_ptr().cast(), FLAGS) };
            if fd >= 0 {
                // SAFETY: `fd` was just returned by `openat`, so it is an
                // open descriptor that nothing else owns.
                return Ok(unsafe { File::from_raw_fd(fd) });
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

/// The fanout directories of one store, each opened on first use: a
/// [`crate::Store`] holds at most 256 directory handles, one per fanout
/// directory it has read an object from.
#[derive(Debug)]
pub struct FanoutDirs {
    slots: Box<[Slot]>,
}

/// One directory's handle, alone on its cache lines: verify's workers walk
/// neighbouring directories at once, and every open takes the slot's read
/// lock (an atomic write), so slots sharing a line would bounce it between
/// the cores on every object.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot(RwLock<Option<Dir>>);

impl Default for FanoutDirs {
    fn default() -> FanoutDirs {
        FanoutDirs {
            slots: (0..=u8::MAX).map(|_| Slot::default()).collect(),
        }
    }
}

impl FanoutDirs {
    /// Opens the object file `name` in the fanout directory numbered
    /// `byte`: through the directory's handle when there is one, else — and
    /// on any miss, in case the handle went stale — by its full path, which
    /// `path` makes only then, opening the handle for next time when that
    /// finds the file.
    ///
    /// # Errors
    /// What opening the full path reported.
    pub fn open_object<P: AsRef<Path>>(
        &self,
        byte: u8,
        name: &str,
        path: impl FnOnce() -> P,
    ) -> io::Result<File> {
        let slot = &self.slots[usize::from(byte)].0;
        if let Ok(guard) = slot.read()
            && let Some(dir) = guard.as_ref()
        {
            match dir.open_file(name) {
                Ok(file) => return Ok(file),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let path = path();
        let path = path.as_ref();
        let file = File::open(path)?;
        // The file is there but the handle is missing or did not find it:
        // (re)open the handle. Failing to (too many open files) only means
        // the next open goes by the full path again.
        if let Some(parent) = path.parent()
            && let Ok(dir) = Dir::open(parent)
            && let Ok(mut guard) = slot.write()
        {
            *guard = Some(dir);
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_file_opened_by_name_is_the_file_at_the_joined_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("abc"), b"contents").unwrap();
        let handle = Dir::open(dir.path()).unwrap();
        let mut text = String::new();
        handle
            .open_file("abc")
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "contents");
        let missing = handle.open_file("nope").unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        for bad in ["", "a/b", "a\0b"] {
            let err = handle.open_file(bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
        let not_a_dir = Dir::open(&dir.path().join("abc")).unwrap_err();
        assert_eq!(not_a_dir.kind(), io::ErrorKind::NotADirectory);
        assert_eq!(
            Dir::open(&dir.path().join("none")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        let long = "x".repeat(300);
        let err = handle.open_file(&long).unwrap_err();
        assert_ne!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_directory_removed_and_made_again_is_found_again() {
        let root = tempfile::tempdir().unwrap();
        let fanout = root.path().join("ab");
        std::fs::create_dir(&fanout).unwrap();
        std::fs::write(fanout.join("one"), b"1").unwrap();
        let dirs = FanoutDirs::default();
        let read = |name: &str| -> io::Result<String> {
            let mut text = String::new();
            dirs.open_object(0xab, name, || fanout.join(name))?
                .read_to_string(&mut text)?;
            Ok(text)
        };
        assert_eq!(read("one").unwrap(), "1");
        // The handle now names the old directory; replace it.
        std::fs::remove_dir_all(&fanout).unwrap();
        assert_eq!(read("one").unwrap_err().kind(), io::ErrorKind::NotFound);
        std::fs::create_dir(&fanout).unwrap();
        std::fs::write(fanout.join("two"), b"2").unwrap();
        assert_eq!(read("two").unwrap(), "2");
        std::fs::write(fanout.join("three"), b"3").unwrap();
        assert_eq!(read("three").unwrap(), "3");
    }
}
