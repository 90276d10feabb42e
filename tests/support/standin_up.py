"""`python -m lab up` through the real CLI, with stand-in tools: run as `python -m tests.support.standin_up HOME`.

kubectl, istioctl and kind are answered by the fake clusters of tests.support.fakelab (in this process); `docker`
is the real program first on PATH (the tests put a stand-in script there), run as a real child process through
lab.shell.Runner, so that a test can see what happens to it when the lab is interrupted. Preflight is skipped
(there is no Docker engine to check).
"""

from __future__ import annotations

import functools
import sys
import time
from dataclasses import dataclass
from typing import Any

from lab import cli, executor
from lab.scenario import load_profile
from lab.shell import Runner
from tests.support.fakelab import FakeLab


@dataclass
class StandInRunner(Runner):
    """docker: the real program on PATH; everything else: the fake lab's answers."""

    fake: Any = None

    def run(self, argv, **kwargs):  # type: ignore[override]
        if str(argv[0]) == "docker":
            return Runner.run(self, argv, **kwargs)
        return self.fake.runner.run(argv, **kwargs)


def main(home: str) -> int:
    from pathlib import Path

    lab = FakeLab(load_profile(), Path(home))
    hooks = executor.Hooks(preflight=lambda *a, **k: None, tools=lambda p, r: lab.tools,
                           cached_tools=lambda p, r: lab.tools, provider=lambda p, h, t, r: lab.provider,
                           sleep=lambda s: time.sleep(min(s, 0.05)))
    executor.up = functools.partial(executor.up, runner=StandInRunner(fake=lab), hooks=hooks)  # type: ignore
    return cli.main(["up", "--home", home])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
