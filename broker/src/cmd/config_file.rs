//! `brooklet serve --config FILE`: settings from a TOML file, under the
//! environment and the command line.
//!
//! The file's entries become the defaults of `serve`'s flags, so clap
//! applies the precedence: flags > `BROOKLET_*` variables > file > built-in
//! defaults, and validates the file's values exactly like flags. Keys are the
//! flags' long names with `_` for `-` (`cache_mb = 128`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Why a config file was refused; start-up stops with exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("config file {path} is not valid TOML: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the line.
        message: String,
    },
    /// A key no flag has.
    #[error("config file {path}: unknown key `{key}`; accepted keys: {accepted}")]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// Every accepted key.
        accepted: String,
    },
    /// A value that is not a string, number or boolean.
    #[error("config file {path}: `{key}` must be a string, a number or a boolean")]
    Value {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
}

/// The `--config FILE` of a `serve` command line (or `BROOKLET_CONFIG`).
pub fn path_in(args: &[OsString]) -> Option<PathBuf> {
    if args.get(1).is_none_or(|a| a != "serve") {
        return None;
    }
    let mut it = args.iter().skip(2);
    while let Some(arg) = it.next() {
        let arg = arg.to_string_lossy();
        if arg == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("BROOKLET_CONFIG").map(PathBuf::from)
}

/// Makes the file's entries the defaults of `serve`'s flags.
pub fn apply(command: clap::Command, path: &Path) -> Result<clap::Command, ConfigFileError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigFileError::Read { path: path.to_owned(), source })?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigFileError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let serve = command.find_subcommand("serve").expect("serve is a subcommand").clone();
    let settable: Vec<String> = serve
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .filter(|id| {
            !matches!(
                id.as_str(),
                "config"
                    | "print_config"
                    | "help"
                    | "log_level"
                    | "log_format"
                    | "url"
                    | "timeout_secs"
                    | "tls_ca"
                    | "tls_client_cert"
                    | "tls_client_key"
            )
        })
        .collect();
    let mut defaults = Vec::new();
    for (key, value) in table {
        if !settable.contains(&key) {
            return Err(ConfigFileError::UnknownKey {
                path: path.to_owned(),
                key,
                accepted: settable.join(", "),
            });
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => return Err(ConfigFileError::Value { path: path.to_owned(), key }),
        };
        defaults.push((key, value));
    }
    Ok(command.mut_subcommand("serve", |mut serve| {
        for (key, value) in defaults {
            serve = serve.mut_arg(key, |arg| arg.default_value(value));
        }
        serve
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_path_comes_from_serves_arguments() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(path_in(&args(&["brooklet", "serve", "--config", "a.toml"])), Some("a.toml".into()));
        assert_eq!(
            path_in(&args(&["brooklet", "serve", "--listen", "x", "--config=b.toml"])),
            Some("b.toml".into())
        );
        assert_eq!(path_in(&args(&["brooklet", "topic", "list", "--config", "c.toml"])), None);
    }

    /// Keys the file may set: the long names of `serve`'s flags, as the
    /// file spells them.
    fn keys() -> Vec<String> {
        use clap::CommandFactory as _;
        let command = crate::cmd::Cli::command();
        let serve = command.find_subcommand("serve").unwrap();
        serve.get_arguments().map(|a| a.get_id().to_string()).collect()
    }

    fn value() -> impl proptest::strategy::Strategy<Value = toml::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            ".{0,12}".prop_map(toml::Value::String),
            "[0-9:.a-z-]{0,12}".prop_map(toml::Value::String),
            any::<i64>().prop_map(toml::Value::Integer),
            prop_oneof![Just(0i64), Just(-1), Just(1 << 40)].prop_map(toml::Value::Integer),
            any::<f64>().prop_map(toml::Value::Float),
            any::<bool>().prop_map(toml::Value::Boolean),
            Just(toml::Value::Datetime("1979-05-27T07:32:00Z".parse().unwrap())),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(toml::Value::Array),
                proptest::collection::btree_map("[a-z]{1,4}", inner, 0..3)
                    .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
            ]
        })
    }

    /// Reads the file as `brooklet serve --config FILE` does, up to the
    /// parsed command line; an error is returned as its message.
    fn serve_with(text: &str) -> Result<(), String> {
        use clap::{CommandFactory as _, FromArgMatches as _};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("brooklet.toml");
        std::fs::write(&path, text).unwrap();
        let command = apply(crate::cmd::Cli::command(), &path).map_err(|e| e.to_string())?;
        let matches = command.try_get_matches_from(["brooklet", "serve"]).map_err(|e| e.to_string())?;
        crate::cmd::refuse_broker_flags(&matches)?;
        crate::cmd::Cli::from_arg_matches(&matches).map_err(|e| e.to_string())?;
        Ok(())
    }

    #[test]
    fn the_corpus_of_config_files_is_refused_naming_the_key() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/config");
        let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        assert!(!files.is_empty(), "{} holds no file", dir.display());
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            let message = serve_with(&text).expect_err(&path.display().to_string());
            let table: Result<toml::Table, _> = text.parse();
            if let Ok(table) = table {
                let named = table.keys().any(|k| {
                    message.contains(&format!("`{k}`"))
                        || message.contains(&format!("--{}", k.replace('_', "-")))
                });
                assert!(named, "{}: {message}", path.display());
            } else {
                assert!(message.contains("not valid TOML"), "{}: {message}", path.display());
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_is_read_or_refused(text in ".{0,80}") {
            let _ = serve_with(&text);
        }

        #[test]
        fn a_refused_value_is_named_by_its_key(
            entries in proptest::collection::vec(
                (proptest::prop_oneof![
                    4 => proptest::sample::select(keys()),
                    1 => "[a-z_]{1,12}",
                ], value()),
                1..4,
            ),
        ) {
            let table: toml::Table = entries.iter().cloned().collect();
            let text = table.to_string();
            if let Err(message) = serve_with(&text) {
                // The key as the file spells it, or as its flag.
                let named = table.keys().any(|k| message.contains(&format!("`{k}`")) || message.contains(&format!("--{}", k.replace('_', "-"))));
                proptest::prop_assert!(named, "{text:?}: {message}");
            }
        }
    }
}
