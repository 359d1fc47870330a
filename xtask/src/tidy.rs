//! Hygiene checks that `cargo test` enforces: every library crate denies
//! missing docs, no debug leftovers, and the README, `.ci/run` and the
//! architecture map stay in step with the workspace.

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::{Path, PathBuf};

    use crate::workspace_root;

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    }

    fn crate_dirs() -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = fs::read_dir(workspace_root().join("crates"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.join("Cargo.toml").exists())
            .collect();
        dirs.sort();
        dirs
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn every_crate_denies_missing_docs() {
        for dir in crate_dirs() {
            let roots = ["src/lib.rs", "src/main.rs"].map(|file| dir.join(file));
            let root = roots.iter().find(|path| path.exists()).expect("a crate root");
            let text = read(root);
            assert!(
                text.contains("#![deny(missing_docs)]"),
                "{} lacks #![deny(missing_docs)]",
                root.display()
            );
            assert!(text.starts_with("//!"), "{} lacks crate docs", root.display());
        }
    }

    #[test]
    fn every_crate_uses_workspace_lints() {
        let mut manifests: Vec<PathBuf> = crate_dirs().iter().map(|dir| dir.join("Cargo.toml")).collect();
        manifests.push(workspace_root().join("xtask/Cargo.toml"));
        manifests.push(workspace_root().join("tests/Cargo.toml"));
        for manifest in manifests {
            let text = read(&manifest);
            assert!(
                text.contains("[lints]\nworkspace = true"),
                "{} must inherit [workspace.lints]",
                manifest.display()
            );
        }
    }

    #[test]
    fn no_debug_leftovers_in_sources() {
        let mut files = Vec::new();
        for dir in ["crates", "xtask/src", "tests"] {
            rust_files(&workspace_root().join(dir), &mut files);
        }
        let needles = [
            ["dbg", "!("].concat(),
            ["todo", "!("].concat(),
            ["unimplemented", "!("].concat(),
        ];
        for file in files {
            let text = read(&file);
            for needle in &needles {
                assert!(
                    !text.contains(needle.as_str()),
                    "{} contains {needle}",
                    file.display()
                );
            }
        }
    }

    #[test]
    fn sync_core_stays_free_of_io_and_workspace_crates() {
        let manifest = read(&workspace_root().join("crates/sync-core/Cargo.toml"));
        let section = manifest.split("[dependencies]\n").nth(1).unwrap_or_default();
        let section = section.split("\n[").next().unwrap_or_default();
        let names: Vec<&str> = section
            .lines()
            .filter_map(|line| line.split(['=', '.', ' ']).next())
            .filter(|name| !name.is_empty())
            .collect();
        assert!(
            names.contains(&"serde"),
            "the dependency list was not parsed: {names:?}"
        );
        for name in names {
            let banned = [
                "sqlx",
                "hyper",
                "hyper-util",
                "tokio",
                "rusqlite",
                "reqwest",
                "libsqlite3-sys",
            ];
            assert!(
                !banned.contains(&name),
                "sync-core must do no I/O, yet depends on {name}"
            );
            assert!(
                !name.starts_with("sync-"),
                "sync-core must depend on no workspace crate, yet depends on {name}"
            );
        }
    }

    #[test]
    fn ci_script_runs_the_readme_test_command() {
        let readme = read(&workspace_root().join("README.md"));
        let script = read(&workspace_root().join(".ci/run"));
        assert!(
            script.contains("set -euo pipefail"),
            ".ci/run must use set -euo pipefail"
        );
        assert!(
            readme.contains("cargo xtask ci"),
            "README must name the test command"
        );
        let commands: Vec<&str> = script
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .filter(|line| {
                !line.starts_with("set ") && !line.starts_with("export ") && !line.starts_with("cd ")
            })
            .collect();
        assert_eq!(
            commands,
            ["cargo xtask ci"],
            ".ci/run must run exactly the README's test command"
        );
    }

    #[test]
    fn architecture_map_names_every_crate() {
        let map = read(&workspace_root().join("docs/architecture.md"));
        for dir in crate_dirs() {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                map.contains(&name),
                "docs/architecture.md does not mention {name}"
            );
        }
    }
}
