"""The fine-tune loop: seeded shuffling, cosine schedule, bounded time, best checkpoint.

The validation metric is accuracy when the held-out data has labels, else top-1 agreement
with the teachers; the best epoch's weights are kept, and training stops after `patience`
epochs without improvement or when the time budget runs out. The state after each epoch
can be saved and resumed (`checkpoint`), and the loop runs data-parallel under torchrun.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.distill.augment import augment
from onnxslim_kd.distill.checkpoint import TrainCheckpoint
from onnxslim_kd.distill.distributed import World
from onnxslim_kd.distill.executor import GraphModule, to_torch
from onnxslim_kd.distill.features import FeaturePlan, as_map
from onnxslim_kd.distill.losses import Objective, Signals
from onnxslim_kd.distill.options import DistillOptions
from onnxslim_kd.distill.teachers import Ensemble
from onnxslim_kd.progress import progress
from onnxslim_kd.progress import report as report_event
from onnxslim_kd.report.fidelity import class_axis as class_axis_of


@dataclass
class Split:
    """A dataset as torch tensors with its cached teacher outputs: the first (read by the
    logit losses) and the others (read by the `outputs` loss), [teachers, samples, ...]."""

    inputs: dict[str, Tensor]
    labels: Tensor | None
    teacher_logits: Tensor
    teacher_others: dict[str, Tensor] = field(default_factory=dict)
    class_first: bool = True  # False: no output is class scores, judge outputs by error
    axes: dict[str, int | None] = field(default_factory=dict)  # inputs' sample axes
    output_axes: dict[str, int | None] = field(default_factory=dict)  # by teacher output
    class_axis: int = 1  # of the first output, once its sample axis is first

    @classmethod
    def of(
        cls, data: Dataset, teachers: Ensemble, device: str, class_first: bool = True,
        class_axis: int | None = None,
    ) -> Split:  # fmt: skip
        """With `class_first` False the first output is a regression output too: it joins
        the others (and no logit loss may read it). `class_axis` is the first output's class
        axis in the model's own layout (a [T, N, C] recogniser: 2); the logits are kept
        with samples first and classes second ([N, C, T]), the layout every loss reads."""
        labels = None
        if data.labels is not None:
            labels = torch.from_numpy(data.labels.astype(np.int64)).to(device)
        inputs = {k: v.to(device) for k, v in to_torch(data.inputs).items()}
        outputs = {name: value.to(device) for name, value in teachers.outputs(data).items()}
        first = next(iter(outputs))
        others = {n: v for n, v in outputs.items() if n != first or not class_first}
        sample = teachers.output_axes.get(first) or 0
        rank = outputs[first].dim() - 1
        if class_axis is None:
            class_axis = class_axis_of(rank) or 1
        else:  # the model's layout -> samples first
            class_axis = class_axis + 1 if class_axis < sample else class_axis
        split = cls(
            inputs, labels, outputs[first], others, class_first, data.axes,
            teachers.output_axes, class_axis,
        )  # fmt: skip
        split.teacher_logits = split.teachers_canonical(outputs[first])
        return split

    def __len__(self) -> int:
        return self.teacher_logits.shape[1]

    def batch(self, index: Tensor) -> dict[str, Tensor]:
        """The samples at `index`, each input on its own sample axis (see Dataset.axes)."""
        return {
            name: value if self.axes.get(name, 0) is None
            else value.index_select(self.axes.get(name, 0), index)
            for name, value in self.inputs.items()
        }  # fmt: skip

    def samples_first(self, name: str, value: Tensor) -> Tensor:
        """A student output with its sample axis first, like the cached teacher outputs."""
        return value.movedim(self.output_axes.get(name) or 0, 0)

    def canonical(self, logits: Tensor) -> Tensor:
        """The student's first output as the logit losses read it: [N, C, positions...]."""
        name = next(iter(self.output_axes), None)
        return self.samples_first(name, logits).movedim(self.class_axis, 1)

    def teachers_canonical(self, logits: Tensor) -> Tensor:
        """Teachers' first outputs [teachers, N, ...] as [teachers, N, C, positions...]."""
        return logits.movedim(self.class_axis + 1, 2)


@dataclass
class TrainReport:
    """What happened: epochs run, the chosen epoch, why it stopped, per-epoch metrics."""

    epochs: int = 0
    steps: int = 0
    seconds: float = 0.0
    best_epoch: int | None = None
    stopped: str = "epochs done"
    history: list[dict] = field(default_factory=list)
    processes: int = 1
    resumed_from: int | None = None  # the last epoch a saved checkpoint had finished

    def as_dict(self) -> dict:
        return asdict(self)


