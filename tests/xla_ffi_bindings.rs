//! The committed XLA FFI bindings (`src/xla/sys/c_api.rs`) against the headers of the installed
//! jaxlibs, and the one place that runs bindgen (`regenerate`, through
//! `scripts/regen_xla_ffi_bindings.sh`).
//!
//! Why committed: generating them in a build script needed libclang and jaxlib at build time, so
//! `pip install .` failed on machines without libclang-dev. Like cudarc, we commit bindgen's output
//! for one header, the oldest supported jaxlib's (0.10.2, XLA FFI API 0.3: the version the
//! handlers announce), and check it here:
//!
//! * a header of the committed API version must give exactly the committed file;
//! * a newer header must be compatible with it: XLA FFI structs only grow at their end (callers
//!   pass `struct_size`), so every committed struct's fields must be a prefix of the newer
//!   struct's, with the same types; every committed constant keeps its value (the minor API
//!   version may grow, and `*_STRUCT_SIZE` grows exactly when fields were appended); every type
//!   alias (enum types, function-pointer types) is identical; and no struct held by value by
//!   another grew, since that moves the fields after it. Names XLA changed without changing the
//!   layout are listed in [`RENAMED`]; a newer header may also add items. The one break found
//!   (API 0.5, `XLA_FFI_Handler_Register_Args`) is in [`UNUSED_BREAKING`], which src/ must not use.
//!
//! Headers are found through `SPIKEFORGE_XLA_FFI_INCLUDE` (a path list of directories holding
//! `xla/ffi/api/c_api.h`), else by asking the project's `.venv311` and `.venv` and `python3` for
//! jaxlib's include directory. Without libclang or without any header the check is skipped with a
//! message, unless `SPIKEFORGE_REQUIRE_BINDINGS_CHECK=1` (CI), where that is a failure, as is
//! finding no header of the committed version or none newer.

use std::collections::{BTreeMap, BTreeSet};
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;

const HEADER: &str = "xla/ffi/api/c_api.h";
const INCLUDE_ENV: &str = "SPIKEFORGE_XLA_FFI_INCLUDE";
const REQUIRE_ENV: &str = "SPIKEFORGE_REQUIRE_BINDINGS_CHECK";

/// The committed bindings, relative to the crate root.
const COMMITTED: &str = "src/xla/sys/c_api.rs";

/// Prepended to bindgen's output; part of what the exact check compares.
const PREAMBLE: &str = "\
// XLA FFI C API bindings: bindgen's output for `xla/ffi/api/c_api.h` of the oldest supported
// jaxlib. Do not edit: regenerate with scripts/regen_xla_ffi_bindings.sh; tests/xla_ffi_bindings.rs
// checks this file against the installed jaxlib headers.
";

/// (committed name, name in a newer header) for items XLA renamed without changing their layout.
/// Applied only where a newer header lacks the committed name and has the new one; `*_STRUCT_SIZE`
/// constants follow their struct.
const RENAMED: &[(&str, &str)] = &[
    // API 0.4: the extension header became internal; same fields.
    ("XLA_FFI_Extension_Base", "XLA_FFI_InternalExtension"),
    ("XLA_FFI_Extension_Type", "XLA_FFI_InternalExtension_Type"),
    // API 0.4: the message getter also returns the error code (appended to its args struct).
    (
        "XLA_FFI_Error_GetMessage_Args",
        "XLA_FFI_Error_GetDetails_Args",
    ),
    ("XLA_FFI_Error_GetMessage", "XLA_FFI_Error_GetDetails"),
    // API 0.5: ExecutionContext became InvokeContext (the old name is kept as an alias).
    ("XLA_FFI_ExecutionContext", "XLA_FFI_InvokeContext"),
    (
        "XLA_FFI_ExecutionContext_Get_Args",
        "XLA_FFI_InvokeContext_Get_Args",
    ),
    ("XLA_FFI_ExecutionContext_Get", "XLA_FFI_InvokeContext_Get"),
];

/// Fields that newer headers append and the bridge relies on (`ErrorGetDetailsArgs` in
/// src/xla/result.rs): (committed struct, field, its type in the newer header).
const USED_APPENDED_FIELDS: &[(&str, &str, &str)] = &[(
    "XLA_FFI_Error_GetMessage_Args",
    "errc",
    "XLA_FFI_Error_Code",
)];

