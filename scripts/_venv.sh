# Sourced by scripts/*: make sure .venv exists and has the project installed.
# Usage: ensure_venv [extra]   (extra: "test" for the test dependencies)
ensure_venv() {
  local root extra stamp want
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  extra="${1:-}"
  VENV="$root/.venv"
  PY="$VENV/bin/python"
  if [ ! -x "$PY" ]; then
    echo "==> creating $VENV" >&2
    "${PYTHON:-python3}" -m venv "$VENV"
  fi
  # Reinstall only when pyproject.toml changed since the last install (fast re-runs).
  stamp="$VENV/.kumadp-installed${extra:+-$extra}"
  want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "==> installing kumadp${extra:+[$extra]} into $VENV" >&2
    "$PY" -m pip install --quiet --disable-pip-version-check -e "$root${extra:+[$extra]}" >&2
    echo "$want" >"$stamp"
  fi
  export PATH="$VENV/bin:$PATH"
}
