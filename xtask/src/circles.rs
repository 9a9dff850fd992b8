//! Import circles between the modules of each workspace crate: a module that
//! imports a module that imports it back, directly or through others. The
//! workspace has none; `workspace_has_no_import_circles` keeps it that way.
//!
//! A module is its file: `a/b.rs` or `a/b/mod.rs` is `a::b`, `lib.rs` and
//! `main.rs` are the crate root. A module points at another when it names it in
//! `use crate::…`, `use super::…`, `use self::…`, `use child::…` (a `child` it
//! declares with `mod child;`), or in a path `crate::…`, `super::…`, `self::…`
//! outside a `use`. A path points at the deepest module file along it, so
//! `crate::a::b::Item` is `a::b` when `a/b.rs` exists and `a` otherwise.
//!
//! Left out: pointers at the crate root (it declares every module, so counting
//! them would make each crate one circle), inline `#[cfg(test)] mod … { … }`
//! bodies (tests reach into their module through `super::` by design; test
//! modules in their own files count like any other), comments and literals, and
//! `src/bin` (binaries are crates of their own).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::iter;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A module's path from its crate root, `["cluster", "frontends"]`; the root's
/// is empty.
type ModulePath = Vec<String>;

/// The modules each module of a crate points at.
type ModuleGraph = BTreeMap<ModulePath, BTreeSet<ModulePath>>;

/// Modules of one crate that reach each other through what they import.
struct Circle {
    krate: String,
    modules: Vec<ModulePath>,
}

impl fmt::Display for Circle {
    /// `control: controllers <-> scheduler`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let modules: Vec<String> = self.modules.iter().map(|m| m.join("::")).collect();
        write!(f, "{}: {}", self.krate, modules.join(" <-> "))
    }
}

/// The circles of every crate of `workspace`, a crate being a folder of it
/// with a `src` folder.
fn workspace_circles(workspace: &Path) -> Result<Vec<Circle>> {
    let mut circles = Vec::new();
    for (krate, src) in crate_sources(workspace)? {
        let graph = module_graph(&src)?;
        circles.extend(circles_in(&graph).into_iter().map(|modules| Circle {
            krate: krate.clone(),
            modules,
        }));
    }
    Ok(circles)
}

/// Each crate's folder name and `src` folder, in name order.
fn crate_sources(workspace: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut crates = Vec::new();
    for entry in
        fs::read_dir(workspace).with_context(|| format!("listing {}", workspace.display()))?
    {
        let folder = entry?.path();
        let src = folder.join("src");
        if src.is_dir() {
            let name = folder
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            crates.push((name, src));
        }
    }
    crates.sort();
    Ok(crates)
}

