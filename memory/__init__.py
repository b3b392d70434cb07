"""Dream and the git-versioned MEMORY.md (see the memory issue)."""
