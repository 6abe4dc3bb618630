"""The library function: fine-tune a compressed model by distillation from its original(s)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import onnx
import torch

from onnxslim_kd.data import data_shapes
from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.distill.checkpoint import TrainCheckpoint, fingerprint
from onnxslim_kd.distill.distributed import World
from onnxslim_kd.distill.executor import GraphModule
from onnxslim_kd.distill.features import FeaturePlan, plan_features
from onnxslim_kd.distill.losses import TERMS, Objective
from onnxslim_kd.distill.options import DistillOptions
from onnxslim_kd.distill.parity import check_parity, parity
from onnxslim_kd.distill.teachers import Ensemble
from onnxslim_kd.distill.train import Split, evaluate, fit
from onnxslim_kd.distill.writeback import write_back
from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.batch import free_batch
from onnxslim_kd.graph.io import fixed_batch
from onnxslim_kd.graph.walk import clone
from onnxslim_kd.report.outputs import OutputRoles, probe_roles

#: Samples on which the written-back model is checked against the torch student.
WRITEBACK_CHECK_SAMPLES = 32


def distill(
    student: onnx.ModelProto,
    teachers: list[onnx.ModelProto],
    data: Dataset,
    *,
    val: Dataset | None = None,
    options: DistillOptions | None = None,
) -> tuple[onnx.ModelProto, dict]:
    """Fine-tune `student`'s weights to follow `teachers` on `data`; return model and summary.

    Without `val`, `options.val_fraction` of `data` is held out for best-epoch selection.
    The result is `student` with new initializer values and nothing else changed.
    """
    options = options or DistillOptions()
    if val is None and options.val_fraction > 0:
        data, val = data.hold_out(options.val_fraction, options.seed)
    checkpoint = _checkpoint(options, student, teachers, data, val)
    torch.manual_seed(options.seed)
    trainable, batching = _trainable(student, data)
    if batching["trained_at"] is not None:
        options = replace(options, batch=batching["trained_at"])
    primary, roles = _primary_output(teachers[0], data)
    sequences = data.labels is not None and data.labels.ndim == 2
    if roles.label_output is None or sequences:  # no output's, several, or text: not used
        data = data.without_labels()
        val = None if val is None else val.without_labels()
    student_graph = _first(trainable, primary)
    module = GraphModule(student_graph).to(options.device)
    executor_parity = check_parity(student_graph, module, data, options.device)
    ensemble = Ensemble(
        [_first(free_batch(t, data_shapes(t, data)) or t, primary) for t in teachers],
        options.batch,
    )
    class_first = primary is not None
    axis = None if primary is None else roles.class_axes.get(ensemble.output_names[0])
    train = Split.of(data, ensemble, options.device, class_first, axis)
    _check_output_shapes(module, train)
    weights = _weights(options, data, class_first, several=len(ensemble.output_names) > 1)
    plan = _plan(module, ensemble, train, weights, options)
    objective = Objective(weights, plan.channels).to(options.device)
    val_split = None if val is None else Split.of(val, ensemble, options.device, class_first, axis)
    summary: dict = {
        "batching": batching,
        "executor_parity": executor_parity,
        "outputs": roles.as_dict() | {"trained_first": primary},
        "loss_weights": weights,
        "teachers": len(teachers),
        "trainable_tensors": len(module.weight_names),
        "trainable_params": sum(w.numel() for w in module.weights),
        "train_samples": len(train),
        "features": plan.as_dict()
        if objective.needs("maps") or objective.needs("embedding")
        else None,
    }
    if sequences:
        summary["labels"] = "label sequences: not a loss term, the teacher's outputs teach"
    if val_split is not None:
        summary["metric"] = _metric_name(val_split)
        summary["val_samples"] = len(val_split)
        summary["val_before"] = evaluate(module, val_split, options.batch)
    report = fit(module, objective, ensemble, plan, train, val_split, options, checkpoint)
    model = write_back(student, module)
    written = parity(model, module, data, options.device, WRITEBACK_CHECK_SAMPLES)
    summary["writeback_max_rel_diff"] = max(diff["max_rel"] for diff in written.values())
    if val_split is not None:
        summary["val_after"] = evaluate(module, val_split, options.batch)
        if val_split.labels is not None:
            teacher_top1 = Ensemble.soft_targets(val_split.teacher_logits, 1.0).argmax(1)
            summary["val_teacher"] = float((teacher_top1 == val_split.labels).float().mean())
    summary["training"] = report.as_dict()
    return model, summary


def _primary_output(teacher: onnx.ModelProto, data: Dataset) -> tuple[int | None, OutputRoles]:
    """Position of the output the logit losses (kd, ce, dml) read: the labels' output, else
    the first class-like one; None when no output is class scores (regression only)."""
    outputs, roles = probe_roles(teacher, data)
    name = roles.label_output or next(iter(roles.class_like), None)
    return (None if name is None else list(outputs).index(name)), roles


def _first(model: onnx.ModelProto, position: int | None) -> onnx.ModelProto:
    """A copy whose output at `position` comes first (the graph the trainer reads)."""
    if not position:
        return model
    out = clone(model)
    order = list(out.graph.output)
    order.insert(0, order.pop(position))
    del out.graph.output[:]
    out.graph.output.extend(order)
    return out


def _weights(options: DistillOptions, data: Dataset, class_first: bool, several: bool) -> dict:
    """The loss terms: the user's, plus `outputs` for every output beyond the first; with
    no class output, the logit terms give way to `outputs` on every output."""
    weights = options.loss_weights(labelled=data.labels is not None)
    if not class_first:
        weights = {k: w for k, w in weights.items() if TERMS[k].needs != "logits"}
        weights["outputs"] = 1.0
    elif several:
        weights.setdefault("outputs", 1.0)
    return weights


def _metric_name(split: Split) -> str:
    if split.labels is not None:
        return "accuracy"
    return "teacher_agreement" if split.class_first else "output_fidelity"


def _trainable(student: onnx.ModelProto, data: Dataset) -> tuple[onnx.ModelProto, dict]:
    """The graph the torch student runs: with a fixed batch freed so that it trains on
    mini-batches (the written-back model keeps the original interface), or, when freeing
    is not exactly equivalent, the graph itself trained at its own batch."""
    batch = fixed_batch(student)
    if batch is None:
        return student, {"fixed_batch": None, "freed": False, "trained_at": None}
    freed = free_batch(student, data_shapes(student, data))
    if freed is None:
        return student, {"fixed_batch": batch, "freed": False, "trained_at": batch}
    return freed, {"fixed_batch": batch, "freed": True, "trained_at": None}


def _checkpoint(options, student, teachers, data, val) -> TrainCheckpoint | None:
    """The run's checkpoint, checked against what it was made from; only rank 0 saves."""
    if options.checkpoint_dir is None:
        return None
    made_from = fingerprint(options, student, teachers, data, val)
    return TrainCheckpoint(Path(options.checkpoint_dir), made_from, writer=World.current().main)