/// Committed items that a supported newer header breaks, so the bridge must not use them
/// (`bridge_uses_no_item_that_newer_headers_break` checks src/), with the reason.
const UNUSED_BREAKING: &[(&str, &str)] = &[(
    "XLA_FFI_Handler_Register_Args",
    "API 0.5 appended `record` to XLA_FFI_Handler_Bundle, which this struct holds by value before \
     `traits`; spikeforge registers its handlers from Python (jax.ffi), never through the C API",
)];

// ---------------------------------------------------------------------------------------------
// Generating

/// bindgen's output for the header under `include`, with the committed file's preamble.
fn generate(include: &Path) -> String {
    let header = include.join(HEADER);
    let bindings = bindgen::Builder::default()
        .header(header.to_string_lossy())
        .clang_arg(format!("-I{}", include.display()))
        .allowlist_type("XLA_FFI_.*")
        .allowlist_var("XLA_FFI_.*")
        .allowlist_function("XLA_FFI_.*")
        // The crate's minimum Rust, so that the output compiles wherever the crate does.
        .rust_target(bindgen::RustTarget::stable(85, 0).expect("a Rust version bindgen knows"))
        // Plain integer constants, not Rust enums: XLA may hand us enum values newer than the
        // header (a new dtype, a new stage), and an out-of-range Rust enum would be undefined
        // behaviour.
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .derive_default(true)
        .generate()
        .unwrap_or_else(|e| panic!("bindgen failed on {}: {e}", header.display()));
    format!("{PREAMBLE}{bindings}")
}

/// Whether libclang loads (bindgen needs it); the reason when it does not.
fn libclang() -> Result<(), String> {
    clang_sys::load().map_err(|e| format!("libclang is not available ({e})"))
}

fn required() -> bool {
    env::var(REQUIRE_ENV).is_ok_and(|v| v == "1")
}

/// Skips with a message, or fails where the check is required.
fn skip(reason: &str) {
    assert!(
        !required(),
        "{reason}, and {REQUIRE_ENV}=1 requires the bindings check"
    );
    eprintln!("SKIPPED: {reason}");
}

fn committed_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(COMMITTED)
}

/// Writes the committed bindings from the one header in `SPIKEFORGE_XLA_FFI_INCLUDE`; run by
/// `scripts/regen_xla_ffi_bindings.sh`.
#[test]
#[ignore = "writes src/xla/sys/c_api.rs: run through scripts/regen_xla_ffi_bindings.sh"]
fn regenerate() {
    let dirs = explicit_include_dirs().unwrap_or_default();
    let [include] = dirs.as_slice() else {
        panic!("set {INCLUDE_ENV} to exactly one directory holding {HEADER}, got {dirs:?}");
    };
    libclang().unwrap_or_else(|e| panic!("{e}: install libclang-dev, or set LIBCLANG_PATH"));
    let text = generate(include);
    fs::write(committed_path(), &text).expect("write the committed bindings");
    let api = Bindings::parse(&text).api_version();
    eprintln!(
        "wrote {COMMITTED} from {} (XLA FFI API {}.{})",
        include.join(HEADER).display(),
        api.0,
        api.1
    );
}

// ---------------------------------------------------------------------------------------------
// Finding headers

/// `SPIKEFORGE_XLA_FFI_INCLUDE` as a path list; `None` when unset. An entry without the header is
/// an error, not a reason to look elsewhere.
fn explicit_include_dirs() -> Option<Vec<PathBuf>> {
    let value = env::var_os(INCLUDE_ENV)?;
    let dirs: Vec<PathBuf> = env::split_paths(&value)
        .filter(|d| !d.as_os_str().is_empty())
        .collect();
    for dir in &dirs {
        assert!(
            dir.join(HEADER).is_file(),
            "{INCLUDE_ENV}: {} has no {HEADER}",
            dir.display()
        );
    }
    Some(dirs)
}

