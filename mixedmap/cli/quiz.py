"""``mixedmap quiz``: seeded exercises on the arch's real formats and the kernel's real rules."""

from __future__ import annotations

import click
from rich.markup import escape

from mixedmap.cli.common import (
    Ctx,
    arch_options,
    emit_json,
    json_option,
    mode_option,
    opt_option,
    out_console,
)
from mixedmap.quiz import KINDS, make_quiz


@click.command()
@click.option("--arch", "-a", default=None, help="Arch name (default: x86_64 if installed, else the first).")
@click.option("--kernel", "-k", default=None, help="Kernel profile (default 2.6.27, or the arch's newest).")
@mode_option
@opt_option
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(KINDS),
    help="Question kind (repeatable; default all).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same questions.")
@click.option(
    "-n", "count", type=click.IntRange(1, 1000), default=4, show_default=True, help="Number of questions."
)
@click.option("-c", "--answers", is_flag=True, help="Print each answer and the working.")
@json_option
@click.pass_obj
def quiz(
    obj: Ctx,
    arch: str | None,
    kernel: str | None,
    mode: str | None,
    opt: tuple[str, ...],
    kinds: tuple[str, ...],
    seed: int,
    count: int,
    answers: bool,
    as_json: bool,
) -> None:
    """Exercises: translate a VA from a table dump, decode a PTE, predict refcount/mapcount/RSS,
    say what a write does (COW). Answers come from the model (-c shows them, --json for graders)."""
    if arch is None:
        names = obj.registry.names
        arch = "x86_64" if "x86_64" in names else names[0]
    questions = make_quiz(
        arch, kernel, kinds or KINDS, seed, count, registry=obj.registry, **arch_options(opt, mode)
    )
    if as_json:
        emit_json([q.to_json() for q in questions])
        return
    out = out_console()
    for q in questions:
        for line in q.prompt:
            out.print(escape(line), soft_wrap=True)
        if answers:
            out.print("[bold]working:[/]")
            for line in q.working:
                out.print("  " + escape(line), soft_wrap=True)
            answer = ", ".join(f"{k}={v}" for k, v in q.answer.items())
            out.print(f"[bold]answer:[/] {escape(answer)}", soft_wrap=True)
        out.print()
