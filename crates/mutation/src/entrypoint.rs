//! The program a container runs, by Kubernetes' rules, and how it becomes the injector's argv.

/// ENTRYPOINT and CMD from an image's config, as the registry reported them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageEntrypoint {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
}

/// A word of the final argv and whether kubelet will expand `$(VAR)` in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Word {
    /// From the pod's `command`/`args`: kubelet already expands these, keep them verbatim.
    Pod(String),
    /// From the image's ENTRYPOINT/CMD: kubelet never expanded these, so they must be escaped
    /// once they move into `args`.
    Image(String),
}

/// The argv the container would run unwrapped, following the container runtime exactly
/// (containerd's `WithProcessArgs`, the same logic Docker used):
/// - `command` non-empty: `command + args`, the image's ENTRYPOINT and CMD are ignored;
/// - otherwise ENTRYPOINT (unless it is `[""]`, which means "none") followed by `args` if
///   non-empty, else CMD.
///
/// `image` is only consulted when `command` is empty; `None` means it is unknown.
pub(crate) fn effective_argv(
    command: &[String],
    args: &[String],
    image: Option<&ImageEntrypoint>,
) -> Option<Vec<Word>> {
    let pod = |words: &[String]| words.iter().cloned().map(Word::Pod).collect::<Vec<_>>();
    if !command.is_empty() {
        let mut argv = pod(command);
        argv.extend(pod(args));
        return Some(argv);
    }
    let image = image?;
    let mut argv: Vec<Word> = if image.entrypoint.len() == 1 && image.entrypoint[0].is_empty() {
        Vec::new()
    } else {
        image.entrypoint.iter().cloned().map(Word::Image).collect()
    };
    if args.is_empty() {
        argv.extend(image.cmd.iter().cloned().map(Word::Image));
    } else {
        argv.extend(pod(args));
    }
    Some(argv)
}

/// Escapes a word so that kubelet's `$(VAR)` expansion gives it back unchanged.
///
/// Kubelet's expansion turns `$$` into `$` and `$(NAME)` into the variable; any other `$` stays.
/// Doubling every `$` is therefore exact: each `$$` pair comes back as one `$`, and no `$(`
/// survives to be expanded.
pub(crate) fn escape_for_kubelet(word: &str) -> String {
    akv_placeholder::expand::escape_str(word)
}

/// The `args` of the wrapped container: `--` then the original argv, image words escaped.
pub(crate) fn wrapped_args(argv: Vec<Word>) -> Vec<String> {
    std::iter::once("--".to_owned())
        .chain(argv.into_iter().map(|word| match word {
            Word::Pod(w) => w,
            Word::Image(w) => escape_for_kubelet(&w),
        }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    fn kubelet_expand(input: &str, vars: &[(&str, &str)]) -> String {
        let lookup = |name: &[u8]| {
            vars.iter()
                .find(|(n, _)| n.as_bytes() == name)
                .map(|(_, v)| v.as_bytes())
        };
        String::from_utf8(akv_placeholder::expand::expand(input.as_bytes(), lookup)).unwrap()
    }

    /// (name, command, args, image, wrapped args or None when unknown)
    type Case<'a> = (
        &'a str,
        Vec<String>,
        Vec<String>,
        Option<&'a ImageEntrypoint>,
        Option<Vec<&'a str>>,
    );

    #[test]
    fn the_entrypoint_matrix_follows_the_runtime() {
        let image = ImageEntrypoint {
            entrypoint: s(&["/entry"]),
            cmd: s(&["default", "cmd"]),
        };
        let empty_entrypoint = ImageEntrypoint {
            entrypoint: s(&[""]),
            cmd: s(&["/bin/app"]),
        };
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("command only: ENTRYPOINT and CMD dropped", s(&["/app"]), vec![], Some(&image), Some(vec!["--", "/app"])),
            ("command and args", s(&["/app"]), s(&["-v"]), Some(&image), Some(vec!["--", "/app", "-v"])),
            ("command set needs no image", s(&["/app"]), s(&["x"]), None, Some(vec!["--", "/app", "x"])),
            ("args only: ENTRYPOINT + args, CMD dropped", vec![], s(&["-v"]), Some(&image), Some(vec!["--", "/entry", "-v"])),
            ("neither: ENTRYPOINT + CMD", vec![], vec![], Some(&image), Some(vec!["--", "/entry", "default", "cmd"])),
            ("ENTRYPOINT [\"\"] means none", vec![], vec![], Some(&empty_entrypoint), Some(vec!["--", "/bin/app"])),
            ("no command, image unknown", vec![], s(&["-v"]), None, None),
        ];
        for (name, command, args, image, want) in cases {
            let got = effective_argv(&command, &args, image).map(wrapped_args);
            let want = want.map(|w| s(&w));
            assert_eq!(got, want, "case: {name}");
        }
    }

    #[test]
    fn pod_words_keep_their_references_and_image_words_are_escaped() {
        let image = ImageEntrypoint {
            entrypoint: s(&["sh", "-c", "echo $(HOME) $$ $HOME $"]),
            cmd: vec![],
        };
        let argv = effective_argv(&[], &[], Some(&image)).unwrap();
        let args = wrapped_args(argv);
        let vars = [("HOME", "/root")];
        // After kubelet expands the wrapped args, the image's words are byte for byte the same.
        let expanded: Vec<String> = args.iter().map(|a| kubelet_expand(a, &vars)).collect();
        assert_eq!(expanded, s(&["--", "sh", "-c", "echo $(HOME) $$ $HOME $"]));

        // Pod words are left for kubelet to expand, as they were before wrapping.
        let argv = effective_argv(&s(&["echo"]), &s(&["$(HOME)", "$$(HOME)"]), None).unwrap();
        let expanded: Vec<String> = wrapped_args(argv)
            .iter()
            .map(|a| kubelet_expand(a, &vars))
            .collect();
        assert_eq!(expanded, s(&["--", "echo", "/root", "$(HOME)"]));
    }

    #[test]
    fn escape_table() {
        for (input, want) in [
            ("plain", "plain"),
            ("$(VAR)", "$$(VAR)"),
            ("$$", "$$$$"),
            ("a$b", "a$$b"),
            ("$", "$$"),
        ] {
            assert_eq!(escape_for_kubelet(input), want, "input {input:?}");
        }
    }
}