/// jaxlib's include directory as `python` sees it (`None` if it has no jaxlib).
fn include_dir_of(python: &Path) -> Option<PathBuf> {
    const FIND: &str =
        "import os, jaxlib; print(os.path.join(os.path.dirname(jaxlib.__file__), 'include'))";
    let output = Command::new(python).args(["-c", FIND]).output().ok()?;
    let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    (output.status.success() && dir.join(HEADER).is_file()).then_some(dir)
}

/// Every distinct header to check against.
fn include_dirs() -> Vec<PathBuf> {
    if let Some(dirs) = explicit_include_dirs() {
        return dirs;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pythons = [
        root.join(".venv311/bin/python"),
        root.join(".venv/bin/python"),
        PathBuf::from("python3"),
    ];
    let mut seen = BTreeSet::new();
    pythons
        .iter()
        .filter_map(|python| include_dir_of(python))
        .filter(|dir| seen.insert(fs::canonicalize(dir.join(HEADER)).unwrap_or(dir.clone())))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The bindings as data

/// What bindgen emitted, by item name; types and values as token strings.
#[derive(Default)]
struct Bindings {
    /// `pub const NAME: TYPE = VALUE;`
    consts: BTreeMap<String, (String, String)>,
    /// `pub type NAME = TYPE;`
    aliases: BTreeMap<String, String>,
    /// `#[repr(..)] pub struct NAME { fields }`: the repr and each (field, type).
    structs: BTreeMap<String, (String, Vec<(String, String)>)>,
    /// `extern "C" { fn ... }` declarations, as whole signatures.
    functions: BTreeMap<String, String>,
}

fn tokens(tokens: &impl ToTokens) -> String {
    tokens.to_token_stream().to_string()
}

impl Bindings {
    fn parse(text: &str) -> Bindings {
        let file = syn::parse_file(text).expect("bindgen output parses");
        let mut bindings = Bindings::default();
        for item in file.items {
            match item {
                syn::Item::Const(c) if c.ident == "_" => {} // bindgen's layout assertions
                syn::Item::Const(c) => {
                    let entry = (tokens(&c.ty), tokens(&c.expr));
                    bindings.consts.insert(c.ident.to_string(), entry);
                }
                syn::Item::Type(t) => {
                    bindings.aliases.insert(t.ident.to_string(), tokens(&t.ty));
                }
                syn::Item::Struct(s) => {
                    let repr = s
                        .attrs
                        .iter()
                        .filter(|a| a.path().is_ident("repr"))
                        .map(tokens)
                        .collect::<Vec<_>>()
                        .join(" ");
                    let fields = s
                        .fields
                        .iter()
                        .map(|f| (tokens(&f.ident), tokens(&f.ty)))
                        .collect();
                    bindings.structs.insert(s.ident.to_string(), (repr, fields));
                }
                syn::Item::ForeignMod(m) => {
                    for item in m.items {
                        let syn::ForeignItem::Fn(f) = item else {
                            panic!("unexpected foreign item: {}", tokens(&item));
                        };
                        bindings
                            .functions
                            .insert(f.sig.ident.to_string(), tokens(&f.sig));
                    }
                }
                syn::Item::Impl(_) => {} // `Default` impls (derive_default)
                other => panic!(
                    "bindgen emitted an item this check does not know: {}",
                    tokens(&other)
                ),
            }
        }
        bindings
    }

    fn int_const(&self, name: &str) -> i64 {
        let (_, value) = &self.consts[name];
        syn::parse_str::<syn::LitInt>(value)
            .and_then(|literal| literal.base10_parse())
            .unwrap_or_else(|_| panic!("{name} = {value} is not an integer literal"))
    }

    fn api_version(&self) -> (i64, i64) {
        (
            self.int_const("XLA_FFI_API_MAJOR"),
            self.int_const("XLA_FFI_API_MINOR"),
        )
    }

    fn has(&self, name: &str) -> bool {
        self.consts.contains_key(name)
            || self.aliases.contains_key(name)
            || self.structs.contains_key(name)
            || self.functions.contains_key(name)
    }
}

// ---------------------------------------------------------------------------------------------
// Compatibility of a newer header

/// bindgen names the type of an anonymous C enum `_bindgen_ty_<n>`, numbered in header order, so
/// the number is not stable across headers: such types are compared by what they alias.
fn is_anonymous(name: &str) -> bool {
    name.starts_with("_bindgen_ty_")
}

/// Maps committed names to a newer header's names, and writes types of either in comparable words.
struct Translation<'a> {
    old: &'a Bindings,
    newer: &'a Bindings,
}

impl Translation<'_> {
    /// The newer header's name for a committed item (or field).
    fn name(&self, old: &str) -> String {
        if self.newer.has(old) {
            return old.to_owned();
        }
        let renamed = |name: &str| {
            RENAMED
                .iter()
                .find(|(from, _)| *from == name)
                .map(|(_, to)| to.to_string())
        };
        if let Some(new) = renamed(old) {
            return new;
        }
        if let Some(base) = old.strip_suffix("_STRUCT_SIZE") {
            if let Some(new) = renamed(base) {
                return format!("{new}_STRUCT_SIZE");
            }
        }
        old.to_owned()
    }

    /// A committed type (or signature) in the newer header's words.
    fn old_ty(&self, ty: &str) -> String {
        self.words(ty, self.old, true)
    }

    /// A newer header's type (or signature), written comparably.
    fn new_ty(&self, ty: &str) -> String {
        self.words(ty, self.newer, false)
    }

    fn words(&self, ty: &str, side: &Bindings, rename: bool) -> String {
        let stream: TokenStream = ty.parse().expect("a token string parses back");
        self.stream(stream, side, rename)
    }

    /// Each identifier renamed (committed side only), then resolved: anonymous enum types to what
    /// they alias, and the newer header's aliases of plain struct names to the struct (API 0.5's
    /// `type XLA_FFI_ExecutionContext = XLA_FFI_InvokeContext`).
    fn stream(&self, stream: TokenStream, side: &Bindings, rename: bool) -> String {
        let mut out = Vec::new();
        for tree in stream {
            out.push(match tree {
                TokenTree::Ident(ident) => {
                    let name = ident.to_string();
                    if is_anonymous(&name) {
                        let target = side.aliases.get(&name).expect("an anonymous enum type");
                        self.words(target, side, rename)
                    } else {
                        let name = if rename { self.name(&name) } else { name };
                        match self.newer.aliases.get(&name) {
                            Some(target) if self.newer.structs.contains_key(target) => {
                                target.clone()
                            }
                            _ => name,
                        }
                    }
                }
                TokenTree::Group(group) => {
                    let inner = self.stream(group.stream(), side, rename);
                    match group.delimiter() {
                        proc_macro2::Delimiter::Parenthesis => format!("({inner})"),
                        proc_macro2::Delimiter::Brace => format!("{{{inner}}}"),
                        proc_macro2::Delimiter::Bracket => format!("[{inner}]"),
                        proc_macro2::Delimiter::None => inner,
                    }
                }
                other => other.to_string(),
            });
        }
        out.join(" ")
    }
}

