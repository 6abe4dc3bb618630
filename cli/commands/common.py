"""The options every command shares, and how a command is added; light to import (--help)."""

from __future__ import annotations

import argparse

from cli.commands.values import POSITIVE, max_drop


def add_command(
    subparsers, common: argparse.ArgumentParser, name: str, summary: str, examples: str
) -> argparse.ArgumentParser:
    """A subcommand with the shared options (--quiet, --debug) and examples in --help."""
    return subparsers.add_parser(
        name,
        parents=[common],
        allow_abbrev=False,
        help=summary,
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_shape_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shape",
        action="append",
        metavar="NAME=DIMS",
        help="concrete shape for an input with dynamic dims, e.g. input=1x3x224x224 (repeatable)",
    )


def add_data_options(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument(
        "--data",
        required=required,
        metavar="DATA",
        help=".npz with arrays named after the model inputs (+ optional 'labels'), "
        "or a folder of images",
    )
    parser.add_argument(
        "--samples", type=POSITIVE, metavar="N", help="use a deterministic subset of N samples"
    )
    parser.add_argument(
        "--batch-axis",
        action="append",
        metavar="NAME=AXIS",
        help="an input's sample axis when the model does not show it, e.g. state=1, or "
        "sr=none for an input fed whole with every batch (repeatable)",
    )
    parser.add_argument(
        "--preprocess",
        metavar="SPEC",
        help="image folder preprocessing, e.g. "
        "resize=256,crop=224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225,order=RGB",
    )


def add_budget_options(
    parser: argparse.ArgumentParser,
    max_drop_help: str,
    min_sqnr_help: str,
    *,
    min_sqnr: float,
    default_drop: float | None = None,
) -> None:
    """The per-output budget of a lossy command: --max-drop on class outputs, --min-sqnr
    (dB against the original) on every other output."""
    parser.add_argument(
        "--max-drop", type=max_drop, default=default_drop, metavar="D", help=max_drop_help
    )
    parser.add_argument(
        "--min-sqnr", type=float, default=min_sqnr, metavar="DB", help=min_sqnr_help
    )


def add_json_option(parser: argparse.ArgumentParser, what: str) -> None:
    """`--json` prints to stdout; `--json=FILE` (with '=', see cli.main.split_json_flag)
    writes FILE."""
    parser.add_argument(
        "--json",
        metavar="=FILE",
        help=f"print {what} as JSON on stdout (nothing else goes there); --json=FILE "
        "writes it to FILE instead",
    )