def evaluate(student: GraphModule, split: Split, batch: int) -> float:
    """Accuracy on labels, or top-1 agreement with the ensemble when there are none.

    Under torchrun each rank scores its own slice and the counts are summed, so every
    rank gets the same number and makes the same best-epoch and early-stop decisions.
    """
    world = World.current()
    if split.labels is None and not split.class_first:
        return _output_fidelity(student, split, batch)
    axis = 1  # canonical logits [N, C, positions...]: per sample, time step or pixel
    reference = split.labels
    if reference is None:
        reference = torch.softmax(split.teacher_logits, dim=axis + 1).mean(dim=0).argmax(axis)
    correct = 0.0
    with torch.no_grad():
        for index in world.shard(torch.arange(len(split))).split(batch):
            logits = split.canonical(student(*split.batch(index).values())[0])
            hits = logits.argmax(dim=axis).cpu() == reference[index].cpu()
            correct += float(hits.reshape(len(index), -1).float().mean(dim=1).sum())
    metric = world.total(correct) / len(split)
    if not 0.0 <= metric <= 1.0 + 1e-9:  # a fraction by construction: anything else is a bug
        raise AssertionError(f"held-out metric {metric} outside [0, 1]")
    return metric


def _output_fidelity(student: GraphModule, split: Split, batch: int) -> float:
    """1 / (1 + the outputs' mean squared error relative to the teacher's variance): the
    held-out metric (higher is better, in (0, 1]) of a model without class outputs."""
    errors = []
    with torch.no_grad():
        for index in torch.arange(len(split)).split(batch):
            values = student(*split.batch(index).values())
            for name, teacher in split.teacher_others.items():
                mine = split.samples_first(name, values[_position(split, name)])
                target = teacher[:, index].mean(dim=0)
                errors.append(float(F.mse_loss(mine, target) / (teacher.var() + 1e-8)))
    return 1.0 / (1.0 + float(np.mean(errors)))


def _position(split: Split, name: str) -> int:
    """Index of a teacher output among the student's outputs (they pair by position)."""
    return list(split.teacher_others).index(name) + int(split.class_first)


class _Run:
    """The state that carries from one epoch to the next, saved whole for resuming."""

    def __init__(
        self, student: GraphModule, objective: Objective, options: DistillOptions, samples: int
    ) -> None:
        self.student, self.objective = student, objective
        self.params = [*student.parameters(), *objective.parameters()]
        if options.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(
                self.params, lr=options.lr, momentum=0.9, nesterov=True
            )
        else:
            self.optimizer = torch.optim.AdamW(self.params, lr=options.lr)
        self.steps_per_epoch = -(-samples // options.batch)
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=options.epochs * self.steps_per_epoch
        )
        self.generator = torch.Generator().manual_seed(options.seed)
        self.report = TrainReport()
        self.best_metric, self.best_state, self.stale = -1.0, None, 0
        self.finished = False

    def state_dict(self) -> dict:
        return {
            "student": self.student.state_dict(),
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "report": self.report.as_dict(),
            "best": (self.best_metric, self.best_state, self.stale),
            "finished": self.finished,
        }

    def load_state_dict(self, state: dict) -> None:
        self.student.load_state_dict(state["student"])
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.report = TrainReport(**state["report"])
        self.report.resumed_from = self.report.epochs
        self.best_metric, self.best_state, self.stale = state["best"]
        self.finished = state["finished"]
        if not self.finished:  # a time budget ended the saved run: this one goes on
            self.report.stopped = "epochs done"


def fit(
    student: GraphModule,
    objective: Objective,
    teachers: Ensemble,
    plan: FeaturePlan,
    train: Split,
    val: Split | None,
    options: DistillOptions,
    checkpoint: TrainCheckpoint | None = None,
) -> TrainReport:
    """Train `student` in place; with `val`, leave it holding the best epoch's weights.

    With `checkpoint`, the state is saved after every epoch and a saved state is resumed
    from. Under torchrun each rank trains on its slice of every batch (see `distributed`).
    """
    torch.manual_seed(options.seed)
    run = _Run(student, objective, options, len(train))
    if checkpoint is not None and checkpoint.state is not None:
        run.load_state_dict(checkpoint.state)
    elif val is not None:  # epoch 0: the untouched student competes, so a run never makes it worse
        run.best_metric, run.report.best_epoch = evaluate(student, val, options.batch), 0
        run.best_state = copy.deepcopy(student.state_dict())
    report = run.report
    report.processes = World.current().size
    start, seconds_before = time.perf_counter(), report.seconds
    deadline = start + options.max_seconds if options.max_seconds else None
    description = "distill"
    while not run.finished:
        epoch = report.epochs + 1
        loss = _train_epoch(run, teachers, plan, train, options, description, deadline)
        record = {"epoch": epoch, "loss": loss}
        if val is not None:
            record["val_metric"] = evaluate(student, val, options.batch)
            if record["val_metric"] >= run.best_metric:  # ties: the later, better-trained epoch
                run.best_metric, run.stale, report.best_epoch = record["val_metric"], 0, epoch
                run.best_state = copy.deepcopy(student.state_dict())
            else:
                run.stale += 1
        report.history.append(record)
        report.epochs = epoch
        description = f"distill {epoch}/{options.epochs} loss {record['loss']:.4f}" + (
            f" val {record['val_metric']:.4f}" if val is not None else ""
        )
        if run.stale >= options.patience and report.stopped == "epochs done":
            report.stopped = f"no improvement for {options.patience} epochs"
        run.finished = epoch == options.epochs or run.stale >= options.patience
        report.seconds = round(seconds_before + time.perf_counter() - start, 3)
        _report_epoch(record, report, options, run.finished, time.perf_counter() - start)
        if checkpoint is not None:
            checkpoint.save(run.state_dict())
        if report.stopped != "epochs done":
            break
    if run.best_state is not None:
        student.load_state_dict(run.best_state)
    return report


