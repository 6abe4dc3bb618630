# Sourced by the quick-start scripts: ensure_venv DIR PIP_ARGS... creates DIR with
# python3 -m venv and installs PIP_ARGS, skipping the install when nothing changed.
ensure_venv() {
    local dir="$1"
    shift
    local python="${PYTHON:-python3}"
    local stamp_text
    stamp_text="$("$python" --version 2>&1) $* $(sha256sum pyproject.toml | cut -c1-16)"
    if [[ -x "$dir/bin/python" && -f "$dir/.stamp" && "$(cat "$dir/.stamp")" == "$stamp_text" ]]; then
        return 0
    fi
    echo "setting up $dir (pip install $*) ..." >&2
    "$python" -m venv "$dir"
    if ! { "$dir/bin/python" -m pip install --upgrade pip && "$dir/bin/python" -m pip install "$@"; } \
        > "$dir.install.log" 2>&1; then
        tail -30 "$dir.install.log" >&2
        echo "install failed; full log in $dir.install.log" >&2
        return 1
    fi
    echo "$stamp_text" > "$dir/.stamp"
}
