//! `$(VAR)` templates the webhook left (see `akv-mutation`'s `compose` module), and the last
//! check before exec that no placeholder text reaches the program. Pure.
//!
//! The webhook rewrote every string composed from a placeholder into a template whose references
//! are *capture* env vars, which the kubelet filled with each variable's value at the right
//! point. After resolution (a capture holding a placeholder is resolved like any other), each
//! template is expanded with the kubelet's own rules over the captures, and the captures are
//! removed from the program's environment.

use std::collections::HashMap;
use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt as _;

use akv_keyvault::Secret;
use akv_placeholder::expand;
use zeroize::Zeroize as _;

/// The flags the webhook adds for composition; never read from env (a ConfigMap could set it).
#[derive(clap::Args, Debug, Default, Clone)]
pub struct ComposeFlags {
    /// Env var NAME holds a `$(VAR)` template to expand after resolution (set by the webhook).
    #[arg(long = "compose-env", value_name = "NAME")]
    pub env: Vec<OsString>,

    /// Program argument INDEX (0 = the program) holds a template (set by the webhook).
    #[arg(long = "compose-arg", value_name = "INDEX")]
    pub args: Vec<usize>,

    /// Env var NAME is a capture a template refers to; removed before exec (set by the webhook).
    #[arg(long = "capture", value_name = "NAME")]
    pub captures: Vec<OsString>,

    /// Run the program even if a value or argument still holds placeholder text after
    /// resolution (pod annotation akv-env.io/allow-placeholder-text: "true").
    #[arg(long)]
    pub allow_placeholder_text: bool,
}

/// `argv` for execve, wiped when dropped: a composed argument holds a secret.
pub struct Argv(Vec<CString>);

impl Argv {
    pub fn as_slice(&self) -> &[CString] {
        &self.0
    }
}

impl Drop for Argv {
    fn drop(&mut self) {
        for c in self.0.drain(..) {
            c.into_bytes_with_nul().zeroize();
        }
    }
}

/// What the program gets: env without the captures, its resolved values, and argv.
pub struct Composed {
    pub env: Vec<(OsString, OsString)>,
    pub resolved: Vec<(usize, Secret)>,
    pub argv: Argv,
}

/// Why the program is not run. Names the variable or argument, never a value.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ComposeError {
    #[error(
        "{0}: the composed value contains a NUL byte, which an environment variable cannot hold"
    )]
    NulInEnv(String),
    #[error("argument {0}: it contains a NUL byte, which an argument cannot hold")]
    NulInArg(usize),
    #[error(
        "{0} still holds Key Vault placeholder text after resolution, so the program was not \
         started (a `$(VAR)` the webhook did not see, e.g. from envFrom secretRef?); if the \
         text is meant literally, annotate the pod akv-env.io/allow-placeholder-text: \"true\""
    )]
    PlaceholderLeft(String),
}

