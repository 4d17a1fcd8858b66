//! `ffi/spikeforge.h` declares exactly the functions the library exports: every `#[no_mangle]`
//! function of `src/` (the C ABI) and every handler of the FFI target registry, and nothing
//! else. The header is read as text; so are the sources, so a new export that is not declared
//! (or a declaration left behind by a removed export) fails here.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use spikeforge::handlers::registry::FFI_TARGETS;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// `text` with `/* ... */` and `// ...` comments removed.
fn strip_c_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let block = rest.find("/*").unwrap_or(usize::MAX);
        let line = rest.find("//").unwrap_or(usize::MAX);
        if block == usize::MAX && line == usize::MAX {
            out.push_str(rest);
            return out;
        }
        let at = block.min(line);
        out.push_str(&rest[..at]);
        rest = if block < line {
            let end = rest[at + 2..].find("*/").expect("an unterminated comment");
            &rest[at + 2 + end + 2..]
        } else {
            rest[at..].find('\n').map_or("", |e| &rest[at + e..])
        };
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The names of the functions the header declares: each `;`-terminated declaration with a
/// parameter list, by the identifier right before its `(`.
fn declared_functions(header: &str) -> BTreeSet<String> {
    let code: String = strip_c_comments(header)
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    code.split([';', '{', '}'])
        .filter_map(|decl| {
            let open = decl.find('(')?;
            let name: String = decl[..open]
                .trim_end()
                .chars()
                .rev()
                .take_while(|&c| is_ident(c))
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The names of the `#[no_mangle]` functions in `source`: the `fn` that follows each attribute
/// written on a line of its own. The template of a macro (`fn $name`) names no function: the
/// macro's uses are listed elsewhere (the registry).
fn no_mangle_functions(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut offset = 0;
    for line in source.split_inclusive('\n') {
        if line.trim() == "#[no_mangle]" {
            let after = &source[offset + line.len()..];
            let fn_at = after.find("fn ").expect("#[no_mangle] on a function");
            let name: String = after[fn_at + 3..]
                .chars()
                .take_while(|&c| is_ident(c) || c == '$')
                .collect();
            if !name.starts_with('$') {
                names.push(name);
            }
        }
        offset += line.len();
    }
    names
}

#[test]
fn header_declares_exactly_the_exported_functions() {
    let header = fs::read_to_string(Path::new(ROOT).join("ffi/spikeforge.h")).unwrap();
    let declared = declared_functions(&header);

    let mut files = Vec::new();
    rust_files(&Path::new(ROOT).join("src"), &mut files);
    let mut exported = BTreeSet::new();
    for file in &files {
        exported.extend(no_mangle_functions(&fs::read_to_string(file).unwrap()));
    }
    assert!(
        exported.contains("sf_ffi_targets") && exported.contains("sf_model_compile"),
        "the C ABI scan found {exported:?}"
    );
    for target in FFI_TARGETS {
        assert!(
            exported.insert(target.symbol.to_owned()),
            "{} is both a registry handler and a #[no_mangle] function",
            target.symbol
        );
    }

    let missing: Vec<_> = exported.difference(&declared).collect();
    let extra: Vec<_> = declared.difference(&exported).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "ffi/spikeforge.h is out of date: not declared {missing:?}, declared but not exported {extra:?}"
    );
}

#[test]
fn the_scanners_read_what_they_should() {
    let header = "/* f(void); */ int a(void);\n// int b(void);\nstruct S;\n#define M(x) x\nchar *c(const char *s, int (*cb)(int));";
    let names: Vec<_> = declared_functions(header).into_iter().collect();
    assert_eq!(names, ["a", "c"]);
    let source = "#[no_mangle]\npub unsafe extern \"C\" fn sf_x(a: i32) {}\n    #[no_mangle]\n    \
                  pub extern \"C\" fn sf_y() {}\n/// `#[no_mangle]` in a comment\nfn z() {}\n\
                  #[no_mangle]\n$vis fn $name() {}";
    assert_eq!(no_mangle_functions(source), ["sf_x", "sf_y"]);
}