/// Every module of the crate whose sources are in `src`, with the modules it
/// points at.
fn module_graph(src: &Path) -> Result<ModuleGraph> {
    let files = module_files(src)?;
    let modules: BTreeSet<ModulePath> = files.iter().map(|(module, _)| module.clone()).collect();
    let mut graph: ModuleGraph = modules
        .iter()
        .map(|module| (module.clone(), BTreeSet::new()))
        .collect();
    for (module, file) in &files {
        let source =
            fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        for path in referenced_paths(&source) {
            let target = resolve(&modules, module, &path);
            if !target.is_empty() && target != *module {
                graph.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    Ok(graph)
}

/// The `.rs` files under `src` but not under `src/bin`, with their module paths.
fn module_files(src: &Path) -> Result<Vec<(ModulePath, PathBuf)>> {
    let mut files = Vec::new();
    collect_rust_files(src, &src.join("bin"), &mut files)?;
    Ok(files
        .into_iter()
        .map(|file| (module_path(src, &file), file))
        .collect())
}

/// Adds the `.rs` files under `folder` to `files`, leaving out the folder `skipped`.
fn collect_rust_files(folder: &Path, skipped: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(folder).with_context(|| format!("listing {}", folder.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            if path != skipped {
                collect_rust_files(&path, skipped, files)?;
            }
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
    Ok(())
}

/// `src/a/b.rs` and `src/a/b/mod.rs` are `a::b`; `src/lib.rs` and
/// `src/main.rs` are the root.
fn module_path(src: &Path, file: &Path) -> ModulePath {
    let relative = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut path: ModulePath = relative
        .iter()
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    let names_its_folder = path.last().is_some_and(|name| name == "mod");
    let is_root = path == ["lib"] || path == ["main"];
    if names_its_folder || is_root {
        path.pop();
    }
    path
}

/// The module a path from `module` points at: the deepest existing module
/// along it, or the root.
fn resolve(modules: &BTreeSet<ModulePath>, module: &ModulePath, path: &[String]) -> ModulePath {
    let mut target = if path.first().is_some_and(|anchor| anchor == "crate") {
        Vec::new()
    } else {
        module.clone()
    };
    for segment in path {
        match segment.as_str() {
            "crate" | "self" => {}
            "super" => {
                target.pop();
            }
            name => target.push(name.to_owned()),
        }
    }
    while !target.is_empty() && !modules.contains(&target) {
        target.pop();
    }
    target
}

/// The paths in a module's source that may lead to another module of its
/// crate, each starting at `crate`, `super` or `self`: `use` paths (a path
/// into a declared child module gets a `self` in front) and other paths.
fn referenced_paths(source: &str) -> Vec<Vec<String>> {
    let tokens = without_inline_test_modules(Lexer::tokens(source));
    let children = declared_children(&tokens);
    let mut paths = Vec::new();
    let mut at = 0;
    while let Some(token) = tokens.get(at) {
        if token.is_word("use") {
            at += 1;
            let used = use_tree(&tokens, &mut at, Vec::new());
            paths.extend(
                used.into_iter()
                    .filter_map(|path| anchored(path, &children)),
            );
        } else if is_anchor(token) && tokens.get(at + 1) == Some(&Token::PathSeparator) {
            paths.push(inline_path(&tokens, &mut at));
        } else {
            at += 1;
        }
    }
    paths
}

/// `path` as it starts from `crate`, `super` or `self`, or `None` if it leads
/// out of the crate (`std::…`, another crate).
fn anchored(path: Vec<String>, children: &BTreeSet<String>) -> Option<Vec<String>> {
    let first = path.first()?;
    if ["crate", "super", "self"].contains(&first.as_str()) {
        Some(path)
    } else if children.contains(first) {
        Some(iter::once("self".to_owned()).chain(path).collect())
    } else {
        None
    }
}

fn is_anchor(token: &Token) -> bool {
    token.is_word("crate") || token.is_word("super") || token.is_word("self")
}

/// The modules declared with `mod name;`, whose files are children of this one.
fn declared_children(tokens: &[Token]) -> BTreeSet<String> {
    tokens
        .windows(3)
        .filter_map(|window| match window {
            [keyword, Token::Ident(name), Token::Punct(';')] if keyword.is_word("mod") => {
                Some(name.clone())
            }
            _ => None,
        })
        .collect()
}

/// The paths the use tree at `tokens[*at]` names below `prefix`, groups
/// expanded: `a::{b, c::{self, d}}` is `a::b`, `a::c` and `a::c::d`. Leaves
/// `at` after the tree.
fn use_tree(tokens: &[Token], at: &mut usize, mut prefix: Vec<String>) -> Vec<Vec<String>> {
    loop {
        match tokens.get(*at) {
            Some(Token::PathSeparator) => *at += 1,
            Some(Token::Punct('{')) => {
                *at += 1;
                return use_group(tokens, at, &prefix);
            }
            Some(Token::Punct('*')) => {
                *at += 1;
                return vec![prefix];
            }
            Some(token) if token.is_word("as") => {
                *at += 2;
                return vec![prefix];
            }
            // `{self, …}` in a group names the group's prefix itself.
            Some(token) if token.is_word("self") && !prefix.is_empty() => *at += 1,
            Some(Token::Ident(segment)) => {
                prefix.push(segment.clone());
                *at += 1;
            }
            _ => return vec![prefix],
        }
    }
}

/// The paths of the `{ … }` group whose `{` is just before `tokens[*at]`, each
/// below `prefix`. Leaves `at` after the `}`.
fn use_group(tokens: &[Token], at: &mut usize, prefix: &[String]) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    while let Some(token) = tokens.get(*at) {
        match token {
            Token::Punct('}') => {
                *at += 1;
                break;
            }
            Token::Punct(',') => *at += 1,
            _ => {
                let start = *at;
                paths.extend(use_tree(tokens, at, prefix.to_vec()));
                // A token no tree starts with (an attribute's `#`): step over it.
                if *at == start {
                    *at += 1;
                }
            }
        }
    }
    paths
}

/// The path `crate::a::b` at `tokens[*at]`; leaves `at` after it.
fn inline_path(tokens: &[Token], at: &mut usize) -> Vec<String> {
    let mut segments = Vec::new();
    while let Some(Token::Ident(segment)) = tokens.get(*at) {
        segments.push(segment.clone());
        *at += 1;
        if tokens.get(*at) != Some(&Token::PathSeparator) {
            break;
        }
        *at += 1;
    }
    segments
}

/// `tokens` without the inline `#[cfg(test)] mod name { … }` modules.
fn without_inline_test_modules(tokens: Vec<Token>) -> Vec<Token> {
    let mut kept = Vec::with_capacity(tokens.len());
    let mut at = 0;
    while at < tokens.len() {
        match inline_test_module_brace(&tokens[at..]) {
            Some(brace) => at = after_closing_brace(&tokens, at + brace),
            None => {
                kept.push(tokens[at].clone());
                at += 1;
            }
        }
    }
    kept
}

/// Where the body's `{` is when `tokens` start with `#[cfg(test)] mod name {`.
fn inline_test_module_brace(tokens: &[Token]) -> Option<usize> {
    use Token::{Ident, Punct};
    match tokens {
        [
            Punct('#'),
            Punct('['),
            cfg,
            Punct('('),
            test,
            Punct(')'),
            Punct(']'),
            keyword,
            Ident(_),
            Punct('{'),
            ..,
        ] if cfg.is_word("cfg") && test.is_word("test") && keyword.is_word("mod") => Some(9),
        _ => None,
    }
}

/// The index after the `}` that closes the `{` at `tokens[open]`.
fn after_closing_brace(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0_usize;
    for (at, token) in tokens.iter().enumerate().skip(open) {
        match token {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                depth -= 1;
                if depth == 0 {
                    return at + 1;
                }
            }
            _ => {}
        }
    }
    tokens.len()
}

/// A Rust token as far as finding paths needs: comments are dropped and
/// literals are opaque, so that neither a `"crate::a"` nor a `'{'` is read as
/// code.
#[derive(Clone, Debug, PartialEq)]
enum Token {
    Ident(String),
    PathSeparator,
    Punct(char),
    Literal,
}

impl Token {
    fn is_word(&self, word: &str) -> bool {
        matches!(self, Token::Ident(ident) if ident == word)
    }
}

/// Splits Rust source into tokens.
struct Lexer {
    chars: Vec<char>,
    at: usize,
}

impl Lexer {
    fn tokens(source: &str) -> Vec<Token> {
        let mut lexer = Lexer {
            chars: source.chars().collect(),
            at: 0,
        };
        iter::from_fn(|| lexer.next_token()).collect()
    }

    fn next_token(&mut self) -> Option<Token> {
        loop {
            let c = self.peek(0)?;
            let next = self.peek(1);
            match c {
                _ if c.is_whitespace() => self.at += 1,
                '/' if next == Some('/') => self.skip_line(),
                '/' if next == Some('*') => self.skip_block_comment(),
                '"' => {
                    self.skip_string();
                    return Some(Token::Literal);
                }
                '\'' => return Some(self.quote()),
                ':' if next == Some(':') => {
                    self.at += 2;
                    return Some(Token::PathSeparator);
                }
                _ if c.is_alphanumeric() || c == '_' => return Some(self.word()),
                _ => {
                    self.at += 1;
                    return Some(Token::Punct(c));
                }
            }
        }
    }

    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.at + ahead).copied()
    }

    fn looking_at(&self, text: &[char]) -> bool {
        self.chars[self.at..].starts_with(text)
    }

    fn skip_line(&mut self) {
        while self.peek(0).is_some_and(|c| c != '\n') {
            self.at += 1;
        }
    }

    /// Block comments nest in Rust.
    fn skip_block_comment(&mut self) {
        let mut depth = 0_usize;
        while self.at < self.chars.len() {
            if self.looking_at(&['/', '*']) {
                depth += 1;
                self.at += 2;
            } else if self.looking_at(&['*', '/']) {
                depth -= 1;
                self.at += 2;
                if depth == 0 {
                    return;
                }
            } else {
                self.at += 1;
            }
        }
    }

    /// From the opening `"` past the closing one.
    fn skip_string(&mut self) {
        self.at += 1;
        while let Some(c) = self.peek(0) {
            self.at += if c == '\\' { 2 } else { 1 };
            if c == '"' {
                return;
            }
        }
    }

    /// A char literal (`'x'`, `'\n'`, `'\u{7f}'`), or the `'` of a lifetime or
    /// label, whose name follows as a word.
    fn quote(&mut self) -> Token {
        match (self.peek(1), self.peek(2)) {
            (Some('\\'), _) => {
                self.at += 3;
                while self.peek(0).is_some_and(|c| c != '\'') {
                    self.at += 1;
                }
                self.at += 1;
                Token::Literal
            }
            (Some(_), Some('\'')) => {
                self.at += 3;
                Token::Literal
            }
            _ => {
                self.at += 1;
                Token::Punct('\'')
            }
        }
    }

    /// An identifier, keyword or number; `r`, `br` or `cr` before `"` or `#"`
    /// opens a raw string.
    fn word(&mut self) -> Token {
        let start = self.at;
        while self
            .peek(0)
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            self.at += 1;
        }
        let word: String = self.chars[start..self.at].iter().collect();
        if ["r", "br", "cr"].contains(&word.as_str()) && self.skip_raw_string() {
            return Token::Literal;
        }
        if word.starts_with(|c: char| c.is_ascii_digit()) {
            return Token::Literal;
        }
        Token::Ident(word)
    }

    /// Skips the raw string whose `#`s and `"` come next, if they do.
    fn skip_raw_string(&mut self) -> bool {
        let hashes = self.chars[self.at..]
            .iter()
            .take_while(|&&c| c == '#')
            .count();
        if self.peek(hashes) != Some('"') {
            return false;
        }
        self.at += hashes + 1;
        let closing: Vec<char> = iter::once('"').chain(iter::repeat_n('#', hashes)).collect();
        while self.at < self.chars.len() && !self.looking_at(&closing) {
            self.at += 1;
        }
        self.at = (self.at + closing.len()).min(self.chars.len());
        true
    }
}

