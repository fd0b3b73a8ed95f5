"""Which jobs can train together in one stack, and how to group a grid into packs.

Members of a pack share everything that shapes the stacked computation: the data, the network
shape, the loss and output, the optimiser's update rule, the batch size and the device. Each
member keeps its own seed (initialisation, data order, dropout masks), initialisation scheme,
strategy, learning rate and every other optimiser or schedule setting, dropout probability, L1
and L2 penalties, epochs and evaluation interval.

Everything packs except method=target_space: its forward pass solves for the weights on a fixed
batch of its own (a batched solve over members is not bit-exact against the solve alone), so
each such job trains as a stack of one, through the same loop.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from jobs.spec import JobSpec

SHARED_SETTINGS = (
    "dataset", "data_root", "normalize", "noise", "val_fraction", "val_seed",  # one copy of
    # the data
    "model", "hidden", "activation", "shortcuts", "output",  # one stacked network shape
    "loss", "optimizer", "batch_size",  # one loss, one update rule, one batch loop
    "device", "method",  # one place the stack lives, one kind of network
)


def pack_refusal(spec: JobSpec) -> str | None:
    """Why `spec` cannot train in a pack (one line), or None when it can."""
    if spec.method != "weights":
        return (f"method={spec.method} solves for its weights on a fixed batch of its own; it "
                "trains as a stack of one")
    return None


def pack_key(spec: JobSpec) -> str | None:
    """Jobs with equal keys can train in one pack; None when `spec` cannot be packed at all."""
    if pack_refusal(spec) is not None:
        return None
    shared = {name: getattr(spec, name) for name in SHARED_SETTINGS}
    return json.dumps(shared, sort_keys=True, separators=(",", ":"))


AUTO_PACK_MAX = 64  # members per stack with pack=auto: see tests/bench/bench_headline.py
AUTO = 0  # the pack size that means "auto" wherever a size is passed around


def auto_pack_size(jobs: int, slots: int) -> int:
    """pack=auto: the jobs spread evenly over the slots that run at once, at most
    AUTO_PACK_MAX per stack (larger stacks gain little more and lose more when one breaks),
    in stacks of equal size, so that every slot's last stack ends at about the same time: 1,000
    jobs on 2 slots train in 16 stacks of 63 or less, not 15 of 64 and one of 40."""
    per_slot = -(-jobs // max(slots, 1))
    rounds = max(1, -(-per_slot // AUTO_PACK_MAX))
    return max(1, -(-per_slot // rounds))


def plan_packs(specs: Sequence[JobSpec], max_size: int) -> list[list[JobSpec]]:
    """Group `specs` into packs of at most `max_size` compatible jobs; unpackable jobs alone.

    Deterministic: packs come in the order of their first job, jobs keep their order within a
    pack, and a group of compatible jobs is cut into packs of nearly equal size (20 jobs with
    max_size 16 give 10 + 10, not 16 + 4), so packs running side by side finish together.
    """
    if max_size < 1:
        raise ValueError(f"max_size must be >= 1 (got {max_size})")
    groups: dict[str, list[int]] = {}
    placed: list[tuple[int, list[int]]] = []  # (position of the first job, job positions)
    for position, spec in enumerate(specs):
        key = pack_key(spec)
        if key is None:
            placed.append((position, [position]))
        else:
            groups.setdefault(key, []).append(position)
    for positions in groups.values():
        count = -(-len(positions) // max_size)  # ceil
        size, extra = divmod(len(positions), count)
        start = 0
        for index in range(count):
            end = start + size + (1 if index < extra else 0)
            placed.append((positions[start], positions[start:end]))
            start = end
    placed.sort(key=lambda item: item[0])
    return [[specs[position] for position in positions] for _, positions in placed]


# ---------------------------------------------------------------------------------------------
# pack=auto: stacks sized to the device and balanced by their work

DEVICE_MEMORY_SHARE = 0.5  # of a GPU's free memory that one stack may fill
GPU_STACK_MAX = 4096  # members per stack at most on a GPU (a hand-written stack of 4,000
# headline models trains in 0.79 s on an H200, 1,000 in 0.64 s: beyond that launches are paid)
STACK_OVERHEAD = 0.02  # a stack's fixed cost (start, data, evaluation set-up, its results
# file), as a share of one slot's fair share of the work: more, smaller stacks balance better
# but each costs this much
MAX_ROUNDS = 4  # finer splits tried for balance: stacks of 1/1, 1/2, 1/3, 1/4 of a slot's share


def members_per_stack(spec: JobSpec, device_memory: int | None) -> int:
    """How many members of `spec`'s kind one stack holds: AUTO_PACK_MAX on the CPU (beyond it
    the epoch's inputs leave the cache; see tests/bench/bench_headline.py), or as many as
    DEVICE_MEMORY_SHARE of the GPU's free memory holds."""
    if device_memory is None:
        return AUTO_PACK_MAX
    from jobs.engine.cost import member_bytes

    return max(1, min(GPU_STACK_MAX, int(device_memory * DEVICE_MEMORY_SHARE
                                         // member_bytes(spec))))


def plan_stacks(specs: Sequence[JobSpec], slots: int, *,
                device_memory: int | None = None) -> list[list[JobSpec]]:
    """pack=auto: compatible jobs cut into stacks of about equal work, at most
    `members_per_stack` each, so that the `slots` running at once end together; heaviest first
    (the longest-processing-time-first rule), which is the order to dispatch them in.

    The work of a stack is jobs.engine.cost.training_work summed over its members. A group of
    jobs whose work is more than a slot's share is split, and lighter groups stay whole; among
    splits into 1-4 rounds per slot, the one whose schedule ends first wins, counting
    STACK_OVERHEAD per stack.
    """
    from jobs.engine.cost import training_work

    if not specs:
        return []
    slots = max(1, slots)
    work = {id(spec): training_work(spec) for spec in specs}
    groups: dict[str, list[JobSpec]] = {}
    for position, spec in enumerate(specs):
        groups.setdefault(pack_key(spec) or f"alone:{position}", []).append(spec)
    share = sum(work.values()) / slots
    best: tuple[float, list[list[JobSpec]]] | None = None
    for rounds in range(1, MAX_ROUNDS + 1):
        target = share / rounds
        stacks = []
        for members in groups.values():
            group_work = sum(work[id(spec)] for spec in members)
            cap = members_per_stack(members[0], device_memory)
            count = max(-(-len(members) // cap), round(group_work / target) if target else 1, 1)
            stacks += _even_split(members, min(count, len(members)))
        stacks.sort(key=lambda stack: -sum(work[id(spec)] for spec in stack))
        ends = _schedule([sum(work[id(spec)] for spec in stack) + STACK_OVERHEAD * share
                          for stack in stacks], slots)
        if best is None or ends < best[0]:
            best = (ends, stacks)
        if len(stacks) >= len(specs):
            break
    assert best is not None
    return best[1]


def _even_split(members: list[JobSpec], count: int) -> list[list[JobSpec]]:
    """`members` in `count` consecutive stacks whose sizes differ by one at most."""
    size, extra = divmod(len(members), count)
    stacks, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        stacks.append(members[start:end])
        start = end
    return stacks


def _schedule(works: list[float], slots: int) -> float:
    """When the last slot ends, each stack (in this order) going to the slot free first."""
    ends = [0.0] * slots
    for work in works:
        ends[ends.index(min(ends))] += work
    return max(ends)
