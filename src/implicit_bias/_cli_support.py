"""Click parameter types and the top-level group of the ``implicit-bias`` command (see :mod:`implicit_bias.cli`)."""

from __future__ import annotations

import math
import re
import warnings

import click

from .errors import ImplicitBiasError


class PositiveFloat(click.ParamType):
    """A finite float > 0 (click's FloatRange lets NaN and inf through)."""

    name = "float"

    def convert(self, value, param, ctx):
        if isinstance(value, float) and math.isfinite(value) and value > 0:
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number.", param, ctx)
        if not (math.isfinite(number) and number > 0):
            self.fail(f"{value!r} must be a finite number > 0.", param, ctx)
        return number


POSITIVE = PositiveFloat()


class SchedulerAddress(click.ParamType):
    """``[PROTOCOL://]HOST:PORT`` of a Dask scheduler, checked before any work starts."""

    name = "tcp://HOST:PORT"

    def convert(self, value, param, ctx):
        if not re.fullmatch(r"(\w+://)?[^\s/:]+:\d+/?", str(value)):
            self.fail(f"{value!r} is not a scheduler address; give tcp://HOST:PORT of a running 'dask scheduler'.",
                      param, ctx)
        return value


SCHEDULER = SchedulerAddress()


class MainGroup(click.Group):
    """The top-level group: a typed error or an operating-system error (a path that cannot be read or
    written, an unreachable scheduler) that escapes any command ends in one line on stderr and exit
    status 2; ``--debug`` anywhere on the command line shows the traceback instead."""

    def invoke(self, ctx):
        # read before click consumes them (click >= 8.2 keeps the subcommand's tokens in _protected_args)
        protected = ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args
        debug = "--debug" in [*protected, *ctx.args]
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _one_line_warning  # restored on exit
                return super().invoke(ctx)
        except (ImplicitBiasError, OSError) as exc:
            if debug:
                raise
            if isinstance(exc, OSError) and exc.filename:
                message = f"{exc.strerror or exc}: {exc.filename}; check the paths on the command line"
            else:
                message = " ".join(str(exc).split()) or type(exc).__name__
            click.echo(f"implicit-bias: error: {message}", err=True)
            ctx.exit(2)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings the library gives a user (a store on a network filesystem) as one line on stderr."""
    click.echo(f"implicit-bias: warning: {' '.join(str(message).split())}", err=True)
