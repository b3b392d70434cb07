"""Known providers: which SDK speaks to them, where they live, and which variable holds the key."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    api: str  # "anthropic" or "openai"
    base_url: str | None
    key_env: str | None
    default_model: str
    needs_key: bool = True


PRESETS: dict[str, Preset] = {
    "anthropic": Preset("anthropic", None, "ANTHROPIC_API_KEY", "claude-sonnet-4-6"),
    "openai": Preset("openai", None, "OPENAI_API_KEY", "gpt-4.1"),
    "deepseek": Preset("openai", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY", "deepseek-chat"),
    "groq": Preset("openai", "https://api.groq.com/openai/v1", "GROQ_API_KEY", "llama-3.3-70b-versatile"),
    "openrouter": Preset("openai", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY",
                         "anthropic/claude-sonnet-4.6"),
    "gemini": Preset("openai", "https://generativelanguage.googleapis.com/v1beta/openai/", "GEMINI_API_KEY",
                     "gemini-2.5-flash"),
    "moonshot": Preset("openai", "https://api.moonshot.ai/v1", "MOONSHOT_API_KEY", "kimi-k2-0905-preview"),
    "dashscope": Preset("openai", "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "DASHSCOPE_API_KEY",
                        "qwen-plus"),
    "zhipu": Preset("openai", "https://open.bigmodel.cn/api/paas/v4", "ZHIPU_API_KEY", "glm-4.6"),
    "aihubmix": Preset("openai", "https://aihubmix.com/v1", "AIHUBMIX_API_KEY", "gpt-4.1"),
    "vllm": Preset("openai", "http://localhost:8000/v1", "VLLM_API_KEY", "", needs_key=False),
    "ollama": Preset("openai", "http://localhost:11434/v1", "OLLAMA_API_KEY", "llama3.2", needs_key=False),
    "openai_compatible": Preset("openai", None, "OPENAI_API_KEY", "", needs_key=False),
}

# Order in which `reverie chat` without a config file looks for a key in the environment.
ENV_DETECT_ORDER = ["anthropic", "openai", "openrouter", "deepseek", "gemini", "groq", "moonshot",
                    "dashscope", "zhipu", "aihubmix"]
