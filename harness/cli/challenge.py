"""``harness challenge run`` and ``harness challenge board``: the organiser's commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness.cli.common import BoundaryGroup, DataOpt, console, err_console

challenge_app = typer.Typer(
    cls=BoundaryGroup,
    no_args_is_help=True,
    help="Run every team's code submission in a sandbox, verify it and rank it (the organiser's side).",
)
RuleOpt = Annotated[str, typer.Option(help="psnr: mean test PSNR within the limits; esr: the Efficient SR score.")]
OptionsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--rule-option",
        help="NAME=VALUE for the rule (esr: psnr_threshold, baseline_seconds, baseline_macs, baseline_params).",
    ),
]


def _options(given: list[str] | None) -> dict[str, float]:
    from harness.errors import HarnessError

    options = {}
    for item in given or []:
        name, _, value = item.partition("=")
        try:
            options[name.strip()] = float(value)
        except ValueError:
            raise HarnessError(f"--rule-option {item!r}: expected NAME=NUMBER") from None
    return options


@challenge_app.command("run")
def run_cmd(
    submissions: Annotated[
        Path, typer.Option(help="One code submission per team (a folder or zip; NAME.results.zip beside it).")
    ],
    data: DataOpt = None,
    out: Annotated[Path, typer.Option(help="Challenge run folder (teams/, board.*).")] = Path("runs/challenge"),
    rule: RuleOpt = "psnr",
    rule_option: OptionsOpt = None,
    jobs: Annotated[int, typer.Option(help="Jobs run at once (a team's, or one of its shards).", min=1)] = 1,
    time_limit: Annotated[
        float, typer.Option(help="Seconds each of a team's jobs may take (its own, and each of its shards).", min=1)
    ] = 1800.0,
    memory_limit: Annotated[
        float, typer.Option(help="GB of address space each of a team's jobs may take.", min=0.5)
    ] = 16.0,
    device: Annotated[str, typer.Option(help="cpu or cuda, the same for every team.")] = "cpu",
    backend: Annotated[str, typer.Option(help="The runner's backend, the same for every team.")] = "eager",
    latency: Annotated[bool, typer.Option(help="Time every team by the bench protocol.")] = True,
    sandbox: Annotated[
        bool, typer.Option(help="Run the teams' code in bubblewrap (off: with the same limits but no sandbox).")
    ] = True,
    executor: Annotated[
        str, typer.Option(help="local: here, --jobs at a time; slurm: one Slurm job per team or shard (submitit).")
    ] = "local",
    scene_shards: Annotated[
        int, typer.Option(help="Jobs that share each team's scenes; merged into the run one job would write.", min=1)
    ] = 1,
) -> None:
    """Lint, run (sandboxed), score, budget, time and replay every team; then write the board."""
    from harness.data.embedded import embedded_dataset
    from harness.organise.board import write_board
    from harness.organise.teams import ChallengeConfig, run_teams
    from harness.progress import progress_bar

    options = _options(rule_option)
    cfg = ChallengeConfig(
        submissions, data or embedded_dataset(), out, rule, jobs, time_limit, memory_limit, device, backend, latency,
        sandbox, executor, scene_shards,
    )  # fmt: skip
    with progress_bar("teams", err_console) as advance:
        run_teams(cfg, advance)
    doc = write_board(out, rule, options)
    _print_board(doc)


@challenge_app.command("board")
def board_cmd(
    out: Annotated[Path, typer.Argument(help="A `harness challenge run` folder.")],
    rule: RuleOpt = "psnr",
    rule_option: OptionsOpt = None,
) -> None:
    """(Re)write the board of a challenge run folder from the teams that have finished (the others pending)."""
    from harness.organise.board import write_board

    _print_board(write_board(out, rule, _options(rule_option)))


def _print_board(doc: dict) -> None:
    from harness.tables import print_fitted

    rows = [
        [
            str(t["rank"] or "-"),
            t["team"],
            f"{t['psnr']:.4f}" if t.get("psnr") is not None else "-",
            t.get("status", ""),
            (t.get("replay") or {}).get("verdict", "-"),
            t.get("note") or t.get("error") or "",
        ]
        for t in doc["teams"]
    ]
    print_fitted(
        console, f"board ({doc['rule']})", ["rank", "team", "PSNR (dB)", "status", "replay", "note"], rows, keys=2
    )
