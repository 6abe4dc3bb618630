"""Recipes: the ordered list of passes `compress` runs, read from YAML or TOML."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml

from onnxslim_kd.errors import InputError
from onnxslim_kd.pipeline import passes  # noqa: F401  (fills the pass registry)
from onnxslim_kd.pipeline.registry import Pass, build_pass

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

#: What `compress` runs without `--recipe`. Passes join it as their issues land.
DEFAULT_RECIPE: list[dict[str, Any]] = [{"name": "canonicalize"}]


def read_recipe(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Parse a recipe file (`.yaml`/`.yml` or `.toml`) into pass entries."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such recipe file")
    try:
        if path.suffix == ".toml":
            document = tomllib.loads(path.read_text())
        else:
            document = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a valid recipe ({str(exc).splitlines()[0]})") from exc
    if not isinstance(document, dict) or not isinstance(document.get("passes"), list):
        raise InputError(f"{path}: a recipe needs a 'passes' list")
    return [_entry(item, path) for item in document["passes"]]


def _entry(item: Any, path: Path) -> dict[str, Any]:
    """Accept `prune`, `{name: prune, ratio: 0.5}` or `{prune: {ratio: 0.5}}`."""
    if isinstance(item, str):
        return {"name": item}
    if isinstance(item, dict) and "name" in item:
        return dict(item)
    if isinstance(item, dict) and len(item) == 1:
        ((name, options),) = item.items()
        return {"name": name, **(options or {})}
    raise InputError(f"{path}: cannot read pass entry {item!r}")


def build_passes(entries: list[dict[str, Any]]) -> list[Pass]:
    """Instantiate every pass of a recipe up front, so option errors come before any work."""
    built = []
    for entry in entries:
        options = dict(entry)
        built.append(build_pass(options.pop("name"), options))
    return built
