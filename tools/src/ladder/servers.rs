//! Which servers a ladder run measures: the lessons, the peers, and variants.
//!
//! A **variant** is any server under a label of its own, given as
//! `--server 'LABEL=PROGRAM ARGS…'`: a lesson or peer with other options
//! (`batch32=05_uring_multishot --batch 32`), or another build of one
//! (`before=/tmp/old/05_uring_multishot`). PROGRAM is a lesson's or peer's
//! name, found beside the runner like every server, or a path (anything
//! with a `/`). The arguments are split at white space, with no quoting; the
//! runner adds `--addr 127.0.0.1:0` after them. So a before/after
//! comparison, or an ablation of one option, is one command, and its rows
//! sit beside the lessons' in every table and chart.
//!
//! `--only NAME,…` measures a subset; the others stay in the data, skipped
//! with that reason, so a data file still says something about every lesson
//! and peer.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::lessons::{LESSONS, NOT_ECHO, PEERS, Protocol};
use crate::process::binary_path;

use super::ServerEntry;

/// Lesson, peer or variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    Lesson,
    Peer,
    Variant,
}

impl ServerKind {
    /// The word the data file uses.
    pub fn word(self) -> &'static str {
        match self {
            ServerKind::Lesson => "lesson",
            ServerKind::Peer => "peer",
            ServerKind::Variant => "variant",
        }
    }
}

/// A variant as given on the command line, not yet resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub label: String,
    /// A lesson's or peer's name, or a path.
    pub program: String,
    pub args: Vec<String>,
}

/// Parses `LABEL=PROGRAM ARGS…`.
pub fn parse_variant(text: &str) -> Result<Variant, String> {
    let usage = "a variant is LABEL=PROGRAM ARGS…, e.g. 'batch32=05_uring_multishot --batch 32'";
    let (label, command) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: {usage}"))?;
    let label = label.trim();
    // The label names a row of every table and a field of the CSV.
    if label.is_empty()
        || !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.+".contains(c))
    {
        return Err(format!(
            "`{label}` is not a label: use letters, digits and _ - . + only ({usage})"
        ));
    }
    let mut words = command.split_whitespace().map(String::from);
    let program = words
        .next()
        .ok_or_else(|| format!("`{text}` names no program: {usage}"))?;
    Ok(Variant {
        label: label.to_string(),
        program,
        args: words.collect(),
    })
}

/// One server to measure (or to record as skipped).
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// The lesson's or peer's name, or the variant's label.
    pub name: String,
    pub kind: ServerKind,
    pub model: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Why it is not measured, if it is not.
    pub skipped: Option<String>,
}

impl ServerSpec {
    fn new(name: &str, kind: ServerKind, model: &str, program: PathBuf) -> ServerSpec {
        ServerSpec {
            name: name.to_string(),
            kind,
            model: model.to_string(),
            program,
            args: Vec::new(),
            skipped: None,
        }
    }

    /// The command that starts it on a free port: under `taskset -c 0`
    /// when `pin`, with `prefix` (such as an strace command line) between
    /// the two.
    pub fn command(&self, pin: bool, prefix: &[&str]) -> Command {
        launch(&self.program, &self.args, pin, prefix)
    }

    /// The program and arguments as the data records them.
    pub fn argv(&self) -> Vec<String> {
        let root = crate::workspace_root();
        let program = self.program.strip_prefix(&root).unwrap_or(&self.program);
        let mut argv = vec![program.to_string_lossy().into_owned()];
        argv.extend(self.args.iter().cloned());
        argv.extend(ADDR_ARGS.map(String::from));
        argv
    }

    /// The data file's entry.
    pub fn entry(&self) -> ServerEntry {
        ServerEntry {
            name: self.name.clone(),
            kind: self.kind.word().to_string(),
            model: self.model.clone(),
            command: self.argv(),
            skipped: self.skipped.clone(),
        }
    }
}

/// Every server listens on a free port, which it announces.
const ADDR_ARGS: [&str; 2] = ["--addr", "127.0.0.1:0"];

/// `[taskset -c 0] PREFIX… PROGRAM ARGS… --addr 127.0.0.1:0`.
pub fn launch(program: &Path, args: &[String], pin: bool, prefix: &[&str]) -> Command {
    let mut argv: Vec<String> = Vec::new();
    if pin {
        argv.extend(["taskset", "-c", "0"].map(String::from));
    }
    argv.extend(prefix.iter().map(|s| s.to_string()));
    argv.push(program.to_string_lossy().into_owned());
    argv.extend(args.iter().cloned());
    argv.extend(ADDR_ARGS.map(String::from));
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]);
    command
}