def _check_output_shapes(module: GraphModule, train: Split) -> None:
    """Teacher and student must produce the same first-output shape (per sample)."""
    with torch.no_grad():
        out = train.canonical(module(*train.batch(torch.arange(min(2, len(train)))).values())[0])
    teacher_shape, student_shape = list(train.teacher_logits.shape[2:]), list(out.shape[1:])
    if teacher_shape != student_shape:
        raise InputError(
            f"distill: teacher output is [N,{','.join(map(str, teacher_shape))}] per sample but "
            f"the student's is [N,{','.join(map(str, student_shape))}]"
        )


def _plan(module, ensemble, train, weights, options) -> FeaturePlan:
    """Match feature tensors when a feature loss is used; otherwise none are needed."""
    outputs = (module.output_names[0], ensemble.models[0].graph.output[0].name)
    needs = {TERMS[name].needs for name in weights}
    if not needs & {"maps", "embedding", "attention"}:
        return FeaturePlan([], [], outputs)
    ensemble.torch_teacher.to(options.device)
    feeds = train.batch(torch.arange(min(2, len(train))))
    pairs, sections = options.feature_pairs(), "fsp" in weights  # fsp relates section ends
    plan = plan_features(module, ensemble.torch_teacher, feeds, pairs, sections)
    if not plan.maps and "maps" in needs:
        raise InputError(
            "distill: teacher and student share no feature-map names to match; "
            "name pairs with --pair STUDENT_TENSOR=TEACHER_TENSOR"
        )
    if not plan.attention and "attention" in needs:
        raise InputError(
            "distill: the attn loss needs attention probabilities (Softmax over [.., T, T]) "
            "that teacher and student both compute; none found"
        )
    return plan
