"""A built-in `demo` job: a few timed steps with progress and log lines, and a small result.

Useful to watch the queue work without any feed, and as the example of the handler contract.
Payload: {"steps": 5, "stepSeconds": 1.0, "failWith": null, "note": ""}.
"""

from __future__ import annotations

from shared.core.errors import ValidationError
from shared.core.handlers import Kind, register_kind

NOTE_MAX_CHARS = 200  # a few words to tell runs apart on the archive's cards


def demo_handler(payload: dict, ctx) -> dict:
    steps = payload.get("steps", 5)
    step_seconds = payload.get("stepSeconds", 1.0)
    ctx.progress(0, step="Processing", message=f"Working through {steps} steps")
    for step in range(1, steps + 1):
        if ctx.cancelled.wait(step_seconds):
            ctx.log("Cancel requested; stopping", level="warning")
            return {"stepsDone": step - 1}
        ctx.log(f"Step {step} of {steps} done")
        ctx.progress(round(90 * step / steps) if steps else 90)
    if payload.get("failWith"):
        raise RuntimeError(payload["failWith"])
    ctx.progress(95, step="Formatting", message="Formatting the result")
    return {"stepsDone": steps, "message": f"Finished {steps} steps"}


def _validate(payload: dict, session) -> None:
    problems = []
    steps = payload.get("steps", 5)
    if not isinstance(steps, int) or isinstance(steps, bool) or not 0 <= steps <= 1000:
        problems.append(("steps", "must be a whole number from 0 to 1000"))
    seconds = payload.get("stepSeconds", 1.0)
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 <= seconds <= 60:
        problems.append(("stepSeconds", "must be a number of seconds from 0 to 60"))
    if "failWith" in payload and not isinstance(payload["failWith"], (str, type(None))):
        problems.append(("failWith", "must be a string or null"))
    note = payload.get("note", "")
    if not isinstance(note, str) or len(note) > NOTE_MAX_CHARS:
        problems.append(("note", f"must be text of at most {NOTE_MAX_CHARS} characters"))
    if problems:
        raise ValidationError.of(problems)


demo_handler.validate = _validate


def dashboard_form(session) -> dict:
    """The dashboard's form for a demo job: its three payload fields, bounded as _validate
    bounds them (the page checks nothing itself: a bad value comes back as a 400 naming it)."""
    return {
        "title": "Run a demo job",
        "submit": "Run the demo",
        "fields": [
            {"name": "steps", "label": "Steps", "type": "number", "default": 5, "min": 0, "max": 1000, "step": 1},
            {
                "name": "stepSeconds",
                "label": "Seconds per step",
                "type": "number",
                "default": 1.0,
                "min": 0,
                "max": 60,
                "step": 0.1,
            },
            {
                "name": "failWith",
                "label": "Fail with this error (empty: succeed)",
                "type": "text",
                "default": "",
                "hint": "To watch a failed attempt and its retries.",
            },
            {
                "name": "note",
                "label": "Note",
                "type": "text",
                "default": "",
                "hint": f"A few words to tell this run apart on the archive's cards (at most {NOTE_MAX_CHARS} characters).",
            },
        ],
    }


# How the pages show a demo job: its cards say how many steps of how long it was asked for.
CARD = {
    "label": "Demo",
    "steps": ["Formatting"],  # the step demo_handler reports between the core's Processing and Complete
    "summary": [
        {"paths": ["payload.steps"], "default": 5, "template": "{} steps"},
        {"paths": ["payload.stepSeconds"], "default": 1.0, "template": "{} s each"},
        {"paths": ["payload.note"]},
    ],
}

register_kind(Kind(name="demo", handler="shared.kinds.demo:demo_handler", form=dashboard_form, card=CARD))