/// One way in which a newer header breaks a committed item.
#[derive(Debug, PartialEq)]
struct Problem {
    /// The committed item (a `*_STRUCT_SIZE` constant counts as its struct's).
    item: String,
    message: String,
}

/// Every way in which `newer` is not a compatible extension of `old`.
fn incompatibilities(old: &Bindings, newer: &Bindings) -> Vec<Problem> {
    let tr = Translation { old, newer };
    let mut problems = Vec::new();
    let mut report = |item: &str, message: String| {
        let item = item.strip_suffix("_STRUCT_SIZE").unwrap_or(item).to_owned();
        problems.push(Problem { item, message });
    };
    let missing = |name: &str, new: &str| format!("{name} (as {new}) is missing");

    for (name, (ty, value)) in &old.consts {
        let new = tr.name(name);
        let Some((new_ty, new_value)) = newer.consts.get(&new) else {
            report(name, missing(name, &new));
            continue;
        };
        if tr.old_ty(ty) != tr.new_ty(new_ty) {
            report(name, format!("constant {name}: type {ty} became {new_ty}"));
        }
        if name == "XLA_FFI_API_MINOR" {
            if newer.int_const(&new) < old.int_const(name) {
                report(name, format!("{name} went down: {value} -> {new_value}"));
            }
        } else if let Some(base) = name.strip_suffix("_STRUCT_SIZE") {
            let fields = |b: &Bindings, s: &str| b.structs.get(s).map(|(_, f)| f.len());
            let appended = fields(newer, &tr.name(base)) > fields(old, base);
            let (o, n) = (old.int_const(name), newer.int_const(&new));
            if (appended && n <= o) || (!appended && n != o) {
                report(
                    name,
                    format!("{name}: {o} -> {n} (fields appended: {appended})"),
                );
            }
        } else if value != new_value {
            report(name, format!("constant {name}: {value} became {new_value}"));
        }
    }

    for (name, ty) in old.aliases.iter().filter(|(name, _)| !is_anonymous(name)) {
        let new = tr.name(name);
        match newer.aliases.get(&new) {
            None => report(name, missing(name, &new)),
            Some(new_ty) if tr.old_ty(ty) != tr.new_ty(new_ty) => {
                report(name, format!("type {name}: {ty} became {new_ty}"));
            }
            Some(_) => {}
        }
    }

    for (name, (repr, fields)) in &old.structs {
        let new = tr.old_ty(name);
        let Some((new_repr, new_fields)) = newer.structs.get(&new) else {
            report(name, missing(name, &new));
            continue;
        };
        if repr != new_repr {
            report(name, format!("struct {name}: {repr} became {new_repr}"));
        }
        if new_fields.len() < fields.len() {
            let (o, n) = (fields.len(), new_fields.len());
            report(name, format!("struct {name}: {o} fields became {n}"));
        }
        for (i, ((field, ty), (new_field, new_ty))) in fields.iter().zip(new_fields).enumerate() {
            if tr.name(field) != *new_field || tr.old_ty(ty) != tr.new_ty(new_ty) {
                report(
                    name,
                    format!("struct {name}: field `{field}: {ty}` became `{new_field}: {new_ty}`"),
                );
            }
            // A struct held by value that grew moves every field after it.
            let embedded = |b: &Bindings, s: &str| b.structs.get(s).map(|(_, f)| f.len());
            let grew = embedded(newer, &tr.old_ty(ty)) > embedded(old, ty);
            if grew && i + 1 < fields.len() {
                report(
                    name,
                    format!(
                        "struct {name}: field `{field}` holds {ty} by value, which grew, moving \
                         the fields after it"
                    ),
                );
            }
        }
    }

    for (name, signature) in &old.functions {
        match newer.functions.get(name) {
            None => report(name, missing(name, name)),
            Some(new) if tr.old_ty(signature) != tr.new_ty(new) => {
                report(name, format!("function {name}: {signature} became {new}"));
            }
            Some(_) => {}
        }
    }
    problems
}

