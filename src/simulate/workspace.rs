//! A synthetic workspace shaped like real code, deterministic from a seed.
//!
//! Packages form a DAG (each depends on a few earlier ones); functions call
//! 2–3 others (mostly in their own package, some upstream public ones);
//! recursive groups of 2–8 functions are planted; 5–20% of functions are
//! generic and are instantiated at call sites with type arguments drawn
//! from builtins and the package's (and its dependencies') type
//! definitions; body sizes follow a long-tailed distribution with a median
//! of about 1.3 KB of AST.
//!
//! The workspace is a model, not source text: [`Function::feed`] walks a
//! function the way a compiler walks its desugared AST, and
//! [`SourceFile::text`] renders what a file's bytes would be, so edits can
//! be cosmetic (text changes, semantics do not) or semantic.

use crate::compiler::SemanticHasher;

/// Workspace size, from DESIGN.md §4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// 2 packages, ~700 functions, ~45 files.
    S,
    /// 50 packages, ~5,000 functions, ~500 files.
    M,
    /// 500 packages, ~100,000 functions, ~5,000 files.
    L,
}

impl Scale {
    fn shape(self) -> (usize, usize, usize) {
        // (packages, functions, files)
        match self {
            Scale::S => (2, 700, 45),
            Scale::M => (50, 5_000, 500),
            Scale::L => (500, 100_000, 5_000),
        }
    }
}

impl std::str::FromStr for Scale {
    type Err = String;

    fn from_str(s: &str) -> Result<Scale, String> {
        match s {
            "S" | "s" => Ok(Scale::S),
            "M" | "m" => Ok(Scale::M),
            "L" | "l" => Ok(Scale::L),
            _ => Err(format!("unknown scale {s:?}; expected S, M or L")),
        }
    }
}

/// A small, fast, deterministic random number generator (xorshift64*).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// A standard normal sample (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = ((self.next_u64() >> 11) as f64 + 1.0) / ((1u64 << 53) as f64 + 1.0);
        let u2 = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// A type used as a generic argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TypeRef {
    /// A builtin type (index into [`BUILTINS`]).
    Builtin(usize),
    /// A type defined in a package.
    Defined {
        /// The defining package.
        package: usize,
        /// Index into that package's types.
        ty: usize,
    },
}

/// Builtin type names.
pub const BUILTINS: [&str; 5] = ["i32", "i64", "u8", "string", "bool"];

/// A function a call refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FnRef {
    /// The package.
    pub package: usize,
    /// Index into its functions.
    pub function: usize,
}

/// One call in a body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The callee.
    pub target: FnRef,
    /// Type arguments, when the callee is generic.
    pub type_args: Vec<TypeRef>,
}

/// A struct definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeDef {
    /// Its name.
    pub name: String,
    /// Field names (types are left out of the model).
    pub fields: Vec<String>,
}

/// One function of the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    /// Its name, unique in its package.
    pub name: String,
    /// Index of the file it is in.
    pub file: usize,
    /// Exported in the package's metadata.
    pub public: bool,
    /// Number of type parameters; 0 for a non-generic function.
    pub type_params: usize,
    /// Number of parameters (part of the signature).
    pub params: usize,
    /// Statements in the body: drives AST size.
    pub statements: usize,
    /// Seed of the body's literals: changing it is a body edit.
    pub body_seed: u64,
    /// Seed of local variable names: changing it is a rename.
    pub names_seed: u64,
    /// Calls made by the body.
    pub calls: Vec<Call>,
    /// Arguments seed of a comptime call in the body, if any.
    pub comptime: Option<u64>,
}

/// One source file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// File name.
    pub name: String,
    /// Functions it holds (indices into the package's functions).
    pub functions: Vec<usize>,
    /// Bumped by cosmetic edits (comments, whitespace).
    pub cosmetic: u64,
}

/// One package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    /// Its name.
    pub name: String,
    /// Packages it depends on (all have smaller indices).
    pub deps: Vec<usize>,
    /// Its files.
    pub files: Vec<SourceFile>,
    /// Its type definitions.
    pub types: Vec<TypeDef>,
    /// Its functions.
    pub functions: Vec<Function>,
}

