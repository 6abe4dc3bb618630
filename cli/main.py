"""The `onnxslim-kd` command: a thin layer over the library.

Exit codes: see cli/exit_codes.py (0 done, 1 internal error, 2 bad input, 3 budget missed,
4 target missed, 130 interrupted).
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
import traceback

from cli import exit_codes
from cli.commands import (
    bench,
    check,
    compare,
    compress,
    decompose,
    distill,
    inspect,
    prune,
    quantize,
)
from cli.commands.paths import STDOUT, guard
from onnxslim_kd import __version__, progress
from onnxslim_kd.errors import BrokenModelError, InputError

COMMANDS = (inspect, bench, compare, compress, prune, decompose, quantize, distill, check)

DESCRIPTION = """Post-training compression of ONNX models for onnxruntime.

examples:
  onnxslim-kd inspect model.onnx --json
  onnxslim-kd compress model.onnx -o model.slim.onnx --data train.npz --eval-data test.npz \\
      --target-speedup 4 --max-drop 0.01 --html report.html
  onnxslim-kd prune model.onnx -o pruned.onnx --target-macs 0.5 --global
  onnxslim-kd quantize model.onnx -o model.int8.onnx --data calib.npz
  onnxslim-kd bench model.onnx model.slim.onnx --data test.npz --batch 32
  onnxslim-kd check model.slim.onnx --baseline model.onnx --data test.npz --max-drop 0.01

run `onnxslim-kd COMMAND --help` for each command's options and examples.
"""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports usage errors on one line with exit code 2 and never
    completes an abbreviated option (`--js FILE` must not become `--json FILE`)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:
        hint = " (see --help)"
        if message.startswith("unrecognized arguments") and JSON_USED:
            hint = " (a JSON file is written with --json=FILE; bare --json prints to stdout)"
        sys.stderr.write(f"onnxslim-kd: error: {message}{hint}\n")
        sys.exit(2)


#: Whether the command line used --json (for the hint on a stray FILE argument).
JSON_USED = False


def split_json_flag(argv: list[str]) -> list[str]:
    """A bare `--json` means stdout; only `--json=FILE` names a file.

    With an optional value, `bench --json a.onnx b.onnx` would take the input a.onnx as
    the JSON file and overwrite it; so the bare flag never consumes the next argument.
    """
    global JSON_USED
    JSON_USED = any(a == "--json" or a.startswith("--json=") for a in argv)
    if "--" in argv:
        cut = argv.index("--")
        return split_json_flag(argv[:cut]) + argv[cut:]
    out: list[str] = []
    for arg in argv:
        if arg == STDOUT and out and out[-1] == f"--json={STDOUT}":
            continue  # `--json -` spells stdout too
        out.append(f"--json={STDOUT}" if arg == "--json" else arg)
    return out


def build_parser() -> argparse.ArgumentParser:
    common = ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress or tables")
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    common.add_argument(
        "--log-format", choices=("text", "json"), default="text",
        help="progress on stderr: text (bars on a terminal, one line per stage and epoch "
        "otherwise) or json (one JSON object per event, for CI systems)",
    )  # fmt: skip
    parser = ArgumentParser(
        prog="onnxslim-kd",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"onnxslim-kd {__version__}",
        help="print the version and exit",
    )  # fmt: skip
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    for command in COMMANDS:
        command.register(subparsers, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(split_json_flag(given))
    progress.configure(args.quiet, args.log_format)
    try:
        guard(args, args.paths)
        return importlib.import_module(args.handler).run(args)
    except InputError as exc:
        return _fail(args, f"error: {exc}", exit_codes.BAD_INPUT)
    except BrokenModelError as exc:
        message = f"error: a pass produced a broken model: {exc}"
        return _fail(args, message, exit_codes.INTERNAL_ERROR)
    except KeyboardInterrupt:
        return _fail(args, _interrupted(args, given), exit_codes.INTERRUPTED)
    except Exception as exc:  # the last line of defence: one line, traceback with --debug
        message = f"internal error: {type(exc).__name__}: {exc}"
        return _fail(args, message, exit_codes.INTERNAL_ERROR)


def _interrupted(args: argparse.Namespace, argv: list[str]) -> str:
    """What an interrupt leaves: the command that resumes, when a command kept its work."""
    resumable = getattr(args, "resumable", None)
    if resumable is not None and resumable(args):
        return f"interrupted; resume with: onnxslim-kd {shlex.join(argv)}"
    return "interrupted"


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    if args.debug:
        traceback.print_exc()
    first_line = message.splitlines()[0] if message else message
    sys.stderr.write(f"onnxslim-kd: {first_line}\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
