"""MemGPT's wire protocol, its interfaces and the drop-in AgentServer."""
