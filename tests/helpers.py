"""Shared test helpers: run the real command-line entry points as subprocesses."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(args, timeout=600, env=None, check=True, cwd=ROOT):
    """Run `python <args>` from the repo root; return the CompletedProcess (text)."""
    full_env = dict(os.environ, FLAGS_use_mkldnn="0", PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.run([sys.executable] + [str(a) for a in args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"command failed ({proc.returncode}): {' '.join(map(str, args))}\n"
                             f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")
    return proc


def lite_flags(data, method, out, epochs=1, bit=16, extra=()):
    """Flags for a tiny, fast training run on generated lite data (random init: the scratch recipe)."""
    return ["--method", method, "--bit", bit, "--dataset", data["dataset"], "--data-path", data["root"],
            "--list-dir", data["list_dir"], "--epochs", epochs, "-bs", 8, "--num-workers", 0, "--output", out,
            "--seed", 7, "--recipe", "scratch", *extra]
