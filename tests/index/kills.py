"""Killing a writing child process at a random moment, and reading back the commits it
reported (importable as ``tests.index.kills``)."""

from __future__ import annotations

import random
import re
import signal
import subprocess
import time


def kill_after_some_commits(
    process: subprocess.Popen[str], rng: random.Random, longest_wait: float
) -> tuple[int, list[str]]:
    """Let the child report its first commit, SIGKILL it up to ``longest_wait`` seconds
    later, and return the last commit it reported in full with all the lines it printed.

    A child prints ``committed <n>`` after each commit. Under ``PYTHONUNBUFFERED`` each
    piece of a ``print`` is a write of its own, so the kill can cut a line short: such a
    line is no report, and its commit counts as the one in flight."""
    assert process.stdout is not None
    lines = [process.stdout.readline()]
    time.sleep(rng.uniform(0.0, longest_wait))
    process.send_signal(signal.SIGKILL)
    process.wait()
    lines += process.stdout.read().splitlines()
    reported = [re.fullmatch(r"committed (\d+)", line.strip()) for line in lines]
    return max(int(match[1]) for match in reported if match), lines
