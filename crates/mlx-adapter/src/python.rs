//! Finding the Python that runs the worker, and whether MLX is usable there. One order
//! everywhere: the configured interpreter (`PYTHON_PATH`, read by [`MlxConfig`]), else the project venv that `cargo xtask setup-mlx` makes (`.venv` in the
//! working directory), `python3`, `python`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::{MlxConfig, PYTHON_VAR};

/// The Python candidates, in the order they are tried.
pub fn candidates(explicit: Option<&std::path::Path>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = explicit {
        out.push(p.to_path_buf());
        return out;
    }
    let venv = if cfg!(windows) {
        ".venv/Scripts/python.exe"
    } else {
        ".venv/bin/python"
    };
    if let Ok(cwd) = std::env::current_dir() {
        let p = cwd.join(venv);
        if p.is_file() {
            out.push(p);
        }
    }
    out.push(PathBuf::from("python3"));
    out.push(PathBuf::from("python"));
    out
}

/// The first candidate that starts at all.
pub fn find(explicit: Option<&std::path::Path>) -> Option<PathBuf> {
    candidates(explicit).into_iter().find(|p| {
        Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Whether MLX can run here, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Availability {
    pub available: bool,
    pub python: Option<PathBuf>,
    pub reason: String,
}

/// The platform rule: the spec's macOS on Apple Silicon, and Linux (mlx[cpu] / mlx[cuda]).
pub fn platform_supported() -> bool {
    (cfg!(target_os = "macos") && cfg!(target_arch = "aarch64")) || cfg!(target_os = "linux")
}

/// Checks platform, Python ([`MlxConfig::from_env`]'s) and `import mlx.core, mlx_lm` once per process (a second call costs
/// nothing).
pub fn availability() -> &'static Availability {
    static CACHE: OnceLock<Availability> = OnceLock::new();
    CACHE.get_or_init(|| {
        let python = MlxConfig::from_env().ok().and_then(|c| c.python);
        check(python.as_deref())
    })
}

pub fn check(explicit: Option<&std::path::Path>) -> Availability {
    if !platform_supported() {
        return Availability {
            available: false,
            python: None,
            reason: format!(
                "MLX runs on macOS with Apple Silicon and on Linux; this is {} {}",
                std::env::consts::OS,
                std::env::consts::ARCH
            ),
        };
    }
    let Some(python) = find(explicit) else {
        let reason = match explicit {
            // PYTHON_PATH is strict: no quiet fallback to another interpreter.
            Some(path) => format!(
                "the configured Python {} ({PYTHON_VAR}) does not run",
                path.display()
            ),
            None => "no Python found (tried .venv, python3, python)".into(),
        };
        return Availability {
            available: false,
            python: explicit.map(std::path::Path::to_path_buf),
            reason,
        };
    };
    let out = Command::new(&python)
        .args(["-c", "import mlx.core, mlx_lm"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match out {
        Ok(o) if o.status.success() => Availability {
            available: true,
            python: Some(python.clone()),
            reason: format!("mlx and mlx-lm import in {}", python.display()),
        },
        Ok(o) => Availability {
            available: false,
            reason: format!(
                "mlx-lm is not importable in {}: {}",
                python.display(),
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
                    .trim()
            ),
            python: Some(python),
        },
        Err(e) => Availability {
            available: false,
            reason: format!("Failed to execute Python {}: {e}", python.display()),
            python: Some(python),
        },
    }
}

/// Whether `python` can constrain decoding (imports llguidance and numpy), checked once per
/// interpreter: the adapter declares native structured output only then.
pub fn can_constrain(python: &std::path::Path) -> bool {
    static CACHE: std::sync::Mutex<Option<std::collections::HashMap<PathBuf, bool>>> =
        std::sync::Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    *cache
        .get_or_insert_with(Default::default)
        .entry(python.to_path_buf())
        .or_insert_with(|| {
            Command::new(python)
                .args(["-c", "import llguidance, llguidance.numpy, numpy"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}
