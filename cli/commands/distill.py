"""`onnxslim-kd distill`: fine-tune a compressed model by distillation from the original."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.commands.common import (
    add_command,
    add_data_options,
    add_json_option,
)
from cli.commands.paths import PathRoles
from cli.commands.values import NON_NEGATIVE, POSITIVE, POSITIVE_NUMBER, number
from onnxslim_kd.distill.options import LOSS_NAMES, DistillOptions

EXAMPLES = """examples:
  onnxslim-kd distill pruned.onnx -o pruned.kd.onnx --teacher model.onnx \\
      --data samples/digits/train.npz --eval-data val.npz --epochs 5
  onnxslim-kd distill small.onnx -o small.kd.onnx --teacher a.onnx --teacher b.onnx \\
      --data train.npz --loss hint --temperature 2 --max-seconds 600 --json=report.json
  onnxslim-kd distill small.onnx -o out.onnx --teacher model.onnx --data unlabelled.npz \\
      --loss kd:1,at:1000
  onnxslim-kd distill pruned.onnx -o pruned.kd.onnx --teacher model.onnx --data train.npz \\
      --epochs 30 --checkpoint-dir kd.state    # killed? rerun the same command to resume
  torchrun --standalone --nproc_per_node 2 -m onnxslim_kd distill pruned.onnx \\
      -o pruned.kd.onnx --teacher model.onnx --data train.npz --epochs 30

torchrun: N processes each train on 1/N of every --batch (the batch and schedule stay those
of one process) with gradients averaged over gloo (CPU) or nccl (cuda); only rank 0 prints
and writes the model, the JSON and the checkpoint.

losses: kd (default; plus hard-label CE weighted 1-alpha when the data has labels), ce,
hint, at, rkd, sp, attn (attention probabilities of a transformer's Softmaxes, MiniLM;
each added to kd), or explicit weights NAME:W,NAME:W.
needs torch: pip install 'onnxslim-kd[distill]'
"""


def register(subparsers, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        subparsers,
        common,
        "distill",
        "fine-tune a compressed model's weights, taught by the original model(s)",
        EXAMPLES,
    )
    defaults = DistillOptions()
    parser.add_argument("student", help="compressed ONNX model to fine-tune (never modified)")
    parser.add_argument("-o", "--output", required=True, help="where to write the result")
    parser.add_argument("--teacher", action="append", required=True, metavar="TEACHER",
                        help="uncompressed model; repeat for an ensemble")  # fmt: skip
    add_data_options(parser, required=True)
    parser.add_argument("--eval-data", metavar="DATA",
                        help="held-out data for best-epoch selection (default: hold out "
                        f"{defaults.val_fraction * 100:g}%% of --data)")  # fmt: skip
    parser.add_argument("--epochs", type=POSITIVE, default=defaults.epochs, help="(%(default)s)")
    parser.add_argument("--loss", default=defaults.loss,
                        help=f"{'|'.join(LOSS_NAMES)} or NAME:W,... (%(default)s)")  # fmt: skip
    parser.add_argument("--temperature", type=POSITIVE_NUMBER, default=defaults.temperature,
                        help="softening temperature T (%(default)s)")  # fmt: skip
    parser.add_argument("--alpha", type=number(0, 1), default=defaults.alpha,
                        help="weight of kd against hard-label ce (%(default)s)")  # fmt: skip
    parser.add_argument("--lr", type=POSITIVE_NUMBER, default=defaults.lr, help="(%(default)s)")
    parser.add_argument("--batch", type=POSITIVE, default=defaults.batch, help="(%(default)s)")
    parser.add_argument("--optimizer", choices=["adamw", "sgd"], default=defaults.optimizer)
    parser.add_argument("--max-seconds", type=POSITIVE_NUMBER, help="stop training after this long")
    parser.add_argument("--patience", type=POSITIVE, default=defaults.patience,
                        help="epochs without improvement before stopping")  # fmt: skip
    parser.add_argument("--seed", type=int, default=defaults.seed, help="(%(default)s)")
    parser.add_argument("--augment-shift", type=NON_NEGATIVE, default=defaults.augment_shift,
                        metavar="PX",
                        help="shift image batches by up to PX pixels (%(default)s)")  # fmt: skip
    parser.add_argument("--augment-flip", action="store_true",
                        help="mirror image batches left-right half the time")  # fmt: skip
    parser.add_argument("--augment-noise", type=number(0), default=defaults.augment_noise,
                        metavar="F", help="add Gaussian noise of F x the batch's std "
                        "(%(default)s)")  # fmt: skip
    parser.add_argument("--device", default=defaults.device, help="cpu or cuda (%(default)s)")
    parser.add_argument("--pair", action="append", default=[], metavar="STUDENT=TEACHER",
                        help="feature tensors to match (repeatable; default: by name)")  # fmt: skip
    parser.add_argument("--checkpoint-dir", metavar="DIR",
                        help="save the training state here after every epoch; rerunning the "
                        "same command resumes after the last finished epoch")  # fmt: skip
    add_json_option(parser, "the summary")
    parser.set_defaults(
        handler="cli.run.distill",
        paths=PathRoles(
            inputs=("student", "teacher", "data", "eval_data"),
            models=("output",),
            files=("json",),
            dirs=("checkpoint_dir",),
        ),
        resumable=lambda args: bool(args.checkpoint_dir) and Path(args.checkpoint_dir).is_dir(),
    )
