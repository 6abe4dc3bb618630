"""The fine-tune loop: seeded shuffling, cosine schedule, bounded time, best checkpoint.

The validation metric is accuracy when the held-out data has labels, else top-1 agreement
with the teachers; the best epoch's weights are kept, and training stops after `patience`
epochs without improvement or when the time budget runs out.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import Tensor

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.distill.executor import GraphModule, to_torch
from onnxslim_kd.distill.features import FeaturePlan
from onnxslim_kd.distill.losses import Objective, Signals
from onnxslim_kd.distill.options import DistillOptions
from onnxslim_kd.distill.teachers import Ensemble
from onnxslim_kd.progress import progress


@dataclass
class Split:
    """A dataset as torch tensors with its cached teacher logits."""

    inputs: dict[str, Tensor]
    labels: Tensor | None
    teacher_logits: Tensor

    @classmethod
    def of(cls, data: Dataset, teachers: Ensemble, device: str) -> Split:
        labels = None
        if data.labels is not None:
            labels = torch.from_numpy(data.labels.astype(np.int64)).to(device)
        inputs = {k: v.to(device) for k, v in to_torch(data.inputs).items()}
        return cls(inputs, labels, teachers.logits(data).to(device))

    def __len__(self) -> int:
        return self.teacher_logits.shape[1]

    def batch(self, index: Tensor) -> dict[str, Tensor]:
        return {name: value[index] for name, value in self.inputs.items()}


@dataclass
class TrainReport:
    """What happened: epochs run, the chosen epoch, why it stopped, per-epoch metrics."""

    epochs: int = 0
    steps: int = 0
    seconds: float = 0.0
    best_epoch: int | None = None
    stopped: str = "epochs done"
    history: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def evaluate(student: GraphModule, split: Split, batch: int) -> float:
    """Accuracy on labels, or top-1 agreement with the ensemble when there are none."""
    reference = split.labels
    if reference is None:
        reference = Ensemble.soft_targets(split.teacher_logits, 1.0).argmax(dim=1)
    correct = 0
    with torch.no_grad():
        for start in range(0, len(split), batch):
            index = torch.arange(start, min(start + batch, len(split)))
            logits = student(*split.batch(index).values())[0]
            correct += int((logits.argmax(dim=1).cpu() == reference[index].cpu()).sum())
    return correct / len(split)


def fit(
    student: GraphModule,
    objective: Objective,
    teachers: Ensemble,
    plan: FeaturePlan,
    train: Split,
    val: Split | None,
    options: DistillOptions,
) -> TrainReport:
    """Train `student` in place; with `val`, leave it holding the best epoch's weights."""
    torch.manual_seed(options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    params = [*student.parameters(), *objective.parameters()]
    if options.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=options.lr, momentum=0.9, nesterov=True)
    else:
        optimizer = torch.optim.AdamW(params, lr=options.lr)
    steps_per_epoch = -(-len(train) // options.batch)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=options.epochs * steps_per_epoch
    )
    report = TrainReport()
    best_metric, best_state, stale = -1.0, None, 0
    if val is not None:  # epoch 0: the untouched student competes, so a run never makes it worse
        best_metric, report.best_epoch = evaluate(student, val, options.batch), 0
        best_state = copy.deepcopy(student.state_dict())
    start = time.perf_counter()
    description = "distill"
    for epoch in range(1, options.epochs + 1):
        order = torch.randperm(len(train), generator=generator)
        losses = []
        for index in progress(order.split(options.batch), description, total=steps_per_epoch):
            total = objective(_signals(student, teachers, plan, train, index, objective, options))
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(total.detach()))
            report.steps += 1
            if options.max_seconds and time.perf_counter() - start > options.max_seconds:
                report.stopped = f"time budget of {options.max_seconds:g} s reached"
                break
        record = {"epoch": epoch, "loss": float(np.mean(losses))}
        if val is not None:
            record["val_metric"] = evaluate(student, val, options.batch)
            if record["val_metric"] >= best_metric:  # ties: the later, better-trained epoch
                best_metric, stale, report.best_epoch = record["val_metric"], 0, epoch
                best_state = copy.deepcopy(student.state_dict())
            else:
                stale += 1
        report.history.append(record)
        report.epochs = epoch
        description = f"distill {epoch}/{options.epochs} loss {record['loss']:.4f}" + (
            f" val {record['val_metric']:.4f}" if val is not None else ""
        )
        if report.stopped != "epochs done":
            break
        if stale >= options.patience:
            report.stopped = f"no improvement for {options.patience} epochs"
            break
    if best_state is not None:
        student.load_state_dict(best_state)
    report.seconds = round(time.perf_counter() - start, 3)
    return report


def _signals(student, teachers, plan, train, index, objective, options) -> Signals:
    """Forward the student (and the torch teacher for feature losses) on one batch."""
    feeds = train.batch(index)
    teacher_logits = train.teacher_logits[:, index]
    if options.augment_shift:
        feeds = shifted(feeds, options.augment_shift)
        teacher_logits = teachers.batch_logits(feeds).to(teacher_logits.device)
    maps = plan.maps if objective.needs("maps") else []
    embedding = [plan.embedding] if objective.needs("embedding") else []
    s_values = student.run(feeds, [s for s, _ in maps + embedding])
    t_values = {}
    if maps or embedding:
        with torch.no_grad():
            t_values = teachers.torch_teacher.run(feeds, [t for _, t in maps + embedding])
    return Signals(
        student_logits=s_values[student.output_names[0]],
        teacher_probs=Ensemble.soft_targets(teacher_logits, options.temperature),
        temperature=options.temperature,
        labels=None if train.labels is None else train.labels[index],
        student_maps=[s_values[s] for s, _ in maps],
        teacher_maps=[t_values[t] for _, t in maps],
        student_embedding=s_values[embedding[0][0]] if embedding else None,
        teacher_embedding=t_values[embedding[0][1]] if embedding else None,
    )


def shifted(feeds: dict[str, Tensor], pixels: int) -> dict[str, Tensor]:
    """Translate every 4-D float input (an image batch, NCHW; NHWC when the last axis
    looks like channels) by one random offset of up to `pixels`, padding with edge
    values: the shift augmentation the digits sample was trained with."""
    dy, dx = (int(v) for v in torch.randint(0, 2 * pixels + 1, (2,)))
    out = {}
    for name, value in feeds.items():
        if value.dim() != 4 or not value.is_floating_point():
            out[name] = value
            continue
        channels_last = value.shape[3] in (1, 3) and value.shape[1] not in (1, 3)
        image = value.permute(0, 3, 1, 2) if channels_last else value
        height, width = image.shape[2], image.shape[3]
        padded = torch.nn.functional.pad(image, (pixels,) * 4, mode="replicate")
        moved = padded[:, :, dy : dy + height, dx : dx + width]
        out[name] = moved.permute(0, 2, 3, 1).contiguous() if channels_last else moved
    return out
