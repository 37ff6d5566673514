//! The semantic hasher driven the way a compiler drives it: a small AST of
//! the test's own (standing in for a compiler's desugared AST) is walked and
//! fed node by node. Nothing is converted into a rask-store type.

use rask_store::Error;
use rask_store::compiler::{SemanticHash, SemanticHasher};

// ----- a compiler's own desugared AST -----------------------------------------

#[derive(Clone, Debug)]
enum Expr {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Local(String),
    /// A resolved call: package, function, arguments.
    Call(String, String, Vec<Expr>),
    /// A desugared method call: receiver, method name, arguments.
    Method(Box<Expr>, String, Vec<Expr>),
    Field(Box<Expr>, String),
    Block(Vec<Stmt>),
    Closure(Vec<String>, Box<Expr>),
    Match(Box<Expr>, Vec<(Pat, Expr)>),
}

#[derive(Clone, Debug)]
enum Pat {
    Bind(String),
    Wild,
    Variant(String, Vec<Pat>),
    Struct(String, Vec<(String, Pat)>),
}

#[derive(Clone, Debug)]
enum Stmt {
    Let(String, Option<String>, Expr),
    Assign(String, Expr),
    For(String, Expr, Vec<Stmt>),
    Return(Expr),
    Expr(Expr),
    /// Source comments survive into this AST but are not semantics.
    Comment(#[allow(dead_code)] String),
}

#[derive(Clone, Debug)]
struct Param {
    name: String,
    mode: &'static str,
    ty: String,
}

#[derive(Clone, Debug)]
struct Func {
    name: String,
    attrs: Vec<String>,
    params: Vec<Param>,
    ret: Option<String>,
    body: Vec<Stmt>,
    /// Source position, which the walker never feeds.
    span: (u32, u32),
}

// Node kinds as the compiler numbers them.
const FUNC: u32 = 1;
const PARAM: u32 = 2;
const BLOCK: u32 = 3;
const LET: u32 = 4;
const ASSIGN: u32 = 5;
const FOR: u32 = 6;
const RETURN: u32 = 7;
const CALL: u32 = 8;
const METHOD: u32 = 9;
const FIELD: u32 = 10;
const CLOSURE: u32 = 11;
const MATCH: u32 = 12;
const ARM: u32 = 13;
const LITERAL: u32 = 14;
const LOCAL: u32 = 15;
const EXPR_STMT: u32 = 16;

fn walk_func(h: &mut SemanticHasher, f: &Func) {
    h.begin_node(FUNC);
    for attr in &f.attrs {
        h.attribute(attr);
    }
    for p in &f.params {
        h.begin_node(PARAM);
        h.param_mode(p.mode);
        h.type_annotation(&p.ty);
        h.bind_local(&p.name);
        h.end_node();
    }
    if let Some(ret) = &f.ret {
        h.type_annotation(ret);
    }
    walk_block(h, &f.body);
    h.end_node();
}

fn walk_block(h: &mut SemanticHasher, stmts: &[Stmt]) {
    h.begin_node(BLOCK);
    h.enter_scope();
    for s in stmts {
        walk_stmt(h, s);
    }
    h.leave_scope();
    h.end_node();
}

fn walk_stmt(h: &mut SemanticHasher, s: &Stmt) {
    match s {
        Stmt::Let(name, ty, value) => {
            h.begin_node(LET);
            if let Some(ty) = ty {
                h.type_annotation(ty);
            }
            walk_expr(h, value); // the initializer cannot see the new binding
            h.bind_local(name);
            h.end_node();
        }
        Stmt::Assign(name, value) => {
            h.begin_node(ASSIGN);
            h.use_local(name);
            walk_expr(h, value);
            h.end_node();
        }
        Stmt::For(var, iter, body) => {
            h.begin_node(FOR);
            walk_expr(h, iter);
            h.enter_scope();
            h.bind_local(var);
            walk_block(h, body);
            h.leave_scope();
            h.end_node();
        }
        Stmt::Return(e) => {
            h.begin_node(RETURN);
            walk_expr(h, e);
            h.end_node();
        }
        Stmt::Expr(e) => {
            h.begin_node(EXPR_STMT);
            walk_expr(h, e);
            h.end_node();
        }
        Stmt::Comment(_) => {}
    }
}

fn walk_expr(h: &mut SemanticHasher, e: &Expr) {
    match e {
        Expr::Int(v) => {
            h.begin_node(LITERAL);
            h.literal_int(i128::from(*v));
            h.end_node();
        }
        Expr::Float(v) => {
            h.begin_node(LITERAL);
            h.literal_float(*v);
            h.end_node();
        }
        Expr::Str(v) => {
            h.begin_node(LITERAL);
            h.literal_str(v);
            h.end_node();
        }
        Expr::Bool(v) => {
            h.begin_node(LITERAL);
            h.literal_bool(*v);
            h.end_node();
        }
        Expr::Local(name) => {
            h.begin_node(LOCAL);
            h.use_local(name);
            h.end_node();
        }
        Expr::Call(package, function, args) => {
            h.begin_node(CALL);
            h.callee(package, function);
            for a in args {
                walk_expr(h, a);
            }
            h.end_node();
        }
        Expr::Method(recv, name, args) => {
            h.begin_node(METHOD);
            h.symbol(name);
            walk_expr(h, recv);
            for a in args {
                walk_expr(h, a);
            }
            h.end_node();
        }
        Expr::Field(recv, name) => {
            h.begin_node(FIELD);
            h.field(name);
            walk_expr(h, recv);
            h.end_node();
        }
        Expr::Block(stmts) => walk_block(h, stmts),
        Expr::Closure(params, body) => {
            h.begin_node(CLOSURE);
            h.enter_scope();
            for p in params {
                h.bind_local(p);
            }
            walk_expr(h, body);
            h.leave_scope();
            h.end_node();
        }
        Expr::Match(scrutinee, arms) => {
            h.begin_node(MATCH);
            walk_expr(h, scrutinee);
            for (pat, body) in arms {
                h.begin_node(ARM);
                h.enter_scope();
                walk_pat(h, pat);
                walk_expr(h, body);
                h.leave_scope();
                h.end_node();
            }
            h.end_node();
        }
    }
}

fn walk_pat(h: &mut SemanticHasher, p: &Pat) {
    match p {
        Pat::Bind(name) => {
            h.begin_pattern("bind");
            h.bind_local(name);
            h.end_pattern();
        }
        Pat::Wild => {
            h.begin_pattern("wild");
            h.end_pattern();
        }
        Pat::Variant(name, subs) => {
            h.begin_pattern("variant");
            h.symbol(name);
            for s in subs {
                walk_pat(h, s);
            }
            h.end_pattern();
        }
        Pat::Struct(name, fields) => {
            h.begin_pattern("struct");
            h.type_annotation(name);
            for (field, sub) in fields {
                h.field(field);
                walk_pat(h, sub);
            }
            h.end_pattern();
        }
    }
}

fn hash(f: &Func) -> SemanticHash {
    let mut h = SemanticHasher::new();
    walk_func(&mut h, f);
    h.finish().expect("balanced walk")
}

// ----- helpers to write functions tersely --------------------------------------

fn local(name: &str) -> Expr {
    Expr::Local(name.into())
}

fn int(v: i64) -> Expr {
    Expr::Int(v)
}

fn call(package: &str, function: &str, args: Vec<Expr>) -> Expr {
    Expr::Call(package.into(), function.into(), args)
}

fn let_(name: &str, value: Expr) -> Stmt {
    Stmt::Let(name.into(), None, value)
}

fn ret(e: Expr) -> Stmt {
    Stmt::Return(e)
}

fn func(params: &[&str], body: Vec<Stmt>) -> Func {
    Func {
        name: "f".into(),
        attrs: vec![],
        params: params
            .iter()
            .map(|p| Param {
                name: p.to_string(),
                mode: "borrow",
                ty: "i32".into(),
            })
            .collect(),
        ret: Some("i32".into()),
        body,
        span: (1, 1),
    }
}

/// The seed note's example:
///
/// ```text
/// func compute(data: Vec<i32>) -> i32 {
///     let total = 0
///     for item in data { total += item }
///     return total
/// }
/// ```
///
/// with `total += item` desugared to `total = total.add(item)`.
fn compute(param: &str, acc: &str, elem: &str) -> Func {
    Func {
        name: "compute".into(),
        attrs: vec![],
        params: vec![Param {
            name: param.into(),
            mode: "borrow",
            ty: "Vec<i32>".into(),
        }],
        ret: Some("i32".into()),
        body: vec![
            let_(acc, int(0)),
            Stmt::For(
                elem.into(),
                local(param),
                vec![Stmt::Assign(
                    acc.into(),
                    Expr::Method(Box::new(local(acc)), "add".into(), vec![local(elem)]),
                )],
            ),
            ret(local(acc)),
        ],
        span: (10, 1),
    }
}

// ----- tests -----------------------------------------------------------------

#[test]
fn seed_compute_pair_hashes_identically() {
    let a = compute("data", "total", "item");
    let b = compute("items", "sum", "element");
    assert_eq!(hash(&a), hash(&b));
    // ...and the hash is not trivially constant: a different walk differs.
    let mut c = compute("data", "total", "item");
    c.body[0] = let_("total", int(1));
    assert_ne!(hash(&a), hash(&c));
}

#[test]
fn comments_spans_and_function_names_are_never_fed() {
    let base = compute("data", "total", "item");
    let mut edited = base.clone();
    edited.span = (99, 7);
    edited.name = "compute_renamed_in_source_only".into();
    edited.body.insert(0, Stmt::Comment("sum the items".into()));
    edited.body.push(Stmt::Comment("done".into()));
    assert_eq!(hash(&base), hash(&edited));
}

#[test]
fn different_literals_differ() {
    let with = |e: Expr| hash(&func(&[], vec![ret(e)]));
    let all = [
        with(int(42)),
        with(int(43)),
        with(Expr::Float(42.0)),
        with(Expr::Float(-0.0)),
        with(Expr::Float(0.0)),
        with(Expr::Str("42".into())),
        with(Expr::Str("hello".into())),
        with(Expr::Bool(true)),
        with(Expr::Bool(false)),
    ];
    for i in 0..all.len() {
        for j in i + 1..all.len() {
            assert_ne!(all[i], all[j], "literal {i} vs {j}");
        }
    }
}

#[test]
fn different_callees_differ() {
    let with = |p: &str, f: &str| hash(&func(&["x"], vec![ret(call(p, f, vec![local("x")]))]));
    let print = with("std.io", "print");
    assert_eq!(print, with("std.io", "print"));
    assert_ne!(print, with("std.io", "eprint"));
    assert_ne!(print, with("myapp.io", "print"));
}

#[test]
fn different_fields_and_methods_differ() {
    let field = |name: &str| {
        hash(&func(
            &["e"],
            vec![ret(Expr::Field(Box::new(local("e")), name.into()))],
        ))
    };
    assert_ne!(field("health"), field("position"));
    let method = |name: &str| {
        hash(&func(
            &["a", "b"],
            vec![ret(Expr::Method(
                Box::new(local("a")),
                name.into(),
                vec![local("b")],
            ))],
        ))
    };
    assert_ne!(method("add"), method("sub"));
}

#[test]
fn attributes_modes_and_annotations_differ() {
    let base = func(&["x"], vec![ret(local("x"))]);
    let h0 = hash(&base);

    let mut inline = base.clone();
    inline.attrs = vec!["inline".into()];
    let mut unsafe_ = base.clone();
    unsafe_.attrs = vec!["unsafe".into()];
    let mut take = base.clone();
    take.params[0].mode = "take";
    let mut wider = base.clone();
    wider.params[0].ty = "i64".into();
    let mut returns = base.clone();
    returns.ret = Some("i64".into());
    let mut no_ret = base.clone();
    no_ret.ret = None;

    let variants = [
        h0,
        hash(&inline),
        hash(&unsafe_),
        hash(&take),
        hash(&wider),
        hash(&returns),
        hash(&no_ret),
    ];
    for i in 0..variants.len() {
        for j in i + 1..variants.len() {
            assert_ne!(variants[i], variants[j], "variant {i} vs {j}");
        }
    }
}

#[test]
fn statement_order_matters() {
    let a = func(
        &[],
        vec![
            Stmt::Expr(call("std.io", "print", vec![int(1)])),
            Stmt::Expr(call("std.io", "print", vec![int(2)])),
        ],
    );
    let b = func(
        &[],
        vec![
            Stmt::Expr(call("std.io", "print", vec![int(2)])),
            Stmt::Expr(call("std.io", "print", vec![int(1)])),
        ],
    );
    assert_ne!(hash(&a), hash(&b));
}

#[test]
fn referring_to_a_different_binding_differs() {
    let first = func(&["a", "b"], vec![ret(local("a"))]);
    let second = func(&["a", "b"], vec![ret(local("b"))]);
    let renamed = func(&["x", "y"], vec![ret(local("x"))]);
    assert_ne!(hash(&first), hash(&second));
    assert_eq!(hash(&first), hash(&renamed));
}

#[test]
fn shadowing_structure_is_visible_and_renaming_is_not() {
    // let x = 1; let y = 2; return x   vs   let x = 1; let x = 2; return x
    let no_shadow = func(
        &[],
        vec![let_("x", int(1)), let_("y", int(2)), ret(local("x"))],
    );
    let shadow = func(
        &[],
        vec![let_("x", int(1)), let_("x", int(2)), ret(local("x"))],
    );
    assert_ne!(hash(&no_shadow), hash(&shadow));

    // Shadowing in the same scope is just a later binding: these are the
    // same program up to renaming.
    let rebind = func(
        &[],
        vec![
            let_("a", int(1)),
            let_(
                "a",
                Expr::Method(Box::new(local("a")), "add".into(), vec![int(1)]),
            ),
            ret(local("a")),
        ],
    );
    let fresh = func(
        &[],
        vec![
            let_("a", int(1)),
            let_(
                "b",
                Expr::Method(Box::new(local("a")), "add".into(), vec![int(1)]),
            ),
            ret(local("b")),
        ],
    );
    assert_eq!(hash(&rebind), hash(&fresh));

    // An inner scope's binding shadows the outer one only inside it.
    // let x = 1; { let x = 2; return x }   vs   let x = 1; { let y = 2; return x }
    let inner_shadow = func(
        &[],
        vec![
            let_("x", int(1)),
            Stmt::Expr(Expr::Block(vec![let_("x", int(2)), ret(local("x"))])),
        ],
    );
    let outer_ref = func(
        &[],
        vec![
            let_("x", int(1)),
            Stmt::Expr(Expr::Block(vec![let_("y", int(2)), ret(local("x"))])),
        ],
    );
    assert_ne!(hash(&inner_shadow), hash(&outer_ref));

    // After the inner scope ends, the outer binding is visible again.
    let after_block = |inner_name: &str| {
        func(
            &[],
            vec![
                let_("x", int(1)),
                Stmt::Expr(Expr::Block(vec![let_(inner_name, int(2))])),
                ret(local("x")),
            ],
        )
    };
    assert_eq!(hash(&after_block("x")), hash(&after_block("z")));
}

#[test]
fn closure_captures_are_structure() {
    // |y| x   (captures the outer x)   vs   |x| x   (returns its own parameter)
    let captures = func(
        &["x"],
        vec![ret(Expr::Closure(vec!["y".into()], Box::new(local("x"))))],
    );
    let own = func(
        &["x"],
        vec![ret(Expr::Closure(vec!["x".into()], Box::new(local("x"))))],
    );
    assert_ne!(hash(&captures), hash(&own));
    let renamed = func(
        &["outer"],
        vec![ret(Expr::Closure(
            vec!["inner".into()],
            Box::new(local("outer")),
        ))],
    );
    assert_eq!(hash(&captures), hash(&renamed));
}

#[test]
fn pattern_structure_differs_and_pattern_bindings_normalize() {
    let with_arms = |arms: Vec<(Pat, Expr)>| {
        hash(&func(
            &["v"],
            vec![ret(Expr::Match(Box::new(local("v")), arms))],
        ))
    };
    let some_x = with_arms(vec![
        (
            Pat::Variant("Some".into(), vec![Pat::Bind("x".into())]),
            local("x"),
        ),
        (Pat::Wild, int(0)),
    ]);
    let some_n = with_arms(vec![
        (
            Pat::Variant("Some".into(), vec![Pat::Bind("n".into())]),
            local("n"),
        ),
        (Pat::Wild, int(0)),
    ]);
    let ok_x = with_arms(vec![
        (
            Pat::Variant("Ok".into(), vec![Pat::Bind("x".into())]),
            local("x"),
        ),
        (Pat::Wild, int(0)),
    ]);
    let some_wild = with_arms(vec![
        (Pat::Variant("Some".into(), vec![Pat::Wild]), int(1)),
        (Pat::Wild, int(0)),
    ]);
    let one_arm = with_arms(vec![(
        Pat::Variant("Some".into(), vec![Pat::Bind("x".into())]),
        local("x"),
    )]);
    assert_eq!(some_x, some_n);
    assert_ne!(some_x, ok_x);
    assert_ne!(some_x, some_wild);
    assert_ne!(some_x, one_arm, "arm count is structure");

    let point = |first: &str, second: &str| {
        with_arms(vec![(
            Pat::Struct(
                "Point".into(),
                vec![
                    (first.into(), Pat::Bind("a".into())),
                    (second.into(), Pat::Bind("b".into())),
                ],
            ),
            local("a"),
        )])
    };
    assert_ne!(point("x", "y"), point("y", "x"));
}

#[test]
fn walker_bugs_are_errors_at_finish() {
    let mut h = SemanticHasher::new();
    walk_func(&mut h, &func(&[], vec![ret(local("never_bound"))]));
    let err = h.finish().unwrap_err();
    assert!(matches!(err, Error::HasherMisuse { .. }), "{err:?}");
    assert!(err.to_string().contains("`never_bound`"), "{err}");

    let mut h = SemanticHasher::new();
    h.begin_node(FUNC);
    h.enter_scope();
    h.end_node();
    h.leave_scope();
    let err = h.finish().unwrap_err();
    assert!(err.to_string().contains("end_node while"), "{err}");

    let mut h = SemanticHasher::new();
    h.enter_scope();
    let err = h.finish().unwrap_err();
    assert!(
        err.to_string()
            .contains("scope opened at item 1 is still open"),
        "{err}"
    );
}

/// The seed's `compute` hashes to the same value in every build of
/// rask-store, on every machine: cache keys built from it survive upgrades
/// that do not change the documented encoding.
#[test]
fn golden_hash_of_the_seed_compute_function() {
    assert_eq!(
        hash(&compute("data", "total", "item")).to_string(),
        "cde1711fb379382b5de2b588a3bf2ead934520423cfae9beb338510b21d7aada"
    );
}

/// Every distinct sequence of up to three items from an alphabet built to
/// tempt concatenation collisions (split strings, empty strings, the same
/// bytes under different item kinds, numeric vs textual tags) hashes
/// differently.
#[test]
fn distinct_feed_sequences_never_collide() {
    type Feed = fn(&mut SemanticHasher);
    let alphabet: Vec<(&str, Feed)> = vec![
        ("str ''", |h| h.literal_str("")),
        ("str a", |h| h.literal_str("a")),
        ("str ab", |h| h.literal_str("ab")),
        ("bytes a", |h| h.literal_bytes(b"a")),
        ("field a", |h| h.field("a")),
        ("symbol a", |h| h.symbol("a")),
        ("attribute a", |h| h.attribute("a")),
        ("type a", |h| h.type_annotation("a")),
        ("callee a.b", |h| h.callee("a", "b")),
        ("callee ab.", |h| h.callee("ab", "")),
        ("callee .ab", |h| h.callee("", "ab")),
        ("global a.b", |h| h.global("a", "b")),
        ("int 0", |h| h.literal_int(0)),
        ("uint 0", |h| h.literal_uint(0)),
        ("float 0", |h| h.literal_float(0.0)),
        ("bool false", |h| h.literal_bool(false)),
        ("char a", |h| h.literal_char('a')),
        ("mode 0", |h| h.param_mode(0u32)),
        ("mode '0'", |h| h.param_mode("0")),
        ("node 0", |h| {
            h.begin_node(0u32);
            h.end_node();
        }),
        ("node '0'", |h| {
            h.begin_node("0");
            h.end_node();
        }),
        ("pattern 0", |h| {
            h.begin_pattern(0u32);
            h.end_pattern();
        }),
        ("node(str a)", |h| {
            h.begin_node(0u32);
            h.literal_str("a");
            h.end_node();
        }),
        ("scope", |h| {
            h.enter_scope();
            h.leave_scope();
        }),
        ("bind", |h| h.bind_local("x")),
        ("bind use", |h| {
            h.bind_local("x");
            h.use_local("x");
        }),
        ("scope(bind)", |h| {
            h.enter_scope();
            h.bind_local("x");
            h.leave_scope();
        }),
    ];
    let mut seen = std::collections::HashMap::new();
    let mut sequences: Vec<Vec<usize>> = vec![vec![]];
    for len in 1..=3 {
        let mut next = Vec::new();
        for seq in sequences.iter().filter(|s| s.len() == len - 1) {
            for i in 0..alphabet.len() {
                let mut longer = seq.clone();
                longer.push(i);
                next.push(longer);
            }
        }
        sequences.extend(next);
    }
    for seq in &sequences {
        let mut h = SemanticHasher::new();
        for &i in seq {
            (alphabet[i].1)(&mut h);
        }
        let names: Vec<&str> = seq.iter().map(|&i| alphabet[i].0).collect();
        if let Some(other) = seen.insert(h.finish().unwrap(), names.clone()) {
            panic!("{names:?} and {other:?} hash the same");
        }
    }
    assert_eq!(seen.len(), sequences.len());
}
