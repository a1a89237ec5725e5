"""Errors a user can act on. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations

from collections.abc import Iterable


class AnpycError(Exception):
    """Base class for every error whose message tells the user what to do.

    Example:
        >>> from anpyc.config import TrainConfig
        >>> try:
        ...     TrainConfig(lr=-1)
        ... except AnpycError as err:  # a ConfigError here: every subclass is caught
        ...     print(err)
        train.lr must be > 0, got -1
    """


class ConfigError(AnpycError):
    """A configuration value, key or file is wrong."""


class DataError(AnpycError):
    """A data file is missing, corrupt or of the wrong shape."""


class TrainingError(AnpycError):
    """Training cannot go on (e.g. a non-finite loss)."""


class OutputError(AnpycError):
    """The output directory cannot be used or written."""


class CheckpointError(AnpycError):
    """No usable checkpoint: corrupt, truncated, or written by a different run."""


class DistributedError(AnpycError):
    """A multi-process run cannot start or its processes disagree."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler) while a command runs: handled as Ctrl-C is, so parallel
    workers are stopped and locks released (exit code 143, where Ctrl-C gives 130)."""


def stop_word(exc: KeyboardInterrupt) -> str:
    """How a stopped command says why it stopped: ``terminated`` (SIGTERM) or ``interrupted`` (Ctrl-C).

    Example:
        >>> stop_word(Terminated()), stop_word(KeyboardInterrupt())
        ('terminated', 'interrupted')
    """
    return "terminated" if isinstance(exc, Terminated) else "interrupted"


def one_line(exc: BaseException) -> str:
    """An exception as the one line the CLI prints: an anpyc error's message, ``Type: message``
    for any other (the message's first line: a library's can run to many).

    Example:
        >>> one_line(ConfigError("bad value"))
        'bad value'
        >>> one_line(ValueError("no rows in data.csv"))
        'ValueError: no rows in data.csv'
    """
    line = first_line(exc)
    if isinstance(exc, AnpycError) or line == type(exc).__name__:
        return line
    return f"{type(exc).__name__}: {line}"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): how a
    library's error is quoted inside an anpyc error's one line.

    Example:
        >>> first_line(ValueError("line 3: bad\\nmore"))
        'line 3: bad'
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def did_you_mean(name: object, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``known`` to a mistyped ``name``, else ``""``.

    Example:
        >>> did_you_mean("ewx", ["ewc", "si"])
        " (did you mean 'ewc'?)"
    """
    import difflib

    close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown(what: str, name: object, known: Iterable[str]) -> str:
    """The one-line message for a name that is none of ``known``, with the closest one.

    Example:
        >>> unknown("method", "ewx", ["ewc", "si"])
        "unknown method 'ewx' (did you mean 'ewc'?); known: ewc, si"
    """
    known = list(known)
    return f"unknown {what} {name!r}{did_you_mean(name, known)}; known: {', '.join(known) or 'none'}"


def refuse_repeats(caller: str, what: str, items: list) -> list:
    """``items`` unchanged, or a one-line :class:`ConfigError` naming those listed twice (a seed
    run twice would count twice in a mean, its std and the number of seeds a claim rests on).

    Example:
        >>> refuse_repeats("compare", "seed", [0, 1, 0])  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        anpyc.errors.ConfigError: compare lists seed 0 more than once; ...
    """
    twice = [str(v) for v in dict.fromkeys(items) if items.count(v) > 1]
    if twice:
        why = " (it would count twice in the mean, the std and the number of seeds)" if what == "seed" else ""
        raise ConfigError(f"{caller} lists {what} {', '.join(twice)} more than once; each runs once{why}")
    return items
