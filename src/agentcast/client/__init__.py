"""``agentcast client``: a terminal client that resumes across reconnects."""
