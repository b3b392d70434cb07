"""Markdown skills: folders with a SKILL.md that tell the model how to do particular tasks.

    from skills import SkillLibrary
    lib = SkillLibrary(user_dir=workspace / "skills")  # plus the bundled skills in this package
    system = SystemPrompt(workspace, extra=lib.prompt_text)
    lib.register(registry)                             # the read-only `use_skill` tool

Others may import ``SkillLibrary``, ``Skill`` and ``Requirements`` from here; the CLI
(``reverie skill ...``) lives in ``skills.cli`` and the installer in ``skills.install``.
"""

from skills.loader import SkillLibrary
from skills.skill import Requirements, Skill

__all__ = ["Requirements", "Skill", "SkillLibrary"]