/// The strongly connected components of more than one module, each sorted.
fn circles_in(graph: &ModuleGraph) -> Vec<Vec<ModulePath>> {
    let mut search = Tarjan {
        graph,
        order: BTreeMap::new(),
        lowest: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        circles: Vec::new(),
    };
    for module in graph.keys() {
        if !search.order.contains_key(module) {
            search.visit(module);
        }
    }
    search.circles
}

/// Tarjan's search for strongly connected components; its recursion is at
/// most as deep as a crate has modules.
struct Tarjan<'g> {
    graph: &'g ModuleGraph,
    /// When each visited module was first reached.
    order: BTreeMap<&'g ModulePath, usize>,
    /// The earliest-reached module on `stack` that each module reaches.
    lowest: BTreeMap<&'g ModulePath, usize>,
    /// Visited modules whose component is not complete yet.
    stack: Vec<&'g ModulePath>,
    on_stack: BTreeSet<&'g ModulePath>,
    circles: Vec<Vec<ModulePath>>,
}

impl<'g> Tarjan<'g> {
    fn visit(&mut self, module: &'g ModulePath) {
        let reached = self.order.len();
        self.order.insert(module, reached);
        self.lowest.insert(module, reached);
        self.stack.push(module);
        self.on_stack.insert(module);
        let graph = self.graph;
        for target in &graph[module] {
            if !self.order.contains_key(target) {
                self.visit(target);
                self.lower(module, self.lowest[target]);
            } else if self.on_stack.contains(target) {
                self.lower(module, self.order[target]);
            }
        }
        if self.lowest[module] == reached {
            self.pop_component(module);
        }
    }

