"""End to end: the ``reverie`` command as a subprocess, against the stand-in LLM on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml

from tests.fakes.llm import Fail, FakeLLM, Turn
from tests.fakes.process import clean_env, reverie_command

SECRET = "sk-ant-e2e-SECRET-0123456789abcdef"


reverie_cmd = reverie_command
base_env = clean_env


def write_config(tmp_path: Path, fake: FakeLLM, api: str = "anthropic", **llm: object) -> Path:
    if api == "anthropic":
        base = {"provider": "anthropic", "model": "claude-test", "api_key": SECRET, "base_url": fake.url}
    else:
        base = {"provider": "openai_compatible", "model": "gpt-test", "api_key": "none", "base_url": fake.openai_url}
    base.update({"max_retries": 0, **llm})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"workspace": str(tmp_path / "ws"), "llm": base,
                                    "logging": {"level": "DEBUG"}}))
    return path


async def run(args: list[str], env: dict[str, str], stdin: bytes = b"") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*reverie_cmd(), *args, env=env, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_one_shot_anthropic_with_a_tool_call(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Turn(tool_calls=[("write_file", {"path": "hello.txt", "content": "hi"})]),
                    Turn(text="I wrote hello.txt."))
    config = write_config(tmp_path, fake_llm)
    code, out, err = await run(["chat", "--config", str(config), "-m", "write hello"], base_env(tmp_path))
    assert (code, out) == (0, "I wrote hello.txt.\n"), err
    assert (tmp_path / "ws" / "hello.txt").read_text() == "hi"
    assert fake_llm.requests[0].headers.get("authorization") == f"Bearer {SECRET}"


async def test_one_shot_openai_compatible_with_a_tool_call(tmp_path: Path, fake_llm: FakeLLM) -> None:
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "data.txt").write_text("the answer is 42\n")
    fake_llm.script(Turn(tool_calls=[("read_file", {"path": "data.txt"})]), Turn(text="It says 42."))
    config = write_config(tmp_path, fake_llm, api="openai")
    code, out, err = await run(["chat", "--config", str(config), "-m", "read it"], base_env(tmp_path))
    assert (code, out) == (0, "It says 42.\n"), err
    tool_message = next(m for m in fake_llm.requests[1].body["messages"] if m["role"] == "tool")
    assert "the answer is 42" in tool_message["content"]


async def test_the_conversation_continues_across_runs(tmp_path: Path, fake_llm: FakeLLM) -> None:
    config = write_config(tmp_path, fake_llm)
    env = base_env(tmp_path)
    await run(["chat", "--config", str(config), "-m", "my name is Ada"], env)
    await run(["chat", "--config", str(config), "-m", "what is my name?"], env)
    assert "my name is Ada" in str(fake_llm.requests[1].body["messages"])
    await run(["chat", "--config", str(config), "--session", "other", "-m", "hi"], env)
    assert "Ada" not in str(fake_llm.requests[2].body["messages"])


async def test_message_from_stdin(tmp_path: Path, fake_llm: FakeLLM) -> None:
    config = write_config(tmp_path, fake_llm)
    code, out, _ = await run(["chat", "--config", str(config), "-m", "-"], base_env(tmp_path), b"piped question")
    assert code == 0 and out == "ok\n"
    assert "piped question" in str(fake_llm.requests[0].body["messages"])


async def test_environment_alone_is_enough(tmp_path: Path, fake_llm: FakeLLM) -> None:
    env = base_env(tmp_path) | {"ANTHROPIC_API_KEY": SECRET, "ANTHROPIC_BASE_URL": fake_llm.url}
    code, out, err = await run(["chat", "-m", "hi"], env)
    assert (code, out) == (0, "ok\n"), err
    assert fake_llm.requests[0].body["model"] == "claude-sonnet-4-6"
    assert (tmp_path / ".reverie" / "sessions").is_dir()


async def test_no_config_and_no_key_explains_and_exits_2(tmp_path: Path) -> None:
    code, out, err = await run(["chat", "-m", "hi"], base_env(tmp_path))
    assert code == 2 and out == ""
    assert "ANTHROPIC_API_KEY" in err and "reverie init" in err
    assert "Traceback" not in err and len(err.splitlines()) <= 6


async def test_bad_config_names_the_key_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("llm:\n  provider: anthropic\n  max_tokns: 5\n")
    code, _, err = await run(["chat", "--config", str(config), "-m", "hi"], base_env(tmp_path))
    assert code == 2 and "llm.max_tokns: unknown key. Did you mean 'max_tokens'?" in err
    assert "Traceback" not in err


async def test_model_failure_exits_1_with_a_clear_message_and_no_secret(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Fail(401, "authentication_error", f"invalid x-api-key {SECRET}"))
    config = write_config(tmp_path, fake_llm)
    code, out, err = await run(["chat", "--config", str(config), "-m", "hi"], base_env(tmp_path))
    assert code == 1 and "rejected the API key" in err
    written = [p.read_bytes() for p in (tmp_path / "ws").rglob("*") if p.is_file()]
    assert written and not any(SECRET.encode() in data for data in written)
    assert SECRET not in out + err


async def test_init_writes_once_and_never_overwrites(tmp_path: Path) -> None:
    config = tmp_path / "new" / "config.yaml"
    env = base_env(tmp_path)
    code, out, _ = await run(["init", "--config", str(config), "--provider", "openai", "--yes"], env)
    assert code == 0 and "Wrote" in out
    data = yaml.safe_load(config.read_text())
    assert data["llm"] == {"provider": "openai", "model": "gpt-4.1", "api_key": "${OPENAI_API_KEY}"}
    assert config.stat().st_mode & 0o777 == 0o600
    code, _, err = await run(["init", "--config", str(config), "--yes"], env)
    assert code == 1 and "not overwriting" in err


async def test_help_and_usage(tmp_path: Path, fake_llm: FakeLLM) -> None:
    code, out, _ = await run(["--help"], base_env(tmp_path))
    assert code == 0 and "chat" in out and "init" in out
    config = write_config(tmp_path, fake_llm)
    await run(["chat", "--config", str(config), "-m", "hi"], base_env(tmp_path))
    code, out, _ = await run(["usage", "--config", str(config)], base_env(tmp_path))
    assert code == 0 and "claude-test: 1 calls, 10 in, 5 out" in out


async def test_interactive_chat_over_a_pipe(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Turn(text="first answer"), Turn(text="second answer"))
    config = write_config(tmp_path, fake_llm)
    code, out, err = await run(["chat", "--config", str(config)], base_env(tmp_path), b"hello\n/help\nagain\n/exit\n")
    assert code == 0, err
    assert out.splitlines()[0] == "first answer" and "second answer" in out and "/new" in out


async def test_init_for_a_local_server_needs_no_key(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    code, _, err = await run(["init", "--config", str(config), "--provider", "ollama", "--yes"], base_env(tmp_path))
    assert code == 0, err
    assert yaml.safe_load(config.read_text())["llm"] == {"provider": "ollama", "model": "llama3.2",
                                                         "base_url": "http://localhost:11434/v1"}
    code, out, err = await run(["config", "--config", str(config)], base_env(tmp_path))
    assert code == 0 and "ollama / llama3.2 at http://localhost:11434/v1" in out, err


async def test_provider_override_never_reuses_another_providers_key(tmp_path: Path, fake_llm: FakeLLM) -> None:
    config = write_config(tmp_path, fake_llm)
    code, _, err = await run(["chat", "--config", str(config), "--provider", "openrouter", "-m", "hi"],
                             base_env(tmp_path))
    assert code == 2 and "No API key for provider 'openrouter'" in err and "OPENROUTER_API_KEY" in err
    code, _, err = await run(["chat", "--config", str(config), "--provider", "anthropc", "-m", "hi"],
                             base_env(tmp_path))
    assert code == 2 and "unknown provider 'anthropc'" in err and "Traceback" not in err
    assert not fake_llm.requests
    code, out, err = await run(["chat", "--config", str(config), "--model", "claude-other", "-m", "hi"],
                               base_env(tmp_path))
    assert (code, out) == (0, "ok\n"), err
    assert fake_llm.requests[0].body["model"] == "claude-other"


async def test_channel_provider_without_model_uses_that_providers_default(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("llm: {provider: anthropic, api_key: sk-ant-abcdef123}\n"
                      "channels:\n  - {type: telegram, token: x, provider: ollama}\n")
    code, out, err = await run(["config", "--config", str(config)], base_env(tmp_path))
    assert code == 0 and "telegram: ollama / llama3.2" in out, err
    config.write_text("channels:\n  - {type: telegram, token: x, provider: olama}\n")
    code, _, err = await run(["config", "--config", str(config)], base_env(tmp_path))
    assert code == 2 and "channels[0].provider: unknown provider 'olama'" in err


async def test_unusable_workspace_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    env = base_env(tmp_path) | {"ANTHROPIC_API_KEY": SECRET, "REVERIE_WORKSPACE": str(tmp_path / "afile" / "ws")}
    code, _, err = await run(["chat", "-m", "hi"], env)
    assert code == 2 and "Cannot use" in err and "workspace" in err and "Traceback" not in err


async def test_service_install_writes_a_user_unit_and_prints_how_to_enable_it(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("llm: {provider: anthropic, api_key: sk-ant-abcdef123}\n")
    code, out, err = await run(["service", "install", "--config", str(config)], base_env(tmp_path))
    assert code == 0, err
    unit = (tmp_path / ".config" / "systemd" / "user" / "reverie.service").read_text()
    assert "Restart=on-failure" in unit and f"start --config {config}" in unit
    assert "systemctl --user daemon-reload" in out and "systemctl --user enable --now reverie" in out
    code, _, err = await run(["service", "install"], base_env(tmp_path))
    assert code == 1 and "--force" in err


async def test_pair_list_approve_revoke(tmp_path: Path) -> None:
    from channels.access import PairingStore

    config = tmp_path / "config.yaml"
    config.write_text(f"workspace: {tmp_path / 'ws'}\nllm: {{provider: anthropic, api_key: sk-ant-abcdef123}}\n")
    code = PairingStore(tmp_path / "ws" / "pairing").request("telegram", "555", "555", "mallory")
    assert code is not None
    env = base_env(tmp_path)
    _, out, _ = await run(["pair", "list", "--config", str(config)], env)
    assert code in out and "Approved: nobody yet" in out
    rc, _, err = await run(["pair", "approve", "WRONGCOD", "--config", str(config)], env)
    assert rc == 1 and "No pending pairing code" in err
    rc, out, _ = await run(["pair", "approve", code.lower(), "--config", str(config)], env)
    assert rc == 0 and "Approved mallory (555) on telegram" in out
    rc, out, _ = await run(["pair", "revoke", "telegram", "555", "--config", str(config)], env)
    assert rc == 0 and "Revoked" in out
    rc, _, err = await run(["pair", "revoke", "telegram", "555", "--config", str(config)], env)
    assert rc == 1 and "not approved" in err


async def test_one_shot_waits_for_the_subagent_it_started(tmp_path: Path, fake_llm: FakeLLM) -> None:
    """`chat -m` prints the first answer, the subagent's progress on stderr, then the answer its report brings."""

    def respond(rec: Any) -> Turn:
        child = "subagent of reverie" in str(rec.body.get("system"))
        if child:
            return Turn(text="Found: 7 files.")
        if "Report from subagent" in str(rec.body["messages"][-1]):
            return Turn(text="The helper found 7 files.")
        return Turn(text="Started a helper.", tool_calls=[("spawn", {"task": "count files"})]) \
            if len(fake_llm.requests) == 1 else Turn(text="It is working on it.")

    fake_llm.responder = respond
    config = write_config(tmp_path, fake_llm)
    code, out, err = await run(["chat", "--config", str(config), "-m", "count my files"], base_env(tmp_path))
    assert code == 0, err
    assert out.splitlines() == ["It is working on it.", "The helper found 7 files."]
    assert "subagent" in err and ": done" in err


