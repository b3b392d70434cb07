"""Markdown skills: the loader and the bundled skills (see the skills issue)."""
