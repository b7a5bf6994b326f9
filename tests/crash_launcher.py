"""Run a script with a crash point armed (tests of crash safety in a subprocess: a process cannot be
handed an in-process hook, so this launcher sets utils.index.store.crash_hook and then runs the script
as __main__).

    python tests/crash_launcher.py STEP[@N[:SIGNAL]] script.py [args ...]

STEP (one of utils.index.store.CRASH_POINTS) kills the process with SIGKILL at its first pass; STEP@N at
its N-th (and any later); STEP@N:SIGTERM sends that signal once, at the N-th pass, instead (a clean stop:
the process's own handler then runs).
"""
import os
import runpy
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def arm(spec):
    import utils.index.store as store

    step, _, when = spec.partition("@")
    if step not in store.CRASH_POINTS:
        raise SystemExit(f"crash_launcher: unknown step {step!r} (known: {', '.join(store.CRASH_POINTS)})")
    nth, _, sig = when.partition(":")
    nth, seen = int(nth or 1), {"n": 0}

    def hook(name):
        if name != step:
            return
        seen["n"] += 1
        if seen["n"] == nth or (not sig and seen["n"] > nth):
            os.kill(os.getpid(), getattr(signal, sig or "SIGKILL"))

    store.crash_hook = hook


if __name__ == "__main__":
    spec, script, *rest = sys.argv[1:]
    arm(spec)
    sys.argv = [script, *rest]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")
