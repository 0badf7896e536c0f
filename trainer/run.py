"""One training run, from spec to published components."""

from __future__ import annotations

from typing import Any

import torch

from partsbin.parts.archs import build
from partsbin.parts.data import TaskData, load_task
from partsbin.parts.describe import card_for
from partsbin.parts.evaluation import EvalSettings, evaluate_pair
from partsbin.parts.jobs.spec import TrainStats
from partsbin.parts.jobs.train import TaskScore, TrainResult, TrainSpec
from partsbin.parts.safetensors_format import load_state_dict
from partsbin.trainer.engine import AuxHeads, Network, build_aux_heads, build_networks, dcc_label_set, freeze, train
from partsbin.trainer.loop import Progress, resolve_device
from partsbin.trainer.publish import data_provenance, provenance, push
from partsbin.trainer.rotation import ROTATION_LABELS

__all__ = ["run", "prepare", "train_prepared", "aux_from_components"]


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
    # Incremental: against pulled anchors (frozen already), or the first network learns
    # the aux heads, they are frozen, and every later network trains against them
    # without seeing the first one's data.
    return train(nets, aux, s, joint=False, device=device, progress=progress, incremental=True)


def run(
    spec: TrainSpec, registry: Any = None, *, progress: Progress | None = None, job_id: str | None = None
) -> TrainResult:
    """Train what ``spec`` describes; publish it through ``registry`` (a client
    :class:`~partsbin.client.registry.Registry`) when ``spec.publish``."""
    s = spec.settings
    progress = progress or Progress()
    device = resolve_device(s)
    if (spec.anchors or spec.init or spec.publish) and registry is None:
        raise ValueError("this spec needs a registry (to pull anchors or init weights, or to publish)")
    progress.phase("loading data")
    tasks = [load_task(t, s.test_limit) for t in spec.tasks]

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
            return TrainResult(train=_stats(stats, device, distributed), note=distributed["message"])
    else:
        stats = train_prepared(spec, nets, aux, device, progress)

    result = TrainResult(train=_stats(stats, device, distributed))
    result._trained = nets
    # The benchmark's own routine, so that a card's own-task figure is the one `partsbin
    # bench` measures for the same pair (the task's classes are all common to its head).
    evaluation = EvalSettings(bn_mode=s.bn_eval, batch_size=s.eval_batch_size)
    progress.phase("evaluating")
    for net in nets:
        acc = evaluate_pair(net.extractor, net.head, net.task.test, net.task.classes, evaluation, device=device)
        result.tasks[net.task.name] = TaskScore(own_task_accuracy=acc.restricted, test_images=acc.n, bn=s.bn_eval)
    if spec.publish:
        progress.phase("publishing")
        result.refs = _publish(spec, registry, nets, aux, result, evaluation.as_dict(), job_id)
    return result


def _stats(stats: dict[str, Any], device: torch.device, distributed: dict[str, Any] | None) -> TrainStats:
    return TrainStats(
        **{k: v for k, v in stats.items() if k in ("steps", "seconds", "images_per_s", "final_loss")},
        threads=torch.get_num_threads(),
        device=device.type,
        distributed=distributed,
    )


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
    spec: TrainSpec,
    registry: Any,
    nets: list[Network],
    aux: AuxHeads,
    result: TrainResult,
    evaluation: dict[str, Any],
    job_id: str | None,
) -> list[str]:
    ns, run_name = spec.namespace, spec.name
    refs: list[str] = []
    settings = spec.settings.model_dump(mode="json")
    net0 = nets[0]
    size = net0.task.train.side
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
            provenance=provenance(job=job_id, seed=spec.settings.seed, settings=settings),
            **common,
        )
        init_model = build(net0.arch, split=net0.model.split, **net0.config)
        init_model.load_state_dict(net0.init_state)
        init_ref = push(registry, init_model, card).ref
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
                provenance=provenance(
                    job=job_id,
                    seed=spec.settings.seed,
                    settings=settings,
                    dataset={"name": "+".join(n.task.name for n in nets), "classes": labels},
                ),
                **common,
            )
            pushed = push(registry, module, card)
            anchors[role] = pushed.digest
            refs.append(pushed.ref)

    for net in nets:
        task = net.task
        prov = provenance(
            job=job_id,
            seed=net.seed,
            settings=settings,
            dataset=data_provenance(
                task.train_spec,
                task.train,
                task=task.name,
                test=task.test_spec,
                test_images=task.test,
                test_limit=spec.settings.test_limit,
                classes=task.classes,
            ),
        )
        compat = {
            "anchors": sorted(anchors.values()),
            "methods": spec.methods,
            "scheme": spec.scheme,
            "init": init_ref if "IIW" in spec.methods else None,
        }
        score = result.tasks[task.name]
        m = {
            "own_task_accuracy": score.own_task_accuracy,
            "test_examples": score.test_images,
            "bn": score.bn,
            "evaluation": evaluation,
        }
        base = f"{ns}/{run_name}-{task.name}"
        ext = push(
            registry,
            net.extractor,
            card_for(
                name=f"{base}-extractor",
                role="extractor",
                arch=net.arch,
                config=net.config,
                split=net.model.split,
                input_size=task.train.side,
                compat=compat,
                provenance=prov,
                metrics=m,
                description=f"feature extractor of task {task.name}, run {run_name}",
                **common,
            ),
        )
        head = push(
            registry,
            net.head,
            card_for(
                name=f"{base}-head",
                role="head",
                arch=net.arch,
                config=net.config,
                split=net.model.split,
                labels=task.classes,
                compat={**compat, "sibling": ext.ref},
                provenance=prov,
                metrics=m,
                description=f"task head of task {task.name}, run {run_name}",
                **common,
            ),
        )
        refs += [ext.ref, head.ref]
    return refs
