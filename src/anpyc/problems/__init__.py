"""Problem kinds: what a run of a classifier or of a generator needs besides the one loop.

:data:`PROBLEMS` lists the kinds; a run's kind is the one that claims its model
(``Problem.models``), classification otherwise. A new kind is one file (a
:class:`~anpyc.problems.base.Problem` subclass) and one line here.

Example:
    >>> from anpyc.config import RunConfig
    >>> problem_for(RunConfig()).name, problem_for(RunConfig.from_dict({"model": {"name": "gan"}})).name
    ('classification', 'generation')
"""

from __future__ import annotations

from anpyc.config import RunConfig
from anpyc.problems.base import Problem
from anpyc.problems.classification import Classification
from anpyc.problems.generation import Generation

#: every problem kind; the last one claiming no model is the default
PROBLEMS: list[type[Problem]] = [Classification, Generation]


def problem_for(cfg: RunConfig) -> type[Problem]:
    """The kind of problem ``cfg``'s model is."""
    for kind in PROBLEMS:
        if cfg.model.name in kind.models:
            return kind
    return next(kind for kind in reversed(PROBLEMS) if not kind.models)


__all__ = ["PROBLEMS", "Classification", "Generation", "Problem", "problem_for"]
