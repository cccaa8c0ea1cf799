"""The wizard's submissions as jobs: a short command runs while the browser waits, a long one (an image build, MAC
collection, Complete Installation, the cluster test) runs on in the server while the page shows its progress.

A job is only what the browser needs to show (the last outcome of each step, its progress lines and bar); the
cluster's state is never kept here, and a server restart forgets the jobs, not where the wizard is
(``commands.wizard.progress`` derives that from the cluster).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from haoscar.commands import wizard_steps
from haoscar.commands.env import Env
from haoscar.commands.wizard_forms import Form
from haoscar.commands.wizard_forms import run as run_form
from haoscar.errors import UserError
from haoscar.web import render
from haoscar.web.wizard_results import summary

log = logging.getLogger(__name__)

JobState = Literal["running", "done", "failed"]
MAX_LINES = 40
WAIT_S = 2.0  # a long job that fails at once (bad input) is shown on the page of the submission itself


@dataclass
class Job:
    id: int
    step: str
    form: str
    title: str
    cli: str
    user: str
    long: bool = False  # a long job has a progress bar
    started: float = field(default_factory=time.time)
    state: JobState = "running"
    percent: float | None = None
    what: str = ""
    lines: list[str] = field(default_factory=list)
    message: str = ""
    problems: dict[str, list[str]] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    # Called from the command's worker thread: plain assignments only.
    def meter(self, percent: float, what: str) -> None:
        self.percent, self.what = max(0.0, min(100.0, percent)), what

    def line(self, text: str) -> None:
        self.lines = [*self.lines[-(MAX_LINES - 1) :], text]

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "step": self.step, "form": self.form, "title": self.title, "state": self.state,
                "long": self.long,
                "percent": self.percent, "what": self.what, "lines": self.lines, "message": self.message,
                "problems": self.problems, "cli": self.cli}  # fmt: skip


@dataclass
class Jobs:
    """The last job of each step (older ones are dropped) and the ids they are numbered by."""

    by_step: dict[str, Job] = field(default_factory=dict)
    long: dict[str, Job] = field(default_factory=dict)  # the last long job of each step (MAC collection ...)
    numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def running(self, step: str) -> Job | None:
        """The step's long job while it runs: a second one waits (a short form, e.g. Assign, goes on meanwhile)."""
        job = self.long.get(step)
        return job if job is not None and job.state == "running" else None


JOBS: web.AppKey[Jobs] = web.AppKey("haoscar_wizard_jobs", Jobs)


def _with_sinks(job: Job, form: Form) -> Callable[[Env, Any], Any]:
    def command(env: Env, req: Any) -> Any:
        env.meter, env.progress = job.meter, job.line
        return run_form(form, env, req)

    return command


async def _save_draft(request: web.Request, job: Job) -> None:
    def save(env: Env, _req: None) -> None:
        wizard_steps.save_draft(env, job.step, job.form, job.values, job.problems)

    await render.call(request, save, None)


async def _clear_draft(request: web.Request, step: str) -> None:
    await render.call(request, lambda env, _req: wizard_steps.clear_draft(env, step), None)


async def _execute(request: web.Request, job: Job, form: Form, req: Any, detail: Mapping[str, object]) -> None:
    try:
        result = await render.audited(request, f"wizard.{form.key}", detail, _with_sinks(job, form), req)
    except UserError as exc:
        job.problems, job.state, job.message = render.problems(exc), "failed", "refused: see the problems below"
        await _save_draft(request, job)
    except Exception:
        log.exception("wizard %s failed", form.key)
        job.state, job.message = "failed", "Something went wrong on the server. It was logged."
    else:
        job.state, job.message, job.percent = "done", summary(form.key, req, result), 100.0
        await _clear_draft(request, job.step)


async def start(request: web.Request, form: Form, req: Any, values: dict[str, str], cli: str) -> Job:
    """Run the form's command (audited) as the step's job; a short one is awaited, a long one for ``WAIT_S``."""
    jobs = request.app[JOBS]
    user = render.user_of(request)
    job = Job(next(jobs.numbers), form.step, form.key, form.title, cli, user, form.long, values=values)
    jobs.by_step[form.step] = job
    if form.long:
        jobs.long[form.step] = job
    detail: dict[str, object] = {"step": form.step, "form": form.key, **values}
    job.task = asyncio.get_running_loop().create_task(_execute(request, job, form, req, detail))
    if form.long:
        await asyncio.wait({job.task}, timeout=WAIT_S)
    else:  # a browser that goes away does not cancel the command (nor its audit record)
        await asyncio.shield(job.task)
    return job


async def failed_parse(request: web.Request, form: Form, values: dict[str, str], problems: dict[str, list[str]],
                       cli: str) -> Job:  # fmt: skip
    """A submission the form could not even parse (``count`` = ``x``): shown and kept as a draft like any other."""
    jobs = request.app[JOBS]
    job = Job(next(jobs.numbers), form.step, form.key, form.title, cli, render.user_of(request), state="failed",
              message="refused: nothing was changed", problems=problems, values=values)  # fmt: skip
    jobs.by_step[form.step] = job
    await _save_draft(request, job)
    return job


async def stop_all(app: web.Application) -> None:
    """Server shutdown: cancel the jobs still running (their commands' threads end with the process)."""
    jobs = app[JOBS]
    for job in [*jobs.by_step.values(), *jobs.long.values()]:
        if job.task is not None and not job.task.done():
            job.task.cancel()
