//! The shape of `src/`, checked by parsing every file: layers import only downward (the table
//! in ARCHITECTURE.md), no file passes 400 lines and no function 80, the web layer neither
//! touches the database nor writes SQL, and Diesel is named only in `db/`. A change that breaks
//! one of these fails here, naming the file and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

const MAX_FILE_LINES: usize = 400;
const MAX_FN_LINES: usize = 80;

/// Which top-level modules each module may use (besides itself). The assembly (`app`, `main`,
/// `lib`) may use everything.
const ALLOWED: &[(&str, &[&str])] = &[
    ("wxpay", &[]),
    ("domain", &["wxpay"]),
    ("db", &["domain", "wxpay"]),
    ("config", &["domain", "wxpay"]),
    ("error", &["db", "domain", "wxpay"]),
    ("payments", &["error", "config", "db", "domain", "wxpay"]),
    ("staff", &["error", "config", "db", "domain", "wxpay"]),
    ("jobs", &["payments", "staff", "error", "config", "db", "domain", "wxpay"]),
    ("web", &["payments", "staff", "error", "config", "domain", "wxpay"]),
    ("simulator", &["wxpay"]),
];

struct SourceFile {
    path: PathBuf,
    /// The top-level module the file belongs to (`web` for `src/web/admin/orders.rs`).
    module: String,
    text: String,
    syntax: syn::File,
}

fn sources() -> Vec<SourceFile> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let syntax = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let relative = path.strip_prefix(&root).unwrap();
            let first = relative.components().next().unwrap().as_os_str().to_string_lossy();
            let module = first.trim_end_matches(".rs").to_owned();
            SourceFile { path: relative.to_owned(), module, text, syntax }
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::<module>` a file names, in `use` trees, paths and macro arguments, with its
/// line. Test modules (`#[cfg(test)]`) are left out: tests may reach anything, the simulator
/// included.
#[derive(Default)]
struct CrateRefs {
    refs: Vec<(String, usize)>,
}

impl CrateRefs {
    fn tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        for (i, tree) in trees.iter().enumerate() {
            match tree {
                TokenTree::Group(g) => self.tokens(g.stream()),
                TokenTree::Ident(id) if id == "crate" => {
                    if let (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)), Some(TokenTree::Ident(m))) =
                        (trees.get(i + 1), trees.get(i + 2), trees.get(i + 3))
                        && a.as_char() == ':'
                        && b.as_char() == ':'
                    {
                        self.refs.push((m.to_string(), id.span().start().line));
                    }
                }
                _ => {}
            }
        }
    }

    fn use_tree(&mut self, tree: &syn::UseTree, under_crate: bool) {
        match tree {
            syn::UseTree::Path(p) if p.ident == "crate" => self.use_tree(&p.tree, true),
            syn::UseTree::Path(p) if under_crate => self.refs.push((p.ident.to_string(), p.ident.span().start().line)),
            syn::UseTree::Name(n) if under_crate => self.refs.push((n.ident.to_string(), n.ident.span().start().line)),
            syn::UseTree::Rename(r) if under_crate => {
                self.refs.push((r.ident.to_string(), r.ident.span().start().line))
            }
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| self.use_tree(t, under_crate)),
            _ => {}
        }
    }
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg") && matches!(&a.meta, syn::Meta::List(l) if l.tokens.to_string().contains("test"))
    })
}

impl<'ast> Visit<'ast> for CrateRefs {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !is_cfg_test(&m.attrs) {
            syn::visit::visit_item_mod(self, m);
        }
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if !is_cfg_test(&f.attrs) {
            syn::visit::visit_item_fn(self, f);
        }
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&u.tree, false);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        if p.segments.len() >= 2 && p.segments[0].ident == "crate" {
            let m = &p.segments[1].ident;
            self.refs.push((m.to_string(), m.span().start().line));
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.tokens(m.tokens.clone());
        syn::visit::visit_macro(self, m);
    }
}

#[test]
fn layers_import_only_downward() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut problems = Vec::new();
    for file in sources() {
        let Some(may_use) = allowed.get(file.module.as_str()) else {
            assert!(
                matches!(file.module.as_str(), "app" | "main" | "lib"),
                "{}: module `{}` is in no layer; add it to ALLOWED and ARCHITECTURE.md",
                file.path.display(),
                file.module
            );
            continue;
        };
        let mut refs = CrateRefs::default();
        refs.visit_file(&file.syntax);
        for (target, line) in refs.refs {
            if target != file.module && !may_use.contains(&target.as_str()) {
                problems.push(format!("src/{}:{line}: `{}` uses `crate::{target}`", file.path.display(), file.module));
            }
        }
    }
    assert!(problems.is_empty(), "imports against the layers:\n{}", problems.join("\n"));
}

#[test]
fn the_web_layer_neither_touches_the_database_nor_writes_sql() {
    let mut problems = Vec::new();
    for file in sources().into_iter().filter(|f| f.module == "web") {
        for (i, line) in file.text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for needle in [".db.", "db.write", "db.read", "diesel", "sql_query", "run_blocking"] {
                if code.contains(needle) {
                    problems.push(format!("src/{}:{}: `{needle}`", file.path.display(), i + 1));
                }
            }
        }
    }
    assert!(problems.is_empty(), "the web layer reaches the database:\n{}", problems.join("\n"));
}

#[test]
fn diesel_lives_only_in_the_db_layer() {
    let mut problems = Vec::new();
    for file in sources().into_iter().filter(|f| f.module != "db") {
        for (i, line) in file.text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("diesel") {
                problems.push(format!("src/{}:{}", file.path.display(), i + 1));
            }
        }
    }
    assert!(problems.is_empty(), "Diesel outside src/db:\n{}", problems.join("\n"));
}

#[test]
fn no_file_passes_400_lines() {
    let long: Vec<String> = sources()
        .into_iter()
        .map(|f| (f.text.lines().count(), f.path))
        .filter(|(n, _)| *n > MAX_FILE_LINES)
        .map(|(n, p)| format!("src/{}: {n} lines", p.display()))
        .collect();
    assert!(long.is_empty(), "files over {MAX_FILE_LINES} lines:\n{}", long.join("\n"));
}

/// Every function, method and nested function, from its signature to its closing brace.
#[derive(Default)]
struct FnLengths {
    found: Vec<(String, usize, usize)>,
}

impl FnLengths {
    fn record(&mut self, sig: &syn::Signature, block: &syn::Block) {
        let (start, end) = (sig.fn_token.span.start().line, block.brace_token.span.close().end().line);
        self.found.push((sig.ident.to_string(), start, end - start + 1));
    }
}

impl<'ast> Visit<'ast> for FnLengths {
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.record(&f.sig, &f.block);
        syn::visit::visit_item_fn(self, f);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.record(&f.sig, &f.block);
        syn::visit::visit_impl_item_fn(self, f);
    }

    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if let Some(block) = &f.default {
            self.record(&f.sig, block);
        }
        syn::visit::visit_trait_item_fn(self, f);
    }
}

#[test]
fn no_function_passes_80_lines() {
    let mut long = Vec::new();
    for file in sources() {
        let mut lengths = FnLengths::default();
        lengths.visit_file(&file.syntax);
        for (name, line, n) in lengths.found {
            if n > MAX_FN_LINES {
                long.push(format!("src/{}:{line}: fn {name} is {n} lines", file.path.display()));
            }
        }
    }
    assert!(long.is_empty(), "functions over {MAX_FN_LINES} lines:\n{}", long.join("\n"));
}
