"""The owner's approval of workspace skills that change every conversation.

Anyone who can write files in the workspace can write a skill there, the model included (through its
file tools, as the bundled skill-creator teaches). A listed skill is harmless: the model reads it only
when it chooses to. Two things reach every conversation, though: ``always: true`` and replacing a
bundled skill of the same name. Those take effect only for a SKILL.md whose exact content the owner
approved:

    approvals = Approvals(workspace / "state" / "skill-approvals.json")
    approvals.approve(skill)      # `reverie skill install` and `reverie skill approve NAME` do this
    approvals.approved(skill)     # False again as soon as the SKILL.md changes

The file lives in ``state/``, which file tools can neither read nor write.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from skills.skill import InvalidSkill, Skill, read_limited


class Approvals:
    def __init__(self, path: Path) -> None:
        self.path = path

    def approved(self, skill: Skill) -> bool:
        digest = _digest(skill)
        return digest is not None and digest in self._load().get(skill.name, [])

    def approve(self, skill: Skill) -> None:
        digest = _digest(skill)
        if digest is None:
            return
        data = self._load()
        data[skill.name] = [*data.get(skill.name, [])[-4:], digest]  # a few versions, so undoing an edit works
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)

    def _load(self) -> dict[str, list[str]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {k: [d for d in v if isinstance(d, str)] for k, v in data.items() if isinstance(v, list)} \
            if isinstance(data, dict) else {}


def _digest(skill: Skill) -> str | None:
    try:
        return hashlib.sha256(read_limited(skill.path)).hexdigest()
    except InvalidSkill:
        return None