def _report_epoch(record: dict, report: TrainReport, options, finished: bool, elapsed: float):
    """One log line per epoch: loss, held-out metric (best marked), time and ETA."""
    if not World.current().main:
        return
    done = len(report.history) - int(report.resumed_from or 0)
    left = 0 if finished else options.epochs - record["epoch"]
    eta = elapsed / max(done, 1) * left
    metric = record.get("val_metric")
    held_out = "" if metric is None else f", held-out {metric:.2%}"
    best = " (best)" if metric is not None and report.best_epoch == record["epoch"] else ""
    report_event(
        "distill",
        f"epoch {record['epoch']}/{options.epochs} loss {record['loss']:.4g}{held_out}{best}, "
        f"{elapsed / max(done, 1):.1f} s/epoch" + (f", ETA {_duration(eta)}" if left else ""),
        epoch=record["epoch"], epochs=options.epochs, loss=record["loss"], val_metric=metric,
        seconds=round(elapsed, 2), eta_seconds=round(eta, 1),
    )  # fmt: skip


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


def _train_epoch(run, teachers, plan, train, options, description, deadline) -> float:
    """One pass over a fresh seeded permutation; the mean loss of its steps over all ranks."""
    world = World.current()
    order = torch.randperm(len(train), generator=run.generator)
    losses = []
    for batch in progress(order.split(options.batch), description, total=run.steps_per_epoch):
        index = world.shard(batch)
        share = len(index) / len(batch)
        run.optimizer.zero_grad(set_to_none=True)
        loss = 0.0
        if len(index):
            total = run.objective(
                _signals(run.student, teachers, plan, train, index, run.objective, options)
            )
            total.backward()
            loss = share * float(total.detach())
        losses.append(loss)
        world.reduce_gradients(run.params, share)
        run.optimizer.step()
        run.schedule.step()
        run.report.steps += 1
        if deadline is not None and world.any(time.perf_counter() > deadline):
            run.report.stopped = f"time budget of {options.max_seconds:g} s reached"
            break
    return world.total(float(np.sum(losses))) / len(losses)


def _signals(student, teachers, plan, train, index, objective, options) -> Signals:
    """Forward the student (and the torch teacher for feature losses) on one batch."""
    feeds = train.batch(index)
    teacher_logits = train.teacher_logits[:, index]
    teacher_others = {name: value[:, index] for name, value in train.teacher_others.items()}
    if options.augments:
        feeds = augment(feeds, options)
        fresh = teachers.batch_outputs(feeds)
        teacher_logits = train.teachers_canonical(next(iter(fresh.values()))).to(
            teacher_logits.device
        )
        teacher_others = {name: fresh[name].to(teacher_logits.device) for name in teacher_others}
    maps = plan.maps if objective.needs("maps") else []
    embedding = [plan.embedding] if objective.needs("embedding") else []
    attention = plan.attention if objective.needs("attention") else []
    captured = maps + embedding + attention
    s_values = student.run(feeds, [s for s, _ in captured])  # with every output
    t_values = {}
    if captured:
        with torch.no_grad():
            t_values = teachers.torch_teacher.run(feeds, [t for _, t in captured])
    return Signals(
        student_logits=train.canonical(s_values[student.output_names[0]]),
        teacher_probs=Ensemble.soft_targets(teacher_logits, options.temperature),
        temperature=options.temperature,
        labels=None if train.labels is None else train.labels[index],
        student_others={  # by position: a teacher may name its outputs otherwise
            name: train.samples_first(name, s_values[student.output_names[_position(train, name)]])
            for name in teacher_others
        },
        probabilities=teachers.probability_outputs,
        teacher_others={name: value.mean(dim=0) for name, value in teacher_others.items()},
        student_maps=[as_map(s_values[s]) for s, _ in maps],
        teacher_maps=[as_map(t_values[t]) for _, t in maps],
        student_embedding=s_values[embedding[0][0]] if embedding else None,
        teacher_embedding=t_values[embedding[0][1]] if embedding else None,
        student_attention=[s_values[s] for s, _ in attention],
        teacher_attention=[t_values[t] for _, t in attention],
    )
