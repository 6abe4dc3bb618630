"""Options of a distillation run, shared by the library, the `distill` pass and the CLI.

Kept free of torch so recipes and the command line are checked without importing it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from onnxslim_kd.errors import InputError

#: The loss terms; every strategy but `ce` and `kd` adds to logit KD, as in the CRD tables.
LOSS_NAMES = ("ce", "kd", "dml", "hint", "at", "rkd", "sp", "fsp", "fspx", "attn", "outputs")
#: Weights of the terms added to KD when named alone: the CRD benchmark's betas (fsp and its
#: cross-layer variant fspx: its FSP beta, 50); dml: 1, the mutual-learning paper's weight;
#: attn: 1, MiniLM's (its attention KL is added to the other terms unweighted).
FEATURE_WEIGHTS = {
    "dml": 1.0, "hint": 100.0, "at": 1000.0, "rkd": 1.0, "sp": 3000.0, "fsp": 50.0, "fspx": 50.0,
    "attn": 1.0,
}  # fmt: skip
OPTIMIZERS = ("adamw", "sgd")


@dataclass
class DistillOptions:
    """One run: losses, schedule and budget. Recipe keys and CLI flags use these names.

    `loss` is a strategy name (see LOSS_NAMES) or explicit weights
    (`kd:0.9,ce:0.1,hint:50`). `pairs` (`STUDENT_TENSOR=TEACHER_TENSOR`) override the
    automatic matching of feature maps by name.
    """

    # The defaults are compress's schedule (benchmarks/distill): 30 epochs at lr 1e-3 with
    # a 2-pixel shift recover a half-MACs digits student to within 0.2 points; the old
    # 5 epochs at 1e-4 left it at 20%. Early stop after 10 epochs without improvement.
    epochs: int = 30
    loss: str = "kd"
    temperature: float = 4.0
    alpha: float = 0.9
    lr: float = 1e-3
    batch: int = 64
    optimizer: str = "adamw"
    max_seconds: float | None = None
    patience: int = 10
    val_fraction: float = 0.1
    seed: int = 0
    device: str = "cpu"
    pairs: list[str] = field(default_factory=list)
    augment_shift: int = 2  # random translation of image batches by up to N pixels
    augment_flip: bool = False  # mirror image batches left-right with probability 1/2
    augment_noise: float = 0.0  # add Gaussian noise of this fraction of the batch's std
    checkpoint_dir: str | None = None  # save state each epoch here; a rerun resumes

    def __post_init__(self) -> None:
        checks = {
            "epochs must be positive": self.epochs > 0,
            "batch must be positive": self.batch > 0,
            "lr must be positive": self.lr > 0,
            "temperature must be positive": self.temperature > 0,
            "alpha must be in [0, 1]": 0.0 <= self.alpha <= 1.0,
            "val_fraction must be in [0, 1)": 0.0 <= self.val_fraction < 1.0,
            "patience must be positive": self.patience > 0,
            f"optimizer must be one of {', '.join(OPTIMIZERS)}": self.optimizer in OPTIMIZERS,
            "max_seconds must be positive": self.max_seconds is None or self.max_seconds > 0,
            "augment_shift must be >= 0": self.augment_shift >= 0,
            "augment_noise must be >= 0": self.augment_noise >= 0,
        }
        for message, ok in checks.items():
            if not ok:
                raise ValueError(message)
        self.loss_weights(labelled=True)
        self.feature_pairs()

    @property
    def augments(self) -> bool:
        """Whether batches are augmented (then the teachers see every augmented batch)."""
        return bool(self.augment_shift or self.augment_flip or self.augment_noise)

    def loss_weights(self, labelled: bool) -> dict[str, float]:
        """The weighted loss terms; hard-label CE joins KD (weight 1 - alpha) only with labels."""
        spec = self.loss.replace(" ", "")
        if ":" in spec:
            weights = {}
            for item in spec.split(","):
                name, _, weight = item.partition(":")
                try:
                    weights[name] = float(weight)
                except ValueError:
                    raise ValueError(f"loss '{item}': expected NAME:WEIGHT") from None
        elif spec == "ce":
            weights = {"ce": 1.0}
        else:
            weights = (
                {"kd": self.alpha, "ce": round(1.0 - self.alpha, 9)} if labelled else {"kd": 1.0}
            )
            if spec in FEATURE_WEIGHTS:
                weights[spec] = FEATURE_WEIGHTS[spec]
            elif spec != "kd":
                weights = {spec: 1.0}
        unknown = sorted(set(weights) - set(LOSS_NAMES))
        if unknown:
            raise ValueError(f"unknown loss '{unknown[0]}' (known: {', '.join(LOSS_NAMES)})")
        if not labelled and weights.get("ce"):
            raise InputError("loss 'ce' needs labels, but the training data has none")
        return {name: weight for name, weight in weights.items() if weight}

    def feature_pairs(self) -> list[tuple[str, str]]:
        """Explicit (student tensor, teacher tensor) pairs for the feature losses."""
        pairs = []
        for item in self.pairs:
            student, sep, teacher = item.partition("=")
            if not sep or not student or not teacher:
                raise ValueError(f"pair '{item}': expected STUDENT_TENSOR=TEACHER_TENSOR")
            pairs.append((student, teacher))
        return pairs
