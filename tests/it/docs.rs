//! The docs stay real: the README's Kiln snippets compile, its embedding example is
//! `examples/embed.rs` verbatim (which Cargo compiles as an example; `KILN_BLESS=1` copies it
//! into the README).

use crate::support::kiln;
use std::path::Path;
use std::time::Duration;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The bodies of the README's fenced blocks tagged `lang`.
fn fenced_blocks(lang: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let open = format!("```{lang}");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match &mut current {
            None if line.trim_end() == open => current = Some(String::new()),
            None => {}
            Some(_) if line.trim_end() == "```" => blocks.extend(current.take()),
            Some(body) => {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    assert!(
        current.is_none(),
        "an unclosed ```{lang} block in README.md"
    );
    blocks
}

#[test]
fn readme_embedding_example_is_examples_embed_rs() {
    let example = std::fs::read_to_string(root().join("examples/embed.rs")).unwrap();
    // The README shows the file without its `//!` header.
    let body = example
        .lines()
        .skip_while(|l| l.starts_with("//!"))
        .skip_while(|l| l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    // Other ```rust blocks are fragments (no `fn main`); the facade's doctests run that API.
    let blocks: Vec<String> = fenced_blocks("rust")
        .into_iter()
        .filter(|b| b.contains("fn main("))
        .collect();
    assert_eq!(
        blocks.len(),
        1,
        "README.md should have one complete ```rust program"
    );
    if blocks[0] == body {
        return;
    }
    if std::env::var("KILN_BLESS").is_ok_and(|v| v == "1") {
        let path = root().join("README.md");
        let readme = std::fs::read_to_string(&path).unwrap();
        // Replace by renaming, so the other README test never reads a half-written file.
        let tmp = root().join("README.md.bless");
        std::fs::write(&tmp, readme.replacen(&blocks[0], &body, 1)).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        return;
    }
    panic!(
        "README.md's ```rust block differs from examples/embed.rs; \
         KILN_BLESS=1 cargo test --test it docs copies the file over"
    );
}

#[test]
fn readme_kiln_snippets_compile() {
    let blocks = fenced_blocks("kiln");
    assert!(!blocks.is_empty(), "README.md should show some Kiln");
    let dir = tempfile::tempdir().unwrap();
    for (i, block) in blocks.iter().enumerate() {
        let name = format!("readme{i}.kl");
        std::fs::write(dir.path().join(&name), block).unwrap();
        let run = kiln(
            ["check", "--lib", name.as_str()],
            dir.path(),
            Duration::from_secs(60),
        );
        assert_eq!(
            run.code,
            Some(0),
            "README.md's ```kiln block {i} does not compile ({}):\n{}",
            run.describe(),
            run.stderr_text()
        );
    }
}

/// The repository carries the language reference for its readers; the project's shared copy
/// (beside the checkout, where this workplace keeps it) is the original, so the two must agree.
#[test]
fn language_reference_matches_the_shared_original() {
    let ours = std::fs::read_to_string(root().join("LANGUAGE.md")).unwrap();
    assert!(
        ours.starts_with("# The Kiln language"),
        "LANGUAGE.md is not the reference"
    );
    let shared = root().join("../shared/LANGUAGE.md");
    if let Ok(original) = std::fs::read_to_string(&shared) {
        assert!(
            ours == original,
            "LANGUAGE.md differs from {}; copy it over",
            shared.display()
        );
    }
}
