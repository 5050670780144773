"""The bodies of the console's write endpoints: strict, and every error names its field."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from experiments.console.errors import BadBody

Who = Annotated[str, Field(strict=True, min_length=1, max_length=256, description="who makes the change")]
Text = Annotated[str, Field(strict=True, max_length=4096)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApplyBody(_Body):
    """Apply a spec: a new experiment, or a new version of one (its variants frozen once exposed)."""

    spec: dict[str, Any] = Field(description="the experiment spec, as in the YAML files (durations, instants)")
    who: Who = "console"
    why: Text = ""
    no_gate: bool = Field(False, description="serve a policy without the evaluation gate (recorded as skipped)")


class StopBody(_Body):
    """Stop a running experiment: serving gives its users the control and exposes nobody."""

    why: Text = ""
    who: Who = "console"


class DecideBody(_Body):
    """Decide an experiment (stopped, or running with ``force``); writes the decision record."""

    note: Text = ""
    who: Who = "console"
    force: Annotated[bool, Field(strict=True)] = False


B = TypeVar("B", bound=_Body)


def parse_body(model: type[B], data: Any) -> B:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadBody([("", f"the body must be a JSON object, not {type(data).__name__}")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadBody([
            (".".join(str(p) for p in item["loc"]), str(item["msg"])) for item in exc.errors(include_url=False)
        ]) from None