/// The lessons, the peers and the variants, each with the reason it is
/// skipped, if it is: a lesson that cannot run here or cannot serve many
/// clients at once, a server left out by `only`.
pub fn roster(variants: &[Variant], only: Option<&[String]>) -> Result<Vec<ServerSpec>, String> {
    let mut servers = Vec::new();
    for lesson in LESSONS {
        let mut spec = ServerSpec::new(
            lesson.name,
            ServerKind::Lesson,
            lesson.model,
            binary_path(lesson.name),
        );
        spec.skipped = if lesson.protocol != Protocol::Echo {
            Some(NOT_ECHO.to_string())
        } else {
            lesson.why_not_here().or_else(|| {
                lesson
                    .expected_failure("concurrent")
                    .map(|e| format!("fails the `concurrent` check: {}", e.why))
            })
        };
        servers.push(spec);
    }
    for peer in PEERS {
        let mut spec = ServerSpec::new(
            peer.name,
            ServerKind::Peer,
            peer.model,
            binary_path(peer.name),
        );
        spec.skipped = peer.why_not_here();
        servers.push(spec);
    }
    for variant in variants {
        if servers.iter().any(|s| s.name == variant.label) {
            return Err(format!(
                "the label `{}` is taken: a lesson, a peer or another variant has it",
                variant.label
            ));
        }
        servers.push(resolve(variant));
    }
    if let Some(only) = only {
        choose(&mut servers, only)?;
    }
    Ok(servers)
}

/// A variant's program found, its model and skip reason taken from the
/// lesson or peer it names.
fn resolve(variant: &Variant) -> ServerSpec {
    let word = variant.program.as_str();
    let (program, model, skipped) = if word.contains('/') {
        (PathBuf::from(word), format!("another build: {word}"), None)
    } else if let Some(lesson) = crate::lessons::lesson(word) {
        (
            binary_path(word),
            lesson.model.to_string(),
            lesson.why_not_here(),
        )
    } else if let Some(peer) = PEERS.iter().find(|p| p.name == word) {
        (
            binary_path(word),
            peer.model.to_string(),
            peer.why_not_here(),
        )
    } else {
        (binary_path(word), format!("the binary {word}"), None)
    };
    ServerSpec {
        name: variant.label.clone(),
        kind: ServerKind::Variant,
        model,
        program,
        args: variant.args.clone(),
        skipped,
    }
}

/// Marks every server not in `only` as skipped; an unknown name is an error.
fn choose(servers: &mut [ServerSpec], only: &[String]) -> Result<(), String> {
    for name in only {
        if !servers.iter().any(|s| &s.name == name) {
            let known: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
            return Err(format!(
                "--only names `{name}`, which is no lesson, peer or variant; there are: {}",
                known.join(", ")
            ));
        }
    }
    for server in servers.iter_mut() {
        if !only.contains(&server.name) && server.skipped.is_none() {
            server.skipped = Some("not chosen with --only".to_string());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variant_is_a_label_a_program_and_its_arguments() {
        let v = parse_variant("batch32=05_uring_multishot --batch 32").unwrap();
        assert_eq!(v.label, "batch32");
        assert_eq!(v.program, "05_uring_multishot");
        assert_eq!(v.args, ["--batch", "32"]);
        let path = parse_variant("before=/tmp/old/05_uring_multishot").unwrap();
        assert_eq!(path.program, "/tmp/old/05_uring_multishot");
        assert!(path.args.is_empty());
        for bad in [
            "no-equals",
            "=05_uring_multishot",
            "a b=x",
            "label=",
            "a,b=x",
        ] {
            assert!(parse_variant(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn variants_join_the_roster_and_only_chooses_among_all() {
        let v = parse_variant("batch32=05_uring_multishot --batch 32").unwrap();
        let only = ["batch32".to_string(), "03_epoll".to_string()];
        let chosen = roster(std::slice::from_ref(&v), Some(&only)).unwrap();
        let batch = chosen.iter().find(|s| s.name == "batch32").unwrap();
        assert_eq!(batch.kind, ServerKind::Variant);
        assert_eq!(batch.program, binary_path("05_uring_multishot"));
        let argv = batch.argv();
        assert!(argv[0].ends_with("05_uring_multishot"), "{argv:?}");
        assert_eq!(&argv[1..], ["--batch", "32", "--addr", "127.0.0.1:0"]);
        let epoll = chosen.iter().find(|s| s.name == "03_epoll").unwrap();
        assert_eq!(epoll.skipped, None);
        for peer in PEERS {
            let entry = chosen.iter().find(|s| s.name == peer.name).unwrap();
            assert_eq!(entry.skipped.as_deref(), Some("not chosen with --only"));
        }
        assert!(roster(&[], Some(&["nothing".to_string()])).is_err());
        let clash = parse_variant("03_epoll=03_epoll").unwrap();
        assert!(
            roster(&[clash], None).is_err(),
            "a label may not hide a lesson"
        );
    }

    #[test]
    fn the_launch_command_pins_and_prefixes() {
        let c = launch(
            Path::new("/bin/x"),
            &["--batch".into(), "8".into()],
            true,
            &["strace"],
        );
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(c.get_program(), "taskset");
        assert_eq!(
            args,
            [
                "-c",
                "0",
                "strace",
                "/bin/x",
                "--batch",
                "8",
                "--addr",
                "127.0.0.1:0"
            ]
        );
    }
}