/// Where a newer header appended to a struct whose appended field the bridge uses, that field
/// must be the first one appended, with the expected type.
fn appended_field_problems(old: &Bindings, newer: &Bindings) -> Vec<String> {
    let tr = Translation { old, newer };
    let mut problems = Vec::new();
    for &(name, field, ty) in USED_APPENDED_FIELDS {
        let Some((_, fields)) = old.structs.get(name) else {
            problems.push(format!("the committed bindings have no struct {name}"));
            continue;
        };
        let new = tr.old_ty(name);
        let Some((_, new_fields)) = newer.structs.get(&new) else {
            continue; // reported as missing by `incompatibilities`
        };
        match new_fields.get(fields.len()) {
            None => {} // not appended yet: XLA leaves our extra field alone
            Some((f, t)) if f == field && tr.new_ty(t) == tr.new_ty(ty) => {}
            Some((f, t)) => problems.push(format!(
                "struct {new}: the bridge expects `{field}: {ty}` after {name}'s fields, found `{f}: {t}`"
            )),
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// The checks

/// The first line where two texts differ, for a readable failure.
fn first_difference(a: &str, b: &str) -> String {
    let (mut a_lines, mut b_lines) = (a.lines(), b.lines());
    for line in 1.. {
        match (a_lines.next(), b_lines.next()) {
            (None, None) => break,
            (x, y) if x == y => {}
            (x, y) => {
                return format!(
                    "line {line}:\n  committed: {}\n  generated: {}",
                    x.unwrap_or("<end of file>"),
                    y.unwrap_or("<end of file>")
                )
            }
        }
    }
    "no line differs (line endings?)".to_owned()
}

#[test]
fn committed_bindings_match_installed_jaxlib_headers() {
    let committed_text = fs::read_to_string(committed_path()).expect("committed bindings");
    let committed = Bindings::parse(&committed_text);
    let version = committed.api_version();

    if let Err(reason) = libclang() {
        return skip(&format!(
            "{reason}: the committed bindings were not checked"
        ));
    }
    let dirs = include_dirs();
    if dirs.is_empty() {
        return skip(&format!(
            "no jaxlib header found ({INCLUDE_ENV}, .venv311, .venv, python3): the committed \
             bindings were not checked"
        ));
    }

    let (mut exact, mut newer) = (0, 0);
    for dir in dirs {
        let header = dir.join(HEADER);
        let text = generate(&dir);
        let generated = Bindings::parse(&text);
        let found = generated.api_version();
        eprintln!(
            "checking against {} (XLA FFI API {}.{})",
            header.display(),
            found.0,
            found.1
        );
        if found == version {
            assert!(
                text == committed_text,
                "{COMMITTED} differs from bindgen's output for {} at {}\nRegenerate it with \
                 scripts/regen_xla_ffi_bindings.sh.",
                header.display(),
                first_difference(&committed_text, &text)
            );
            exact += 1;
        } else {
            assert!(
                found.0 == version.0 && found.1 > version.1,
                "{} has XLA FFI API {found:?}; the committed bindings are {version:?}, and only \
                 newer minor versions of the same major version are supported",
                header.display()
            );
            let mut problems: Vec<String> = incompatibilities(&committed, &generated)
                .into_iter()
                .filter(|p| !UNUSED_BREAKING.iter().any(|(item, _)| *item == p.item))
                .map(|p| p.message)
                .collect();
            problems.extend(appended_field_problems(&committed, &generated));
            assert!(
                problems.is_empty(),
                "{} is not a compatible extension of the committed bindings:\n  {}",
                header.display(),
                problems.join("\n  ")
            );
            newer += 1;
        }
    }
    if required() {
        assert!(
            exact > 0 && newer > 0,
            "{REQUIRE_ENV}=1: checked {exact} header(s) of API {version:?} and {newer} newer; \
             both kinds are required (set up .venv311 with the oldest jaxlib and .venv with the newest)"
        );
    }
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("a source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn bridge_uses_no_item_that_newer_headers_break() {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() > 10, "found the sources");
    for file in files.iter().filter(|f| !f.ends_with(COMMITTED)) {
        let text = fs::read_to_string(file).expect("a source file");
        for (item, why) in UNUSED_BREAKING {
            assert!(
                !text.contains(item),
                "{} uses {item}, which newer jaxlibs lay out differently: {why}",
                file.display()
            );
        }
    }
}

/// The check itself must catch what it is for: a field inserted in the middle, a changed constant,
/// a changed function-pointer type, a removed struct, a struct held by value that grew.
#[test]
fn compatibility_check_catches_breaking_changes() {
    let old = Bindings::parse(
        r#"
        pub const XLA_FFI_API_MAJOR: u32 = 0;
        pub const XLA_FFI_API_MINOR: u32 = 3;
        pub const XLA_FFI_DataType_F32: XLA_FFI_DataType = 11;
        pub type XLA_FFI_DataType = ::std::os::raw::c_uint;
        #[repr(C)]
        pub struct XLA_FFI_Extension_Base { pub struct_size: usize, pub next: *mut XLA_FFI_Extension_Base }
        pub const XLA_FFI_Extension_Base_STRUCT_SIZE: _bindgen_ty_1 = 16;
        #[repr(C)]
        pub struct XLA_FFI_Args { pub struct_size: usize, pub extension_start: *mut XLA_FFI_Extension_Base, pub size: i64 }
        pub const XLA_FFI_Args_STRUCT_SIZE: _bindgen_ty_2 = 24;
        pub type XLA_FFI_Handler = ::std::option::Option<unsafe extern "C" fn(args: *mut XLA_FFI_Args) -> u32>;
        #[repr(C)]
        pub struct XLA_FFI_Bundle { pub execute: *mut XLA_FFI_Handler }
        #[repr(C)]
        pub struct XLA_FFI_Register { pub bundle: XLA_FFI_Bundle, pub traits: u32 }
        pub type _bindgen_ty_1 = ::std::os::raw::c_uint;
        pub type _bindgen_ty_2 = ::std::os::raw::c_uint;
        "#,
    );
    // Renamed per `RENAMED`, anonymous enums renumbered, fields, structs and constants added.
    let compatible = r#"
        pub const XLA_FFI_API_MAJOR: u32 = 0;
        pub const XLA_FFI_API_MINOR: u32 = 5;
        pub const XLA_FFI_DataType_F32: XLA_FFI_DataType = 11;
        pub const XLA_FFI_DataType_F64: XLA_FFI_DataType = 12;
        pub type XLA_FFI_DataType = ::std::os::raw::c_uint;
        #[repr(C)]
        pub struct XLA_FFI_InternalExtension { pub struct_size: usize, pub next: *mut XLA_FFI_InternalExtension }
        pub const XLA_FFI_InternalExtension_STRUCT_SIZE: _bindgen_ty_7 = 16;
        #[repr(C)]
        pub struct XLA_FFI_Args { pub struct_size: usize, pub extension_start: *mut XLA_FFI_InternalExtension, pub size: i64, pub more: i64 }
        pub const XLA_FFI_Args_STRUCT_SIZE: _bindgen_ty_9 = 32;
        pub type XLA_FFI_Handler = ::std::option::Option<unsafe extern "C" fn(args: *mut XLA_FFI_Args) -> u32>;
        #[repr(C)]
        pub struct XLA_FFI_Bundle { pub execute: *mut XLA_FFI_Handler }
        #[repr(C)]
        pub struct XLA_FFI_Register { pub bundle: XLA_FFI_Bundle, pub traits: u32 }
        #[repr(C)]
        pub struct XLA_FFI_New { pub x: u8 }
        pub type _bindgen_ty_7 = ::std::os::raw::c_uint;
        pub type _bindgen_ty_9 = ::std::os::raw::c_uint;
        "#;
    assert_eq!(
        incompatibilities(&old, &Bindings::parse(compatible)),
        Vec::new()
    );

    let breaking = [
        // a field inserted before an existing one
        (
            "pub size: i64, pub more: i64",
            "pub more: i64, pub size: i64",
        ),
        // a field's type changed
        ("pub size: i64, pub more", "pub size: i32, pub more"),
        // a constant's value changed
        (
            "XLA_FFI_DataType_F32: XLA_FFI_DataType = 11",
            "XLA_FFI_DataType_F32: XLA_FFI_DataType = 13",
        ),
        // an enum's type changed
        (
            "XLA_FFI_DataType = ::std::os::raw::c_uint",
            "XLA_FFI_DataType = ::std::os::raw::c_int",
        ),
        // a function-pointer type changed
        (
            "(args: *mut XLA_FFI_Args) -> u32",
            "(args: *const XLA_FFI_Args) -> u32",
        ),
        // a struct size that does not follow its fields
        (
            "XLA_FFI_Args_STRUCT_SIZE: _bindgen_ty_9 = 32",
            "XLA_FFI_Args_STRUCT_SIZE: _bindgen_ty_9 = 24",
        ),
        // a struct removed, or renamed without an entry in `RENAMED`
        (
            "pub struct XLA_FFI_InternalExtension {",
            "pub struct XLA_FFI_Gone {",
        ),
        // a struct held by value before another field grew
        (
            "pub execute: *mut XLA_FFI_Handler }",
            "pub execute: *mut XLA_FFI_Handler, pub record: *mut XLA_FFI_Handler }",
        ),
        // the minor version going down
        ("XLA_FFI_API_MINOR: u32 = 5", "XLA_FFI_API_MINOR: u32 = 2"),
    ];
    for (from, to) in breaking {
        assert!(compatible.contains(from), "{from}");
        let newer = Bindings::parse(&compatible.replace(from, to));
        let problems = incompatibilities(&old, &newer);
        assert!(!problems.is_empty(), "not caught: {from} -> {to}");
    }
}
