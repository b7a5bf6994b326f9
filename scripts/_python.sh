# Sourced (not run) by scripts/quickstart.sh and scripts/run_tests.sh, from the repository root: sets PY,
# the interpreter they use — $PYTHON, or python3 when PYTHON is unset.
# When that interpreter is "externally managed" (PEP 668: an EXTERNALLY-MANAGED file in its stdlib
# directory and not running in a virtual environment; Debian 12's and Ubuntu 23.04+'s /usr/bin/python3,
# which refuse pip install), the project's .venv (repository root), built from that interpreter, is used
# instead: created on first use, reused afterwards, and put first on PATH with PYTHON pointing at it, so
# that install_browser.sh and test_tipc's "python" run in it too. Any other interpreter (an active
# virtual environment, pyenv, conda, python.org builds), or PIP_BREAK_SYSTEM_PACKAGES=1 (pip's own
# override), is used as chosen and no .venv is made.
# shellcheck shell=bash

PY=${PYTHON:-python3}

_py_main() {
  local me=${0##*/} venv info state ver vver out action no_venv
  venv=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv

  case "${PIP_BREAK_SYSTEM_PACKAGES:-}" in 1|[Tt]rue|[Yy]es|[Oo]n) return 0 ;; esac

  # the test pip itself makes (pip._internal.utils.misc.check_externally_managed), without installing
  info=$("$PY" -c '
import os, sys, sysconfig
in_venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix) or hasattr(sys, "real_prefix")
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
print("managed" if not in_venv and os.path.isfile(marker) else "ok", "%d.%d" % sys.version_info[:2])
' 2>/dev/null) || { echo "$me: cannot run the Python interpreter '$PY' (set PYTHON=/path/to/python3)" >&2; exit 1; }
  read -r state ver <<<"$info"
  [ "$state" = managed ] || return 0

  # .venv's Python version when it is a working virtual environment with pip, else empty
  vver=$("$venv/bin/python" -c '
import sys, pip
if sys.prefix == sys.base_prefix: sys.exit(1)
print("%d.%d" % sys.version_info[:2])
' 2>/dev/null) || vver=

  if [ -n "$vver" ] && [ "$vver" != "$ver" ]; then
    echo "$me: .venv is Python $vver but $PY is Python $ver; remove .venv (rm -rf .venv) to rebuild it, or set PYTHON to a Python $vver" >&2
    exit 1
  elif [ -n "$vver" ]; then
    echo "$me: $PY is externally managed (PEP 668); using the project's .venv" >&2
  else
    no_venv="$me: $PY is externally managed (PEP 668) and cannot create .venv: its venv/ensurepip modules are missing; install them (apt-get install python3-venv, or python$ver-venv) or set PYTHON to an interpreter that allows pip install"
    if ! "$PY" -c 'import venv, ensurepip; ensurepip.version()' >/dev/null 2>&1; then
      echo "$no_venv" >&2
      exit 1
    fi
    action="creating the project's .venv"
    if [ -e "$venv" ]; then
      if [ ! -f "$venv/pyvenv.cfg" ]; then
        echo "$me: $PY is externally managed (PEP 668), and .venv exists but is not a virtual environment; move it away so that .venv can be created" >&2
        exit 1
      fi
      action="rebuilding the project's broken .venv"
    fi
    echo "$me: $PY is externally managed (PEP 668); $action from it and installing there" >&2
    if ! out=$("$PY" -m venv --clear "$venv" 2>&1); then
      rm -rf "$venv"
      case "$out" in
        *ensurepip*) echo "$no_venv" >&2 ;;
        *) echo "$me: '$PY -m venv .venv' failed: $(printf '%s\n' "$out" | grep -v '^[[:space:]]*$' | tail -n 1)" >&2 ;;
      esac
      exit 1
    fi
  fi

  PY=$venv/bin/python
  export VIRTUAL_ENV=$venv PATH="$venv/bin:$PATH" PYTHON=$PY
  unset PYTHONHOME
}
_py_main
unset -f _py_main
