"""Finding, reading and validating the configuration file.

    cfg = load_config()                 # --config PATH, else $REVERIE_CONFIG, else ~/.reverie/config.yaml
    cfg = load_config("reverie.yaml")   # raises ConfigError naming the file, the key and the fix

With no file at the default path, the configuration comes from the environment alone
(``ANTHROPIC_API_KEY``, ``OPENAI_API_KEY``, ...).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from agent.config import DEFAULT_WORKSPACE, Config
from agent.errors import ConfigError
from agent.presets import ENV_DETECT_ORDER, PRESETS

_CHANNEL_TYPES = ("telegram", "discord", "slack")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_HOW_TO_START = (
    "No model is set up yet. Either:\n"
    "  - export ANTHROPIC_API_KEY=...   (or OPENAI_API_KEY, OPENROUTER_API_KEY, DEEPSEEK_API_KEY, ...)\n"
    "  - or run `reverie init` to write {path}\n"
    "Then run `reverie chat` again."
)


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    explicit = env.get("REVERIE_CONFIG")
    return Path(explicit).expanduser() if explicit else Path(DEFAULT_WORKSPACE, "config.yaml").expanduser()


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None, *,
                need_model: bool = True) -> Config:
    """Load and validate the configuration; see the module docstring for where it looks.

    ``need_model=False`` (commands that never call a model, such as ``reverie skill list``) accepts
    having neither a file nor a key in the environment."""
    env = os.environ if env is None else env
    explicit = path is not None or bool(env.get("REVERIE_CONFIG"))
    file = Path(path).expanduser() if path is not None else default_config_path(env)
    if not file.exists():
        if explicit:
            raise ConfigError(f"Config file {file} does not exist. Check the path, or run "
                              f"`reverie init --config {file}` to create it.")
        return _from_environment(env, file, need_model)
    data = read_yaml(file)
    try:
        data = expand_env(data, env, file)
    except RecursionError:  # an alias that contains itself: &a [*a]
        raise ConfigError(f"{file}: a YAML anchor refers to itself (&name ... *name inside it); "
                          "write the value out instead.") from None
    return validate(data, file)


def read_yaml(file: Path) -> dict[str, Any]:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read config file {file}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise ConfigError(f"{file}: the YAML is nested too deeply to read.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{file}{where}: invalid YAML ({problem}). "
                          "Check the indentation and quoting there.") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a mapping of keys (llm:, channels:, ...) at the top level, "
                          f"got {type(data).__name__}.")
    return data


def expand_env(value: Any, env: Mapping[str, str], file: Path, path: str = "") -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string value."""
    if isinstance(value, dict):
        return {k: expand_env(v, env, file, _join(path, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env, file, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"{file}: {path}: environment variable {name} is not set. "
                          f"Export it, or write ${{{name}:-default}} to give a default.")

    return _VAR.sub(sub, value)


def validate(data: dict[str, Any], file: Path | None) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        where = f"Configuration error in {file}" if file else "Configuration error"
        lines = [f"  {describe(err)}" for err in exc.errors()]
        raise ConfigError("\n".join([f"{where}:", *lines,
                                     "See config.example.yaml for every key, or run `reverie init`."])) from None


def describe(err: Any) -> str:
    """One line for one pydantic error: key path, what was wrong, what was expected."""
    raw = err["loc"]  # a channel's loc names its type after the index: channels.0.telegram.token
    loc = [p for i, p in enumerate(raw) if not (i and isinstance(raw[i - 1], int) and p in _CHANNEL_TYPES)]
    key = _loc_to_path(loc)
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        suggestion = f" Did you mean '{hint[0]}'?" if hint else ""
        return f"{key}: unknown key.{suggestion} Allowed here: {', '.join(allowed)}."
    if kind == "missing":
        return f"{key}: required key is missing."
    if kind == "union_tag_invalid" or kind == "union_tag_not_found":
        return f"{key or 'channels'}: 'type' must be one of telegram, discord, slack."
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
    msg = msg.removeprefix("Value error, ")
    return f"{key}: {msg}{shown}."


def _loc_to_path(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else _join(out, str(part))[len(out):]
    return out


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _allowed_keys(loc: list[Any]) -> list[str]:
    """The field names of the model found at ``loc`` in the schema."""
    model: Any = Config
    for part in loc:
        if isinstance(part, int):
            continue
        is_model = isinstance(model, type) and issubclass(model, BaseModel)
        field = model.model_fields.get(part) if is_model else None
        if field is None:
            return []
        model = _model_of(field.annotation)
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _model_of(annotation: Any) -> Any:
    for arg in (*getattr(annotation, "__args__", ()), annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        inner = _model_of(arg) if getattr(arg, "__args__", None) else None
        if inner is not None:
            return inner
    return None


def _from_environment(env: Mapping[str, str], file: Path, need_model: bool = True) -> Config:
    """A configuration built from environment variables, when no file exists."""
    for name in ENV_DETECT_ORDER:
        key_env = PRESETS[name].key_env
        if key_env and env.get(key_env):
            llm: dict[str, Any] = {"provider": name}
            if env.get("REVERIE_MODEL"):
                llm["model"] = env["REVERIE_MODEL"]
            data: dict[str, Any] = {"llm": llm}
            if env.get("REVERIE_WORKSPACE"):
                data["workspace"] = env["REVERIE_WORKSPACE"]
            return validate(data, None)
    if not need_model:
        return validate({"workspace": env["REVERIE_WORKSPACE"]} if env.get("REVERIE_WORKSPACE") else {}, None)
    raise ConfigError(_HOW_TO_START.format(path=file))
