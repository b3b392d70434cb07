"""Channel adapters: one module per platform, plus the terminal. Each is a transport with
``start()``, ``stop()`` and ``send(Outbound)``; it knows the bus, never the agent."""
