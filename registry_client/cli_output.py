"""How both CLIs (`registry`, `compute-engine`) print: tables, JSON, one-line errors.

The contract (docs/cli.md, Conventions): a list prints a table with headers
(`table`), `--json` prints exactly one JSON value (`echo_json`: an object, or an
array for a list), every amount is a decimal string under a `*_wei` key
(`wei`), and every error is one line on stderr, `error: <message> (CODE)`
(`error_line`, `OneLineError`). tabulate is imported only when a table is
printed, so `--help` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import click

__all__ = ["OneLineError", "OneLineErrorsGroup", "echo_json", "error_line", "table", "wei"]


def error_line(message: str, code: str) -> str:
    """`error: <message> (CODE)`: the one line every CLI error is printed as."""
    first = (message.strip().splitlines() or [""])[0]
    return f"error: {first} ({code})"


class OneLineError(click.ClickException):
    """A one-line `error: <message> (CODE)` on stderr; exit code 1 (2 for bad input)."""

    def __init__(self, message: str, code: str = "CLI_ERROR", exit_code: int = 1):
        super().__init__(message)
        self.code = code
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(error_line(self.format_message(), self.code), err=True)


def wei(amount: int | str | None) -> str | None:
    """An amount as the decimal string every `*_wei` key holds (uint256 overflows JSON numbers)."""
    return None if amount is None else str(int(amount))


def echo_json(value: Any) -> None:
    """Print one JSON value (sorted keys) on stdout."""
    click.echo(json.dumps(value, sort_keys=True))


def table(rows: Iterable[Mapping[str, Any]], columns: Sequence[tuple[str, str]], empty: str) -> str:
    """A plain-text table of `rows` with a header line; `columns` = [(key, header)].

    Returns `empty` when there are no rows, so a script can tell "nothing" apart.
    """
    rows = list(rows)
    if not rows:
        return empty
    from tabulate import tabulate  # lazy: only list commands pay for it

    body = [["" if r.get(key) is None else r.get(key) for key, _ in columns] for r in rows]
    return tabulate(body, headers=[h for _, h in columns], tablefmt="simple", disable_numparse=True)


def _usage_message(exc: click.UsageError) -> tuple[str, str]:
    if isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter):
        return exc.format_message(), "INVALID_INPUT"
    hint = f"; see '{exc.ctx.command_path} --help'" if exc.ctx is not None else ""
    return exc.format_message().rstrip(".") + hint, "USAGE_ERROR"


class OneLineErrorsGroup(click.Group):
    """A root group whose every failure is one `error: <message> (CODE)` line, never a traceback.

    Usage errors exit 2 (`USAGE_ERROR`, bad values `INVALID_INPUT`), others 1; an
    unexpected exception is `INTERNAL_ERROR` unless `debug_env` is set (then it is raised).
    """

    debug_env = "REGISTRY_DEBUG"

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        import os
        import sys

        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo(error_line("aborted", "ABORTED"), err=True)
            sys.exit(1)
        except click.UsageError as exc:
            click.echo(error_line(*_usage_message(exc)), err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(error_line(exc.format_message(), getattr(exc, "code", "CLI_ERROR")), err=True)
            sys.exit(exc.exit_code)
        except Exception as exc:
            if os.environ.get(self.debug_env):
                raise
            click.echo(error_line(f"unexpected {exc.__class__.__name__}: {exc} (set {self.debug_env}=1 "
                                  "for details)", "INTERNAL_ERROR"), err=True)
            sys.exit(1)
        sys.exit(0)
