"""One training run, from spec to published components."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from typing import Any

import torch

from partsbin import __version__
from partsbin.parts.cpus import use_threads
from partsbin.parts.data import TaskData, load_task
from partsbin.parts.describe import card_for
from partsbin.parts.evaluation import EvalSettings, evaluate_pair
from partsbin.parts.safetensors_format import load_state_dict
from partsbin.parts.training_spec import TrainSpec
from partsbin.trainer.engine import (
    AuxHeads,
    Network,
    Progress,
    build_aux_heads,
    build_networks,
    dcc_label_set,
    freeze,
    resolve_device,
    train,
)
from partsbin.trainer.rotation import ROTATION_LABELS

__all__ = ["RunResult", "run"]


@dataclass
class RunResult:
    """What a job of any kind leaves: the refs it published, its figures, and ``lines``
    that say them to a person (the CLI prints them)."""

    refs: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    networks: list[Network] = field(default_factory=list)
    aux: AuxHeads | None = None


def _library_versions() -> dict[str, str]:
    import numpy
    import safetensors

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "safetensors": safetensors.__version__,
        "partsbin": __version__,
    }


def aux_from_components(components: list[Any]) -> AuxHeads:
    """Frozen aux heads from pulled registry components (the incremental scheme's anchors)."""
    aux = AuxHeads()
    for comp in components:
        module = comp.build()
        if comp.role == "aux-rp":
            aux.rp = module
        elif comp.role == "aux-dcc":
            aux.dcc = module
            aux.dcc_labels = list(comp.card.interface.output.labels)
        else:
            raise ValueError(f"anchor {comp.ref} is a {comp.role}, not an aux head (aux-rp or aux-dcc)")
        aux.anchors[comp.role] = comp.digest
    return freeze(aux)


def prepare(
    spec: TrainSpec, tasks: list[TaskData], init_state: dict[str, torch.Tensor] | None, pulled: AuxHeads | None
) -> tuple[list[TaskData], list[Network], AuxHeads]:
    """The untrained networks and aux heads of ``spec``'s scheme: what every rank of a
    distributed run builds identically, and what the launching process loads rank 0's
    trained weights into."""
    common = dcc_label_set(spec, tasks)
    if spec.scheme == "upper-bound":
        # Each network on its own task restricted to the common classes (§4).
        tasks = [_restrict(t, common) for t in tasks]
    nets = build_networks(spec, tasks, init_state)
    if spec.scheme in ("upper-bound", "independent"):
        aux = AuxHeads()
    elif spec.scheme == "incremental" and pulled is not None:
        aux = pulled
    else:
        aux = build_aux_heads(spec, tasks, common)
    return tasks, nets, aux


def train_prepared(
    spec: TrainSpec, nets: list[Network], aux: AuxHeads, device: torch.device, progress: Progress | None
) -> dict[str, Any]:
    """Train what :func:`prepare` built, by ``spec``'s scheme."""
    s = spec.settings
    if spec.scheme == "upper-bound":
        return train(nets, aux, s, joint=False, device=device, progress=progress, own_rp=True)
    if spec.scheme == "independent":
        return train(nets, aux, s, joint=False, device=device, progress=progress)
    if spec.scheme == "joint":
        return train(nets, aux, s, joint=True, device=device, progress=progress)
    if aux.frozen:  # incremental against pulled anchors
        return train(nets, aux, s, joint=False, device=device, progress=progress)
    # The first network learns the aux heads; they are then frozen and every later
    # network trains against them without seeing the first one's data.
    stats = train(nets[:1], aux, s, joint=False, device=device, progress=progress)
    freeze(aux)
    if len(nets) > 1:
        more = train(nets[1:], aux, s, joint=False, device=device, progress=progress)
        stats = {**more, "steps": stats["steps"] + more["steps"], "seconds": stats["seconds"] + more["seconds"]}
    return stats


def run(
    spec: TrainSpec, registry: Any = None, *, progress: Progress | None = None, job_id: str | None = None
) -> RunResult:
    """Train what ``spec`` describes; publish it through ``registry`` (a client
    :class:`~partsbin.client.registry.Registry`) when ``spec.publish``."""
    s = spec.settings
    # torch's default is the machine's core count, which oversubscribes a shared or
    # containerised host; at most the CPUs this process may use.
    use_threads(s.threads)
    device = resolve_device(s)
    if (spec.anchors or spec.init or spec.publish) and registry is None:
        raise ValueError("this spec needs a registry (to pull anchors or init weights, or to publish)")
    tasks = [load_task(t) for t in spec.tasks]

    init_state, init_path = None, None
    if spec.init is not None:
        comp = registry.pull(spec.init)
        if comp.role != "init":
            raise ValueError(
                f"init {spec.init} is a {comp.role}; IIW starts from a component of role 'init' (untrained weights)"
            )
        init_path = comp.path
        init_state = load_state_dict(comp.path)
    anchors = [registry.pull(ref) for ref in spec.anchors] if spec.scheme == "incremental" else []
    pulled = aux_from_components(anchors) if anchors else None
    tasks, nets, aux = prepare(spec, tasks, init_state, pulled)
    distributed = None
    if s.distributed is not None:
        from partsbin.trainer.distributed import train_distributed

        # PyTorch's launcher starts the ranks; they train, rank 0 hands back the weights
        # and this process evaluates and publishes them (it holds the token and the lease).
        stats, distributed = train_distributed(spec, nets, aux, init_path=init_path, anchors=anchors, progress=progress)
        if distributed.get("this_node_publishes") is False:
            return RunResult(lines=[distributed["message"]], metrics={"train": {"distributed": distributed}})
    else:
        stats = train_prepared(spec, nets, aux, device, progress)

    result = RunResult(networks=nets, aux=aux)
    result.metrics = {
        "train": {**{k: v for k, v in stats.items() if k != "history"}, "threads": torch.get_num_threads()}
    }
    if distributed is not None:
        result.metrics["train"]["distributed"] = distributed
    # The benchmark's own routine, so that a card's own-task figure is the one `partsbin
    # bench` measures for the same pair (the task's classes are all common to its head).
    evaluation = EvalSettings(bn_mode=s.bn_eval, batch_size=s.eval_batch_size)
    for net in nets:
        acc = evaluate_pair(net.extractor, net.head, net.task.test, net.task.classes, evaluation, device=device)
        result.metrics[net.task.name] = {
            "own_task_accuracy": acc.restricted,
            "n": acc.n,
            "bn": s.bn_eval,
            "evaluation": evaluation.as_dict(),
        }
    result.lines = [
        f"task {net.task.name}: own-task accuracy {result.metrics[net.task.name]['own_task_accuracy']:.1%} "
        f"on {result.metrics[net.task.name]['n']} test images"
        for net in nets
    ] + [f"{stats['images_per_s']:.0f} images/s over {stats['seconds']:.0f} s"]
    if spec.publish:
        result.refs = _publish(spec, registry, nets, aux, result.metrics, job_id)
    return result


def _restrict(task: TaskData, classes: list[str]) -> TaskData:
    from partsbin.parts.data.transforms import select

    keep = [c for c in task.classes if c in classes]
    loaded = task.train_spec.model_copy(update={"classes": keep, "indices": None, "transforms": [], "limit": None})
    # The specs recorded on the cards name the classes the network really saw and was
    # tested on, so that the benchmark rebuilds the same test set.
    return TaskData(
        task.name,
        select(task.train, loaded),
        select(task.test, loaded),
        task.train_spec.model_copy(update={"classes": keep}),
        task.test_spec.model_copy(update={"classes": keep}),
    )


def _publish(
    spec: TrainSpec, registry: Any, nets: list[Network], aux: AuxHeads, metrics: dict[str, Any], job_id: str | None
) -> list[str]:
    ns, run_name = spec.namespace, spec.name
    refs: list[str] = []
    settings = spec.settings.model_dump(mode="json")
    net0 = nets[0]
    size = int(net0.task.train.x.shape[-1])
    common: dict[str, Any] = {"license": None, "tags": ["partsbin-trainer", spec.scheme]}

    init_ref = spec.init
    if "IIW" in spec.methods and spec.init is None:
        # Publish the shared initial weights: a later incremental run can start from
        # them (IIW), as the paper's incremental experiment does.
        card = card_for(
            name=f"{ns}/{run_name}-init",
            role="init",
            arch=net0.arch,
            config=net0.config,
            split=net0.model.split,
            input_size=size,
            labels=net0.task.classes,
            description=f"untrained initial weights of run {run_name} (IIW)",
            provenance={
                "seed": spec.settings.seed,
                "job": job_id,
                "libraries": _library_versions(),
                "settings": settings,
            },
            **common,
        )
        from partsbin.parts.archs import build

        init_model = build(net0.arch, split=net0.model.split, **net0.config)
        init_model.load_state_dict(net0.init_state)
        init_ref = registry.push(init_model, card).ref
        refs.append(init_ref)

    anchors = dict(aux.anchors)
    if not aux.anchors:
        for role, module, labels in (("aux-rp", aux.rp, ROTATION_LABELS), ("aux-dcc", aux.dcc, aux.dcc_labels)):
            if module is None:
                continue
            cfg = {**net0.config, "num_classes": len(labels)}
            card = card_for(
                name=f"{ns}/{run_name}-{role}",
                role=role,
                arch=net0.arch,
                config=cfg,
                split=net0.model.split,
                labels=labels,
                compat={"methods": spec.methods, "scheme": spec.scheme, "init": init_ref},
                description=f"{'rotation prediction' if role == 'aux-rp' else 'discriminating common classes'} aux head of run {run_name}; frozen once published",
                provenance={
                    "seed": spec.settings.seed,
                    "job": job_id,
                    "libraries": _library_versions(),
                    "settings": settings,
                    "dataset": {"name": "+".join(n.task.name for n in nets), "classes": labels},
                },
                **common,
            )
            pushed = registry.push(module, card)
            anchors[role] = pushed.digest
            refs.append(pushed.ref)

    for net in nets:
        task = net.task
        provenance = {
            "dataset": {
                "name": task.train_spec.source,
                "split": "train",
                "classes": task.classes,
                "transform": [t.model_dump(mode="json") for t in task.train_spec.transforms],
                "indices": task.train_spec.indices,
                "task": task.name,
                # What identifies the data wherever its file lies (the spec's path only says
                # where it was found here): `partsbin bench --data TASK=PATH` checks a copy.
                "source_digest": task.train.source_digest,
                # How to rebuild this task's test set: the client benchmark reads it.
                "test": {
                    **task.test_spec.model_dump(mode="json"),
                    "test_limit": next((t.test_limit for t in spec.tasks if t.name == task.name), None),
                    "source_digest": task.test.source_digest,
                },
            },
            "settings": settings,
            "seed": net.seed,
            "job": job_id,
            "libraries": _library_versions(),
        }
        compat = {
            "anchors": sorted(anchors.values()),
            "methods": spec.methods,
            "scheme": spec.scheme,
            "init": init_ref if "IIW" in spec.methods else None,
        }
        m = {
            "own_task_accuracy": metrics[task.name]["own_task_accuracy"],
            "test_examples": metrics[task.name]["n"],
            "bn": metrics[task.name]["bn"],
        }
        base = f"{ns}/{run_name}-{task.name}"
        ext = registry.push(
            net.extractor,
            card_for(
                name=f"{base}-extractor",
                role="extractor",
                arch=net.arch,
                config=net.config,
                split=net.model.split,
                input_size=int(task.train.x.shape[-1]),
                compat=compat,
                provenance=provenance,
                metrics=m,
                description=f"feature extractor of task {task.name}, run {run_name}",
                **common,
            ),
        )
        head = registry.push(
            net.head,
            card_for(
                name=f"{base}-head",
                role="head",
                arch=net.arch,
                config=net.config,
                split=net.model.split,
                labels=task.classes,
                compat={**compat, "sibling": ext.ref},
                provenance=provenance,
                metrics=m,
                description=f"task head of task {task.name}, run {run_name}",
                **common,
            ),
        )
        refs += [ext.ref, head.ref]
    return refs