    fn lower(&mut self, module: &'g ModulePath, reached: usize) {
        if reached < self.lowest[module] {
            self.lowest.insert(module, reached);
        }
    }

    /// Pops the component `root` was reached first in; keeps it if it is a
    /// circle.
    fn pop_component(&mut self, root: &ModulePath) {
        let mut component = Vec::new();
        while let Some(member) = self.stack.pop() {
            self.on_stack.remove(member);
            component.push(member.clone());
            if member == root {
                break;
            }
        }
        if component.len() > 1 {
            component.sort();
            self.circles.push(component);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{env, process};

    use super::*;

    #[test]
    fn workspace_has_no_import_circles() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask is a folder of the workspace");
        let circles = workspace_circles(workspace).expect("reading the workspace's sources");
        let listed: Vec<String> = circles.iter().map(ToString::to_string).collect();
        assert!(
            listed.is_empty(),
            "modules import modules that import them back:\n{}",
            listed.join("\n")
        );
    }

    #[test]
    fn sibling_modules_using_each_other_through_crate_are_a_circle() {
        let workspace = TempWorkspace::with_files(
            "siblings",
            &[
                ("lib.rs", "mod a;\nmod b;\n"),
                ("a.rs", "use crate::b::B;\npub struct A(B);\n"),
                ("b.rs", "pub struct B;\nfn a() -> crate::a::A { todo!() }\n"),
            ],
        );
        assert_eq!(workspace.circles(), ["demo: a <-> b"]);
    }

    #[test]
    fn parent_re_exporting_a_child_that_uses_the_parent_is_a_circle() {
        let workspace = TempWorkspace::with_files(
            "parent",
            &[
                ("lib.rs", "mod store;\n"),
                (
                    "store/mod.rs",
                    "mod watch;\npub use watch::Watch;\npub struct Item;\n",
                ),
                (
                    "store/watch.rs",
                    "use super::Item;\npub struct Watch(Item);\n",
                ),
            ],
        );
        assert_eq!(workspace.circles(), ["demo: store <-> store::watch"]);
    }

    #[test]
    fn nested_use_groups_point_at_each_module_they_name() {
        let workspace = TempWorkspace::with_files(
            "groups",
            &[
                ("lib.rs", "mod m;\n"),
                ("m/mod.rs", "mod a;\nmod b;\nmod c;\n"),
                ("m/a.rs", "pub struct X;\npub struct Y;\n"),
                ("m/b.rs", ""),
                ("m/c.rs", "use super::{a::{X, Y}, b};\n"),
            ],
        );
        assert_eq!(workspace.pointed_at_from("m::c"), ["m::a", "m::b"]);
        assert!(workspace.circles().is_empty());
    }

    #[test]
    fn child_using_a_sibling_through_super_is_no_circle() {
        let workspace = TempWorkspace::with_files(
            "sibling",
            &[
                ("lib.rs", "mod store;\n"),
                (
                    "store/mod.rs",
                    "mod codec;\nmod watch;\npub use watch::Watch;\n",
                ),
                ("store/codec.rs", "pub struct Codec;\n"),
                (
                    "store/watch.rs",
                    "use super::codec::Codec;\npub struct Watch(Codec);\n",
                ),
            ],
        );
        assert_eq!(workspace.pointed_at_from("store::watch"), ["store::codec"]);
        assert!(workspace.circles().is_empty());
    }

    #[test]
    fn use_trees_expand_self_renames_and_globs() {
        let source = "pub(crate) use super::{a::{self, X as Y}, b::*};\nuse std::fmt;\n";
        assert_eq!(
            referenced_paths(source),
            [
                vec!["super", "a"],
                vec!["super", "a", "X"],
                vec!["super", "b"]
            ]
        );
    }

    #[test]
    fn uses_of_declared_children_and_inline_paths_are_references() {
        let source = "mod child;\nuse child::X;\nuse other::Y;\nfn f() { crate::a::f(); super::super::b::g() }\n";
        assert_eq!(
            referenced_paths(source),
            [
                vec!["self", "child", "X"],
                vec!["crate", "a", "f"],
                vec!["super", "super", "b", "g"]
            ]
        );
    }

    #[test]
    fn comments_literals_and_inline_test_modules_are_no_references() {
        let source = concat!(
            "// use crate::a;\n/* crate::b /* nested */ crate::c */\n",
            "const S: &str = \"crate::d\"; const R: &str = r#\"super::e\"#; const C: char = '{';\n",
            "fn f<'a>(x: &'a str) {}\n",
            "#[cfg(test)]\nmod tests {\n    use super::*;\n    fn g() { let _ = '}'; crate::f::g(); }\n}\n",
            "use self::h::I;\n",
        );
        assert_eq!(referenced_paths(source), [vec!["self", "h", "I"]]);
    }

    /// A workspace folder with one crate, `demo`, under the system's temp
    /// folder; removed when dropped, so a failing test leaves nothing behind.
    struct TempWorkspace {
        root: PathBuf,
    }

    impl TempWorkspace {
        /// `files` are paths under `demo/src` and their text; `test` names the
        /// folder apart from the other tests', which run at the same time.
        fn with_files(test: &str, files: &[(&str, &str)]) -> Self {
            let root = env::temp_dir().join(format!("xtask-circles-{}-{test}", process::id()));
            let workspace = TempWorkspace { root };
            for (path, text) in files {
                let file = workspace.src().join(path);
                fs::create_dir_all(file.parent().expect("a file is in a folder")).unwrap();
                fs::write(&file, text).unwrap();
            }
            workspace
        }

        fn src(&self) -> PathBuf {
            self.root.join("demo").join("src")
        }

        fn circles(&self) -> Vec<String> {
            let circles = workspace_circles(&self.root).unwrap();
            circles.iter().map(ToString::to_string).collect()
        }

        fn pointed_at_from(&self, module: &str) -> Vec<String> {
            let graph = module_graph(&self.src()).unwrap();
            let module: ModulePath = module.split("::").map(str::to_owned).collect();
            graph[&module]
                .iter()
                .map(|target| target.join("::"))
                .collect()
        }
    }

    impl Drop for TempWorkspace {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}