/// The whole synthetic workspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workspace {
    /// Packages in dependency order.
    pub packages: Vec<Package>,
}

impl Workspace {
    /// Generates a workspace of `scale`, deterministically from `seed`.
    pub fn generate(scale: Scale, seed: u64) -> Workspace {
        let (n_packages, n_functions, n_files) = scale.shape();
        let mut rng = Rng::new(seed);
        let mut packages: Vec<Package> = Vec::with_capacity(n_packages);
        for p in 0..n_packages {
            let fns = n_functions / n_packages;
            let files = (n_files / n_packages).max(1);
            let deps: Vec<usize> = if p == 0 {
                Vec::new()
            } else {
                let mut deps: Vec<usize> = (0..1 + rng.below(3)).map(|_| rng.below(p)).collect();
                deps.sort_unstable();
                deps.dedup();
                deps
            };
            let types = (0..3 + rng.below(6))
                .map(|t| TypeDef {
                    name: format!("T{p}_{t}"),
                    fields: (0..1 + rng.below(5)).map(|f| format!("f{f}")).collect(),
                })
                .collect();
            let generic_share = 0.05 + 0.15 * (rng.below(100) as f64 / 100.0);
            let mut functions: Vec<Function> = (0..fns)
                .map(|f| {
                    let statements =
                        (8.0 + 24.0 * (1.35 * rng.normal()).exp()).min(2500.0) as usize;
                    Function {
                        name: format!("f{f}"),
                        file: f % files,
                        public: rng.chance(0.4),
                        type_params: if rng.chance(generic_share) {
                            1 + rng.below(2)
                        } else {
                            0
                        },
                        params: rng.below(4),
                        statements,
                        body_seed: rng.next_u64(),
                        names_seed: rng.next_u64(),
                        calls: Vec::new(),
                        comptime: rng.chance(0.05).then(|| rng.next_u64()),
                    }
                })
                .collect();
            let file_list = (0..files)
                .map(|i| SourceFile {
                    name: format!("src/file{i}.rask"),
                    functions: (i..fns).step_by(files).collect(),
                    cosmetic: 0,
                })
                .collect();
            // Calls: mostly to later-indexed functions of the same package (a
            // DAG), some upstream, plus planted recursive groups.
            for f in 0..fns {
                let mut calls = Vec::new();
                for _ in 0..2 + rng.below(2) {
                    if !deps.is_empty() && rng.chance(0.2) {
                        let dep = deps[rng.below(deps.len())];
                        let dep_fns: &[Function] = &packages[dep].functions;
                        let publics: Vec<usize> =
                            (0..dep_fns.len()).filter(|&i| dep_fns[i].public).collect();
                        if !publics.is_empty() {
                            let target = publics[rng.below(publics.len())];
                            calls.push((
                                FnRef {
                                    package: dep,
                                    function: target,
                                },
                                dep_fns[target].type_params,
                            ));
                        }
                    } else if f + 1 < fns {
                        let target = f + 1 + rng.below((fns - f - 1).min(200));
                        calls.push((
                            FnRef {
                                package: p,
                                function: target,
                            },
                            functions[target].type_params,
                        ));
                    }
                }
                functions[f].calls = calls
                    .into_iter()
                    .map(|(target, n)| Call {
                        target,
                        type_args: (0..n)
                            .map(|_| pick_type(&mut rng, p, &deps, &packages))
                            .collect(),
                    })
                    .collect();
            }
            let mut f = rng.below(10);
            while f + 8 < fns {
                if rng.chance(0.5) {
                    // Close a cycle over 2–8 consecutive functions.
                    let len = 2 + rng.below(7);
                    for k in 0..len {
                        let next = if k + 1 == len { f } else { f + k + 1 };
                        let type_args = (0..functions[next].type_params)
                            .map(|_| pick_type(&mut rng, p, &deps, &packages))
                            .collect();
                        functions[f + k].calls.push(Call {
                            target: FnRef {
                                package: p,
                                function: next,
                            },
                            type_args,
                        });
                    }
                }
                f += 40 + rng.below(40);
            }
            packages.push(Package {
                name: format!("pkg{p}"),
                deps,
                files: file_list,
                types,
                functions,
            });
        }
        Workspace { packages }
    }