async def test_commands_that_need_no_model_run_without_a_key(tmp_path: Path) -> None:
    env = base_env(tmp_path) | {"REVERIE_WORKSPACE": str(tmp_path / "ws")}
    code, out, err = await run(["skill", "list"], env)
    assert code == 0, err
    assert "weather" in out and "bundled" in out
    code, out, err = await run(["usage"], env)
    assert code == 0, err


async def test_one_shot_prints_the_answer_of_a_child_that_finished_first(tmp_path: Path, fake_llm: FakeLLM) -> None:
    """The child reports before the parent's own answer is out: that report's answer is still printed."""
    from tests.fakes.llm import Delay

    def respond(rec: Any) -> Any:
        if "subagent of reverie" in str(rec.body.get("system")):
            return Turn(text="quick result")
        if "Report from subagent" in str(rec.body["messages"][-1]):
            return Turn(text="ANSWER FROM REPORT")
        if len(fake_llm.requests) == 1:
            return Turn(tool_calls=[("spawn", {"task": "quick"})])
        return Delay(1.0, Turn(text="Started."))

    fake_llm.responder = respond
    config = write_config(tmp_path, fake_llm)
    code, out, err = await run(["chat", "--config", str(config), "-m", "go"], base_env(tmp_path))
    assert code == 0, err
    assert out.splitlines() == ["Started.", "ANSWER FROM REPORT"]
