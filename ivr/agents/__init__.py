"""The agent side: logins for agents, supervisors and admins, and the handoff API they (or a CRM) read."""
