#!/usr/bin/env bash
# Print the path of a Python >= 3.12 interpreter (3.12 preferred), or explain in one line what to do.
# Order: $PYTHON if set, interpreters on PATH, then pyenv's versions (pyenv's shims only
# answer for the selected version, so its installs are looked up directly).
set -u
ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; }
candidates=()
[ -n "${PYTHON:-}" ] && candidates+=("$PYTHON")
for name in python3.12 python3 python3.13 python3.14 python; do
  command -v "$name" >/dev/null 2>&1 && candidates+=("$(command -v "$name")")
done
root=${PYENV_ROOT:-$HOME/.pyenv}
# 3.12 first: requirements.txt was resolved on it.
for dir in $(ls -d "$root"/versions/3.12* 2>/dev/null | sort -rV) $(ls -d "$root"/versions/3.1[3-9]* 2>/dev/null | sort -V); do
  candidates+=("$dir/bin/python3")
done
for py in "${candidates[@]}"; do
  if ok "$py"; then echo "$py"; exit 0; fi
done
echo "error: no Python >= 3.12 found (tried PATH and pyenv); install one (e.g. 'pyenv install 3.12') or run 'make PYTHON=/path/to/python3.12'" >&2
exit 1
