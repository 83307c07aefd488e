#!/usr/bin/env bash
# Print the path of the newest Python 3 interpreter that runs here (≥ 3.11), for
# `make test-newest`: python3.N on PATH, and the versions pyenv has installed (a pyenv shim on
# PATH fails for a version that is not selected, so its interpreters are looked up directly).
# Exits 1, printing nothing, when none is found.
set -euo pipefail

runs() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }

best="" best_minor=-1
consider() {  # $1: an interpreter path or name
    local minor
    runs "$1" || return 0
    minor=$("$1" -c 'import sys; print(sys.version_info[1])')
    if ((minor > best_minor)); then best=$(command -v "$1"); best_minor=$minor; fi
}

for minor in $(seq 30 -1 11); do
    if command -v "python3.$minor" >/dev/null 2>&1; then consider "python3.$minor"; fi
done
if command -v pyenv >/dev/null 2>&1; then
    root=$(pyenv root)
    for python in "$root"/versions/3.*/bin/python3.[0-9]*; do
        [[ -x $python && $python != *-config ]] && consider "$python"
    done
fi
[[ -n $best ]] || exit 1
echo "$best"