    /// The function `r` refers to.
    pub fn function(&self, r: FnRef) -> &Function {
        &self.packages[r.package].functions[r.function]
    }

    /// The name of a type argument.
    pub fn type_name(&self, t: TypeRef) -> String {
        match t {
            TypeRef::Builtin(i) => BUILTINS[i].to_string(),
            TypeRef::Defined { package, ty } => {
                format!(
                    "{}.{}",
                    self.packages[package].name, self.packages[package].types[ty].name
                )
            }
        }
    }

    /// Total functions.
    pub fn function_count(&self) -> usize {
        self.packages.iter().map(|p| p.functions.len()).sum()
    }
}

fn pick_type(rng: &mut Rng, p: usize, deps: &[usize], packages: &[Package]) -> TypeRef {
    // Type arguments concentrate on a few types, as real code does.
    match rng.below(10) {
        0..=4 => TypeRef::Builtin(rng.below(2)),
        5 | 6 => TypeRef::Builtin(rng.below(BUILTINS.len())),
        _ if !deps.is_empty() && rng.chance(0.3) => {
            let dep = deps[rng.below(deps.len())];
            TypeRef::Defined {
                package: dep,
                ty: rng.below(packages[dep].types.len().min(3)),
            }
        }
        _ => TypeRef::Defined {
            package: p,
            ty: rng.below(3),
        },
    }
}

impl Function {
    /// Feeds this function's body to `h` the way a compiler walks its
    /// desugared AST: names of locals are fed by name (and normalized away
    /// by the hasher), literals and callees by value.
    pub fn feed(&self, ws: &Workspace, h: &mut SemanticHasher) {
        let mut rng = Rng::new(self.body_seed);
        let names = Rng::new(self.names_seed).next_u64();
        let local = |i: usize| format!("v{names:x}_{i}");
        h.begin_node("func");
        h.symbol(&self.name);
        for t in 0..self.type_params {
            h.begin_node("type_param");
            h.symbol(&format!("T{t}"));
            h.end_node();
        }
        for p in 0..self.params {
            h.begin_node("param");
            h.param_mode(if p % 2 == 0 { "borrow" } else { "take" });
            h.type_annotation(BUILTINS[p % BUILTINS.len()]);
            h.bind_local(&format!("p{names:x}_{p}"));
            h.end_node();
        }
        h.enter_scope();
        let mut bound = 0usize;
        let mut calls = self.calls.iter();
        for s in 0..self.statements {
            if s % 7 == 3
                && let Some(call) = calls.next()
            {
                let callee = ws.function(call.target);
                h.begin_node("call");
                h.callee(&ws.packages[call.target.package].name, &callee.name);
                for t in &call.type_args {
                    h.type_annotation(&ws.type_name(*t));
                }
                if bound > 0 {
                    h.use_local(&local(rng.below(bound)));
                }
                h.end_node();
                continue;
            }
            h.begin_node("let");
            h.begin_node("add");
            if bound > 0 {
                h.use_local(&local(rng.below(bound)));
            }
            h.literal_int(rng.below(1000) as i128);
            h.end_node();
            h.bind_local(&local(bound));
            bound += 1;
            h.end_node();
        }
        for call in calls {
            let callee = ws.function(call.target);
            h.begin_node("call");
            h.callee(&ws.packages[call.target.package].name, &callee.name);
            for t in &call.type_args {
                h.type_annotation(&ws.type_name(*t));
            }
            h.end_node();
        }
        if let Some(args) = self.comptime {
            h.begin_node("comptime");
            h.literal_uint(u128::from(args));
            h.end_node();
        }
        h.leave_scope();
        h.end_node();
    }

