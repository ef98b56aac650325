"""The agent core: one turn of the workspace agent in one conversation."""
