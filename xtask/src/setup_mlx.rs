//! `cargo xtask setup-mlx`: a project-local venv with pinned mlx-lm (and, on Linux, `mlx[cpu]`
//! or `mlx[cuda]`), verified by importing it. Idempotent: a venv that already has the pinned
//! versions is left as it is.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::workspace;

pub const MLX_VERSION: &str = "0.32.4";
pub const MLX_LM_VERSION: &str = "0.32.2";
/// The grammar engine the worker masks the sampler with for structured output.
pub const LLGUIDANCE_VERSION: &str = "1.9.1";

#[derive(clap::Args, Default)]
pub struct Args {
    /// The Python to build the venv from (default: python3, then python).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Install mlx[cuda] instead of mlx[cpu] (Linux with an NVIDIA GPU).
    #[arg(long)]
    cuda: bool,
    /// Also download this model into the hub cache (needs the network).
    #[arg(long)]
    model: Option<String>,
    /// Where the venv goes (default: .venv in the workspace root).
    #[arg(long)]
    venv: Option<PathBuf>,
}

fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts/python.exe")
    } else {
        venv.join("bin/python")
    }
}

fn output(python: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(python)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn base_python(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let candidates = match explicit {
        Some(p) => vec![p],
        None => vec![PathBuf::from("python3"), PathBuf::from("python")],
    };
    for p in candidates {
        if let Some(v) = output(
            &p,
            &["-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        ) {
            let (major, minor) = v.split_once('.').unwrap_or(("0", "0"));
            let (major, minor): (u32, u32) =
                (major.parse().unwrap_or(0), minor.parse().unwrap_or(0));
            if (major, minor) >= (3, 9) {
                println!("setup-mlx: using {} (Python {v})", p.display());
                return Ok(p);
            }
            println!(
                "setup-mlx: {} is Python {v}; MLX needs 3.9 or newer",
                p.display()
            );
        }
    }
    bail!(
        "Failed to execute Python: no Python 3.9+ found; install one (e.g. `apt-get install python3 python3-venv` or `brew install python@3.11`) or pass --python"
    )
}

fn requirements(cuda: bool) -> Vec<String> {
    let mlx = if cfg!(target_os = "linux") {
        if cuda {
            format!("mlx[cuda]=={MLX_VERSION}")
        } else {
            format!("mlx[cpu]=={MLX_VERSION}")
        }
    } else {
        format!("mlx=={MLX_VERSION}")
    };
    vec![
        mlx,
        format!("mlx-lm=={MLX_LM_VERSION}"),
        format!("llguidance=={LLGUIDANCE_VERSION}"),
    ]
}

pub fn run(args: Args) -> anyhow::Result<PathBuf> {
    let venv = args
        .venv
        .clone()
        .unwrap_or_else(|| workspace::root().join(".venv"));
    let python = venv_python(&venv);
    if !python.exists() {
        let base = base_python(args.python.clone())?;
        println!("setup-mlx: creating {}", venv.display());
        let status = Command::new(&base)
            .args(["-m", "venv"])
            .arg(&venv)
            .status()?;
        if !status.success() {
            bail!(
                "`{} -m venv` failed; on Debian install python3-venv",
                base.display()
            );
        }
    }
    let installed = output(
        &python,
        &[
            "-c",
            "import importlib.metadata as m; print(m.version('mlx'), m.version('mlx-lm'), m.version('llguidance'))",
        ],
    );
    let wanted = format!("{MLX_VERSION} {MLX_LM_VERSION} {LLGUIDANCE_VERSION}");
    if installed.as_deref() == Some(wanted.as_str()) {
        println!(
            "setup-mlx: mlx {MLX_VERSION}, mlx-lm {MLX_LM_VERSION} and llguidance {LLGUIDANCE_VERSION} already installed in {}",
            venv.display()
        );
    } else {
        let reqs = requirements(args.cuda);
        println!(
            "setup-mlx: installing {} (this downloads about 100 MB)",
            reqs.join(" ")
        );
        let status = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--progress-bar",
                "on",
            ])
            .args(&reqs)
            .status()
            .context("could not run pip")?;
        if !status.success() {
            bail!(
                "pip could not install {} ({status}); check that the Python package index is reachable (proxy, offline machine) and retry",
                reqs.join(" ")
            );
        }
    }
    let device = output(&python, &["-c", "import mlx.core as mx, mlx_lm; print(mx.default_device())"])
        .context("mlx-lm was installed but does not import; run the venv's python -c 'import mlx_lm' to see why")?;
    println!("setup-mlx: mlx imports; default device {device}");
    if cfg!(target_os = "linux") {
        let blas = [
            "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
            "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
        ]
        .into_iter()
        .find(|p| Path::new(p).exists());
        match blas {
            Some(p) => println!(
                "setup-mlx: OpenBLAS found at {p}; the worker preloads it for faster CPU matmuls"
            ),
            None => println!(
                "setup-mlx: tip: `apt-get install libopenblas0` makes mlx's CPU prompt processing much faster (the worker preloads it)"
            ),
        }
    }
    if let Some(model) = &args.model {
        println!("setup-mlx: downloading {model}");
        let status = Command::new(&python)
            .args([
                "-c",
                "import sys, mlx_lm; mlx_lm.load(sys.argv[1]); print('ok')",
                model,
            ])
            .status()?;
        if !status.success() {
            bail!("Failed to load model {model}: check the id and the network");
        }
    }
    println!(
        "setup-mlx: done. To use it from anywhere:\n  export PYTHON_PATH={}",
        venv_python(&std::fs::canonicalize(&venv).unwrap_or(venv.clone())).display()
    );
    Ok(python)
}
