//! Puts the git commit the binary is built from into `HERALD_GIT_COMMIT`, which
//! `herald --version` shows next to the package version.
//!
//! Where it comes from, first found wins:
//! 1. the `HERALD_GIT_COMMIT` environment variable at build time (the Dockerfile passes it
//!    as a build argument: its build context has no `.git`);
//! 2. `git rev-parse --short=12 HEAD` in the package's directory, when git's work tree there is
//!    Herald's;
//! 3. `unknown` (a source tarball without `.git`, or no `git` on the machine).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=HERALD_GIT_COMMIT");
    let from_env = std::env::var("HERALD_GIT_COMMIT")
        .ok()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    let commit = from_env.unwrap_or_else(|| {
        if !in_herald_checkout() {
            return "unknown".to_owned();
        }
        watch_git_head();
        git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_owned())
    });
    println!("cargo:rustc-env=HERALD_GIT_COMMIT={commit}");
}

/// `git <args>` in this package's directory: its trimmed output when it succeeds.
fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// Whether git's work tree here is Herald's own: a source tarball unpacked inside some other
/// repository must not take that repository's commit.
fn in_herald_checkout() -> bool {
    git(&["rev-parse", "--show-toplevel"])
        .is_some_and(|top| Path::new(&top).join("apps/herald/build.rs").exists())
}

/// Reruns this script when HEAD moves: a new commit, a checkout, a rebase. HEAD lives in the
/// (worktree's) git directory, branch refs in the common one, loose or packed.
fn watch_git_head() {
    let (Some(git_dir), Some(common)) = (
        git(&["rev-parse", "--absolute-git-dir"]),
        git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]),
    ) else {
        return;
    };
    let mut watched: Vec<PathBuf> = vec![Path::new(&git_dir).join("HEAD")];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(Path::new(&common).join(branch));
        watched.push(Path::new(&common).join("packed-refs"));
    }
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
