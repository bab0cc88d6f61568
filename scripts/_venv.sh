# Sourced by scripts/demo and scripts/test: make .venv (Python 3.11+) and install the project.
# Usage: ensure_venv [extras]
ensure_venv() {
  local extras="${1:-}"
  if [ ! -x .venv/bin/python ]; then
    local py=""
    for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
      [ -n "$candidate" ] || continue
      if command -v "$candidate" >/dev/null 2>&1 &&
         "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        py="$candidate"; break
      fi
    done
    if [ -z "$py" ]; then
      echo "error: choo needs Python 3.11 or newer; none found on PATH (set PYTHON=/path/to/python3.11)" >&2
      exit 1
    fi
    echo "==> creating .venv with $py"
    "$py" -m venv .venv
  fi
  local stamp=".venv/.installed${extras:+-$extras}"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "==> installing choo${extras:+ with [$extras]} into .venv"
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras:+[$extras]}"
    touch "$stamp"
  fi
}
