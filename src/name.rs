//! Validated names that become path components: [`Namespace`] and
//! [`PackageName`].
//!
//! A name is checked once, when it is constructed ("parse, don't validate"),
//! so an invalid name can never reach a path. The rules are the same for
//! both kinds, and strict enough that a name is always exactly one path
//! component inside the directory it is meant for:
//!
//! - 1 to [`MAX_NAME_LEN`] bytes;
//! - only ASCII letters, digits and `. _ - + @ =`;
//! - does not start with `.` (so never `.`, `..` or a hidden file);
//! - never `/`, `\`, NUL, whitespace or any other control character.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::error::{Error, Result};

/// Longest namespace or package name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

fn check(what: &'static str, name: &str) -> Result<()> {
    let fail = |rule: String| {
        Err(Error::InvalidName {
            what,
            name: name.to_string(),
            rule,
        })
    };
    if name.is_empty() {
        return fail("it is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return fail(format!(
            "it is {} bytes long; the limit is {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if name.starts_with('.') {
        return fail("it starts with `.`".into());
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "._-+@=".contains(c)))
    {
        let shown = if c.is_control() || c.is_whitespace() {
            format!("{:?}", c)
        } else {
            format!("`{c}`")
        };
        return fail(format!(
            "it contains {shown}; names may use only ASCII letters, digits and . _ - + @ ="
        ));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        ///
        /// A clone shares the text (a reference count, not an allocation):
        /// every [`crate::Key`] holds a clone of its namespace.
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Checks `name` against the naming rules (see the module docs).
            ///
            /// # Errors
            /// [`Error::InvalidName`] saying which rule was broken.
            pub fn new(name: impl Into<String>) -> Result<$name> {
                let name = name.into();
                check($what, &name)?;
                Ok($name(Arc::from(name)))
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(s: &str) -> Result<$name> {
                $name::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// A compiler identity: the compiler's name, version and every setting
    /// that changes its output. Keys and refs live inside a namespace, so two
    /// compilers never see (or wipe) each other's entries.
    Namespace,
    "namespace"
);

name_type!(
    /// The name of a package, as used for its ref.
    PackageName,
    "package name"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_are_accepted() {
        for name in [
            "rask-0.4.2+release",
            "std.io",
            "my_pkg",
            "jank@1.0=debug",
            "a",
        ] {
            assert_eq!(PackageName::new(name).unwrap().as_str(), name);
            assert_eq!(Namespace::new(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn names_that_could_escape_a_directory_are_refused_with_the_rule() {
        let cases = [
            ("", "empty"),
            ("..", "starts with `.`"),
            (".hidden", "starts with `.`"),
            ("a/b", "contains `/`"),
            ("..\\x", "starts with `.`"),
            ("a\\b", "contains `\\`"),
            ("a\0b", "'\\0'"),
            ("a\nb", "'\\n'"),
            ("a b", "' '"),
            ("é", "`é`"),
        ];
        for (name, needle) in cases {
            let err = PackageName::new(name).unwrap_err().to_string();
            assert!(err.contains(needle), "{name:?}: {err}");
        }
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert!(
            Namespace::new(long)
                .unwrap_err()
                .to_string()
                .contains("limit is 128")
        );
        assert!(Namespace::new("x".repeat(MAX_NAME_LEN)).is_ok());
    }
}
