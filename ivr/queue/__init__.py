"""The agent queue: automatic call distribution and what waiting callers hear."""
