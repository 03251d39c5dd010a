import os

import pytest
import torch

from leaveout.workers import run_in_workers, worker_slot


def threads_and_pid(label: str) -> tuple[str, int, int, int]:
    return label, torch.get_num_threads(), os.getpid(), worker_slot()


def fail(message: str) -> None:
    raise ValueError(message)


def test_calls_run_in_spawned_processes_with_the_threads_split_and_results_in_order():
    calls = [(threads_and_pid, (label,), {}) for label in "abc"]
    results = run_in_workers(calls, workers=2, threads=4)
    assert [r[0] for r in results] == ["a", "b", "c"]
    assert {r[1] for r in results} == {2}
    assert os.getpid() not in {r[2] for r in results}
    assert {r[3] for r in results} <= {0, 1}


def test_one_worker_runs_here_unchanged():
    (result,) = run_in_workers([(threads_and_pid, ("a",), {})], workers=3)
    assert result == ("a", torch.get_num_threads(), os.getpid(), 0)


def test_a_failure_in_a_worker_is_raised_here():
    calls = [(fail, ("member 1 broke",), {}), (threads_and_pid, ("b",), {})]
    with pytest.raises(ValueError, match="member 1 broke"):
        run_in_workers(calls, workers=2)
    with pytest.raises(ValueError, match="at least 1"):
        run_in_workers(calls, workers=0)
