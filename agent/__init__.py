"""reverie's core: configuration, bus, agent loop, providers, tools and the CLI.

Other packages may import: ``agent.errors``, ``agent.bus`` (Inbound, Outbound, MessageBus),
``agent.config`` (Config, load_config), ``agent.types`` (Message, ToolCall, Usage, Completion).
"""
