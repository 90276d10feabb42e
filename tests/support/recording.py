"""A runner for tests: records every command and answers it from a table of canned results (no subprocess)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from lab.errors import CommandError
from lab.shell import Result, Runner


@dataclass
class RecordingRunner(Runner):
    """A runner for tests: records argv and answers from a table of canned results.

    `answers` maps a prefix of argv (a tuple) to a Result, or to a callable taking the argv and returning one;
    the longest matching prefix wins. Unmatched commands succeed with empty output.
    """

    answers: dict[tuple[str, ...], object] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    inputs: list[str | None] = field(default_factory=list)
    envs: list[dict[str, str] | None] = field(default_factory=list)
    timeouts: list[float | None] = field(default_factory=list)

    def run(self, argv: Sequence[str], *, input: str | None = None, check: bool = True,  # noqa: A002
            timeout: float | None = None, context: str = "", env: Mapping[str, str] | None = None) -> Result:
        argv_t = tuple(str(a) for a in argv)
        self.calls.append(argv_t)
        self.inputs.append(input)
        self.envs.append(dict(env) if env else None)
        self.timeouts.append(timeout)
        best: tuple[str, ...] | None = None
        for prefix in self.answers:
            if argv_t[: len(prefix)] == prefix and (best is None or len(prefix) > len(best)):
                best = prefix
        answer = self.answers.get(best) if best is not None else None
        if callable(answer):
            answer = answer(argv_t)
        result = answer if isinstance(answer, Result) else Result(argv_t, 0, "", "")
        if check and not result.ok:
            raise CommandError(list(argv_t), result.returncode, result.output, context)
        return result