    /// This function's source text, as the file would hold it.
    ///
    /// Written with plain pushes rather than `write!`: a no-op rebuild
    /// renders every file of the workspace, and formatting machinery would
    /// cost more than the store's whole quick path.
    pub fn text(&self, ws: &Workspace, cosmetic: u64, out: &mut String) {
        let names = Rng::new(self.names_seed).next_u64();
        let mut rng = Rng::new(self.body_seed);
        if cosmetic > 0 {
            out.push_str("// revised ");
            push_decimal(out, cosmetic);
            out.push('\n');
        }
        out.push_str("func ");
        out.push_str(&self.name);
        out.push('(');
        for p in 0..self.params {
            out.push('p');
            push_hex(out, names);
            out.push('_');
            push_decimal(out, p as u64);
            out.push_str(": ");
            out.push_str(BUILTINS[p % BUILTINS.len()]);
            out.push_str(", ");
        }
        out.push_str(") {\n");
        let mut local = String::from("    let v");
        push_hex(&mut local, names);
        local.push('_');
        let mut calls = self.calls.iter();
        for s in 0..self.statements {
            if s % 7 == 3
                && let Some(call) = calls.next()
            {
                let callee = ws.function(call.target);
                out.push_str("    ");
                out.push_str(&ws.packages[call.target.package].name);
                out.push('.');
                out.push_str(&callee.name);
                out.push_str("()\n");
                continue;
            }
            out.push_str(&local);
            push_decimal(out, s as u64);
            out.push_str(" = v + ");
            push_decimal(out, rng.below(1000) as u64);
            out.push('\n');
        }
        out.push_str("}\n");
        for _ in 0..cosmetic % 3 {
            out.push('\n');
        }
    }
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if let Ok(text) = std::str::from_utf8(&digits[i..]) {
        out.push_str(text);
    }
}

/// Appends `n` in lowercase hexadecimal, without leading zeros.
fn push_hex(out: &mut String, n: u64) {
    let count = (64 - n.leading_zeros()).div_ceil(4).max(1) as usize;
    let mut digits = [0u8; 16];
    for (i, d) in digits[..count].iter_mut().enumerate() {
        let nibble = ((n >> ((count - 1 - i) * 4)) & 0xf) as u8;
        *d = if nibble < 10 {
            b'0' + nibble
        } else {
            b'a' + nibble - 10
        };
    }
    if let Ok(text) = std::str::from_utf8(&digits[..count]) {
        out.push_str(text);
    }
}

impl SourceFile {
    /// The file's bytes.
    pub fn text(&self, ws: &Workspace, package: usize) -> String {
        use std::fmt::Write;
        let functions = &ws.packages[package].functions;
        let estimate: usize = self
            .functions
            .iter()
            .map(|&f| 64 + 32 * functions[f].statements)
            .sum();
        let mut out = String::with_capacity(estimate);
        // The package's type definitions live in its first file.
        if ws.packages[package]
            .files
            .first()
            .is_some_and(|f| std::ptr::eq(f, self))
        {
            for ty in &ws.packages[package].types {
                let _ = writeln!(out, "struct {} {{ {} }}", ty.name, ty.fields.join(", "));
            }
        }
        for &f in &self.functions {
            ws.packages[package].functions[f].text(ws, self.cosmetic, &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_render_as_format_would() {
        for n in [0u64, 1, 9, 10, 255, 1000, 0xdead_beef, u64::MAX] {
            let (mut dec, mut hex) = (String::new(), String::new());
            push_decimal(&mut dec, n);
            push_hex(&mut hex, n);
            assert_eq!(dec, format!("{n}"));
            assert_eq!(hex, format!("{n:x}"));
        }
    }

    #[test]
    fn generation_is_deterministic_and_shaped_like_the_scale() {
        let a = Workspace::generate(Scale::S, 7);
        assert_eq!(a, Workspace::generate(Scale::S, 7));
        assert_ne!(a, Workspace::generate(Scale::S, 8));
        assert_eq!(a.packages.len(), 2);
        assert_eq!(a.function_count(), 700);
        let generic = a
            .packages
            .iter()
            .flat_map(|p| &p.functions)
            .filter(|f| f.type_params > 0)
            .count();
        assert!((35..=140).contains(&generic), "{generic} generic functions");
        let mut sizes: Vec<usize> = a
            .packages
            .iter()
            .flat_map(|p| &p.functions)
            .map(|f| f.statements)
            .collect();
        sizes.sort_unstable();
        let median = sizes[sizes.len() / 2];
        assert!((20..=45).contains(&median), "median {median} statements");
    }
}
