//! git's object database, driven as a process the way a script would:
//! `hash-object -w --stdin-paths` (values staged to files first, and that
//! staging is timed: it is what the interface asks of a caller holding bytes
//! in memory), `cat-file --batch` / `--batch-check`, `fsck --full`, and
//! `gc --prune=now` after the kept half is made reachable through a tree.
//! Key → id is kept in memory. Loose objects are zlib-compressed (git's
//! default `core.looseCompression` 1).

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread;

use super::{PeerSpec, store_dir};
use crate::peer::{Check, KeyMapped, ObjectBackend, Peer, Res};

pub const SPEC: PeerSpec = PeerSpec {
    id: "git",
    label: "git (process; key map in memory)",
    durability: "none (core.fsync=none)",
    verify: "git fsck --full",
    reclaim: "mktree of the kept half + update-ref, git gc --prune=now",
    create,
    open,
};

struct Git {
    repo: PathBuf,
    staging: PathBuf,
    cat: Option<Batch>,
    check: Option<Batch>,
}

/// A long-running `git cat-file` process.
struct Batch {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

pub fn git(repo: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.env("GIT_DIR", repo)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null");
    cmd
}

pub fn run(cmd: &mut Command) -> Res<Vec<u8>> {
    let out = cmd.stderr(Stdio::piped()).output()?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(out.stdout)
}

impl Git {
    fn at(dir: &Path) -> Git {
        Git {
            repo: store_dir(dir),
            staging: dir.join("staging"),
            cat: None,
            check: None,
        }
    }

    fn batch(repo: &Path, mode: &str) -> Res<Batch> {
        let mut child = git(repo)
            .args(["cat-file", mode])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(Batch {
            child,
            stdin,
            stdout,
        })
    }

    /// Pipes `input` to `git <args>` on a writer thread while reading its output.
    fn pipe(&self, args: &[&str], input: &[u8]) -> Res<Vec<u8>> {
        let mut child = git(&self.repo)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        let mut stdout = child.stdout.take().ok_or("no stdout")?;
        let mut out = Vec::new();
        let (written, read) = thread::scope(|scope| {
            let writer = scope.spawn(move || stdin.write_all(input));
            let read = stdout.read_to_end(&mut out);
            (writer.join(), read)
        });
        written.map_err(|_| "writer thread panicked")??;
        read?;
        let status = child.wait()?;
        if !status.success() {
            return Err(format!("git {args:?} failed: {status}").into());
        }
        Ok(out)
    }
}

fn create(dir: &Path) -> Res<Box<dyn Peer>> {
    let repo = store_dir(dir);
    run(Command::new("git")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args(["init", "-q", "--bare"])
        .arg(&repo))?;
    for (name, value) in [("core.fsync", "none"), ("gc.auto", "0")] {
        run(git(&repo).args(["config", name, value]))?;
    }
    let g = Git::at(dir);
    fs::create_dir_all(&g.staging)?;
    Ok(Box::new(KeyMapped::new(Box::new(g), dir.join("keymap"))))
}

fn open(dir: &Path) -> Res<Box<dyn Peer>> {
    Ok(Box::new(KeyMapped::load(
        Box::new(Git::at(dir)),
        dir.join("keymap"),
    )?))
}

fn parse_id(hex_id: &[u8]) -> Res<Vec<u8>> {
    Ok(hex::decode(hex_id)?)
}

impl ObjectBackend for Git {
    fn put_values(&mut self, values: &[&[u8]], ids: &mut Vec<Vec<u8>>) -> Res<()> {
        let mut paths = String::new();
        for (slot, value) in values.iter().enumerate() {
            let path = self.staging.join(slot.to_string());
            fs::write(&path, value)?;
            paths.push_str(path.to_str().ok_or("staging path is not UTF-8")?);
            paths.push('\n');
        }
        let out = self.pipe(&["hash-object", "-w", "--stdin-paths"], paths.as_bytes())?;
        for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            ids.push(parse_id(line)?);
        }
        if ids.len() != values.len() {
            return Err("hash-object printed fewer ids than it was given paths".into());
        }
        Ok(())
    }