/// Expands the templates, drops the captures and checks what is left.
pub fn apply(
    flags: &ComposeFlags,
    env: &[(OsString, OsString)],
    resolved: Vec<(usize, Secret)>,
    program: &[OsString],
) -> Result<Composed, ComposeError> {
    let mut resolved: HashMap<usize, Secret> = resolved.into_iter().collect();
    let index_of = |name: &OsString| env.iter().rposition(|(n, _)| n == name);
    let capture_at: Vec<(&[u8], usize)> = flags
        .captures
        .iter()
        .filter_map(|name| Some((name.as_bytes(), index_of(name)?)))
        .collect();
    let templates: Vec<usize> = flags.env.iter().filter_map(index_of).collect();

    // First everything that only reads: composed values, argv, and the check.
    let mut leftovers = Vec::new();
    let mut composed: HashMap<usize, Secret> = HashMap::new();
    let mut argv = Argv(Vec::with_capacity(program.len()));
    {
        let value_of = |i: usize| -> &[u8] {
            resolved
                .get(&i)
                .map_or(env[i].1.as_bytes(), Secret::expose_bytes)
        };
        // `checking`: resolved captures become a blank, so the check never reads a secret.
        let expand_with = |template: &[u8], checking: bool| -> Vec<u8> {
            expand::expand(template, |name| {
                let (_, i) = capture_at.iter().find(|(n, _)| *n == name)?;
                Some(if checking && resolved.contains_key(i) {
                    b" ".as_slice()
                } else {
                    value_of(*i)
                })
            })
        };
        let mut check = |what: String, text: &[u8]| {
            if !flags.allow_placeholder_text && akv_placeholder::contains_placeholder(text) {
                leftovers.push(what);
            }
        };
        for (i, (name, value)) in env.iter().enumerate() {
            let label = || format!("env var {}", name.to_string_lossy());
            if capture_at.iter().any(|(_, c)| *c == i) {
                continue;
            }
            if templates.contains(&i) {
                let template = value_of(i);
                check(label(), &expand_with(template, true));
                let value = Secret::new(expand_with(template, false));
                if value.expose_bytes().contains(&0) {
                    return Err(ComposeError::NulInEnv(name.to_string_lossy().into_owned()));
                }
                composed.insert(i, value);
            } else if !resolved.contains_key(&i) {
                check(label(), value.as_bytes());
            }
        }
        for (index, word) in program.iter().enumerate() {
            let bytes = if flags.args.contains(&index) {
                check(
                    format!("argument {index}"),
                    &expand_with(word.as_bytes(), true),
                );
                expand_with(word.as_bytes(), false)
            } else {
                check(format!("argument {index}"), word.as_bytes());
                word.as_bytes().to_vec()
            };
            match CString::new(bytes) {
                Ok(c) => argv.0.push(c),
                Err(e) => {
                    e.into_vec().zeroize();
                    return Err(ComposeError::NulInArg(index));
                }
            }
        }
    }
    if let Some(first) = leftovers.into_iter().next() {
        return Err(ComposeError::PlaceholderLeft(first));
    }

    // Then the program's env: captures dropped, values moved (not copied) into place.
    let mut out_env = Vec::with_capacity(env.len());
    let mut out_resolved = Vec::with_capacity(resolved.len());
    for (i, (name, value)) in env.iter().enumerate() {
        if capture_at.iter().any(|(_, c)| *c == i) {
            continue;
        }
        if let Some(secret) = composed.remove(&i).or_else(|| resolved.remove(&i)) {
            out_resolved.push((out_env.len(), secret));
        }
        out_env.push((name.clone(), value.clone()));
    }
    Ok(Composed {
        env: out_env,
        resolved: out_resolved,
        argv,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt as _;

    fn os(s: &[u8]) -> OsString {
        OsString::from_vec(s.to_vec())
    }

    fn flags(env: &[&str], args: &[usize], captures: &[&str]) -> ComposeFlags {
        ComposeFlags {
            env: env.iter().map(|s| os(s.as_bytes())).collect(),
            args: args.to_vec(),
            captures: captures.iter().map(|s| os(s.as_bytes())).collect(),
            allow_placeholder_text: false,
        }
    }

    type Lines = Vec<Vec<u8>>;
    /// (case, env, program, the leftover named).
    type LeftoverCase<'a> = (
        &'a str,
        Vec<(&'a [u8], &'a [u8])>,
        Vec<&'a [u8]>,
        Option<&'a str>,
    );

    /// The program's env as `NAME=value` strings and its argv, after composition.
    fn run(
        flags: &ComposeFlags,
        env: &[(&[u8], &[u8])],
        resolved: &[(usize, &[u8])],
        program: &[&[u8]],
    ) -> Result<(Lines, Lines), ComposeError> {
        let env: Vec<(OsString, OsString)> = env.iter().map(|(n, v)| (os(n), os(v))).collect();
        let resolved = resolved
            .iter()
            .map(|(i, v)| (*i, Secret::new(v.to_vec())))
            .collect();
        let program: Vec<OsString> = program.iter().map(|w| os(w)).collect();
        let composed = apply(flags, &env, resolved, &program)?;
        let envp = crate::envp::build_envp(&composed.env, &composed.resolved).unwrap();
        Ok((
            envp.as_slice()
                .iter()
                .map(|c| c.as_bytes().to_vec())
                .collect(),
            composed
                .argv
                .as_slice()
                .iter()
                .map(|c| c.as_bytes().to_vec())
                .collect(),
        ))
    }

    #[test]
    fn templates_are_expanded_with_resolved_captures_which_are_removed() {
        let f = flags(&["URL"], &[1, 2], &["AKV_ENV_REF_PW", "AKV_ENV_REF_HOME"]);
        let env: [(&[u8], &[u8]); 5] = [
            (b"PW", b"pw@azurekeyvault"),
            (b"AKV_ENV_REF_PW", b"pw@azurekeyvault"),
            (b"URL", b"postgres://app:$(AKV_ENV_REF_PW)@db $$(PW)"),
            (b"AKV_ENV_REF_HOME", b"/root"),
            (b"HOME", b"/root"),
        ];
        let secret: &[u8] = b"s\xffcret$(X)";
        let (envp, argv) = run(
            &f,
            &env,
            &[(0, secret), (1, secret)],
            &[
                b"/app",
                b"--pw=$(AKV_ENV_REF_PW)",
                b"$(AKV_ENV_REF_HOME)$(NOPE)",
                b"$(PW)",
            ],
        )
        .unwrap();
        assert_eq!(
            envp,
            vec![
                b"PW=s\xffcret$(X)".to_vec(),
                b"URL=postgres://app:s\xffcret$(X)@db $(PW)".to_vec(),
                b"HOME=/root".to_vec(),
            ]
        );
        assert_eq!(
            argv,
            vec![
                b"/app".to_vec(),
                b"--pw=s\xffcret$(X)".to_vec(),
                b"/root$(NOPE)".to_vec(),
                b"$(PW)".to_vec(),
            ]
        );
    }

    #[test]
    fn nul_bytes_are_refused_naming_the_variable_or_argument() {
        let env: [(&[u8], &[u8]); 2] = [
            (b"AKV_ENV_REF_PW", b"p@azurekeyvault"),
            (b"URL", b"u:$(AKV_ENV_REF_PW)"),
        ];
        let nul: &[u8] = b"a\0b";
        let err = run(
            &flags(&["URL"], &[], &["AKV_ENV_REF_PW"]),
            &env,
            &[(0, nul)],
            &[b"/app"],
        );
        assert_eq!(err.err(), Some(ComposeError::NulInEnv("URL".into())));
        let err = run(
            &flags(&[], &[1], &["AKV_ENV_REF_PW"]),
            &env[..1],
            &[(0, nul)],
            &[b"/app", b"$(AKV_ENV_REF_PW)"],
        );
        assert_eq!(err.err(), Some(ComposeError::NulInArg(1)));
    }

    #[test]
    fn placeholder_text_left_over_fails_closed_naming_where_never_the_value() {
        let none: &[(usize, &[u8])] = &[];
        #[rustfmt::skip]
        let cases: Vec<LeftoverCase> = vec![
            ("raw composed env", vec![(b"URL", b"postgres://app:pw@azurekeyvault@db")], vec![b"/app"], Some("env var URL")),
            ("raw composed arg", vec![], vec![b"/app", b"--password=pw@azurekeyvault?vault=kv"], Some("argument 1")),
            ("whole unresolved value", vec![(b"PW", b"pw@azurekeyvault")], vec![b"/app"], Some("env var PW")),
            ("near miss is not the grammar", vec![(b"A", b"pw@AzureKeyVault")], vec![b"/app"], None),
            ("bare marker", vec![(b"A", b"@azurekeyvault")], vec![b"/app"], None),
        ];
        for (case, env, program, want) in cases {
            let got = run(&ComposeFlags::default(), &env, none, &program).err();
            assert_eq!(
                got,
                want.map(|w| ComposeError::PlaceholderLeft(w.into())),
                "case {case}"
            );
            let allowed = ComposeFlags {
                allow_placeholder_text: true,
                ..ComposeFlags::default()
            };
            assert!(
                run(&allowed, &env, none, &program).is_ok(),
                "case {case} allowed"
            );
        }
        let message = ComposeError::PlaceholderLeft("env var URL".into()).to_string();
        assert!(!message.contains("pw@"), "{message}");
    }

    #[test]
    fn resolved_secrets_are_not_inspected_by_the_check() {
        // A secret whose text happens to look like a placeholder is the program's business.
        let env: [(&[u8], &[u8]); 2] = [
            (b"AKV_ENV_REF_PW", b"p@azurekeyvault"),
            (b"URL", b"u:$(AKV_ENV_REF_PW)"),
        ];
        let looks_like: &[u8] = b"x@azurekeyvault";
        let (envp, _) = run(
            &flags(&["URL"], &[], &["AKV_ENV_REF_PW"]),
            &env,
            &[(0, looks_like)],
            &[b"/app"],
        )
        .unwrap();
        assert_eq!(envp, vec![b"URL=u:x@azurekeyvault".to_vec()]);
    }
}
