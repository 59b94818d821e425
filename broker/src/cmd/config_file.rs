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
}