    fn get_values(&mut self, ids: &[&[u8]], check: &mut Check<'_>) -> Res<()> {
        if self.cat.is_none() {
            self.cat = Some(Git::batch(&self.repo, "--batch")?);
        }
        let cat = self.cat.as_mut().ok_or("no cat-file")?;
        let mut requests = Vec::with_capacity(ids.len() * 41);
        for id in ids {
            requests.extend_from_slice(hex::encode(id).as_bytes());
            requests.push(b'\n');
        }
        let Batch { stdin, stdout, .. } = cat;
        thread::scope(|scope| -> Res<()> {
            let writer =
                scope.spawn(move || stdin.write_all(&requests).and_then(|()| stdin.flush()));
            let mut header = String::new();
            let mut value = Vec::new();
            for i in 0..ids.len() {
                header.clear();
                stdout.read_line(&mut header)?;
                let size: usize = header
                    .trim_end()
                    .rsplit(' ')
                    .next()
                    .ok_or("bad cat-file header")?
                    .parse()
                    .map_err(|_| format!("cat-file: {}", header.trim_end()))?;
                value.resize(size + 1, 0);
                stdout.read_exact(&mut value)?;
                check(i, &value[..size])?;
            }
            writer.join().map_err(|_| "writer thread panicked")??;
            Ok(())
        })
    }

    fn contains(&mut self, ids: &[&[u8]], found: &mut Vec<bool>) -> Res<()> {
        if self.check.is_none() {
            self.check = Some(Git::batch(&self.repo, "--batch-check")?);
        }
        let check = self.check.as_mut().ok_or("no cat-file")?;
        let mut requests = Vec::with_capacity(ids.len() * 41);
        for id in ids {
            requests.extend_from_slice(hex::encode(id).as_bytes());
            requests.push(b'\n');
        }
        let Batch { stdin, stdout, .. } = check;
        thread::scope(|scope| -> Res<()> {
            let writer =
                scope.spawn(move || stdin.write_all(&requests).and_then(|()| stdin.flush()));
            let mut line = String::new();
            for _ in ids {
                line.clear();
                stdout.read_line(&mut line)?;
                found.push(!line.trim_end().ends_with(" missing"));
            }
            writer.join().map_err(|_| "writer thread panicked")??;
            Ok(())
        })
    }

    fn absent_id(&self, key: &[u8]) -> Vec<u8> {
        blake3::hash(key).as_bytes()[..20].to_vec()
    }

    fn remove(&mut self, _ids: &[&[u8]]) -> Res<()> {
        // git deletes nothing by id: what is unreachable goes at gc.
        Ok(())
    }

    fn reclaim(&mut self, kept: &[&[u8]]) -> Res<()> {
        let mut listing = String::with_capacity(kept.len() * 64);
        for (n, id) in kept.iter().enumerate() {
            listing.push_str(&format!("100644 blob {}\t{n}\n", hex::encode(id)));
        }
        let tree = self.pipe(&["mktree"], listing.as_bytes())?;
        let tree = String::from_utf8(tree)?;
        run(git(&self.repo).args(["update-ref", "refs/keep", tree.trim()]))?;
        run(git(&self.repo).args(["gc", "--prune=now", "-q"]))?;
        Ok(())
    }

    fn verify(&mut self) -> Res<bool> {
        run(git(&self.repo).args(["fsck", "--full", "--no-dangling"]))?;
        Ok(true)
    }

    fn close(mut self: Box<Self>) -> Res<()> {
        self.stop_batches()
    }
}

impl Git {
    fn stop_batches(&mut self) -> Res<()> {
        for batch in [self.cat.take(), self.check.take()].into_iter().flatten() {
            let Batch {
                mut child, stdin, ..
            } = batch;
            drop(stdin);
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for Git {
    fn drop(&mut self) {
        let _ = self.stop_batches();
    }
}
