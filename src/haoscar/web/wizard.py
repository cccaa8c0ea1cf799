"""The installation wizard's pages: /wizard (where the cluster is) and /wizard/STEP (a step's forms).

A view only parses form text into the step's request dataclass (``commands.wizard_forms.parse``), runs the command
the CLI runs (``render.audited``, through ``wizard_jobs``) and renders the report, or the command's problems next to
their fields. The step a browser shows comes from the cluster (``commands.wizard.progress``), never from the
browser: a reload, a crash or another browser lands on the same step with the same drafts.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from haoscar.commands.wizard import STEPS, Step, step_named
from haoscar.commands.wizard_form_defs import form_named, forms_of
from haoscar.commands.wizard_forms import Form, cli_line, safe_cli_line, values_of
from haoscar.errors import FieldError
from haoscar.web import render, wizard_jobs
from haoscar.web.wizard_data import StepData, step_data
from haoscar.web.wizard_jobs import JOBS, Job, Jobs

ALTERNATIVES = {"image": ("build", "fetch", "import")}  # forms that share field names: one shown at a time


def _step(request: web.Request) -> Step:
    step = step_named(request.match_info["step"])
    if step is None:
        raise web.HTTPNotFound(text="There is no such wizard step.")
    return step


def _dynamic_defaults(form: Form, data: StepData) -> dict[str, str]:
    """Defaults that come from the cluster: the image just made, the packages selected, the served interface."""
    facts = data.progress.facts
    out: dict[str, str] = {}
    if form.key == "clients" and facts.images:
        out["image"] = "oscarimage" if "oscarimage" in facts.images else facts.images[0]
    if form.key == "standby" and facts.images and "serverimage" not in facts.images:
        out["image"] = facts.images[0]
    if form.key == "build" and facts.packages_selected:
        out["packages"] = ",".join(facts.packages_selected)
    if form.key == "assign_all" and data.extra.get("free"):
        out["nodeset"] = ",".join(data.extra["free"])  # every node still without a MAC, in assign-all's order
    if form.key == "assign" and data.extra.get("free"):
        out["node"] = str(data.extra["free"][0])
    if form.key == "collect" and (data.extra.get("dhcp") or {}).get("interface"):
        out["interface"] = str(data.extra["dhcp"]["interface"])
    return out


def _shown_forms(step: Step, data: StepData, chosen: str | None) -> list[Form]:
    forms = forms_of(step.key)
    group = ALTERNATIVES.get(step.key)
    if group is None:
        return forms
    wanted = chosen if chosen in group else (data.draft.form if data.draft and data.draft.form in group else group[0])
    return [form for form in forms if form.key not in group or form.key == wanted]


def _form_view(form: Form, data: StepData) -> dict[str, Any]:
    values = {f.name: f.default for f in form.fields} | _dynamic_defaults(form, data)
    errors: dict[str, list[str]] = {}
    if data.draft is not None and data.draft.form == form.key:
        values |= {k: v for k, v in data.draft.values.items() if k in values}
        errors = data.draft.problems
    summary = [line for field, lines in errors.items() if field not in values for line in lines]
    field_errors = {k: v for k, v in errors.items() if k in values}
    return {"form": form, "vals": values, "errors": field_errors, "summary": summary,
            "cli": safe_cli_line(form, values)}  # fmt: skip


async def _render(request: web.Request, step: Step, *, status: int = 200) -> web.Response:
    data = await render.call(request, step_data, step.key)
    jobs: Jobs = request.app[JOBS]
    job = jobs.by_step.get(step.key)
    running = jobs.running(step.key)
    views = [_form_view(form, data) for form in _shown_forms(step, data, request.query.get("form"))]
    return render.page(
        request, "wizard/step.html", status=status, step=step, wizard=data.progress, data=data.extra, forms=views,
        job=job.as_dict() if job else None, alternatives=ALTERNATIVES.get(step.key, ()), form_named=form_named,
        refresh=running is not None, background=running.as_dict() if running and running is not job else None,
    )  # fmt: skip


async def overview(request: web.Request) -> web.StreamResponse:
    data = await render.call(request, step_data, "")
    return render.page(request, "wizard/index.html", wizard=data.progress, steps=STEPS)


async def step_get(request: web.Request) -> web.StreamResponse:
    return await _render(request, _step(request))


def _texts(form: Form, posted: Any) -> dict[str, str]:
    """The submitted text of each field (an unticked checkbox sends nothing: ""; a field left out: its default)."""
    return {f.name: str(posted.get(f.name, "" if f.kind == "bool" else f.default)) for f in form.fields}


async def _submit(request: web.Request, form: Form, texts: dict[str, str]) -> Job:
    try:
        values = values_of(form, texts)
    except FieldError as exc:
        return await wizard_jobs.failed_parse(request, form, texts, render.problems(exc), safe_cli_line(form, texts))
    return await wizard_jobs.start(request, form, form.request(**values), texts, cli_line(form, values))


async def step_post(request: web.Request) -> web.StreamResponse:
    step = _step(request)
    posted = await request.post()
    form = form_named(str(posted.get("form", "")))
    if form is None or form.step != step.key:
        raise web.HTTPBadRequest(text="This form does not belong to this step.")
    jobs: Jobs = request.app[JOBS]
    busy = jobs.running(step.key)
    if form.long and busy is not None:
        raise web.HTTPConflict(text=f"{busy.title} is still running; wait for it to end.")
    job = await _submit(request, form, _texts(form, posted))
    if job.state == "failed":
        return await _render(request, step, status=422)
    suffix = f"?form={form.key}" if form.key in ALTERNATIVES.get(step.key, ()) else ""
    raise web.HTTPSeeOther(f"/wizard/{step.key}{suffix}")


async def job_json(request: web.Request) -> web.StreamResponse:
    """The step's running long job, else its latest job, as JSON (wizard.js polls it while a long job runs)."""
    jobs: Jobs = request.app[JOBS]
    key = _step(request).key
    job = jobs.running(key) or jobs.by_step.get(key)
    return web.json_response(job.as_dict() if job else None)


async def progress_json(request: web.Request) -> web.StreamResponse:
    """Every step's state and the current step, as the overview shows them."""
    data = await render.call(request, step_data, "")
    return web.json_response(data.progress.as_dict())


def setup(app: web.Application) -> None:
    app[JOBS] = Jobs()
    app.on_shutdown.append(wizard_jobs.stop_all)
    render.add_nav(app, "/wizard", "Wizard")
    app.router.add_get("/wizard", overview)
    app.router.add_get("/wizard/{step}", step_get)
    app.router.add_post("/wizard/{step}", step_post)
    app.router.add_get("/api/wizard", progress_json)
    app.router.add_get("/api/wizard/{step}/job", job_json)
