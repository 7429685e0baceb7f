"""The pure pieces behind utilization_policy, startup_order and the masking of secrets."""

from __future__ import annotations

import threading
import time

from dstack_iac.execution.group import StartGate
from dstack_iac.execution.utilization import Sample, idle_for_window, parse_nvidia_smi
from dstack_iac.runs.log import MASK, masking


def test_nvidia_smi_output_is_one_percent_per_gpu():
    assert parse_nvidia_smi("3\n 97 %\n\n[N/A]\n12\n") == [3, 97, 12]
    assert parse_nvidia_smi("NVIDIA-SMI has failed") == []


def _samples(*points: tuple[float, tuple[int, ...]]) -> list[Sample]:
    return [Sample(at, values) for at, values in points]


def test_idle_only_when_every_gpu_stayed_below_for_the_whole_window():
    idle = _samples((0, (1, 2)), (30, (0, 5)), (60, (9, 9)))
    assert idle_for_window(idle, now=60, window=60, threshold=10)
    assert not idle_for_window(idle, now=60, window=60, threshold=9), "9% is not below 9%"
    busy_one = _samples((0, (1, 2)), (30, (1, 50)), (60, (1, 2)))
    assert not idle_for_window(busy_one, now=60, window=60, threshold=10), "one busy GPU keeps the run"
    young = _samples((10, (0,)), (60, (0,)))
    assert not idle_for_window(young, now=60, window=60, threshold=10), "younger than the window"
    assert not idle_for_window([], now=60, window=60, threshold=10)
    busy_then_idle = _samples((0, (80,)), (40, (0,)), (100, (0,)))
    assert idle_for_window(busy_then_idle, now=100, window=60, threshold=10), "only the last window counts"


def _order(order: str, ranks: list[int]) -> list[int]:
    gate = StartGate(order, ranks, abandoned=lambda: False)
    started: list[int] = []
    lock = threading.Lock()

    def node(rank: int) -> None:
        time.sleep(0.05 * (len(ranks) - rank))  # the master arrives last, unless it waits for nobody
        assert gate.wait_turn(rank)
        with lock:
            started.append(rank)
        gate.started(rank)

    threads = [threading.Thread(target=node, args=(rank,)) for rank in ranks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return started


def test_the_start_gate_orders_master_and_workers():
    assert _order("master-first", [0, 1, 2])[0] == 0
    assert _order("workers-first", [0, 1, 2])[-1] == 0
    assert sorted(_order("any", [0, 1, 2])) == [0, 1, 2]


def test_a_stopped_run_releases_every_waiting_node():
    stopping = threading.Event()
    gate = StartGate("master-first", [0, 1], abandoned=stopping.is_set)
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(gate.wait_turn(1)))
    waiter.start()
    stopping.set()
    waiter.join(5)
    assert result == [False]


def test_secrets_are_masked_whole_and_longest_first():
    mask = masking(["abc123", "abc123-longer", ""])
    assert mask("token abc123-longer and abc123") == f"token {MASK} and {MASK}"
    assert mask("nothing here") == "nothing here"
